#include "pipeline/command/cli.h"
#include "pipeline/work_paths.h"

#include <algorithm>
#include <csignal>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <tbb/global_control.h>

#include "augment_version.h"
#include "models/join_job.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/input_root.h"
#include "pipeline/base/signals.h"
#include "pipeline/command/compare.h"
#include "pipeline/context.h"
#include "pipeline/runner.h"
#include "stages/run_defaults.h"
#include "stages/stage_list.h"
#include "stages/train_plan.h"

namespace augment {

namespace {

const char* const kExitCodes =
    "exit codes:\n"
    "   0  success\n"
    "   1  failure not covered below\n"
    "  64  usage error (unknown command or option, duplicate flag)\n"
    "  65  bad input data (rejected images with --strict, empty class, too few images)\n"
    "  66  input missing or unreadable\n"
    "  70  internal error (a bug: please report it)\n"
    "  73  cannot create output (e.g. --work or --output inside the input, work dir in use)\n"
    "  74  I/O error while reading or writing\n"
    "  75  stopped by SIGTERM/SIGUSR1 at a safe point; rerun the same command to continue\n"
    "  78  configuration error (unknown key, bad value)\n"
    " 130  interrupted by Ctrl-C; rerun the same command to continue\n";

// The commands besides the stages, one row each: the usage text, `augment help NAME` and the
// dispatch in run_cli all read this table.
enum class Verb { kRun, kCompare, kStatus, kHelp, kVersion };
struct CommandInfo {
  Verb verb;
  std::vector<std::string> names;  // the first is the one listed
  std::string summary;             // its line in the usage text
  std::string help;                // `augment help NAME`, before the options of `options_scope` ("" no topic)
  std::string options_scope;
  bool before_stages = false;  // listed above the stages
};

const std::vector<CommandInfo>& commands() {
  static const std::vector<CommandInfo> table = {
      {Verb::kRun,
       {"run"},
       "run every stage in order (skipping the ones that are up to date)",
       "augment run: every stage in order; stages whose record matches are skipped.\n\nglobal options:\n",
       "global",
       true},
      {Verb::kCompare,
       {"compare"},
       "the study: train, sample and evaluate each of compare.methods on the same data and classifier",
       "augment compare: the study. Runs scan..classifier in --work, then for each of compare.methods a work dir\n"
       "WORK/compare/<method>/ sharing those outputs (hard links) where train (train.conditioning = method), sample\n"
       "and evaluate run; writes WORK/compare/table.md, table.json and samples.png.\n\noptions:\n",
       "compare"},
      {Verb::kStatus,
       {"status"},
       "show each stage: done / stale / pending, with when and how long",
       "augment status --work DIR: each stage's state (done / stale / pending) with when it finished and how long it "
       "took.\n",
       ""},
      {Verb::kHelp, {"help", "--help", "-h"}, "`augment help [command|options|defaults|exit-codes]`", "", ""},
      {Verb::kVersion, {"--version", "version"}, "print the version", "", ""},
  };
  return table;
}

const CommandInfo* find_command(const std::string& name) {
  for (const auto& c : commands()) {
    if (std::find(c.names.begin(), c.names.end(), name) != c.names.end()) return &c;
  }
  return nullptr;
}

std::string usage(const Runner& runner) {
  std::string s = "usage: augment <command> [options]\n\ncommands:\n";
  const auto line = [](const CommandInfo& c) { return fmt::format("  {:<10} {}\n", c.names[0], c.summary); };
  for (const auto& c : commands()) {
    if (c.before_stages) s += line(c);
  }
  for (const auto& st : runner.stages()) s += fmt::format("  {:<10} {}\n", st->name(), st->summary());
  for (const auto& c : commands()) {
    if (!c.before_stages) s += line(c);
  }
  s += "\n";
  s += "common options: --work DIR (required), --input DIR or NAME=DIR (repeatable), --config job.ini,\n";
  s += "  --force, --from STAGE, --only STAGE, --seed N, --threads N, --quiet, --log-json FILE\n";
  s += "every option has a dotted name usable on the command line (--scan.strict) and in INI sections ([scan] strict = "
       "true).\n\n";
  s += kExitCodes;
  return s;
}

std::string describe_option(const OptionInfo& info) {
  std::string names = "--" + info.key;
  if (!info.alias.empty()) names += ", --" + info.alias;
  std::string type = info.type;
  if (!info.choices.empty()) {
    type.clear();
    for (const auto& c : info.choices) type += (type.empty() ? "" : "|") + c;
  }
  const std::string def = is_sized_option(info.key)   ? "sized by the data and device, see `augment help defaults`"
                          : info.default_text.empty() ? "none"
                                                      : info.default_text;
  return fmt::format("  {}  <{}>  (default: {})\n      {}\n", names, type, def, info.help);
}

std::string options_help(const OptionRegistry& registry, const std::string& scope) {
  std::string s;
  for (const auto& [key, info] : registry.all()) {
    const bool global = key.find('.') == std::string::npos;
    if (scope.empty() ? true : (scope == "global" ? global : key.rfind(scope + ".", 0) == 0))
      s += describe_option(info);
  }
  return s;
}

int help(const Runner& runner, const OptionRegistry& registry, const std::vector<std::string>& args) {
  if (args.empty()) {
    std::cout << usage(runner);
    return 0;
  }
  const auto& topic = args[0];
  if (topic == "options") {
    std::cout << "options (command line: --name value or --name=value; INI: [section] name = value):\n"
              << options_help(registry, "");
    return 0;
  }
  if (topic == "defaults") {
    std::cout << size_table_text();
    return 0;
  }
  if (topic == "exit-codes") {
    std::cout << kExitCodes;
    return 0;
  }
  if (const CommandInfo* c = find_command(topic); c && !c->help.empty()) {
    std::cout << c->help << (c->options_scope.empty() ? std::string() : options_help(registry, c->options_scope));
    return 0;
  }
  if (const Stage* st = runner.find(topic)) {
    std::cout << fmt::format(
        "augment {}: {}\nruns the stages before it first when they are not up to date.\n\noptions:\n{}\nglobal "
        "options:\n{}",
        st->name(), st->summary(), options_help(registry, st->name()), options_help(registry, "global"));
    return 0;
  }
  std::cerr << fmt::format("error: no help topic '{}'\n", topic) << usage(runner);
  return static_cast<int>(ExitCode::kUsage);
}

// Refuses work and output directories that would write into the user's data.
void check_paths(const Context& ctx) {
  const auto& g = ctx.global();
  if (g.work.empty())
    throw UserError(ExitCode::kUsage, "no work directory: pass --work DIR (it will hold everything the run produces)");
  for (const auto& text : g.input) {
    const fs::path input = parse_input_root(text).path;
    std::error_code ec;
    if (is_same_or_inside(ctx.work(), input)) {
      throw UserError(ExitCode::kCantCreate, fmt::format("--work {} is inside the input {}; augment never writes into "
                                                         "your data: choose a work directory outside it",
                                                         ctx.work().string(), input.string()));
    }
    if (!g.output.empty() && is_same_or_inside(g.output, input)) {
      throw UserError(
          ExitCode::kCantCreate,
          fmt::format(
              "--output {} is inside the input {}; augment never writes into your data: choose an output outside it",
              g.output, input.string()));
    }
    if (fs::exists(input, ec) && is_same_or_inside(input, ctx.work())) {
      throw UserError(ExitCode::kCantCreate,
                      fmt::format("the input {} is inside the work directory {}; keep them apart", input.string(),
                                  ctx.work().string()));
    }
  }
  if (!g.output.empty() && is_same_or_inside(g.output, ctx.work())) {
    throw UserError(ExitCode::kCantCreate,
                    fmt::format("--output {} is inside the work directory; choose another folder", g.output));
  }
}

// A later command with --work alone (an operator requeueing a job) continues the recorded run:
// WORK/config.ini, which every run writes, when neither --input nor --config is given.
fs::path recorded_config(const Config& config) {
  if (!config.is_set("work") || config.is_set("input") || !config.value("config").empty()) return {};
  const auto path = fs::absolute(config.value("work")) / "config.ini";
  std::error_code ec;
  return fs::is_regular_file(path, ec) ? path : fs::path();
}

int report_error(Reporter* reporter, const std::string& message, ExitCode code) {
  if (reporter) {
    reporter->error(message);
  } else {
    std::cerr << "error: " << message << "\n";
  }
  return static_cast<int>(code);
}

}  // namespace

void declare_all_options(OptionRegistry& registry) {
  declare_stage_options(registry);
  declare_options<CompareOptions>(registry);
}

int run_cli(const std::vector<std::string>& args) {
  OptionRegistry registry;
  declare_all_options(registry);
  Runner runner(make_pipeline_stages());

  if (args.empty()) {
    std::cerr << usage(runner);
    return static_cast<int>(ExitCode::kUsage);
  }
  const std::string command = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  const CommandInfo* verb = find_command(command);
  if (verb && verb->verb == Verb::kVersion) {
    std::cout << fmt::format("augment {} ({})\n", AUGMENT_VERSION, AUGMENT_GIT_REVISION);
    return 0;
  }
  if (verb && verb->verb == Verb::kHelp) return help(runner, registry, rest);
  if (!verb && runner.find(command) == nullptr) {
    std::cerr << fmt::format("error: unknown command '{}'\n\n", command) << usage(runner);
    return static_cast<int>(ExitCode::kUsage);
  }

  std::unique_ptr<Reporter> reporter;
  try {
    Config config(registry);
    parse_command_line(rest, config);
    const fs::path recorded = recorded_config(config);
    if (!recorded.empty()) apply_ini_file(recorded, config);  // the command line still wins
    // Last: the model and budget sized by the data and device, for every option still unset.
    apply_sized_defaults(config);
    const auto global = load_options<GlobalOptions>(config);
    // Launcher variables (torchrun, srun) make this process one rank of a data-parallel job.
    // Only training is data-parallel; `status` just reads.
    const LaunchEnv launch = command == "train" ? detect_launch_env() : LaunchEnv{};
    // Rank 0 speaks for the job; the others print only warnings and errors.
    reporter = std::make_unique<Reporter>(global.quiet || !launch.is_root(),
                                          launch.is_root() ? global.log_json : std::string());
    Context ctx(config, *reporter);
    if (!recorded.empty()) {
      reporter->info(
          fmt::format("no --input or --config given: using the inputs and options recorded in {} (options given on the "
                      "command line win)",
                      recorded.string()));
    }
    check_paths(ctx);

    if (verb && verb->verb == Verb::kStatus) {
      if (!fs::is_directory(ctx.work())) {
        throw UserError(ExitCode::kNoInput,
                        fmt::format("work directory {} does not exist yet; nothing has run", ctx.work().string()));
      }
      reporter->print(runner.status_table(ctx));
      if (const auto plan = saved_plan_summary(ctx.path(work_file::kTrainPlan)); !plan.empty())
        reporter->print(plan + "\n");
      return 0;
    }

    std::unique_ptr<JobGroup> job;
    if (launch.distributed()) {
      job = join_job(launch, std::chrono::seconds(global.dist_timeout), global.device != "cpu");
      ctx.set_job(job.get());
    }
    install_stop_handlers();
    std::unique_ptr<tbb::global_control> threads;
    if (global.threads > 0) {
      threads = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism, global.threads);
    }
    // The key through which rank 0 tells the other ranks whether the stage runs.
    const std::string ready_key = "augment/" + command;
    if (job && !job->is_root()) {
      // Rank 0 holds the work-dir lock for the whole job, runs the stages before this one and
      // writes every file; the other ranks wait for it, then train on their slices and write
      // nothing. A week: earlier stages on a large dataset take long, and if rank 0 dies the
      // store goes with it and the wait ends at once.
      const auto answer = job->wait_for(ready_key, std::chrono::hours(24 * 7));
      if (answer == "skip") return 0;
      if (answer != "run") {
        throw UserError(ExitCode::kFailure, fmt::format("rank {}: rank 0 stopped before `{}` ({}); see its log",
                                                        job->rank(), command, answer));
      }
      runner.run_unrecorded(ctx, command);
      return 0;
    }
    try {
      ensure_directory(ctx.work());
      const Stage* target = runner.find(command);
      const bool alongside = target != nullptr && target->runs_alongside_others(ctx);
      DirectoryLock lock(ctx.work(), alongside);
      if (const int stale = alongside ? 0 : remove_stale_temp_files(ctx.work())) {
        reporter->info(fmt::format("removed {} temporary files left by an interrupted run", stale));
      }
      write_text_atomically(ctx.work() / "config.ini", config.to_ini());
      if (verb && verb->verb == Verb::kCompare) {
        run_compare(config, ctx, runner);
      } else {
        runner.run(ctx, verb && verb->verb == Verb::kRun ? std::string() : command, [&](bool runs) {
          if (job) job->publish(ready_key, runs ? "run" : "skip");
        });
      }
    } catch (const std::exception& e) {
      if (job) {
        try {
          job->publish(ready_key, std::string("failed: ") + e.what());
        } catch (const std::exception&) {
          // the others find out when the store closes
        }
      }
      throw;
    }
    return 0;
  } catch (const StopRequested& stop) {
    const bool interrupt = stop.signal() == SIGINT;
    if (reporter) {
      reporter->error(fmt::format("stopped by {}; finished work is kept: rerun the same command to continue",
                                  interrupt                  ? "Ctrl-C"
                                  : stop.signal() == SIGTERM ? "SIGTERM"
                                                             : "SIGUSR1"));
    }
    return static_cast<int>(interrupt ? ExitCode::kInterrupted : ExitCode::kPreempted);
  } catch (const UserError& e) {
    return report_error(reporter.get(), e.what(), e.code());
  } catch (const std::exception& e) {
    return report_error(reporter.get(), fmt::format("internal error: {} (please report this)", e.what()),
                        ExitCode::kSoftware);
  }
}

}  // namespace augment
