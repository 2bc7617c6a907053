#include "stages/scan_stage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <tbb/global_control.h>
#include <tbb/parallel_pipeline.h>
#include <tbb/task_arena.h>

#include "manifests/csv.h"
#include "manifests/image_record.h"
#include "pipeline/context.h"
#include "pipeline/errors.h"
#include "pipeline/fs_util.h"
#include "pipeline/hash.h"
#include "pipeline/signals.h"
#include "manifests/image_cache.h"
#include "pipeline/input_root.h"
#include "stages/cache_stage.h"
#include "stages/geometry_advice.h"
#include "stages/image_decode.h"
#include "stages/image_probe.h"

namespace augment {

void ScanOptions::bind(OptionBinder<ScanOptions>& b) {
  b.add("class_map", &ScanOptions::class_map,
        "CSV file of 'source,class' rows; a source is a folder or file relative to the input root (or absolute); "
        "images under no listed source are ignored",
        {}, {"class-map"});
  b.add("strict", &ScanOptions::strict, "fail when any file is rejected (default: list rejects and go on)", {}, {"strict"});
  b.add("allow_empty", &ScanOptions::allow_empty, "skip empty class folders instead of failing", {}, {"allow-empty"});
  b.add("max_pixels", &ScanOptions::max_pixels, "refuse images with more pixels than this (decompression bombs)",
        at_least<std::int64_t>(1));
  b.add("extensions", &ScanOptions::extensions, "file extensions taken as images (case-insensitive)");
  b.add("skip_hidden", &ScanOptions::skip_hidden, "ignore files and folders whose names start with a dot");
  b.add("prefetch_tiles", &ScanOptions::prefetch_tiles,
        "the verifying decode also keeps each image at the cache options (scan/tiles.h5), so cache copies instead of decoding again",
        {}, {"", {}, false, true});
}

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool valid_utf8(const std::string& s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const int extra = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    if (extra < 0 || i + extra >= s.size() + (extra == 0 ? 1 : 0)) return false;
    for (int k = 1; k <= extra; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    }
    i += extra + 1;
  }
  return true;
}

// Class names become folder names, CSV cells and HDF5 attributes: a control character (a newline
// above all) would break the manifests or hide in a listing. `where` says where the name came from.
void check_class_name(const std::string& name, const std::string& where, ExitCode code) {
  for (const char ch : name) {
    const auto u = static_cast<unsigned char>(ch);
    if (u < 0x20 || u == 0x7f) {
      std::string shown;
      for (const char c : name) {
        const auto v = static_cast<unsigned char>(c);
        shown += v < 0x20 || v == 0x7f ? fmt::format("\\x{:02x}", v) : std::string(1, c);
      }
      throw UserError(code, fmt::format("class name '{}' ({}) holds a control character (a newline or tab, say), which manifests and "
                                        "folder listings cannot carry; rename it{}",
                                        shown, where, code == ExitCode::kUsage ? "" : " (or give it another name with --class-map)"));
    }
  }
}

std::vector<InputRoot> parse_inputs(const GlobalOptions& g) {
  if (g.input.empty()) {
    throw UserError(ExitCode::kUsage, "no input: pass --input DIR (an image folder DIR/<class>/*.jpg) or --input NAME=DIR");
  }
  std::vector<InputRoot> roots;
  for (const auto& text : g.input) {
    std::error_code ec;
    auto r = parse_input_root(text);
    if (!r.class_name.empty()) check_class_name(r.class_name, "--input " + text, ExitCode::kUsage);
    if (!fs::exists(r.path, ec)) {
      throw UserError(ExitCode::kNoInput, fmt::format("input folder {} does not exist; check the path given to --input", r.path.string()));
    }
    if (!fs::is_directory(r.path, ec)) {
      throw UserError(ExitCode::kNoInput, fmt::format("input {} is not a folder; --input takes the folder that holds one sub-folder per class",
                                                      r.path.string()));
    }
    roots.push_back(r);
  }
  return roots;
}

struct Walker {
  const ScanOptions& options;
  std::set<std::string> extensions;
  std::set<std::pair<dev_t, ino_t>> visited;
  ScanWalk& out;

  bool hidden(const fs::path& p) const {
    const auto name = p.filename().string();
    return options.skip_hidden && !name.empty() && name[0] == '.';
  }

  bool is_image_name(const fs::path& p) const {
    auto ext = p.extension().string();
    if (ext.empty()) return false;
    return extensions.count(lower(ext.substr(1))) > 0;
  }

  // Calls `visit(file, stat)` for every image file under `dir`, following symlinks but visiting
  // each real directory once (no loops).
  // Marks a directory as seen without walking it (input roots: a link back to one is a loop).
  void mark(const fs::path& dir) {
    struct stat st;
    if (::stat(dir.c_str(), &st) == 0) visited.insert({st.st_dev, st.st_ino});
  }

  template <class Visit>
  void walk(const fs::path& dir, Visit&& visit) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) return;
    if (!visited.insert({st.st_dev, st.st_ino}).second) return;
    std::vector<fs::path> entries;
    std::error_code ec;
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
      entries.push_back(it->path());
    }
    if (ec) throw UserError(ExitCode::kNoInput, fmt::format("cannot list folder {}: {}", dir.string(), ec.message()));
    std::sort(entries.begin(), entries.end());
    for (const auto& p : entries) {
      if (hidden(p)) {
        ++out.hidden;
        continue;
      }
      struct stat es;
      if (::stat(p.c_str(), &es) != 0) continue;  // dangling symlink
      if (S_ISDIR(es.st_mode)) {
        walk(p, visit);
      } else if (S_ISREG(es.st_mode)) {
        if (is_image_name(p)) {
          visit(p, es);
        } else {
          ++out.other_extensions;
        }
      }
    }
  }
};

long long stat_mtime(const struct stat& st) { return static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec; }

// source (absolute, normalised) -> class, from the --class-map CSV.
std::vector<std::pair<std::string, std::string>> read_class_map(const fs::path& file, const std::vector<InputRoot>& roots) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw UserError(ExitCode::kNoInput, fmt::format("cannot read class map {}; check the path given to --class-map", file.string()));
  std::vector<std::pair<std::string, std::string>> map;
  int line = 0;
  while (auto row = csv::read_row(in)) {
    ++line;
    if (row->size() == 1 && row->at(0).empty()) continue;
    if (row->size() != 2) {
      throw UserError(ExitCode::kDataError, fmt::format("{}:{}: expected 2 columns 'source,class', found {}; quote fields that contain commas",
                                                        file.string(), line, row->size()));
    }
    if (line == 1 && lower((*row)[0]) == "source" && lower((*row)[1]) == "class") continue;  // header
    fs::path src = (*row)[0];
    if (src.is_relative()) src = roots.front().path / src;
    const auto norm = fs::absolute(src).lexically_normal().string();
    if ((*row)[1].empty()) throw UserError(ExitCode::kDataError, fmt::format("{}:{}: empty class name", file.string(), line));
    check_class_name((*row)[1], fmt::format("{}:{}", file.string(), line), ExitCode::kDataError);
    map.emplace_back(norm, (*row)[1]);
  }
  if (map.empty()) throw UserError(ExitCode::kDataError, fmt::format("class map {} lists no sources", file.string()));
  // Longest source first so a file entry wins over its folder's entry.
  std::stable_sort(map.begin(), map.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  return map;
}

}  // namespace

ScanWalk walk_inputs(const GlobalOptions& global, const ScanOptions& options) {
  const auto roots = parse_inputs(global);
  ScanWalk out;
  Walker walker{options, {}, {}, out};
  for (const auto& e : options.extensions) walker.extensions.insert(lower(e[0] == '.' ? e.substr(1) : e));
  std::map<std::string, std::vector<ScanCandidate>> by_class;

  if (!options.class_map.empty()) {
    const auto map = read_class_map(options.class_map, roots);
    for (const auto& [src, cls] : map) by_class[cls];
    for (const auto& root : roots) {
      walker.walk(root.path, [&](const fs::path& p, const struct stat& st) {
        const auto abs = fs::absolute(p).lexically_normal().string();
        for (const auto& [src, cls] : map) {
          if (abs == src || (abs.size() > src.size() && abs.compare(0, src.size(), src) == 0 && abs[src.size()] == '/')) {
            by_class[cls].push_back({p, cls, static_cast<std::uint64_t>(st.st_size), stat_mtime(st)});
            return;
          }
        }
        ++out.unmapped;
      });
    }
  } else {
    for (const auto& root : roots) {
      if (!root.class_name.empty()) {
        auto& list = by_class[root.class_name];
        walker.visited.clear();
        walker.walk(root.path, [&](const fs::path& p, const struct stat& st) {
          list.push_back({p, root.class_name, static_cast<std::uint64_t>(st.st_size), stat_mtime(st)});
        });
        continue;
      }
      std::vector<fs::path> entries;
      std::error_code ec;
      for (auto it = fs::directory_iterator(root.path, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
        entries.push_back(it->path());
      }
      if (ec) throw UserError(ExitCode::kNoInput, fmt::format("cannot list input folder {}: {}", root.path.string(), ec.message()));
      std::sort(entries.begin(), entries.end());
      for (const auto& entry : entries) {
        if (walker.hidden(entry)) {
          ++out.hidden;
          continue;
        }
        if (fs::is_directory(entry, ec)) {
          const std::string cls = entry.filename().string();
          check_class_name(cls, "folder " + entry.string(), ExitCode::kDataError);
          auto& list = by_class[cls];
          // Each class is walked on its own: a link into another class's folder counts there too
          // (as ImageFolder does), while links back up to a root are loops and skipped.
          walker.visited.clear();
          for (const auto& r : roots) walker.mark(r.path);
          walker.walk(entry, [&](const fs::path& p, const struct stat& st) {
            list.push_back({p, cls, static_cast<std::uint64_t>(st.st_size), stat_mtime(st)});
          });
        } else if (walker.is_image_name(entry)) {
          ++out.outside_classes;
        }
      }
    }
  }
  for (auto& [cls, list] : by_class) {
    out.classes.push_back(cls);
    if (list.empty()) out.empty_classes.push_back(cls);
    std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
    for (auto& c : list) out.files.push_back(std::move(c));
  }
  return out;
}

namespace {

struct Checked {
  ImageRecord record;
  std::string reject;               // reason, empty when accepted
  std::vector<std::uint8_t> tile;   // the image at the cache options
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
    out.reject = fmt::format("too many pixels ({}x{} = {}; limit scan.max_pixels = {})", probe.width, probe.height, pixels, options.max_pixels);
    return out;
  }
  out.tile.resize(static_cast<std::size_t>(tile.resolution) * tile.resolution * tile.channels);
  out.reject = decode_tile(buf.data(), buf.size(), probe.width, probe.height, tile, out.tile.data());
  if (!keep_tile || !out.reject.empty()) std::vector<std::uint8_t>().swap(out.tile);  // frees; = {} would keep capacity
  return out;
}

class ScanStage final : public Stage {
 public:
  std::string name() const override { return "scan"; }
  std::string summary() const override { return "find and verify every image of the input folders"; }
  std::vector<std::string> option_scopes() const override { return {"scan", "input"}; }
  std::vector<std::string> outputs(const Context&) const override {
    return {"scan/index.jsonl", "scan/index.csv", "scan/classes.json", "scan/rejects.csv", "scan/duplicates.csv"};
  }

  std::string external_fingerprint(const Context& ctx) const override {
    const auto options = ctx.options<ScanOptions>();
    const auto walk = walk_inputs(ctx.global(), options);
    std::string text;
    for (const auto& f : walk.files) text += fmt::format("{}\t{}\t{}\t{}\n", f.path.string(), f.class_name, f.bytes, f.mtime_ns);
    for (const auto& c : walk.classes) text += "class\t" + c + "\n";
    if (!options.class_map.empty()) text += hash_file(options.class_map);
    return hash_text(text);
  }

  void run(Context& ctx) override {
    const auto options = ctx.options<ScanOptions>();
    auto& report = ctx.report();
    const auto walk = walk_inputs(ctx.global(), options);
    if (walk.files.empty() && walk.classes.empty()) {
      throw UserError(ExitCode::kNoInput,
                      "the input holds no class folders with images; expected root/<class>/<image>.jpg (or use --input NAME=DIR or --class-map)");
    }
    if (walk.outside_classes > 0) {
      report.warn(fmt::format("{} images lie directly in an input root, outside any class folder; they are ignored", walk.outside_classes));
    }
    if (walk.unmapped > 0) report.warn(fmt::format("{} images are under no source of the class map; they are ignored", walk.unmapped));

    // Verify in parallel, bounded: each token carries one file's bytes at most. Results are kept
    // in order; tiles stream to scan/tiles.h5 in index order.
    const auto dir = ctx.dir("scan");
    ensure_directory(dir);
    const TileOptions tile = tile_options(ctx.options<CacheOptions>());
    std::unique_ptr<CacheWriter> tiles;
    if (options.prefetch_tiles) tiles = std::make_unique<CacheWriter>(dir / "tiles.h5", CacheInfo{"", tile.resolution, tile.channels, {}, ""});
    std::vector<Checked> results(walk.files.size());
    Progress progress(report, "scan", static_cast<std::int64_t>(walk.files.size()), "img");
    std::size_t next = 0;
    std::string tile_order;
    const auto tokens = static_cast<std::size_t>(4 * std::max(1, tbb::this_task_arena::max_concurrency()));
    tbb::parallel_pipeline(
        tokens,
        tbb::make_filter<void, std::size_t>(tbb::filter_mode::serial_in_order,
                                            [&](tbb::flow_control& fc) -> std::size_t {
                                              if (next >= walk.files.size() || stop_signal()) {
                                                fc.stop();
                                                return 0;
                                              }
                                              return next++;
                                            }) &
            tbb::make_filter<std::size_t, std::size_t>(tbb::filter_mode::parallel,
                                                       [&](std::size_t i) {
                                                         results[i] = check_file(walk.files[i], options, tile, tiles != nullptr);
                                                         return i;
                                                       }) &
            tbb::make_filter<std::size_t, void>(tbb::filter_mode::serial_in_order, [&](std::size_t i) {
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

    // Collect accepted images and rejects.
    std::vector<ImageRecord> accepted;
    std::vector<std::vector<std::string>> rejects;
    std::map<std::string, std::int64_t> accepted_count, rejected_count;
    for (const auto& c : walk.classes) accepted_count[c] = rejected_count[c] = 0;
    for (auto& r : results) {
      if (r.reject.empty()) {
        ++accepted_count[r.record.class_name];
        accepted.push_back(std::move(r.record));
      } else {
        ++rejected_count[r.record.class_name];
        rejects.push_back({r.record.path, r.record.class_name, r.reject});
      }
    }
    write_rows(dir / "rejects.csv", {"path", "class", "reason"}, rejects);
    if (!rejects.empty()) {
      std::string first;
      for (std::size_t i = 0; i < std::min<std::size_t>(5, rejects.size()); ++i) first += fmt::format("\n  {}: {}", rejects[i][0], rejects[i][2]);
      if (rejects.size() > 5) first += fmt::format("\n  ... and {} more", rejects.size() - 5);
      if (options.strict) {
        throw UserError(ExitCode::kDataError, fmt::format("{} files rejected (--strict); all are listed in {}:{}\nfix or remove them, or drop --strict to skip them",
                                                          rejects.size(), (dir / "rejects.csv").string(), first));
      }
      report.warn(fmt::format("{} files rejected and skipped (listed in {}):{}", rejects.size(), (dir / "rejects.csv").string(), first));
    }

    // Classes: an empty class (no files, or none usable) fails unless --allow-empty.
    ClassList classes;
    std::vector<std::string> empty;
    for (const auto& c : walk.classes) {
      if (accepted_count[c] == 0) {
        empty.push_back(c);
      } else {
        classes.names.push_back(c);
        classes.counts.push_back(accepted_count[c]);
      }
    }
    if (!empty.empty()) {
      std::string list;
      for (const auto& c : empty) list += fmt::format("\n  '{}' ({} files rejected)", c, rejected_count[c]);
      if (!options.allow_empty) {
        throw UserError(ExitCode::kDataError, fmt::format("{} class(es) have no usable images:{}\nadd images, remove the folders, or pass --allow-empty to skip them",
                                                          empty.size(), list));
      }
      report.warn(fmt::format("skipping {} class(es) without usable images (--allow-empty):{}", empty.size(), list));
    }
    if (classes.names.empty()) throw UserError(ExitCode::kDataError, "no usable images found in the input");

    // Exact duplicates by content hash.
    std::map<std::string, std::vector<const ImageRecord*>> by_hash;
    for (const auto& r : accepted) by_hash[r.hash].push_back(&r);
    std::vector<std::vector<std::string>> dup_rows;
    std::int64_t dup_groups = 0, cross_class = 0, dup_files = 0;
    std::map<std::string, std::int64_t> dup_count;
    for (const auto& [hash, group] : by_hash) {
      if (group.size() < 2) continue;
      ++dup_groups;
      dup_files += static_cast<std::int64_t>(group.size());
      std::set<std::string> cls;
      for (const auto* r : group) {
        cls.insert(r->class_name);
        ++dup_count[r->class_name];
        dup_rows.push_back({std::to_string(dup_groups), hash, r->class_name, r->path});
      }
      if (cls.size() > 1) ++cross_class;
    }
    write_rows(dir / "duplicates.csv", {"group", "hash", "class", "path"}, dup_rows);
    if (dup_groups > 0) {
      report.warn(fmt::format("{} groups of identical files ({} files) listed in {}; they are kept together in one split{}", dup_groups,
                              dup_files, (dir / "duplicates.csv").string(),
                              cross_class ? fmt::format("; {} groups span several classes (conflicting labels)", cross_class) : ""));
    }

    for (const auto& advice : geometry_advice(accepted, static_cast<int>(tile.resolution), static_cast<int>(tile.channels),
                                              ctx.config().is_set("cache.resolution"), ctx.config().is_set("cache.channels"))) {
      report.warn(advice);
    }
    if (tiles) {
      tiles->set_key(tile_key(tile, tile_order));
      tiles->commit();
    }
    write_records_jsonl(dir / "index.jsonl", accepted);
    write_records_csv(dir / "index.csv", accepted, false);
    write_class_list(dir / "classes.json", classes);

    std::string table = fmt::format("{:<28} {:>5} {:>8} {:>9} {:>11}\n", "class", "idx", "images", "rejected", "duplicates");
    for (std::size_t i = 0; i < classes.names.size(); ++i) {
      const auto& c = classes.names[i];
      table += fmt::format("{:<28} {:>5} {:>8} {:>9} {:>11}\n", c, i, accepted_count[c], rejected_count[c], dup_count[c]);
    }
    table += fmt::format("{:<28} {:>5} {:>8} {:>9} {:>11}\n", "total", classes.names.size(), accepted.size(), rejects.size(), dup_files);
    report.print(table);
    report.event("scan_summary", {{"classes", classes.names.size()}, {"images", accepted.size()}, {"rejected", rejects.size()},
                                  {"duplicate_groups", dup_groups}, {"cross_class_duplicate_groups", cross_class}});
  }

 private:
  static void write_rows(const fs::path& path, const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
    std::string text = csv::join_row(header) + "\n";
    for (const auto& r : rows) text += csv::join_row(r) + "\n";
    write_text_atomically(path, text);
  }
};

}  // namespace

std::unique_ptr<Stage> make_scan_stage() { return std::make_unique<ScanStage>(); }

}  // namespace augment
