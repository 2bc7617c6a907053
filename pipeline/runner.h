// Sequences stages, skips the ones whose record still matches, and records the ones it runs.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "pipeline/stage.h"

namespace augment {

class Context;

enum class StageState { kDone, kStale, kPending };
const char* state_name(StageState state);

struct StageStatus {
  StageState state = StageState::kPending;
  std::string reason;       // why stale or pending
  std::string finished_at;  // of the last completed run
  double seconds = 0;       // duration of the last completed run
};

// An option whose value differs from a stage's record only because its default changed (a newer
// augment, or a default sized by the data): the stage keeps the recorded value instead of rerunning.
struct KeptOption {
  std::string key;
  std::string recorded;     // what the stage ran with
  std::string default_now;  // what this invocation would have used
};

class Runner {
 public:
  explicit Runner(std::vector<std::unique_ptr<Stage>> stages);

  const std::vector<std::unique_ptr<Stage>>& stages() const { return stages_; }
  const Stage* find(const std::string& name) const;
  StageStatus status(const Context& ctx, const Stage& stage) const;

  // Runs the pipeline up to and including `target` ("" = every stage): stages that are done are
  // skipped; --force, --from and --only (in ctx's global options) select stages to rerun.
  // `before_target` (if set) is told, just before the target stage would run, whether it runs
  // (true) or is skipped as up to date (false).
  void run(Context& ctx, const std::string& target, const std::function<void(bool runs)>& before_target = {});
  // Runs one stage's work without reading or writing its record: the other ranks of a
  // data-parallel job, whose rank 0 runs the stage through `run` and records it.
  void run_unrecorded(Context& ctx, const std::string& name);
  // The options a stale stage keeps from its record: non-empty only when every differing option
  // is one the user did not set, and taking the recorded values makes the stage up to date.
  // `run` applies them (and says so) instead of rerunning the stage.
  std::vector<KeptOption> kept_options(const Context& ctx, const Stage& stage) const;
  // The `status` table.
  std::string status_table(const Context& ctx) const;

 private:
  void run_stage(Context& ctx, Stage& stage);
  std::string file_digest(const Context& ctx, const std::vector<nlohmann::json>& records, const std::string& rel) const;
  nlohmann::json input_digests(const Context& ctx, const Stage& stage,
                               const std::vector<nlohmann::json>& records) const;

  std::vector<std::unique_ptr<Stage>> stages_;
};

}  // namespace augment
