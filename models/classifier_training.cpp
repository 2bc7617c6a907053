#include "models/classifier_training.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "models/autocast.h"
#include "models/classifier_checkpoint.h"
#include "models/device_transfer.h"
#include "models/lr_schedule.h"
#include "models/pixel_range.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/report.h"
#include "pipeline/base/rng.h"

namespace augment {

namespace F = torch::nn::functional;
using nlohmann::json;

namespace {

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
      throw UserError(ExitCode::kDataError,
                      fmt::format("label {} outside the {} classes of the classifier", p[i], num_classes));
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
  return cosine_decay(peak, std::min(1.0, t));
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(ClassifierNet& net, const ClassifierRecipe& o) {
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

ClassifierConfig classifier_config(const ClassifierRecipe& o, int channels, int resolution, int num_classes) {
  ClassifierConfig c;
  c.channels = channels;
  c.resolution = resolution;
  c.num_classes = num_classes;
  c.width = static_cast<int>(o.width);
  c.blocks = static_cast<int>(o.blocks);
  c.norm = o.norm;
  return c;
}

ClassifierTrainResult train_classifier(const LabeledImages& train, const LabeledImages& val,
                                       const ClassifierTrainSetup& setup) {
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
  // Every image `passes` times per epoch, in batches as even as possible (63 images at batch 32:
  // 32 + 31). Dropping the partial tail instead lost up to half of a small train split every epoch,
  // and a tail of one image would have broken BatchNorm. Several passes keep a small split from
  // ending training after a few hundred steps, before the classifier has learnt anything (429
  // images, 20 epochs: 280 steps and a test accuracy near chance).
  const std::int64_t passes = o.passes_per_epoch(n);
  const std::int64_t visits = n * passes;
  const std::int64_t steps_per_epoch = (visits + batch - 1) / batch;
  auto batch_begin = [&](std::int64_t step) { return step * visits / steps_per_epoch; };
  const std::int64_t total_steps = steps_per_epoch * o.epochs;
  const auto warmup =
      std::min<std::int64_t>(total_steps / 2, std::llround(o.warmup_epochs * static_cast<double>(steps_per_epoch)));
  const auto pad = o.effective_crop_pad(resolution);
  const auto labels_cpu = train.labels.to(torch::kInt64).contiguous();

  torch::Tensor class_weight;
  if (o.balance == ClassBalance::kLoss) {
    std::vector<float> w;
    std::int64_t present = 0;
    for (auto c : counts) present += c > 0;
    for (auto c : counts)
      w.push_back(c > 0 ? static_cast<float>(static_cast<double>(n) / static_cast<double>(present * c)) : 0.0f);
    class_weight = torch::tensor(w).to(setup.device);
  }

  ClassifierTrainState state;
  ClassifierTrainResult result;
  if (!setup.checkpoint.empty() && read_classifier_checkpoint(setup.checkpoint, setup.checkpoint_key, state, net, best,
                                                              *optimizer, setup.reporter)) {
    result.resumed_after_epoch = state.epochs_done;
    if (setup.reporter) {
      setup.reporter->info(
          state.finished
              ? fmt::format("training finished in an earlier run (best epoch {}); reusing it", state.best_epoch)
              : fmt::format("resuming after epoch {} from {}", state.epochs_done, setup.checkpoint.string()));
    }
  }
  const bool have_val = val.size() > 0;
  if (passes > 1 && setup.reporter && !state.finished) {
    setup.reporter->info(fmt::format(
        "{} training images make {} steps per pass at batch {}: each epoch passes over them {} times, so that {} "
        "epochs make at least classifier.min_steps {} steps",
        n, (n + batch - 1) / batch, batch, passes, o.epochs, o.min_steps));
  }
  if (!have_val && setup.reporter && state.epochs_done == 0) {
    setup.reporter->warn("no validation images: the last epoch is kept and early stopping is off");
  }

  while (!state.finished) {
    const int epoch = state.epochs_done + 1;
    Rng rng(seed, fmt::format("classifier/epoch/{}", epoch));
    auto order = epoch_order(labels_cpu, num_classes, o.balance == ClassBalance::kSampler, rng);
    for (std::int64_t pass = 1; pass < passes; ++pass) {
      const auto more = epoch_order(labels_cpu, num_classes, o.balance == ClassBalance::kSampler, rng);
      order.insert(order.end(), more.begin(), more.end());
    }
    const auto order_tensor = torch::tensor(order, torch::kInt64);
    net->train();
    std::unique_ptr<Progress> progress;
    if (setup.reporter) {
      progress = std::make_unique<Progress>(*setup.reporter,
                                            fmt::format("{} epoch {}/{}", setup.label, epoch, o.epochs), visits, "img");
    }
    const auto t0 = std::chrono::steady_clock::now();
    double loss_sum = 0, lr = 0;
    std::int64_t correct = 0, seen = 0;
    for (std::int64_t step = 0; step < steps_per_epoch; ++step) {
      const std::int64_t begin = batch_begin(step), size = batch_begin(step + 1) - begin;
      const auto idx = order_tensor.slice(0, begin, begin + size);
      const auto moved =
          to_device_once({augment_batch(as_model_input(train.images.index_select(0, idx)), pad, o.flip, rng),
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
      const auto figures =
          torch::stack({loss.detach().to(torch::kFloat64), logits.argmax(1).eq(y).sum().to(torch::kFloat64)}).cpu();
      const double loss_value = figures[0].item<double>();
      if (!std::isfinite(loss_value)) {
        throw UserError(ExitCode::kFailure,
                        fmt::format("the classifier's training loss became {} in epoch {} at learning rate {}",
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
      setup.reporter->info(
          fmt::format("{} epoch {}/{}: train loss {:.4f} acc {} | val loss {:.4f} acc {} balanced {}{}{}", setup.label,
                      epoch, o.epochs, record.train_loss, percent(record.train_accuracy), record.val_loss,
                      percent(record.val_accuracy), percent(record.val_balanced_accuracy), record.best ? " (best)" : "",
                      state.stopped_early ? fmt::format("; no better epoch for {}, stopping", o.patience) : ""));
    }
    if (!setup.checkpoint.empty())
      write_classifier_checkpoint(setup.checkpoint, setup.checkpoint_key, state, net, best, *optimizer);
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
