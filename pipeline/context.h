// What every stage receives: the configuration, the work directory and the reporter.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "pipeline/base/config.h"
#include "pipeline/base/launch.h"
#include "pipeline/base/report.h"

namespace augment {

namespace fs = std::filesystem;

// Options that belong to the whole run rather than one stage.
struct GlobalOptions {
  static constexpr const char* kGroup = "";
  std::string work;                // directory holding everything a run produces
  std::vector<std::string> input;  // dataset roots; NAME=PATH makes the whole root one class
  std::string output;              // final augmented dataset
  std::string config;              // INI file with options (command line wins)
  std::int64_t seed = 0;           // seed for every random choice of the run
  int threads = 0;                 // worker threads for CPU stages (0: all cores)
  std::string device = "auto";     // auto | cpu | cuda | cuda:N
  std::string precision = "auto";  // auto | fp32 | bf16
  bool quiet = false;              // no progress lines
  std::string log_json;            // file receiving one JSON object per event
  bool force = false;              // rerun selected stages even when up to date
  std::string from;                // force this stage and the ones after it
  std::string only;                // run this stage alone
  int dist_timeout = 300;          // seconds a data-parallel rank waits for the others before failing
  static void bind(OptionBinder<GlobalOptions>& b);
};

class Context {
 public:
  Context(Config& config, Reporter& reporter);

  const Config& config() const { return config_; }
  // For the runner, which keeps a stage's recorded option values where only a default changed.
  Config& mutable_config() { return config_; }
  const GlobalOptions& global() const { return global_; }
  Reporter& report() const { return reporter_; }
  const fs::path& work() const { return work_; }
  // The directory a stage writes into (created on demand by the stage).
  fs::path dir(std::string_view stage) const { return work_ / std::string(stage); }
  // A file of the work dir by its relative name (pipeline/work_paths.h).
  fs::path path(std::string_view relative) const { return work_ / std::string(relative); }

  template <class S>
  S options() const {
    return load_options<S>(config_);
  }

  // The ranks of a data-parallel job this process belongs to; null for a single process.
  JobGroup* job() const { return job_; }
  void set_job(JobGroup* job) { job_ = job; }

 private:
  JobGroup* job_ = nullptr;
  Config& config_;
  Reporter& reporter_;
  GlobalOptions global_;
  fs::path work_;
};

}  // namespace augment
