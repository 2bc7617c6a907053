#include "models/classifier_training.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "models/autocast.h"
#include "models/device_transfer.h"
#include "models/tensor_data.h"
#include "pipeline/errors.h"
#include "pipeline/fs_util.h"
#include "pipeline/report.h"
#include "pipeline/rng.h"

namespace augment {

namespace F = torch::nn::functional;
using nlohmann::json;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

torch::Tensor as_model_input(const torch::Tensor& images) {
  return images.scalar_type() == torch::kUInt8 ? to_model_range(images) : images.to(torch::kFloat32);
}

// Random crop (mirrored padding, then a crop back to size) and horizontal flip, drawn per image
// in a fixed order from `rng` so an epoch's augmentation depends only on the seed and the epoch.
torch::Tensor augment_batch(const torch::Tensor& x, std::int64_t pad, bool flip, Rng& rng) {
  const auto h = x.size(2), w = x.size(3);
  pad = std::min({pad, h - 1, w - 1});  // reflection needs a border thinner than the image
  if (pad <= 0 && !flip) return x;
  const auto padded = pad > 0 ? F::pad(x, F::PadFuncOptions({pad, pad, pad, pad}).mode(torch::kReflect)) : x;
  auto out = torch::empty_like(x);
  for (std::int64_t i = 0; i < x.size(0); ++i) {
    const auto dy = pad > 0 ? static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(2 * pad + 1))) : 0;
    const auto dx = pad > 0 ? static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(2 * pad + 1))) : 0;
    auto crop = padded[i].narrow(1, dy, h).narrow(2, dx, w);
    if (flip && rng.below(2) == 1) crop = crop.flip({2});
    out[i].copy_(crop);
  }
  return out;
}

std::vector<std::int64_t> class_counts(const torch::Tensor& labels, int num_classes) {
  std::vector<std::int64_t> counts(static_cast<std::size_t>(num_classes), 0);
  const auto l = labels.contiguous();
  const auto* p = l.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < l.size(0); ++i) {
    if (p[i] < 0 || p[i] >= num_classes) {
      throw UserError(ExitCode::kDataError, fmt::format("label {} outside the {} classes of the classifier", p[i], num_classes));
    }
    ++counts[static_cast<std::size_t>(p[i])];
  }
  return counts;
}

// The order in which an epoch visits the training images: a permutation, or with class-balanced
// sampling, draws (with replacement) of a uniformly chosen class and then an image of it.
std::vector<std::int64_t> epoch_order(const torch::Tensor& labels, int num_classes, bool balanced, Rng& rng) {
  const auto n = labels.size(0);
  std::vector<std::int64_t> order;
  if (!balanced) {
    order.resize(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
    rng.shuffle(order);
    return order;
  }
  std::vector<std::vector<std::int64_t>> members(static_cast<std::size_t>(num_classes));
  const auto* p = labels.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < n; ++i) members[static_cast<std::size_t>(p[i])].push_back(i);
  std::vector<std::size_t> present;
  for (std::size_t k = 0; k < members.size(); ++k) {
    if (!members[k].empty()) present.push_back(k);
  }
  order.reserve(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const auto& m = members[present[rng.below(present.size())]];
    order.push_back(m[rng.below(m.size())]);
  }
  return order;
}

// Linear warm-up to `peak`, then cosine decay to zero at `total` steps.
double lr_at(std::int64_t step, std::int64_t total, std::int64_t warmup, double peak) {
  if (step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double t = static_cast<double>(step - warmup) / static_cast<double>(std::max<std::int64_t>(1, total - warmup));
  return peak * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, t)));
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(ClassifierNet& net, const ClassifierOptions& o) {
  // Decay only conv and linear weights: decaying norm scales and biases fights normalisation.
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& p : net->parameters()) (p.dim() > 1 ? decay : no_decay).push_back(p);
  const double lr = o.effective_lr(), wd = o.effective_weight_decay();
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (o.optimizer == "sgd") {
    auto options = [&](double decay_value) {
      return std::make_unique<torch::optim::SGDOptions>(
          torch::optim::SGDOptions(lr).momentum(o.momentum).nesterov(o.momentum > 0).weight_decay(decay_value));
    };
    groups.emplace_back(decay, options(wd));
    groups.emplace_back(no_decay, options(0.0));
    return std::make_unique<torch::optim::SGD>(groups, torch::optim::SGDOptions(lr));
  }
  auto options = [&](double decay_value) {
    return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(lr).weight_decay(decay_value));
  };
  groups.emplace_back(decay, options(wd));
  groups.emplace_back(no_decay, options(0.0));
  return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(lr));
}

void copy_weights(ClassifierNet& from, ClassifierNet& to) {
  torch::NoGradGuard no_grad;
  auto dst = to->named_parameters();
  for (const auto& item : from->named_parameters()) dst[item.key()].copy_(item.value());
  auto dst_buffers = to->named_buffers();
  for (const auto& item : from->named_buffers()) dst_buffers[item.key()].copy_(item.value());
}

json number_or_null(double v) { return std::isnan(v) ? json(nullptr) : json(v); }
double number_or_nan(const json& j) { return j.is_null() ? kNaN : j.get<double>(); }

json record_to_json(const EpochRecord& r) {
  return {{"epoch", r.epoch},
          {"lr", r.lr},
          {"train_loss", number_or_null(r.train_loss)},
          {"train_accuracy", number_or_null(r.train_accuracy)},
          {"val_loss", number_or_null(r.val_loss)},
          {"val_accuracy", number_or_null(r.val_accuracy)},
          {"val_balanced_accuracy", number_or_null(r.val_balanced_accuracy)},
          {"train_seconds", r.train_seconds},
          {"train_images", r.train_images},
          {"best", r.best}};
}

EpochRecord record_from_json(const json& j) {
  EpochRecord r;
  r.epoch = j.at("epoch");
  r.lr = j.at("lr");
  r.train_loss = number_or_nan(j.at("train_loss"));
  r.train_accuracy = number_or_nan(j.at("train_accuracy"));
  r.val_loss = number_or_nan(j.at("val_loss"));
  r.val_accuracy = number_or_nan(j.at("val_accuracy"));
  r.val_balanced_accuracy = number_or_nan(j.at("val_balanced_accuracy"));
  r.train_seconds = j.at("train_seconds");
  r.train_images = j.at("train_images");
  r.best = j.at("best");
  return r;
}

// Where training stands after an epoch: everything besides the tensors a resume needs. The
// per-epoch randomness derives from (seed, epoch), so the epoch number is the RNG state.
struct TrainState {
  int epochs_done = 0;
  int best_epoch = 0;
  double best_score = -1;
  double best_loss = std::numeric_limits<double>::infinity();
  int bad_epochs = 0;
  bool finished = false;
  bool stopped_early = false;
  std::vector<EpochRecord> history;
};

json state_to_json(const TrainState& s, const std::string& key) {
  json history = json::array();
  for (const auto& r : s.history) history.push_back(record_to_json(r));
  return {{"key", key},
          {"epochs_done", s.epochs_done},
          {"best_epoch", s.best_epoch},
          {"best_score", s.best_score},
          {"best_loss", number_or_null(s.best_loss)},
          {"bad_epochs", s.bad_epochs},
          {"finished", s.finished},
          {"stopped_early", s.stopped_early},
          {"history", history}};
}

TrainState state_from_json(const json& j) {
  TrainState s;
  s.epochs_done = j.at("epochs_done");
  s.best_epoch = j.at("best_epoch");
  s.best_score = j.at("best_score");
  s.best_loss = j.at("best_loss").is_null() ? std::numeric_limits<double>::infinity() : j.at("best_loss").get<double>();
  s.bad_epochs = j.at("bad_epochs");
  s.finished = j.at("finished");
  s.stopped_early = j.at("stopped_early");
  for (const auto& r : j.at("history")) s.history.push_back(record_from_json(r));
  return s;
}

// One file, replaced atomically, so a kill at any moment leaves either the previous epoch's
// checkpoint or this one, never a mix.
void write_checkpoint(const std::filesystem::path& path, const std::string& key, const TrainState& state, ClassifierNet& net,
                      ClassifierNet& best, torch::optim::Optimizer& optimizer) {
  ensure_directory(path.parent_path());
  write_atomically(path, [&](const std::filesystem::path& tmp) {
    torch::serialize::OutputArchive archive;
    torch::serialize::OutputArchive model(archive.compilation_unit()), best_model(archive.compilation_unit()),
        optim(archive.compilation_unit());
    net->save(model);
    best->save(best_model);
    optimizer.save(optim);
    archive.write("model", model);
    archive.write("best_model", best_model);
    archive.write("optimizer", optim);
    archive.write("state", c10::IValue(state_to_json(state, key).dump()));
    archive.save_to(tmp.string());
  });
}

// Loads a checkpoint written with `key`; false (and a note) when there is none or it does not fit.
bool read_checkpoint(const std::filesystem::path& path, const std::string& key, TrainState& state, ClassifierNet& net, ClassifierNet& best,
                     torch::optim::Optimizer& optimizer, Reporter* reporter) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return false;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path.string());
    c10::IValue text;
    archive.read("state", text);
    const auto j = json::parse(text.toStringRef());
    if (j.at("key") != key) {
      if (reporter) reporter->info(fmt::format("{} was written for other data or options; training starts afresh", path.string()));
      return false;
    }
    TrainState loaded = state_from_json(j);
    torch::serialize::InputArchive model, best_model, optim;
    archive.read("model", model);
    archive.read("best_model", best_model);
    archive.read("optimizer", optim);
    net->load(model);
    best->load(best_model);
    optimizer.load(optim);
    state = std::move(loaded);
    return true;
  } catch (const std::exception& e) {
    if (reporter) reporter->warn(fmt::format("{} cannot be read ({}); training starts afresh", path.string(), e.what()));
    return false;
  }
}

std::string percent(double v) { return std::isnan(v) ? std::string("-") : fmt::format("{:.2f}%", 100.0 * v); }

}  // namespace

double ClassifierTrainResult::images_per_second() const {
  double seconds = 0, images = 0;
  for (const auto& r : history) {
    seconds += r.train_seconds;
    images += static_cast<double>(r.train_images);
  }
  return seconds > 0 ? images / seconds : 0.0;
}

ClassifierConfig classifier_config(const ClassifierOptions& o, int channels, int resolution, int num_classes) {
  ClassifierConfig c;
  c.channels = channels;
  c.resolution = resolution;
  c.num_classes = num_classes;
  c.width = static_cast<int>(o.width);
  c.blocks = static_cast<int>(o.blocks);
  c.norm = o.norm;
  return c;
}

torch::Tensor classifier_logits(ClassifierNet& net, const torch::Tensor& images, const torch::Device& device, std::int64_t batch_size) {
  const bool was_training = net->is_training();
  net->eval();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  for (std::int64_t s = 0; s < images.size(0); s += batch_size) {
    const auto e = std::min(images.size(0), s + batch_size);
    // The stored pixels go to the device as they are (uint8: a quarter of the bytes) and the
    // results come back once, after the last batch.
    parts.push_back(net->forward(as_model_input(images.slice(0, s, e).to(device))).to(torch::kFloat32));
  }
  net->train(was_training);
  if (parts.empty()) return torch::empty({0, net->config().num_classes});
  return torch::cat(parts).cpu();
}

ClassifierOutputs classifier_outputs(ClassifierNet& net, const torch::Tensor& images, const torch::Device& device,
                                     std::int64_t batch_size) {
  const bool was_training = net->is_training();
  net->eval();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> logits, features;
  for (std::int64_t s = 0; s < images.size(0); s += batch_size) {
    const auto e = std::min(images.size(0), s + batch_size);
    auto [l, f] = net->forward_features(as_model_input(images.slice(0, s, e).to(device)));
    logits.push_back(l.to(torch::kFloat32));
    features.push_back(f.to(torch::kFloat32));
  }
  net->train(was_training);
  if (logits.empty()) return {torch::empty({0, net->config().num_classes}), torch::empty({0, net->feature_dim()})};
  return {torch::cat(logits).cpu(), torch::cat(features).cpu()};
}

ClassifierScores evaluate_classifier(ClassifierNet& net, const LabeledImages& data, const torch::Device& device, std::int64_t batch_size) {
  const int k = net->config().num_classes;
  ClassifierScores scores{ConfusionMatrix(static_cast<std::size_t>(k)), kNaN};
  if (data.size() == 0) return scores;
  const auto logits = classifier_logits(net, data.images, device, batch_size);
  const auto labels = data.labels.to(torch::kInt64).contiguous();
  scores.loss = F::cross_entropy(logits, labels).item<double>();
  const auto predicted = logits.argmax(1).contiguous();
  const auto* t = labels.data_ptr<std::int64_t>();
  const auto* p = predicted.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < labels.size(0); ++i) scores.confusion.add(t[i], p[i]);
  return scores;
}

ClassifierTrainResult train_classifier(const LabeledImages& train, const LabeledImages& val, const ClassifierTrainSetup& setup) {
  const auto& o = setup.options;
  const int num_classes = static_cast<int>(setup.class_names.size());
  if (train.size() == 0) throw UserError(ExitCode::kDataError, "the classifier has no training images");
  if (train.images.dim() != 4) throw std::invalid_argument("train_classifier: images must be NCHW");
  const auto channels = static_cast<int>(train.images.size(1));
  const auto resolution = static_cast<int>(train.images.size(2));
  const auto config = classifier_config(o, channels, resolution, num_classes);
  const auto counts = class_counts(train.labels, num_classes);
  if (val.size() > 0) class_counts(val.labels, num_classes);

  const auto seed = setup.seed;
  torch::manual_seed(hash64("classifier/init", seed));
  ClassifierNet net(config), best(config);
  net->to(setup.device);
  best->to(setup.device);
  copy_weights(net, best);
  auto optimizer = make_optimizer(net, o);

  const std::int64_t n = train.size();
  const std::int64_t batch = std::min<std::int64_t>(o.batch_size, n);
  // Every image once per epoch, in batches as even as possible (63 images at batch 32: 32 + 31).
  // Dropping the partial tail instead lost up to half of a small train split every epoch, and a
  // tail of one image would have broken BatchNorm.
  const std::int64_t steps_per_epoch = (n + batch - 1) / batch;
  auto batch_begin = [&](std::int64_t step) { return step * n / steps_per_epoch; };
  const std::int64_t total_steps = steps_per_epoch * o.epochs;
  const auto warmup = std::min<std::int64_t>(total_steps / 2, std::llround(o.warmup_epochs * static_cast<double>(steps_per_epoch)));
  const auto pad = o.effective_crop_pad(resolution);
  const auto labels_cpu = train.labels.to(torch::kInt64).contiguous();

  torch::Tensor class_weight;
  if (o.balance == "loss") {
    std::vector<float> w;
    std::int64_t present = 0;
    for (auto c : counts) present += c > 0;
    for (auto c : counts) w.push_back(c > 0 ? static_cast<float>(static_cast<double>(n) / static_cast<double>(present * c)) : 0.0f);
    class_weight = torch::tensor(w).to(setup.device);
  }

  TrainState state;
  ClassifierTrainResult result;
  if (!setup.checkpoint.empty() && read_checkpoint(setup.checkpoint, setup.checkpoint_key, state, net, best, *optimizer, setup.reporter)) {
    result.resumed_after_epoch = state.epochs_done;
    if (setup.reporter) {
      setup.reporter->info(state.finished ? fmt::format("training finished in an earlier run (best epoch {}); reusing it", state.best_epoch)
                                          : fmt::format("resuming after epoch {} from {}", state.epochs_done, setup.checkpoint.string()));
    }
  }
  const bool have_val = val.size() > 0;
  if (!have_val && setup.reporter && state.epochs_done == 0) {
    setup.reporter->warn("no validation images: the last epoch is kept and early stopping is off");
  }

  while (!state.finished) {
    const int epoch = state.epochs_done + 1;
    Rng rng(seed, fmt::format("classifier/epoch/{}", epoch));
    const auto order = epoch_order(labels_cpu, num_classes, o.balance == "sampler", rng);
    const auto order_tensor = torch::tensor(order, torch::kInt64);
    net->train();
    std::unique_ptr<Progress> progress;
    if (setup.reporter) {
      progress = std::make_unique<Progress>(*setup.reporter, fmt::format("{} epoch {}/{}", setup.label, epoch, o.epochs),
                                            n, "img");
    }
    const auto t0 = std::chrono::steady_clock::now();
    double loss_sum = 0, lr = 0;
    std::int64_t correct = 0, seen = 0;
    for (std::int64_t step = 0; step < steps_per_epoch; ++step) {
      const std::int64_t begin = batch_begin(step), size = batch_begin(step + 1) - begin;
      const auto idx = order_tensor.slice(0, begin, begin + size);
      const auto moved = to_device_once({augment_batch(as_model_input(train.images.index_select(0, idx)), pad, o.flip, rng),
                                         labels_cpu.index_select(0, idx)},
                                        setup.device);
      const auto& x = moved[0];
      const auto& y = moved[1];
      lr = lr_at((epoch - 1) * steps_per_epoch + step, total_steps, warmup, o.effective_lr());
      for (auto& group : optimizer->param_groups()) group.options().set_lr(lr);
      torch::Tensor logits;
      {
        AutocastScope autocast(setup.device, setup.precision);
        logits = net->forward(x);
      }
      logits = logits.to(torch::kFloat32);
      auto loss_options = F::CrossEntropyFuncOptions().label_smoothing(o.label_smoothing);
      if (class_weight.defined()) loss_options.weight(class_weight);
      const auto loss = F::cross_entropy(logits, y, loss_options);
      optimizer->zero_grad();
      loss.backward();
      optimizer->step();

      // Loss and hits come back together: one read from the device per batch.
      const auto figures = torch::stack({loss.detach().to(torch::kFloat64), logits.argmax(1).eq(y).sum().to(torch::kFloat64)}).cpu();
      const double loss_value = figures[0].item<double>();
      if (!std::isfinite(loss_value)) {
        throw UserError(ExitCode::kFailure, fmt::format("the classifier's training loss became {} in epoch {}; lower --classifier.lr "
                                                        "(now {}) or use --precision fp32",
                                                        loss_value, epoch, o.effective_lr()));
      }
      loss_sum += loss_value * static_cast<double>(size);
      correct += static_cast<std::int64_t>(figures[1].item<double>());
      seen += size;
      if (progress) {
        progress->set_figure(fmt::format("loss {:.4f} acc {}", loss_sum / static_cast<double>(seen),
                                         percent(static_cast<double>(correct) / static_cast<double>(seen))));
        progress->advance(size);
      }
      if (setup.between_steps) setup.between_steps();
    }
    if (progress) progress->finish();

    EpochRecord record;
    record.epoch = epoch;
    record.lr = lr;
    record.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    record.train_images = seen;
    record.train_loss = loss_sum / static_cast<double>(seen);
    record.train_accuracy = static_cast<double>(correct) / static_cast<double>(seen);
    record.val_loss = record.val_accuracy = record.val_balanced_accuracy = kNaN;
    if (have_val) {
      const auto scores = evaluate_classifier(net, val, setup.device);
      record.val_loss = scores.loss;
      record.val_accuracy = scores.confusion.accuracy();
      record.val_balanced_accuracy = scores.confusion.balanced_accuracy();
      const double score = record.val_balanced_accuracy;
      record.best = score > state.best_score || (score == state.best_score && record.val_loss < state.best_loss);
    } else {
      record.best = true;
    }
    if (record.best) {
      copy_weights(net, best);
      state.best_epoch = epoch;
      state.best_score = have_val ? record.val_balanced_accuracy : 0.0;
      state.best_loss = have_val ? record.val_loss : 0.0;
      state.bad_epochs = 0;
    } else {
      ++state.bad_epochs;
    }
    state.epochs_done = epoch;
    state.history.push_back(record);
    if (have_val && o.patience > 0 && state.bad_epochs >= o.patience && epoch < o.epochs) {
      state.finished = state.stopped_early = true;
    }
    if (epoch >= o.epochs) state.finished = true;
    if (setup.reporter) {
      setup.reporter->info(fmt::format("{} epoch {}/{}: train loss {:.4f} acc {} | val loss {:.4f} acc {} balanced {}{}{}", setup.label,
                                       epoch, o.epochs, record.train_loss, percent(record.train_accuracy), record.val_loss,
                                       percent(record.val_accuracy), percent(record.val_balanced_accuracy),
                                       record.best ? " (best)" : "",
                                       state.stopped_early ? fmt::format("; no better epoch for {}, stopping", o.patience) : ""));
    }
    if (!setup.checkpoint.empty()) write_checkpoint(setup.checkpoint, setup.checkpoint_key, state, net, best, *optimizer);
    if (setup.after_epoch) setup.after_epoch(record);
  }

  best->eval();
  result.net = best;
  result.best_epoch = state.best_epoch;
  result.epochs_run = state.epochs_done;
  result.stopped_early = state.stopped_early;
  result.history = state.history;
  return result;
}

}  // namespace augment
