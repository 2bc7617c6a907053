// Sequences stages, skips the ones whose record still matches, and records the ones it runs.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

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

class Runner {
 public:
  explicit Runner(std::vector<std::unique_ptr<Stage>> stages);

  const std::vector<std::unique_ptr<Stage>>& stages() const { return stages_; }
  const Stage* find(const std::string& name) const;
  StageStatus status(const Context& ctx, const Stage& stage) const;

  // Runs the pipeline up to and including `target` ("" = every stage): stages that are done are
  // skipped; --force, --from and --only (in ctx's global options) select stages to rerun.
  void run(Context& ctx, const std::string& target);
  // The `status` table.
  std::string status_table(const Context& ctx) const;

 private:
  void run_stage(Context& ctx, Stage& stage);

  std::vector<std::unique_ptr<Stage>> stages_;
};

}  // namespace augment
