#include "stages/scan_stage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>
#include <tbb/global_control.h>
#include <tbb/parallel_pipeline.h>
#include <tbb/task_arena.h>
#include <nlohmann/json.hpp>

#include "manifests/image_cache.h"
#include "manifests/image_record.h"
#include "pipeline/base/csv.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/hash.h"
#include "pipeline/base/input_root.h"
#include "pipeline/base/signals.h"
#include "pipeline/context.h"
#include "pipeline/work_paths.h"
#include "stages/cache_stage.h"
#include "stages/geometry_advice.h"
#include "stages/image_decode.h"
#include "stages/image_probe.h"
#include "stages/input_walk.h"

namespace augment {

void ScanOptions::bind(OptionBinder<ScanOptions>& b) {
  b.add("class_map", &ScanOptions::class_map,
        "CSV file of 'source,class' rows; a source is a folder or file relative to the input root (or absolute); "
        "images under no listed source are ignored",
        {}, kField.with_alias("class-map"));
  b.add("strict", &ScanOptions::strict, "fail when any file is rejected (default: list rejects and go on)", {},
        kField.with_alias("strict"));
  b.add("allow_empty", &ScanOptions::allow_empty, "skip empty class folders instead of failing", {},
        kField.with_alias("allow-empty"));
  b.add("max_pixels", &ScanOptions::max_pixels, "refuse images with more pixels than this (decompression bombs)",
        at_least<std::int64_t>(1));
  b.add("extensions", &ScanOptions::extensions, "file extensions taken as images (case-insensitive)");
  b.add("skip_hidden", &ScanOptions::skip_hidden, "ignore files and folders whose names start with a dot");
  b.add("prefetch_tiles", &ScanOptions::prefetch_tiles,
        "the verifying decode also keeps each image at the cache options (scan/tiles.h5), so cache copies instead of "
        "decoding again",
        {}, kTransient);
}

namespace {

struct Checked {
  ImageRecord record;
  std::string reject;              // reason, empty when accepted
  std::vector<std::uint8_t> tile;  // the image at the cache options
};

// Verifying means decoding all image data; that decode is at the cache's size, so its result is
// the tile the cache stage needs (kept when `keep_tile`).
Checked check_file(const ScanCandidate& c, const ScanOptions& options, const TileOptions& tile, bool keep_tile) {
  Checked out;
  auto& r = out.record;
  r.path = c.path.string();
  r.class_name = c.class_name;
  if (!valid_utf8(r.path)) {
    out.reject = "file name is not valid UTF-8; rename the file";
    return out;
  }
  std::vector<std::uint8_t> buf;
  if (!read_file_bytes(c.path, buf)) {
    out.reject = "unreadable (permission denied or I/O error)";
    return out;
  }
  r.bytes = buf.size();
  r.hash = hash_bytes(buf.data(), buf.size());
  const ImageProbe probe = probe_image(buf.data(), buf.size());
  r.format = probe.format;
  r.width = probe.width;
  r.height = probe.height;
  r.channels = probe.channels;
  r.bit_depth = probe.bit_depth;
  if (!probe.error.empty()) {
    out.reject = probe.error;
    return out;
  }
  const auto pixels = static_cast<std::int64_t>(probe.width) * probe.height;
  if (pixels > options.max_pixels) {
    out.reject = fmt::format("too many pixels ({}x{} = {}; limit scan.max_pixels = {})", probe.width, probe.height,
                             pixels, options.max_pixels);
    return out;
  }
  out.tile.resize(static_cast<std::size_t>(tile.resolution) * tile.resolution * tile.channels);
  out.reject = decode_tile(buf.data(), buf.size(), probe.width, probe.height, tile, out.tile.data());
  if (!keep_tile || !out.reject.empty()) std::vector<std::uint8_t>().swap(out.tile);  // frees; = {} would keep capacity
  return out;
}

// Walk problems: nothing to scan is an error, images outside any class a warning.
void check_walk(const ScanWalk& walk, Reporter& report) {
  if (walk.files.empty() && walk.classes.empty()) {
    throw UserError(ExitCode::kNoInput,
                    "the input holds no class folders with images; expected root/<class>/<image>.jpg (or use --input "
                    "NAME=DIR or --class-map)");
  }
  if (walk.outside_classes > 0) {
    report.warn(fmt::format("{} images lie directly in an input root, outside any class folder; they are ignored",
                            walk.outside_classes));
  }
  if (walk.unmapped > 0)
    report.warn(fmt::format("{} images are under no source of the class map; they are ignored", walk.unmapped));
}

// Verifies every file in parallel, bounded: each token carries one file's bytes at most. Results
// are kept in order; tiles stream to `tiles` (when given) in index order, their hashes to
// `tile_order`.
std::vector<Checked> verify_files(const ScanWalk& walk, const ScanOptions& options, const TileOptions& tile,
                                  CacheWriter* tiles, std::string& tile_order, Reporter& report) {
  std::vector<Checked> results(walk.files.size());
  Progress progress(report, "scan", static_cast<std::int64_t>(walk.files.size()), "img");
  std::size_t next = 0;
  const auto tokens = static_cast<std::size_t>(4 * std::max(1, tbb::this_task_arena::max_concurrency()));
  tbb::parallel_pipeline(
      tokens,
      tbb::make_filter<void, std::size_t>(tbb::filter_mode::serial_in_order, [&](tbb::flow_control& fc) -> std::size_t {
        if (next >= walk.files.size() || stop_signal()) {
          fc.stop();
          return 0;
        }
        return next++;
      }) & tbb::make_filter<std::size_t, std::size_t>(tbb::filter_mode::parallel, [&](std::size_t i) {
        results[i] = check_file(walk.files[i], options, tile, tiles != nullptr);
        return i;
      }) & tbb::make_filter<std::size_t, void>(tbb::filter_mode::serial_in_order, [&](std::size_t i) {
        auto& r = results[i];
        if (tiles && r.reject.empty()) {
          const std::int64_t label = -1, row = tiles->size();
          tiles->append(r.tile.data(), &label, &row, 1);
          tile_order += r.record.hash;
        }
        std::vector<std::uint8_t>().swap(r.tile);
        progress.advance();
      }));
  check_stop();
  progress.finish();
  return results;
}

// The verified files sorted into accepted images and rejects, counted per class.
struct Sorted {
  std::vector<ImageRecord> accepted;
  std::vector<std::vector<std::string>> rejects;  // path, class, reason
  std::map<std::string, std::int64_t> accepted_count, rejected_count;
};

Sorted sort_results(std::vector<Checked>& results, const std::vector<std::string>& class_names) {
  Sorted out;
  for (const auto& c : class_names) out.accepted_count[c] = out.rejected_count[c] = 0;
  for (auto& r : results) {
    if (r.reject.empty()) {
      ++out.accepted_count[r.record.class_name];
      out.accepted.push_back(std::move(r.record));
    } else {
      ++out.rejected_count[r.record.class_name];
      out.rejects.push_back({r.record.path, r.record.class_name, r.reject});
    }
  }
  return out;
}

void write_rows(const fs::path& path, const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::string text = csv::join_row(header) + "\n";
  for (const auto& r : rows) text += csv::join_row(r) + "\n";
  write_text_atomically(path, text);
}

// scan/rejects.csv, and the first rejects in the log: an error with --strict, else a warning.
void write_rejects(const Context& ctx, const Sorted& sorted, bool strict) {
  const auto& rejects = sorted.rejects;
  const auto path = ctx.path(work_file::kScanRejects);
  write_rows(path, {"path", "class", "reason"}, rejects);
  if (rejects.empty()) return;
  std::string first;
  for (std::size_t i = 0; i < std::min<std::size_t>(5, rejects.size()); ++i)
    first += fmt::format("\n  {}: {}", rejects[i][0], rejects[i][2]);
  if (rejects.size() > 5) first += fmt::format("\n  ... and {} more", rejects.size() - 5);
  if (strict) {
    throw UserError(ExitCode::kDataError, fmt::format("{} files rejected (--strict); all are listed in {}:{}\nfix "
                                                      "or remove them, or drop --strict to skip them",
                                                      rejects.size(), path.string(), first));
  }
  ctx.report().warn(
      fmt::format("{} files rejected and skipped (listed in {}):{}", rejects.size(), path.string(), first));
}

// The classes with usable images: an empty class (no files, or none usable) fails unless
// --allow-empty.
ClassList usable_classes(const std::vector<std::string>& class_names, const Sorted& sorted, bool allow_empty,
                         Reporter& report) {
  ClassList classes;
  std::vector<std::string> empty;
  for (const auto& c : class_names) {
    if (sorted.accepted_count.at(c) == 0) {
      empty.push_back(c);
    } else {
      classes.names.push_back(c);
      classes.counts.push_back(sorted.accepted_count.at(c));
    }
  }
  if (!empty.empty()) {
    std::string list;
    for (const auto& c : empty) list += fmt::format("\n  '{}' ({} files rejected)", c, sorted.rejected_count.at(c));
    if (!allow_empty) {
      throw UserError(ExitCode::kDataError, fmt::format("{} class(es) have no usable images:{}\nadd images, remove "
                                                        "the folders, or pass --allow-empty to skip them",
                                                        empty.size(), list));
    }
    report.warn(fmt::format("skipping {} class(es) without usable images (--allow-empty):{}", empty.size(), list));
  }
  if (classes.names.empty()) throw UserError(ExitCode::kDataError, "no usable images found in the input");
  return classes;
}

// Exact duplicates by content hash, written to scan/duplicates.csv and summed up in the log.
struct Duplicates {
  std::int64_t groups = 0, cross_class = 0, files = 0;
  std::map<std::string, std::int64_t> per_class;  // files in a group, by class
};

Duplicates write_duplicates(const Context& ctx, const std::vector<ImageRecord>& accepted) {
  std::map<std::string, std::vector<const ImageRecord*>> by_hash;
  for (const auto& r : accepted) by_hash[r.hash].push_back(&r);
  std::vector<std::vector<std::string>> rows;
  Duplicates d;
  for (const auto& [hash, group] : by_hash) {
    if (group.size() < 2) continue;
    ++d.groups;
    d.files += static_cast<std::int64_t>(group.size());
    std::set<std::string> cls;
    for (const auto* r : group) {
      cls.insert(r->class_name);
      ++d.per_class[r->class_name];
      rows.push_back({std::to_string(d.groups), hash, r->class_name, r->path});
    }
    if (cls.size() > 1) ++d.cross_class;
  }
  write_rows(ctx.path(work_file::kScanDuplicates), {"group", "hash", "class", "path"}, rows);
  if (d.groups > 0) {
    ctx.report().warn(fmt::format(
        "{} groups of identical files ({} files) listed in {}; they are kept together in one split{}", d.groups,
        d.files, ctx.path(work_file::kScanDuplicates).string(),
        d.cross_class ? fmt::format("; {} groups span several classes (conflicting labels)", d.cross_class) : ""));
  }
  return d;
}

void print_summary(Reporter& report, const ClassList& classes, const Sorted& sorted, const Duplicates& d) {
  const auto count = [](const std::map<std::string, std::int64_t>& m, const std::string& c) {
    const auto it = m.find(c);
    return it == m.end() ? std::int64_t{0} : it->second;
  };
  std::string table =
      fmt::format("{:<28} {:>5} {:>8} {:>9} {:>11}\n", "class", "idx", "images", "rejected", "duplicates");
  for (std::size_t i = 0; i < classes.names.size(); ++i) {
    const auto& c = classes.names[i];
    table += fmt::format("{:<28} {:>5} {:>8} {:>9} {:>11}\n", c, i, count(sorted.accepted_count, c),
                         count(sorted.rejected_count, c), count(d.per_class, c));
  }
  table += fmt::format("{:<28} {:>5} {:>8} {:>9} {:>11}\n", "total", classes.names.size(), sorted.accepted.size(),
                       sorted.rejects.size(), d.files);
  report.print(table);
  report.event("scan_summary", {{"classes", classes.names.size()},
                                {"images", sorted.accepted.size()},
                                {"rejected", sorted.rejects.size()},
                                {"duplicate_groups", d.groups},
                                {"cross_class_duplicate_groups", d.cross_class}});
}

class ScanStage final : public Stage {
 public:
  std::string name() const override { return "scan"; }
  std::string summary() const override { return "find and verify every image of the input folders"; }
  std::vector<std::string> option_scopes() const override { return {"scan", "input"}; }
  std::vector<std::string> outputs(const Context&) const override {
    return {work_file::kScanIndex, work_file::kScanIndexCsv, work_file::kScanClasses, work_file::kScanRejects,
            work_file::kScanDuplicates};
  }

  std::string external_fingerprint(const Context& ctx) const override {
    const auto options = ctx.options<ScanOptions>();
    const auto walk = walk_inputs(ctx.global(), options);
    std::string text;
    for (const auto& f : walk.files)
      text += fmt::format("{}\t{}\t{}\t{}\n", f.path.string(), f.class_name, f.bytes, f.mtime_ns);
    for (const auto& c : walk.classes) text += "class\t" + c + "\n";
    if (!options.class_map.empty()) text += hash_file(options.class_map);
    return hash_text(text);
  }

  void run(Context& ctx) override {
    const auto options = ctx.options<ScanOptions>();
    auto& report = ctx.report();
    const auto walk = walk_inputs(ctx.global(), options);
    check_walk(walk, report);
    ensure_directory(ctx.dir("scan"));
    const TileOptions tile = tile_options(ctx.options<CacheOptions>());
    std::unique_ptr<CacheWriter> tiles;
    if (options.prefetch_tiles) {
      tiles = std::make_unique<CacheWriter>(ctx.path(work_file::kScanTiles),
                                            CacheInfo{"", tile.resolution, tile.channels, {}, ""});
    }
    std::string tile_order;
    auto results = verify_files(walk, options, tile, tiles.get(), tile_order, report);
    const auto sorted = sort_results(results, walk.classes);
    write_rejects(ctx, sorted, options.strict);
    const auto classes = usable_classes(walk.classes, sorted, options.allow_empty, report);
    const auto duplicates = write_duplicates(ctx, sorted.accepted);
    for (const auto& advice :
         geometry_advice(sorted.accepted, static_cast<int>(tile.resolution), static_cast<int>(tile.channels),
                         ctx.config().is_set("cache.resolution"), ctx.config().is_set("cache.channels"))) {
      report.warn(advice);
    }
    if (tiles) {
      tiles->set_key(tile_key(tile, tile_order));
      tiles->commit();
    }
    write_records_jsonl(ctx.path(work_file::kScanIndex), sorted.accepted);
    write_records_csv(ctx.path(work_file::kScanIndexCsv), sorted.accepted, false);
    write_class_list(ctx.path(work_file::kScanClasses), classes);
    print_summary(report, classes, sorted, duplicates);
  }
};

}  // namespace

std::unique_ptr<Stage> make_scan_stage() { return std::make_unique<ScanStage>(); }

}  // namespace augment
