#include "stages/input_walk.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>

#include "pipeline/base/csv.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/input_root.h"
#include "pipeline/context.h"

namespace augment {

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

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
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
      throw UserError(
          code,
          fmt::format("class name '{}' ({}) holds a control character (a newline or tab, say), which manifests and "
                      "folder listings cannot carry; rename it{}",
                      shown, where, code == ExitCode::kUsage ? "" : " (or give it another name with --class-map)"));
    }
  }
}

std::vector<InputRoot> parse_inputs(const GlobalOptions& g) {
  if (g.input.empty()) {
    throw UserError(ExitCode::kUsage,
                    "no input: pass --input DIR (an image folder DIR/<class>/*.jpg) or --input NAME=DIR");
  }
  std::vector<InputRoot> roots;
  for (const auto& text : g.input) {
    std::error_code ec;
    auto r = parse_input_root(text);
    if (!r.class_name.empty()) check_class_name(r.class_name, "--input " + text, ExitCode::kUsage);
    if (!fs::exists(r.path, ec)) {
      throw UserError(ExitCode::kNoInput,
                      fmt::format("input folder {} does not exist; check the path given to --input", r.path.string()));
    }
    if (!fs::is_directory(r.path, ec)) {
      throw UserError(
          ExitCode::kNoInput,
          fmt::format("input {} is not a folder; --input takes the folder that holds one sub-folder per class",
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

long long stat_mtime(const struct stat& st) {
  return static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
}

// source (absolute, normalised) -> class, from the --class-map CSV.
std::vector<std::pair<std::string, std::string>> read_class_map(const fs::path& file,
                                                                const std::vector<InputRoot>& roots) {
  std::ifstream in(file, std::ios::binary);
  if (!in)
    throw UserError(ExitCode::kNoInput,
                    fmt::format("cannot read class map {}; check the path given to --class-map", file.string()));
  std::vector<std::pair<std::string, std::string>> map;
  int line = 0;
  while (auto row = csv::read_row(in)) {
    ++line;
    if (row->size() == 1 && row->at(0).empty()) continue;
    if (row->size() != 2) {
      throw UserError(
          ExitCode::kDataError,
          fmt::format("{}:{}: expected 2 columns 'source,class', found {}; quote fields that contain commas",
                      file.string(), line, row->size()));
    }
    if (line == 1 && lower((*row)[0]) == "source" && lower((*row)[1]) == "class") continue;  // header
    fs::path src = (*row)[0];
    if (src.is_relative()) src = roots.front().path / src;
    const auto norm = fs::absolute(src).lexically_normal().string();
    if ((*row)[1].empty())
      throw UserError(ExitCode::kDataError, fmt::format("{}:{}: empty class name", file.string(), line));
    check_class_name((*row)[1], fmt::format("{}:{}", file.string(), line), ExitCode::kDataError);
    map.emplace_back(norm, (*row)[1]);
  }
  if (map.empty()) throw UserError(ExitCode::kDataError, fmt::format("class map {} lists no sources", file.string()));
  // Longest source first so a file entry wins over its folder's entry.
  std::stable_sort(map.begin(), map.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
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
          if (abs == src ||
              (abs.size() > src.size() && abs.compare(0, src.size(), src) == 0 && abs[src.size()] == '/')) {
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
      if (ec)
        throw UserError(ExitCode::kNoInput,
                        fmt::format("cannot list input folder {}: {}", root.path.string(), ec.message()));
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

}  // namespace augment
