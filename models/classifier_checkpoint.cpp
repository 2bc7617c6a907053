#include "models/classifier_checkpoint.h"

#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/report.h"

namespace augment {

using nlohmann::json;

namespace {

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

json state_to_json(const ClassifierTrainState& s, const std::string& key) {
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

ClassifierTrainState state_from_json(const json& j) {
  ClassifierTrainState s;
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

}  // namespace

// One file, replaced atomically, so a kill at any moment leaves either the previous epoch's
// checkpoint or this one, never a mix.
void write_classifier_checkpoint(const std::filesystem::path& path, const std::string& key,
                                 const ClassifierTrainState& state, ClassifierNet& net, ClassifierNet& best,
                                 torch::optim::Optimizer& optimizer) {
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

bool read_classifier_checkpoint(const std::filesystem::path& path, const std::string& key, ClassifierTrainState& state,
                                ClassifierNet& net, ClassifierNet& best, torch::optim::Optimizer& optimizer,
                                Reporter* reporter) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return false;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path.string());
    c10::IValue text;
    archive.read("state", text);
    const auto j = json::parse(text.toStringRef());
    if (j.at("key") != key) {
      if (reporter)
        reporter->info(fmt::format("{} was written for other data or options; training starts afresh", path.string()));
      return false;
    }
    ClassifierTrainState loaded = state_from_json(j);
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
    if (reporter)
      reporter->warn(fmt::format("{} cannot be read ({}); training starts afresh", path.string(), e.what()));
    return false;
  }
}

}  // namespace augment
