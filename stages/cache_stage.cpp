#include "stages/cache_stage.h"

#include <algorithm>
#include <atomic>
#include <map>

#include <fmt/format.h>
#include <tbb/parallel_pipeline.h>
#include <tbb/task_arena.h>

#include "manifests/image_cache.h"
#include "manifests/image_record.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/hash.h"
#include "pipeline/base/signals.h"
#include "pipeline/context.h"
#include "pipeline/work_paths.h"
#include "stages/image_decode.h"

namespace augment {

void CacheOptions::bind(OptionBinder<CacheOptions>& b) {
  b.add("resolution", &CacheOptions::resolution, "side in pixels of the square training images",
        in_range<std::int64_t>(8, 1024), kField.with_alias("resolution"));
  b.add("channels", &CacheOptions::channels, "3 for RGB, 1 for grayscale (alpha is composited on white)",
        in_range<std::int64_t>(1, 3), kField.with_alias("channels"));
  b.add("fit", &CacheOptions::fit,
        "how non-square images become square: crop (shorter side, centre crop), pad (longer side, white borders), "
        "stretch",
        {}, kField.with_alias("fit"));
  b.add("shard_size", &CacheOptions::shard_size,
        "images per resumable part file (a killed run redoes at most one part)", at_least<std::int64_t>(1), kTransient);
}

TileOptions tile_options(const CacheOptions& o) {
  return TileOptions{static_cast<int>(o.resolution), o.channels == 1 ? 1 : 3, o.fit};
}

std::string tile_key(const TileOptions& tile, const std::string& hashes_in_order) {
  return tile.key() + "|" + hash_text(hashes_in_order);
}

namespace {

// One image travelling through the pipeline.
struct Tile {
  std::size_t row = 0;  // position in the split
  std::vector<std::uint8_t> pixels;
  std::string error;
};

class CacheStage final : public Stage {
 public:
  std::string name() const override { return "cache"; }
  std::string summary() const override { return "decode and resize the chosen images into HDF5 arrays"; }
  std::vector<std::string> option_scopes() const override { return {"cache"}; }
  std::vector<std::string> inputs(const Context&) const override {
    return {work_file::kSubsampleManifest, work_file::kSubsampleClasses, work_file::kScanIndex};
  }
  std::vector<std::string> outputs(const Context&) const override {
    return {work_file::kCacheTrain, work_file::kCacheVal, work_file::kCacheTest};
  }

  void run(Context& ctx) override {
    const auto o = ctx.options<CacheOptions>();
    const auto rows = read_records_jsonl(ctx.path(work_file::kSubsampleManifest));
    const auto classes = read_class_list(ctx.path(work_file::kSubsampleClasses));
    const TileOptions tile = tile_options(o);
    const auto dir = ctx.dir("cache");
    if (copy_prefetched_tiles(ctx, rows, classes, tile)) return;
    const auto parts_dir = dir / "parts";
    ensure_directory(parts_dir);

    // The key ties a part to its options and exact image list, so a changed manifest or option
    // never reuses a stale part.
    const std::string options_key = tile.key() + "|" + csv_names(classes.names);
    std::map<std::string, std::vector<std::size_t>> by_split;
    for (std::size_t i = 0; i < rows.size(); ++i) by_split[rows[i].split].push_back(i);

    std::int64_t total = 0;
    for (const char* split : kSplits) total += static_cast<std::int64_t>(by_split[split].size());
    Progress progress(ctx.report(), "cache", total, "img");
    std::int64_t reused = 0;
    for (const char* split : kSplits) {
      const auto& members = by_split[split];
      const std::size_t shard = static_cast<std::size_t>(o.shard_size);
      const std::size_t nparts = (members.size() + shard - 1) / shard;
      std::vector<fs::path> parts;
      for (std::size_t p = 0; p < nparts; ++p) {
        const std::size_t begin = p * shard, end = std::min(members.size(), begin + shard);
        std::string key_text = options_key;
        for (std::size_t k = begin; k < end; ++k)
          key_text += "\n" + rows[members[k]].hash + "\t" + std::to_string(rows[members[k]].label);
        CacheInfo info{split, tile.resolution, tile.channels, classes.names, hash_text(key_text)};
        const auto part = parts_dir / fmt::format("{}-{:05}.h5", split, p);
        parts.push_back(part);
        if (part_matches(part, info.key)) {
          progress.advance(static_cast<std::int64_t>(end - begin));
          reused += static_cast<std::int64_t>(end - begin);
          continue;
        }
        write_part(part, info, rows, members, begin, end, tile, progress);
      }
      merge_parts(ctx.path(work_file::cache_split(split)), parts,
                  CacheInfo{split, tile.resolution, tile.channels, classes.names, tile.key()});
    }
    progress.finish();
    if (reused > 0) ctx.report().info(fmt::format("reused {} images cached by an earlier, interrupted run", reused));
    std::error_code ec;
    fs::remove_all(parts_dir, ec);
  }

 private:
  // Fast path: scan already decoded every image at these options (scan/tiles.h5); copy the chosen
  // ones into the split files. Returns false when the tiles do not match (other options).
  static bool copy_prefetched_tiles(Context& ctx, const std::vector<ImageRecord>& rows, const ClassList& classes,
                                    const TileOptions& tile) {
    const auto tiles_path = ctx.path(work_file::kScanTiles);
    std::error_code ec;
    if (!fs::exists(tiles_path, ec)) return false;
    const auto index = read_records_jsonl(ctx.path(work_file::kScanIndex));
    std::string order;
    std::map<std::string, std::int64_t> row_of;
    for (std::size_t i = 0; i < index.size(); ++i) {
      order += index[i].hash;
      row_of[index[i].path] = static_cast<std::int64_t>(i);
    }
    try {
      if (read_cache_info(tiles_path).key != tile_key(tile, order)) return false;
    } catch (const std::exception&) {
      return false;
    }
    CacheReader tiles(tiles_path);
    if (tiles.size() != static_cast<std::int64_t>(index.size())) return false;
    Progress progress(ctx.report(), "cache (copy)", static_cast<std::int64_t>(rows.size()), "img");
    // Rows are gathered one by one but appended in batches: each HDF5 append extends three datasets.
    // Reads go through a window of consecutive rows: the manifest follows the index order.
    constexpr std::size_t kBatch = 256;
    const std::size_t bytes = tiles.image_bytes();
    std::vector<std::uint8_t> window(bytes * kBatch);
    std::int64_t window_start = -1, window_rows = 0;
    auto tile_row = [&](std::int64_t row) -> const std::uint8_t* {
      if (window_start < 0 || row < window_start || row >= window_start + window_rows) {
        window_start = row - row % static_cast<std::int64_t>(kBatch);
        window_rows = std::min<std::int64_t>(kBatch, tiles.size() - window_start);
        tiles.read(window_start, window_rows, window.data(), nullptr, nullptr);
      }
      return window.data() + static_cast<std::size_t>(row - window_start) * bytes;
    };
    std::vector<std::uint8_t> pixels;
    std::vector<std::int64_t> labels, sources;
    for (const char* split : kSplits) {
      CacheWriter writer(ctx.path(work_file::cache_split(split)),
                         CacheInfo{split, tile.resolution, tile.channels, classes.names, tile.key()});
      auto flush = [&] {
        writer.append(pixels.data(), labels.data(), sources.data(), static_cast<std::int64_t>(labels.size()));
        progress.advance(static_cast<std::int64_t>(labels.size()));
        pixels.clear();
        labels.clear();
        sources.clear();
      };
      for (std::size_t i = 0; i < rows.size(); ++i) {
        if (rows[i].split != split) continue;
        const auto it = row_of.find(rows[i].path);
        if (it == row_of.end()) return false;
        const auto* src = tile_row(it->second);
        pixels.insert(pixels.end(), src, src + bytes);
        labels.push_back(rows[i].label);
        sources.push_back(static_cast<std::int64_t>(i));
        if (labels.size() == kBatch) flush();
      }
      flush();
      check_stop();
      writer.commit();
    }
    progress.finish();
    return true;
  }

  static std::string csv_names(const std::vector<std::string>& names) {
    std::string s;
    for (const auto& n : names) s += n + "\x1f";
    return s;
  }

  static bool part_matches(const fs::path& part, const std::string& key) {
    std::error_code ec;
    if (!fs::exists(part, ec)) return false;
    try {
      return read_cache_info(part).key == key;
    } catch (const std::exception&) {
      return false;
    }
  }

  // Decodes rows [begin, end) of the split in parallel (bounded tokens) and writes them in order.
  static void write_part(const fs::path& part, const CacheInfo& info, const std::vector<ImageRecord>& rows,
                         const std::vector<std::size_t>& members, std::size_t begin, std::size_t end,
                         const TileOptions& tile, Progress& progress) {
    CacheWriter writer(part, info);
    const std::size_t bytes = static_cast<std::size_t>(tile.resolution) * tile.resolution * tile.channels;
    constexpr std::size_t kBatch = 64;
    std::vector<std::uint8_t> pixels;
    std::vector<std::int64_t> labels, sources;
    auto flush = [&]() {
      writer.append(pixels.data(), labels.data(), sources.data(), static_cast<std::int64_t>(labels.size()));
      pixels.clear();
      labels.clear();
      sources.clear();
    };
    std::size_t next = begin;
    std::string failure;
    const auto tokens = static_cast<std::size_t>(4 * std::max(1, tbb::this_task_arena::max_concurrency()));
    tbb::parallel_pipeline(
        tokens, tbb::make_filter<void, Tile*>(tbb::filter_mode::serial_in_order, [&](tbb::flow_control& fc) -> Tile* {
                  if (next >= end || stop_signal() || !failure.empty()) {
                    fc.stop();
                    return nullptr;
                  }
                  auto* t = new Tile;
                  t->row = next++;
                  return t;
                }) & tbb::make_filter<Tile*, Tile*>(tbb::filter_mode::parallel, [&](Tile* t) {
                  const auto& r = rows[members[t->row]];
                  std::vector<std::uint8_t> buf;
                  if (!read_file_bytes(r.path, buf)) {
                    t->error = "cannot be read any more";
                    return t;
                  }
                  t->pixels.resize(bytes);
                  t->error = decode_tile(buf.data(), buf.size(), r.width, r.height, tile, t->pixels.data());
                  return t;
                }) & tbb::make_filter<Tile*, void>(tbb::filter_mode::serial_in_order, [&](Tile* t) {
                  std::unique_ptr<Tile> owned(t);
                  const auto& r = rows[members[t->row]];
                  if (!t->error.empty()) {
                    if (failure.empty()) failure = fmt::format("{}: {}", r.path, t->error);
                    return;
                  }
                  pixels.insert(pixels.end(), t->pixels.begin(), t->pixels.end());
                  labels.push_back(r.label);
                  sources.push_back(static_cast<std::int64_t>(members[t->row]));
                  if (labels.size() == kBatch) flush();
                  progress.advance();
                }));
    if (!failure.empty()) {
      throw UserError(ExitCode::kDataError, fmt::format("{}\nthe file changed since it was scanned; rerun `augment "
                                                        "scan` (or the whole pipeline) to pick up the change",
                                                        failure));
    }
    check_stop();  // the unfinished part is discarded; finished parts stay for the rerun
    flush();
    writer.commit();
  }

  static void merge_parts(const fs::path& target, const std::vector<fs::path>& parts, const CacheInfo& info) {
    CacheWriter writer(target, info);
    for (const auto& part : parts) {
      CacheReader reader(part);
      const std::int64_t n = reader.size();
      constexpr std::int64_t kChunk = 256;
      std::vector<std::uint8_t> pixels(reader.image_bytes() * kChunk);
      std::vector<std::int64_t> labels(kChunk), sources(kChunk);
      for (std::int64_t s = 0; s < n; s += kChunk) {
        const auto c = std::min(kChunk, n - s);
        reader.read(s, c, pixels.data(), labels.data(), sources.data());
        writer.append(pixels.data(), labels.data(), sources.data(), c);
      }
    }
    writer.commit();
  }
};

}  // namespace

std::unique_ptr<Stage> make_cache_stage() { return std::make_unique<CacheStage>(); }

}  // namespace augment
