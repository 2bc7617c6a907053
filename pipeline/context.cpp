#include "pipeline/context.h"

namespace augment {

void GlobalOptions::bind(OptionBinder<GlobalOptions>& b) {
  b.add("work", &GlobalOptions::work, "work directory holding everything a run produces (required)");
  b.add("input", &GlobalOptions::input,
        "dataset root (repeatable): PATH is an image folder root/<class>/...; NAME=PATH makes the whole root one class "
        "NAME",
        {}, kField.as_repeatable());
  b.add("output", &GlobalOptions::output, "directory for the final augmented dataset");
  b.add("config", &GlobalOptions::config, "INI file with options in sections per stage; the command line wins", {},
        kTransient);
  b.add("seed", &GlobalOptions::seed, "seed for every random choice of the run", at_least<std::int64_t>(0));
  b.add("threads", &GlobalOptions::threads, "worker threads for CPU stages (0: all cores)", at_least(0), kTransient);
  b.add("device", &GlobalOptions::device, "where models run: auto (CUDA when available), cpu, cuda, cuda:N", {},
        kTransient);
  b.add("precision", &GlobalOptions::precision,
        "model arithmetic: auto (bf16 on CUDA; on the CPU bf16 to train the denoiser where the CPU has AVX512-BF16 or "
        "AMX, else fp32), fp32, bf16",
        {}, kField.with_choices({"auto", "fp32", "bf16"}).as_transient());
  b.add("quiet", &GlobalOptions::quiet, "no progress or info lines (warnings and errors still print)", {}, kTransient);
  b.add("log_json", &GlobalOptions::log_json, "append one JSON object per event to this file", {},
        {"log-json", {}, false, true});
  b.add("force", &GlobalOptions::force, "rerun the selected stages even when they are up to date", {}, kTransient);
  b.add("from", &GlobalOptions::from, "rerun this stage and every stage after it", {}, kTransient);
  b.add("dist_timeout", &GlobalOptions::dist_timeout,
        "data-parallel jobs: seconds to wait for the other ranks (rendezvous, each collective) before failing",
        at_least(5), {"dist-timeout", {}, false, true});
  b.add("only", &GlobalOptions::only, "rerun this stage alone (the outputs of the stages before it must exist)", {},
        kTransient);
}

Context::Context(Config& config, Reporter& reporter)
    : config_(config), reporter_(reporter), global_(load_options<GlobalOptions>(config)) {
  work_ = global_.work.empty() ? fs::path() : fs::absolute(global_.work).lexically_normal();
  if (!global_.output.empty()) {
    // "out/" names the folder "out": its siblings out_report and out_hdf5 are derived from the name.
    auto out = fs::absolute(global_.output).lexically_normal();
    if (!out.has_filename()) out = out.parent_path();
    global_.output = out.string();
  }
}

}  // namespace augment
