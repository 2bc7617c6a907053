#include "stages/export_stage.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <regex>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <tbb/parallel_for.h>
#include <nlohmann/json.hpp>

#include "manifests/dataset_rows.h"
#include "manifests/hdf5_shard.h"
#include "manifests/image_cache.h"
#include "manifests/image_record.h"
#include "manifests/sample_store.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/hash.h"
#include "pipeline/base/input_root.h"
#include "pipeline/base/rng.h"
#include "pipeline/base/sha256.h"
#include "pipeline/base/signals.h"
#include "pipeline/context.h"
#include "pipeline/work_paths.h"

namespace augment {

using nlohmann::json;

void ExportOptions::bind(OptionBinder<ExportOptions>& b) {
  b.add("shard_size", &ExportOptions::shard_size, "images per HDF5 shard file", in_range<std::int64_t>(1, 100000000));
  b.add("name", &ExportOptions::name, "shard file name prefix: NAME-00000-of-00008.h5",
        Check<std::string>([](const std::string& v) -> std::string {
          if (v.empty() || v.find('/') != std::string::npos || v[0] == '.')
            return "must be a plain file name prefix (no '/', not starting with '.')";
          return "";
        }));
  b.add("dir", &ExportOptions::dir,
        "folder for the shards and index.json (default: OUTPUT_hdf5, next to the image folder OUTPUT)");
  b.add("deflate", &ExportOptions::deflate, "deflate level of the images dataset, 0 (none) to 9",
        in_range<std::int64_t>(0, 9));
  b.add(
      "min_saving", &ExportOptions::min_saving,
      "deflate only where it pays: blocks of images whose sampled chunks shrink by less than this fraction are stored "
      "uncompressed (small photos save 1-9% and deflate makes export about three times slower); 0: always deflate",
      in_range(0.0, 1.0));
}

namespace {

fs::path export_dir(const Context& ctx) {
  const auto o = ctx.options<ExportOptions>();
  if (!o.dir.empty()) return fs::absolute(o.dir).lexically_normal();
  if (ctx.global().output.empty()) {
    throw UserError(
        ExitCode::kUsage,
        "export needs --output DIR (the emitted dataset; shards go to DIR_hdf5 next to it) or --export.dir");
  }
  return folder_beside(fs::absolute(ctx.global().output).lexically_normal(), "_hdf5");
}

std::string shard_name(const std::string& name, std::int64_t k, std::int64_t n) {
  return fmt::format("{}-{:05}-of-{:05}.h5", name, k, n);
}

// The export folder must not lie inside the input, the image folder or the work dir.
void check_export_dir(const Context& ctx, const fs::path& dir) {
  for (const auto& input : ctx.global().input) {
    if (is_same_or_inside(dir, parse_input_root(input).path)) {
      throw UserError(ExitCode::kCantCreate,
                      fmt::format("--export.dir {} is inside the input {}; augment never writes into your data",
                                  dir.string(), input));
    }
  }
  if (!ctx.global().output.empty() && is_same_or_inside(dir, ctx.global().output)) {
    throw UserError(ExitCode::kCantCreate, fmt::format("--export.dir {} is inside the image folder {}: image-folder "
                                                       "loaders would take it for a class and the next "
                                                       "emit replaces that folder; choose a folder next to it",
                                                       dir.string(), ctx.global().output));
  }
  if (is_same_or_inside(dir, ctx.work())) {
    throw UserError(ExitCode::kCantCreate,
                    fmt::format("--export.dir {} is inside the work directory; choose another folder", dir.string()));
  }
}

// The train split in memory, as training holds it: the export visits its rows in shuffled
// order, and one HDF5 read per row cost more than writing the shards.
struct TrainPixels {
  int resolution = 0, channels = 0;
  std::size_t image_bytes = 0;
  std::vector<std::uint8_t> pixels;
  std::map<std::int64_t, std::int64_t> cache_row;  // manifest row -> cache row
};

TrainPixels read_train_pixels(const Context& ctx) {
  CacheReader cache(ctx.path(work_file::kCacheTrain));
  TrainPixels t;
  t.resolution = cache.info().resolution;
  t.channels = cache.info().channels;
  t.image_bytes = cache.image_bytes();
  t.pixels.resize(static_cast<std::size_t>(cache.size()) * t.image_bytes);
  std::vector<std::int64_t> sources(static_cast<std::size_t>(cache.size()));
  cache.read(0, cache.size(), t.pixels.data(), nullptr, sources.data());
  for (std::size_t i = 0; i < sources.size(); ++i) t.cache_row[sources[i]] = static_cast<std::int64_t>(i);
  return t;
}

// What the last finished export vouched for, by shard file: a shard it listed under the same key
// is kept only while its SHA-256 still matches (a changed byte leaves the key attribute intact).
std::map<std::string, json> finished_shards(const Context& ctx) {
  std::map<std::string, json> finished;
  try {
    const auto index = json::parse(read_text_file(ctx.path(work_file::kExportIndex)));
    for (const auto& s : index.at("shards")) finished[s.at("file").get<std::string>()] = s;
  } catch (const std::exception&) {
    // no finished export yet
  }
  return finished;
}

// True when the shard at `path` holds `key` and, where the last export listed it, still has the
// SHA-256 it gave (recorded in `sha256_of`).
bool shard_intact(const fs::path& path, const std::string& key, const std::map<std::string, json>& finished,
                  std::map<std::string, std::string>& sha256_of) {
  if (read_shard_key(path) != key) return false;
  const auto it = finished.find(path.filename().string());
  if (it == finished.end() || it->second.value("key", "") != key) return true;
  const auto sha = sha256_file(path);
  if (sha != it->second.value("sha256", "")) return false;
  sha256_of[path.string()] = sha;
  return true;
}

// Sizes and SHA-256 of the shards, for downstream users; returns the total bytes.
std::uint64_t add_checksums(const fs::path& dir, json& shards, const std::map<std::string, std::string>& sha256_of) {
  std::uint64_t bytes = 0;
  for (auto& s : shards) {
    const auto path = dir / s["file"].get<std::string>();
    s["bytes"] = fs::file_size(path);
    const auto known = sha256_of.find(path.string());
    s["sha256"] = known != sha256_of.end() ? known->second : sha256_file(path);
    bytes += s["bytes"].get<std::uint64_t>();
  }
  return bytes;
}

// Shards named like ours that the current set does not list (an older export with another count).
void remove_other_shards(const fs::path& dir, const std::string& name, const json& shards) {
  const std::regex ours("^" + std::regex_replace(name, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                        R"(-\d{5}-of-\d{5}\.h5$)");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto fname = e.path().filename().string();
    const bool current = std::any_of(shards.begin(), shards.end(), [&](const json& s) { return s["file"] == fname; });
    if (!current && std::regex_match(fname, ours)) fs::remove(e.path(), ec);
  }
}

class ExportStage final : public Stage {
 public:
  std::string name() const override { return "export"; }
  std::string summary() const override { return "write the augmented dataset as HDF5 shards with an index (--output)"; }
  std::vector<std::string> option_scopes() const override { return {"export", "seed", "output"}; }
  std::vector<std::string> inputs(const Context&) const override {
    return {work_file::kEmitRows, work_file::kCacheTrain, work_file::kSubsampleClasses};
  }
  // The index and every shard it lists: a shard deleted or changed makes export stale.
  std::vector<std::string> outputs(const Context& ctx) const override {
    std::vector<std::string> out = {work_file::kExportIndex};
    if (ctx.options<ExportOptions>().dir.empty() && ctx.global().output.empty()) return out;
    const auto dir = export_dir(ctx);
    out.push_back((dir / "index.json").string());
    try {
      const auto index = json::parse(read_text_file(ctx.path(work_file::kExportIndex)));
      for (const auto& s : index.at("shards")) out.push_back((dir / s.at("file").get<std::string>()).string());
    } catch (const std::exception&) {
      // no index yet (or a damaged one, which is an output too and makes the stage stale)
    }
    return out;
  }

  void run(Context& ctx) override {
    const auto o = ctx.options<ExportOptions>();
    const auto dir = export_dir(ctx);
    check_export_dir(ctx, dir);
    const auto rows = read_emitted_rows(ctx.path(work_file::kEmitRows));
    if (rows.empty()) throw UserError(ExitCode::kDataError, "the emitted dataset has no images; nothing to export");
    const auto classes = read_class_list(ctx.path(work_file::kSubsampleClasses));
    const auto train = read_train_pixels(ctx);
    const int res = train.resolution, channels = train.channels;

    // A seeded shuffle so every shard mixes classes, real and synthetic.
    std::vector<std::size_t> order(rows.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    const auto seed = static_cast<std::uint64_t>(ctx.global().seed);
    Rng(seed, "export").shuffle(order);
    const std::int64_t total = static_cast<std::int64_t>(rows.size());
    const std::int64_t nshards = (total + o.shard_size - 1) / o.shard_size;

    ensure_directory(dir);
    remove_stale_temp_files(dir);
    // Without deflate, min_saving changes nothing in the file.
    const std::string base_key = fmt::format("{}|{}|{}/{}|{}x{}x{}|{}|{}", kShardFormatVersion, o.name, o.deflate,
                                             o.deflate > 0 ? o.min_saving : 0.0, res, res, channels,
                                             hash_text(fmt::format("{}", fmt::join(classes.names, "\x1f"))), seed);
    Progress progress(ctx.report(), "export", total, "img");
    BackgroundFileWriter background;  // shard k goes to disk while shard k+1 is built
    std::int64_t reused = 0, chunks = 0, chunks_plain = 0;
    json shards = json::array();
    const auto finished = finished_shards(ctx);
    std::map<std::string, std::string> sha256_of;
    std::vector<std::int64_t> per_class(classes.names.size(), 0), synthetic_per_class(classes.names.size(), 0);
    for (std::int64_t k = 0; k < nshards; ++k) {
      const std::int64_t begin = k * o.shard_size, end = std::min(total, begin + o.shard_size);
      std::string key_text = base_key;
      std::int64_t synthetic = 0;
      for (std::int64_t p = begin; p < end; ++p) {
        const auto& r = rows[order[static_cast<std::size_t>(p)]];
        key_text += fmt::format("\n{}\t{}\t{}", r.file_name, r.label, r.content);
        synthetic += r.synthetic;
        ++per_class[static_cast<std::size_t>(r.label)];
        synthetic_per_class[static_cast<std::size_t>(r.label)] += r.synthetic;
      }
      const std::string key = hash_text(key_text);
      const auto path = dir / shard_name(o.name, k, nshards);
      if (shard_intact(path, key, finished, sha256_of)) {
        reused += end - begin;
        progress.advance(end - begin);
      } else {
        const auto [written, plain] = write_shard(
            ctx, path,
            ShardHeader{classes.names, res, res, channels, o.name, static_cast<int>(k), static_cast<int>(nshards), seed,
                        key},
            rows, order, begin, end, train.pixels, train.cache_row, train.image_bytes, o, progress, background);
        chunks += written;
        chunks_plain += plain;
      }
      shards.push_back(
          {{"file", path.filename().string()}, {"count", end - begin}, {"synthetic", synthetic}, {"key", key}});
    }
    background.finish();
    progress.finish();
    if (reused > 0)
      ctx.report().info(fmt::format("kept {} images in shards finished by an earlier, interrupted export", reused));
    if (chunks_plain > 0) {
      ctx.report().info(fmt::format(
          "{} of {} image chunks stored without deflate: their blocks shrank by less than export.min_saving = {}",
          chunks_plain, chunks, o.min_saving));
    }

    // Checksums for downstream users; shards of an older export with another count go.
    const std::uint64_t bytes = add_checksums(dir, shards, sha256_of);
    remove_other_shards(dir, o.name, shards);
    json counts = json::object();
    for (std::size_t c = 0; c < classes.names.size(); ++c) {
      counts[classes.names[c]] = {{"total", per_class[c]}, {"synthetic", synthetic_per_class[c]}};
    }
    const json index = {{"format_version", kShardFormatVersion},
                        {"name", o.name},
                        {"class_names", classes.names},
                        {"height", res},
                        {"width", res},
                        {"channels", channels},
                        {"total", total},
                        {"seed", seed},
                        {"counts", counts},
                        {"bytes", bytes},
                        {"shards", shards}};
    write_text_atomically(dir / "index.json", index.dump(2) + "\n");
    write_text_atomically(ctx.path(work_file::kExportIndex), index.dump(2) + "\n");
    ctx.report().info(fmt::format("{}: {} shards, {} images, {:.1f} MB", dir.string(), nshards, total,
                                  static_cast<double>(bytes) / 1e6));
  }

 private:
  // Returns the chunks written and how many of them skip deflate.
  static std::pair<std::int64_t, std::int64_t> write_shard(
      const Context& ctx, const fs::path& path, const ShardHeader& header, const std::vector<EmittedRow>& rows,
      const std::vector<std::size_t>& order, std::int64_t begin, std::int64_t end,
      const std::vector<std::uint8_t>& real_pixels, const std::map<std::int64_t, std::int64_t>& cache_row,
      std::size_t image_bytes, const ExportOptions& o, Progress& progress, BackgroundFileWriter& background) {
    ShardWriter writer(path, header, end - begin, static_cast<int>(o.deflate), o.min_saving, &background);
    constexpr std::int64_t kBlock = 512;
    std::vector<std::uint8_t> pixels;
    std::vector<std::int64_t> labels;
    std::vector<std::uint8_t> flags;
    std::vector<std::string> files;
    for (std::int64_t b = begin; b < end; b += kBlock) {
      check_stop();
      const std::int64_t n = std::min(kBlock, end - b);
      pixels.assign(static_cast<std::size_t>(n) * image_bytes, 0);
      labels.resize(static_cast<std::size_t>(n));
      flags.resize(static_cast<std::size_t>(n));
      files.resize(static_cast<std::size_t>(n));
      std::vector<std::size_t> decodes;
      for (std::int64_t i = 0; i < n; ++i) {
        const auto& r = rows[order[static_cast<std::size_t>(b + i)]];
        labels[static_cast<std::size_t>(i)] = r.label;
        flags[static_cast<std::size_t>(i)] = r.synthetic ? 1 : 0;
        files[static_cast<std::size_t>(i)] = r.file_name;
        if (r.synthetic) {
          decodes.push_back(static_cast<std::size_t>(i));
        } else {
          const auto it = cache_row.find(r.manifest_row);
          if (it == cache_row.end()) {
            throw UserError(
                ExitCode::kDataError,
                fmt::format(
                    "{} is not in {} (the cache is older than the emitted dataset); rerun `augment emit --force`",
                    r.file_name, (ctx.path(work_file::kCacheTrain)).string()));
          }
          std::memcpy(pixels.data() + static_cast<std::size_t>(i) * image_bytes,
                      real_pixels.data() + static_cast<std::size_t>(it->second) * image_bytes, image_bytes);
        }
      }
      // Synthetic images: PNG decoding in parallel; no HDF5 call in here.
      std::vector<std::string> errors(decodes.size());
      const auto sample_dir = ctx.dir("sample");
      const int res = header.height, channels = header.channels;
      tbb::parallel_for(std::size_t(0), decodes.size(), [&](std::size_t d) {
        const auto i = decodes[d];
        const auto& r = rows[order[static_cast<std::size_t>(b) + i]];
        const auto file = sample_dir / r.sample_file;
        std::string bytes;
        try {
          bytes = read_text_file(file);
        } catch (const std::exception&) {
          errors[d] =
              fmt::format("{} cannot be read; rerun `augment sample` and `augment emit --force`", file.string());
          return;
        }
        if (hash_bytes(bytes.data(), bytes.size()) != r.content) {
          errors[d] = fmt::format(
              "{} does not match its journal line (changed after sampling); delete it and rerun `augment sample` "
              "to generate it again",
              file.string());
          return;
        }
        const std::vector<std::uint8_t> png(bytes.begin(), bytes.end());
        if (auto err = decode_png(png, res, channels, pixels.data() + i * image_bytes); !err.empty()) {
          errors[d] = fmt::format("{} {}; rerun `augment sample` and `augment emit --force`", file.string(), err);
        }
      });
      for (const auto& e : errors) {
        if (!e.empty()) throw UserError(ExitCode::kDataError, e);
      }
      writer.write(b - begin, n, pixels.data(), labels.data(), flags.data(), files);
      progress.advance(n);
    }
    check_stop();
    writer.commit();
    return {writer.chunks_written(), writer.chunks_without_deflate()};
  }
};

}  // namespace

std::unique_ptr<Stage> make_export_stage() { return std::make_unique<ExportStage>(); }

}  // namespace augment
