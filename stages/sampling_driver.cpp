#include "stages/sampling_driver.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <map>

#include <fmt/format.h>

#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/hash.h"
#include "pipeline/base/report.h"
#include "pipeline/base/signals.h"
#include "pipeline/context.h"
#include "stages/sample_plan.h"

namespace augment {

namespace {

bool entry_done(const JournalEntry& e, const SamplingJob& job, const std::string& key) {
  if (e.run_seed != job.run_seed || e.settings.key() != key) return false;
  const bool filtering = job.min_confidence > 0;
  if (!e.accepted) {
    // Given up under the same filter at least as patient as now.
    return filtering && e.tries >= job.max_tries && (!e.confidence || *e.confidence < job.min_confidence);
  }
  if (filtering && (!e.confidence || *e.confidence < job.min_confidence)) return false;
  return png_matches(job.dir, e);
}

struct Pending {
  SampleItem item;
  int attempt = 0;
  std::optional<double> best;  // best confidence so far (for the rejected line)
};

}  // namespace

SamplingSummary run_sampling(const SamplingJob& job, const SamplePlan& plan, const GenerateFn& generate,
                             Reporter& report) {
  if (job.batch_size < 1 || job.max_tries < 1)
    throw std::logic_error("run_sampling: batch_size and max_tries must be >= 1");
  if (job.settings.resolution < 1 || (job.settings.channels != 1 && job.settings.channels != 3)) {
    throw std::logic_error("run_sampling: settings need a resolution and 1 or 3 channels");
  }
  const auto t0 = std::chrono::steady_clock::now();
  const std::string key = job.settings.key();
  const bool filtering = job.min_confidence > 0;
  const std::size_t image_bytes =
      static_cast<std::size_t>(job.settings.resolution) * job.settings.resolution * job.settings.channels;

  const auto jpath = journal_path(job.dir, job.shard);
  auto parsed = parse_journal(jpath);
  if (parsed.total_bytes > parsed.valid_bytes) {
    report.info(fmt::format("{}: ignoring {} bytes of a line cut short by an interrupted run", jpath.string(),
                            parsed.total_bytes - parsed.valid_bytes));
  }
  std::map<SampleItem, JournalEntry> last;
  for (auto& e : parsed.entries) last[SampleItem{e.label, e.index}] = std::move(e);
  JournalWriter journal(jpath, parsed.valid_bytes);

  SamplingSummary summary;
  for (const auto& c : plan.classes) summary.classes.push_back(ClassSamplingStats{c.name, 0, 0, 0, 0, 0});
  std::deque<Pending> queue;
  for (const auto& item : shard_items(plan, job.shard)) {
    auto& st = summary.classes[static_cast<std::size_t>(item.label)];
    ++st.planned;
    const auto it = last.find(item);
    if (it != last.end() && entry_done(it->second, job, key)) {
      ++st.reused;
      continue;
    }
    queue.push_back(Pending{item, 0, std::nullopt});
  }
  std::int64_t reused = 0;
  for (const auto& st : summary.classes) reused += st.reused;
  if (reused > 0)
    report.info(fmt::format("shard {}: {} images already done by an earlier run are kept", job.shard.label(), reused));

  Progress progress(report, fmt::format("sample {}", job.shard.label()), static_cast<std::int64_t>(queue.size()),
                    "img");
  while (!queue.empty()) {
    check_stop();
    std::vector<Pending> batch;
    while (!queue.empty() && static_cast<std::int64_t>(batch.size()) < job.batch_size) {
      batch.push_back(queue.front());
      queue.pop_front();
    }
    std::vector<SampleRequest> requests;
    for (const auto& p : batch) {
      const auto& name = plan.classes[static_cast<std::size_t>(p.item.label)].name;
      requests.push_back(
          SampleRequest{p.item.label, p.item.index, item_seed(job.run_seed, name, p.item.index, p.attempt), p.attempt});
    }
    const auto images = generate(requests);
    if (images.size() != requests.size()) {
      throw std::logic_error(
          fmt::format("GenerateFn returned {} images for {} requests", images.size(), requests.size()));
    }
    summary.generated += static_cast<std::int64_t>(images.size());

    std::vector<JournalEntry> entries;
    std::vector<Pending> retries;
    std::vector<fs::path> written;
    for (std::size_t k = 0; k < batch.size(); ++k) {
      const auto& p = batch[k];
      const auto& img = images[k];
      auto& st = summary.classes[static_cast<std::size_t>(p.item.label)];
      ++st.tries;
      if (img.pixels.size() != image_bytes) {
        throw std::logic_error(fmt::format("GenerateFn returned {} bytes for an image; expected {}x{}x{} = {}",
                                           img.pixels.size(), job.settings.resolution, job.settings.resolution,
                                           job.settings.channels, image_bytes));
      }
      if (filtering && !img.confidence)
        throw std::logic_error("GenerateFn returned no confidence while sample.min_confidence is set");
      JournalEntry e;
      e.class_name = plan.classes[static_cast<std::size_t>(p.item.label)].name;
      e.label = p.item.label;
      e.index = p.item.index;
      e.run_seed = job.run_seed;
      e.seed = requests[k].seed;
      e.tries = p.attempt + 1;
      e.settings = job.settings;
      const bool accepted = !filtering || *img.confidence >= job.min_confidence;
      if (accepted) {
        e.accepted = true;
        e.confidence = img.confidence;
        const auto png = encode_png(img.pixels.data(), job.settings.resolution, job.settings.channels);
        e.file = sample_image_relpath(p.item.label, p.item.index);
        e.png_bytes = png.size();
        e.png_hash = hash_bytes(png.data(), png.size());
        const auto target = job.dir / e.file;
        ensure_directory(target.parent_path());
        write_file_unsynced(target, png);
        written.push_back(target);
        ++st.accepted;
        entries.push_back(std::move(e));
        continue;
      }
      Pending next = p;
      if (!next.best || *img.confidence > *next.best) next.best = img.confidence;
      if (p.attempt + 1 < job.max_tries) {
        ++next.attempt;
        retries.push_back(next);
        continue;
      }
      e.accepted = false;
      e.confidence = next.best;
      ++st.rejected;
      entries.push_back(std::move(e));
    }
    // PNGs reach the disk before the journal line that vouches for them.
    for (const auto& f : written) fsync_file(f);
    std::vector<fs::path> dirs;
    for (const auto& f : written) {
      if (std::find(dirs.begin(), dirs.end(), f.parent_path()) == dirs.end()) dirs.push_back(f.parent_path());
    }
    for (const auto& d : dirs) fsync_directory(d);
    journal.append(entries);
    progress.advance(static_cast<std::int64_t>(entries.size()));
    // Retries go first so an item finishes soon after its first try.
    for (auto it = retries.rbegin(); it != retries.rend(); ++it) queue.push_front(*it);
  }
  progress.finish();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  if (filtering) {
    std::string table = fmt::format(
        "confidence filter (>= {}, at most {} tries per image), shard {}:\n{:<28} {:>8} {:>8} {:>8} {:>10}\n",
        job.min_confidence, job.max_tries, job.shard.label(), "class", "kept", "gave up", "tries", "acceptance");
    for (const auto& st : summary.classes) {
      if (st.tries == 0) continue;
      table += fmt::format("{:<28} {:>8} {:>8} {:>8} {:>9.1f}%\n", st.name, st.accepted, st.rejected, st.tries,
                           100.0 * static_cast<double>(st.accepted) / static_cast<double>(st.tries));
    }
    report.print(table);
    for (const auto& st : summary.classes) {
      if (st.rejected > 0) {
        report.warn(
            fmt::format("class '{}': {} planned images found no sample the classifier accepts in {} tries; the class "
                        "stays that many short (lower sample.min_confidence or raise sample.max_tries)",
                        st.name, st.rejected, job.max_tries));
      }
    }
  }
  return summary;
}

SamplingJob sampling_job_for(const Context& ctx, const SamplingSettings& settings) {
  const auto o = ctx.options<SampleOptions>();
  SamplingJob job;
  job.dir = ctx.dir("sample");
  job.run_seed = static_cast<std::uint64_t>(ctx.global().seed);
  try {
    job.shard = resolve_shard(o.shard, [](const char* name) { return std::getenv(name); });
  } catch (const std::invalid_argument& e) {
    throw UserError(ExitCode::kConfig, e.what());
  }
  job.batch_size = o.batch_size;
  job.min_confidence = o.min_confidence;
  job.max_tries = static_cast<int>(o.max_tries);
  job.settings = settings;
  return job;
}

}  // namespace augment
