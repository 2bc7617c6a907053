#include "pipeline/runner.h"
#include <algorithm>

#include <sys/stat.h>

#include <chrono>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "augment_version.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/hash.h"
#include "pipeline/base/signals.h"
#include "pipeline/context.h"

namespace augment {

using nlohmann::json;

const char* state_name(StageState state) {
  switch (state) {
    case StageState::kDone: return "done";
    case StageState::kStale: return "stale";
    case StageState::kPending: return "pending";
  }
  return "?";
}

namespace {

fs::path record_path(const Context& ctx, const Stage& stage) {
  return ctx.work() / "records" / (stage.name() + ".json");
}

std::optional<json> read_record(const Context& ctx, const Stage& stage) {
  const auto path = record_path(ctx, stage);
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  try {
    return json::parse(read_text_file(path));
  } catch (const std::exception&) {
    return std::nullopt;  // a damaged record means the stage must run again
  }
}

long long mtime_ns(const fs::path& p) {
  struct stat st;
  if (::stat(p.c_str(), &st) != 0) return -1;
  return static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
}

// The digest a stage's output is recorded and compared by: its content digest where the stage
// has one (equal model weights in differing archive bytes), else the hash of its bytes.
std::string output_digest(const Context& ctx, const Stage* producer, const std::string& rel) {
  if (producer) {
    try {
      if (auto d = producer->content_digest(ctx, rel); !d.empty()) return d;
    } catch (const std::exception&) {
      return "unreadable";  // a damaged archive: stale, and rerun
    }
  }
  return hash_file(ctx.work() / rel);
}

json describe_file(const Context& ctx, const Stage& stage, const std::string& rel) {
  const auto p = ctx.work() / rel;
  std::error_code ec;
  const auto size = fs::file_size(p, ec);
  if (ec) throw std::logic_error("stage output missing after run: " + p.string());
  return {{"path", rel}, {"bytes", size}, {"mtime_ns", mtime_ns(p)}, {"hash", output_digest(ctx, &stage, rel)}};
}

}  // namespace

// Digest of a work-dir file, reusing a record's digest when size and mtime still match.
std::string Runner::file_digest(const Context& ctx, const std::vector<json>& records, const std::string& rel) const {
  const auto p = ctx.work() / rel;
  std::error_code ec;
  const auto size = fs::file_size(p, ec);
  if (ec) return "missing";
  const auto mt = mtime_ns(p);
  const Stage* producer = nullptr;
  for (const auto& r : records) {
    for (const auto& o : r.value("outputs", json::array())) {
      if (o.value("path", "") != rel) continue;
      if (o.value("bytes", 0ull) == size && o.value("mtime_ns", 0ll) == mt) return o.value("hash", "");
      producer = find(r.value("stage", ""));
    }
  }
  return output_digest(ctx, producer, rel);
}

namespace {

std::vector<json> all_records(const Context& ctx, const std::vector<std::unique_ptr<Stage>>& stages) {
  std::vector<json> out;
  for (const auto& s : stages) {
    if (auto r = read_record(ctx, *s)) out.push_back(std::move(*r));
  }
  return out;
}

std::string options_hash(const json& options) { return hash_text(options.dump()); }

}  // namespace

json Runner::input_digests(const Context& ctx, const Stage& stage, const std::vector<json>& records) const {
  json inputs = json::object();
  for (const auto& rel : stage.inputs(ctx)) inputs[rel] = file_digest(ctx, records, rel);
  return inputs;
}

Runner::Runner(std::vector<std::unique_ptr<Stage>> stages) : stages_(std::move(stages)) {}

const Stage* Runner::find(const std::string& name) const {
  for (const auto& s : stages_) {
    if (s->name() == name) return s.get();
  }
  return nullptr;
}

StageStatus Runner::status(const Context& ctx, const Stage& stage) const {
  StageStatus st;
  const auto record = read_record(ctx, stage);
  if (!record) {
    st.reason = "never run";
    return st;
  }
  st.finished_at = record->value("finished_at", "");
  st.seconds = record->value("seconds", 0.0);
  st.state = StageState::kStale;
  if (record->value("format_version", 0) != stage.format_version()) {
    st.reason = "written by an older format of this stage";
    return st;
  }
  const json options = ctx.config().snapshot(stage.option_scopes());
  if (record->value("options_hash", "") != options_hash(options)) {
    const auto old = record->value("options", json::object());
    // An option that a newer augment added is not a change unless the user set it: upgrading must
    // not invalidate finished stages (a trained model above all).
    auto added_at_default = [&](const std::string& k, const json& v) {
      const OptionInfo* info = ctx.config().registry().find(k);
      return info != nullptr && v.is_string() &&
             (v.get<std::string>() == info->default_text || !ctx.config().is_set(k));
    };
    std::string changed;
    for (const auto& [k, v] : options.items()) {
      if (old.contains(k) ? old[k] == v : added_at_default(k, v)) continue;
      changed += (changed.empty() ? "" : ", ") + k;
    }
    bool removed = false;
    for (const auto& [k, v] : old.items()) removed = removed || !options.contains(k);
    if (!changed.empty() || removed) {
      st.reason = "options changed: " + (changed.empty() ? std::string("(removed keys)") : changed);
      return st;
    }
  }
  const auto records = all_records(ctx, stages_);
  const auto inputs = input_digests(ctx, stage, records);
  if (record->value("inputs", json::object()) != inputs) {
    std::string changed;
    const auto old = record->value("inputs", json::object());
    for (const auto& [k, v] : inputs.items()) {
      if (!old.contains(k) || old[k] != v) changed += (changed.empty() ? "" : ", ") + k;
    }
    st.reason = "inputs changed: " + changed;
    return st;
  }
  if (record->value("external", "") != stage.external_fingerprint(ctx)) {
    st.reason = "input dataset changed";
    return st;
  }
  std::vector<std::string> recorded;
  for (const auto& o : record->value("outputs", json::array())) {
    const auto rel = o.value("path", "");
    recorded.push_back(rel);
    if (file_digest(ctx, records, rel) != o.value("hash", "")) {
      st.reason = "output missing or modified: " + rel;
      return st;
    }
  }
  // A record written by another process of the job (another shard) does not vouch for this one's outputs.
  for (const auto& rel : stage.outputs(ctx)) {
    if (std::find(recorded.begin(), recorded.end(), rel) == recorded.end()) {
      st.reason = "not produced yet: " + rel;
      return st;
    }
  }
  if (auto damaged = stage.verify(ctx); !damaged.empty()) {
    st.reason = std::move(damaged);
    return st;
  }
  st.state = StageState::kDone;
  st.reason.clear();
  return st;
}

std::vector<KeptOption> Runner::kept_options(const Context& ctx, const Stage& stage) const {
  const auto record = read_record(ctx, stage);
  if (!record || record->value("format_version", 0) != stage.format_version()) return {};
  const auto old = record->value("options", json::object());
  const auto& config = ctx.config();
  std::vector<KeptOption> kept;
  for (const auto& [key, value] : config.snapshot(stage.option_scopes())) {
    if (!old.contains(key) || !old[key].is_string() || old[key].get<std::string>() == value) continue;
    const OptionInfo* info = config.registry().find(key);
    // The user asked for this value, or it is a run-wide key: the stage reruns.
    if (config.is_set(key) || info == nullptr || info->repeatable || key.find('.') == std::string::npos) return {};
    kept.push_back({key, old[key].get<std::string>(), value});
  }
  if (kept.empty()) return {};
  Config trial = config;
  try {
    for (const auto& k : kept) trial.set_derived(k.key, k.recorded, "kept");
  } catch (const UserError&) {
    return {};  // this augment no longer accepts the recorded value
  }
  Context trial_ctx(trial, ctx.report());
  return status(trial_ctx, stage).state == StageState::kDone ? kept : std::vector<KeptOption>{};
}

namespace {

std::string describe_kept(const std::vector<KeptOption>& kept) {
  std::string out;
  for (const auto& k : kept) {
    out += fmt::format("{}{} = {} (default now {})", out.empty() ? "" : ", ", k.key, k.recorded, k.default_now);
  }
  return out;
}

}  // namespace

void Runner::run_stage(Context& ctx, Stage& stage) {
  auto& report = ctx.report();
  report.info(fmt::format("== {}: {}", stage.name(), stage.summary()));
  report.event("stage_start", {{"stage", stage.name()}});
  // The old record goes first: a stage killed half-way must never look done.
  std::error_code ec;
  fs::remove(record_path(ctx, stage), ec);
  const auto started_at = iso_time_now();
  const auto t0 = std::chrono::steady_clock::now();
  const json options = ctx.config().snapshot(stage.option_scopes());
  const auto records = all_records(ctx, stages_);
  const json inputs = input_digests(ctx, stage, records);
  const std::string external = stage.external_fingerprint(ctx);

  stage.run(ctx);

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json outputs = json::array();
  for (const auto& rel : stage.outputs(ctx)) outputs.push_back(describe_file(ctx, stage, rel));
  json record = {{"stage", stage.name()},
                 {"format_version", stage.format_version()},
                 {"tool_version", std::string(AUGMENT_VERSION) + " (" + AUGMENT_GIT_REVISION + ")"},
                 {"options", options},
                 {"options_hash", options_hash(options)},
                 {"inputs", inputs},
                 {"external", external},
                 {"outputs", outputs},
                 {"started_at", started_at},
                 {"finished_at", iso_time_now()},
                 {"seconds", seconds}};
  write_text_atomically(record_path(ctx, stage), record.dump(2) + "\n");
  report.info(fmt::format("== {} done in {}", stage.name(), format_duration(seconds)));
  report.event("stage_end", {{"stage", stage.name()}, {"seconds", seconds}});
}

void Runner::run_unrecorded(Context& ctx, const std::string& name) {
  for (auto& s : stages_) {
    if (s->name() == name) {
      s->run(ctx);
      return;
    }
  }
  throw std::logic_error("no stage " + name);
}

void Runner::run(Context& ctx, const std::string& target, const std::function<void(bool runs)>& before_target) {
  const auto& g = ctx.global();
  auto index_of = [&](const std::string& name, const char* what) -> std::size_t {
    for (std::size_t i = 0; i < stages_.size(); ++i) {
      if (stages_[i]->name() == name) return i;
    }
    std::string names;
    for (const auto& s : stages_) names += (names.empty() ? "" : ", ") + s->name();
    throw UserError(ExitCode::kUsage, fmt::format("{} names no stage: '{}' (stages: {})", what, name, names));
  };
  std::size_t last = target.empty() ? stages_.size() - 1 : index_of(target, "command");
  std::size_t first_forced = stages_.size();
  if (!g.from.empty()) first_forced = index_of(g.from, "--from");
  if (!g.only.empty()) {
    const auto only = index_of(g.only, "--only");
    if (!target.empty() && only != last) {
      throw UserError(ExitCode::kUsage, fmt::format("--only {} conflicts with the command '{}'", g.only, target));
    }
    last = only;
  }
  if (first_forced != stages_.size() && first_forced > last) {
    throw UserError(ExitCode::kUsage,
                    fmt::format("--from {} comes after the last stage to run ({})", g.from, stages_[last]->name()));
  }

  for (std::size_t i = 0; i <= last; ++i) {
    Stage& stage = *stages_[i];
    const bool only_this = !g.only.empty();
    if (only_this && i != last) continue;
    if (only_this) {
      // --only: earlier stages are not run, but what this stage reads must be there.
      for (const auto& rel : stage.inputs(ctx)) {
        if (fs::exists(ctx.work() / rel)) continue;
        std::string producer = "the stage that writes it";
        for (const auto& other : stages_) {
          for (const auto& out : other->outputs(ctx)) {
            if (out == rel) producer = "`augment " + other->name() + "`";
          }
        }
        throw UserError(ExitCode::kNoInput,
                        fmt::format("--only {} needs {}; run {} first", g.only, (ctx.work() / rel).string(), producer));
      }
    }
    const bool selected = target.empty() || i == last;
    if (!selected && stages_[last]->runs_alongside_others(ctx)) {
      // Concurrent processes must not race to produce the same earlier outputs.
      const auto st = status(ctx, stage);
      if (st.state != StageState::kDone) {
        throw UserError(
            ExitCode::kNoInput,
            fmt::format(
                "`augment {}` runs alongside other processes here and does not run earlier stages, but `{}` is {} "
                "({}): run `augment {}` with the same options first (in a batch system, as the job this one "
                "depends on)",
                stages_[last]->name(), stage.name(), state_name(st.state), st.reason, stage.name()));
      }
      continue;
    }
    // --from and --only name stages the user wants rerun, up to date or not.
    const bool forced = (g.force && selected) || i >= first_forced || only_this;
    if (!forced) {
      auto st = status(ctx, stage);
      if (st.state == StageState::kStale) {
        if (const auto kept = kept_options(ctx, stage); !kept.empty()) {
          for (const auto& k : kept) {
            ctx.mutable_config().set_derived(k.key, k.recorded, fmt::format("kept from records/{}.json", stage.name()));
          }
          ctx.report().info(
              fmt::format("== {}: keeps the options it ran with where only their defaults changed: {}; set them, or "
                          "pass --force to `augment {}`, to rerun it with today's defaults",
                          stage.name(), describe_kept(kept), stage.name()));
          // A later command with --work alone continues with what the work dir holds.
          write_text_atomically(ctx.work() / "config.ini", ctx.config().to_ini());
          st.state = StageState::kDone;  // what kept_options checked with these values
        }
      }
      if (st.state == StageState::kDone) {
        ctx.report().info(fmt::format("== {}: up to date (finished {}), skipped", stage.name(), st.finished_at));
        if (i == last && before_target) before_target(false);
        continue;
      }
      if (st.state == StageState::kStale) ctx.report().info(fmt::format("== {}: stale ({})", stage.name(), st.reason));
    }
    check_stop();
    if (i == last && before_target) before_target(true);
    run_stage(ctx, stage);
  }
}

std::string Runner::status_table(const Context& ctx) const {
  std::string out = fmt::format("{:<12} {:<8} {:<21} {:>9}  {}\n", "stage", "state", "finished", "took", "note");
  for (const auto& s : stages_) {
    auto st = status(ctx, *s);
    if (st.state == StageState::kStale) {
      if (const auto kept = kept_options(ctx, *s); !kept.empty()) {
        st.state = StageState::kDone;
        st.reason = "keeps " + describe_kept(kept) + "; --force reruns it with the new defaults";
      }
    }
    out += fmt::format("{:<12} {:<8} {:<21} {:>9}  {}\n", s->name(), state_name(st.state),
                       st.finished_at.empty() ? "-" : st.finished_at,
                       st.finished_at.empty() ? "-" : format_duration(st.seconds), st.reason);
  }
  return out;
}

}  // namespace augment
