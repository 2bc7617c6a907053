#include "stages/emit_stage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <tbb/parallel_for.h>

#include "augment_version.h"
#include "manifests/croissant.h"
#include "manifests/csv.h"
#include "manifests/image_record.h"
#include "manifests/sample_store.h"
#include "pipeline/context.h"
#include "pipeline/errors.h"
#include "pipeline/fs_util.h"
#include "pipeline/hash.h"
#include "pipeline/sha256.h"
#include "pipeline/signals.h"
#include "stages/sample_plan.h"

namespace augment {

using nlohmann::json;

void EmitOptions::bind(OptionBinder<EmitOptions>& b) {
  b.add("real", &EmitOptions::real,
        "how real train images enter the output: link (hard link, copy when linking fails), copy, none (synthetic only)", {},
        {"real", {"link", "copy", "none"}});
  b.add("croissant", &EmitOptions::croissant,
        "also write croissant.json (MLCommons Croissant 1.0: every file with its SHA-256, for dataset catalogues)");
  b.add("synthetic_weight", &EmitOptions::synthetic_weight, "value of the manifests' weight column for synthetic images (real: 1)",
        in_range(0.0, 1e6), {"synthetic-weight", {}});
}

std::string class_folder_name(const std::string& class_name) {
  std::string s = class_name;
  for (auto& ch : s) {
    if (ch == '/' || ch == '\0') ch = '_';
  }
  // A leading dot hides the folder from augment's own scan and from most loaders.
  if (s.empty() || s[0] == '.') s = "_" + s;
  return s;
}

namespace {

// A directory under construction: removed with its content unless released.
class TempTree {
 public:
  explicit TempTree(fs::path p) : path_(std::move(p)) {}
  ~TempTree() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  const fs::path& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  fs::path path_;
};

void write_file(const fs::path& path, const void* data, std::size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    throw UserError(ExitCode::kIoError, fmt::format("cannot create {}: {}{}", path.string(), std::strerror(err), disk_full_hint(err)));
  }
  if (const int err = write_to_fd(fd, data, size); err != 0) {
    ::close(fd);
    throw UserError(ExitCode::kIoError, fmt::format("cannot write {}: {}{}", path.string(), std::strerror(err), disk_full_hint(err)));
  }
  if (::close(fd) != 0) {
    const int err = errno;
    throw UserError(ExitCode::kIoError, fmt::format("cannot write {}: {}{}", path.string(), std::strerror(err), disk_full_hint(err)));
  }
}

void write_text(const fs::path& path, const std::string& text) { write_file(path, text.data(), text.size()); }

// Hard link (following a symlinked source), else false.
bool try_link(const fs::path& src, const fs::path& dst) {
  return ::linkat(AT_FDCWD, src.c_str(), AT_FDCWD, dst.c_str(), AT_SYMLINK_FOLLOW) == 0;
}

void copy_real_file(const fs::path& src, const fs::path& dst) {
  if (const int err = copy_file_new(src, dst); err != 0) {
    if (err == ENOENT) {
      throw UserError(ExitCode::kNoInput, fmt::format("{} has disappeared since it was scanned; rerun `augment run` (scan notices the change) "
                                                      "or use --real none",
                                                      src.string()));
    }
    throw UserError(ExitCode::kIoError, fmt::format("cannot copy {} to {}: {}{}", src.string(), dst.string(), std::strerror(err), disk_full_hint(err)));
  }
}

bool directory_is_empty(const fs::path& dir) {
  std::error_code ec;
  return fs::directory_iterator(dir, ec) == fs::directory_iterator();
}

// The output's marker: which work dir wrote it, and the id of the emit that did.
json read_marker(const fs::path& out) {
  try {
    return json::parse(read_text_file(out / kOutputMarker));
  } catch (const std::exception&) {
    return json::object();
  }
}

// Refuses a folder that is not ours, and ours without --force, unless `replaceable` says the
// folder is this work dir's own and may go (a dead emit's, or the same emit again). `what` names
// it in messages.
void check_output(const fs::path& out, bool force, const std::function<bool(const json& marker)>& replaceable,
                  const std::string& what = "--output") {
  std::error_code ec;
  if (!fs::exists(out, ec)) return;
  if (!fs::is_directory(out, ec)) {
    throw UserError(ExitCode::kCantCreate, fmt::format("{} {} exists and is not a folder; choose another path", what, out.string()));
  }
  if (directory_is_empty(out)) return;
  if (!fs::is_regular_file(out / kOutputMarker, ec)) {
    throw UserError(ExitCode::kCantCreate,
                    fmt::format("{} {} is not empty and was not written by augment (no {} file); augment replaces only its own "
                                "output: choose a new or empty folder",
                                what, out.string(), kOutputMarker));
  }
  if (!force && !replaceable(read_marker(out))) {
    throw UserError(ExitCode::kCantCreate,
                    fmt::format("{} {} holds the output of an earlier emit with other settings or of another work dir; pass --force "
                                "to replace it",
                                what, out.string()));
  }
}

// Temp siblings of `out` left by a killed emit (their process is gone).
void remove_stale_siblings(const fs::path& out) {
  const std::string prefix = "." + out.filename().string() + std::string(kTempMarker);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out.parent_path(), ec)) {
    const auto name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const auto pid = std::atol(name.c_str() + prefix.size());
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) == 0) continue;  // another live emit
    std::error_code rm;
    fs::remove_all(e.path(), rm);
  }
}

// Puts the finished tree at `out`, replacing an empty folder or (after check_output) our own.
void swap_into_place(const fs::path& tmp, const fs::path& out) {
  std::error_code ec;
  if (!fs::exists(out, ec) || directory_is_empty(out)) {
    fs::rename(tmp, out, ec);
    if (ec) throw UserError(ExitCode::kIoError, fmt::format("cannot move {} into place as {}: {}", tmp.string(), out.string(), ec.message()));
  } else if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, out.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(tmp, ec);  // now the old dataset
  } else {
    // File systems without RENAME_EXCHANGE: a short window in which `out` does not exist.
    const auto old = temp_path_for(out);
    fs::rename(out, old, ec);
    if (ec) throw UserError(ExitCode::kIoError, fmt::format("cannot move the old {} aside: {}", out.string(), ec.message()));
    fs::rename(tmp, out, ec);
    if (ec) {
      std::error_code back;
      fs::rename(old, out, back);
      throw UserError(ExitCode::kIoError, fmt::format("cannot move {} into place as {}: {}", tmp.string(), out.string(), ec.message()));
    }
    fs::remove_all(old, ec);
  }
  fsync_directory(out.parent_path());
}

// Flushes everything written under `dir` (one syncfs instead of an fsync per file).
void sync_tree(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  const int rc = ::syncfs(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw UserError(ExitCode::kIoError, fmt::format("cannot flush {} to disk: {}{}", dir.string(), std::strerror(err), disk_full_hint(err)));
}

// Columns of manifest.csv and metadata.jsonl, in order, with their Croissant types.
const std::vector<CroissantColumn> kColumns = {
    {"file_name", "sc:Text", "image path relative to the dataset folder: <class folder>/<real_|synthetic_>name"},
    {"class", "sc:Text", "class name"},
    {"label", "sc:Integer", "class index, in the order of dataset.json's class_names"},
    {"source", "sc:Text", "real or synthetic"},
    {"split", "sc:Text", "split the image belongs to (train)"},
    {"origin", "sc:Text", "real images: the input file it came from"},
    {"seed", "sc:Integer", "synthetic images: the seed the image was generated from"},
    {"sampler", "sc:Text", "synthetic images: the diffusion sampler"},
    {"steps", "sc:Integer", "synthetic images: sampler steps"},
    {"guidance", "sc:Float", "synthetic images: classifier-free guidance scale"},
    {"conditioning", "sc:Text", "synthetic images: conditioning method of the model (none, cbn, ac, cfg)"},
    {"checkpoint", "sc:Text", "synthetic images: fingerprint of the model checkpoint"},
    {"confidence", "sc:Float", "synthetic images: the frozen classifier's probability of the intended class, when filtered"},
    {"tries", "sc:Integer", "synthetic images: draws the classifier filter needed"},
    {"weight", "sc:Float", "training weight: 1 for real images, emit.synthetic_weight for synthetic ones"}};

// The order of metadata.jsonl's rows: real and synthetic evenly mixed, starting with one of each.
// Readers that infer column types from the first block of a JSON-lines file (Hugging Face
// `datasets`, pyarrow) would otherwise type the synthetic-only columns as null from tens of
// thousands of leading real rows and fail on the first synthetic one.
std::vector<std::size_t> mixed_order(const std::vector<json>& rows) {
  std::vector<std::size_t> real, synthetic;
  for (std::size_t i = 0; i < rows.size(); ++i) (rows[i]["source"] == "synthetic" ? synthetic : real).push_back(i);
  std::vector<std::size_t> order;
  std::size_t r = 0, s = 0;
  while (r < real.size() || s < synthetic.size()) {
    // Synthetic next while its share so far is below its share of the whole (after one real row).
    const bool take_synthetic = s < synthetic.size() && (r == real.size() || (r > 0 && s * real.size() <= r * synthetic.size()));
    order.push_back(take_synthetic ? synthetic[s++] : real[r++]);
  }
  return order;
}

std::string csv_cell(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

// Files of the evaluation report (relative, sorted), when `augment evaluate` has written one.
std::vector<std::string> report_files(const Context& ctx) {
  std::vector<std::string> files;
  const auto dir = ctx.dir("evaluate") / "report";
  std::error_code ec;
  if (!fs::is_regular_file(dir / "index.html", ec)) return files;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) files.push_back(fs::relative(it->path(), dir).generic_string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

fs::path report_folder(const fs::path& out) { return folder_beside(out, "_report"); }

// Copies the report into a temp sibling of `dst`, to be swapped into place after the dataset.
void copy_report(const Context& ctx, const std::vector<std::string>& files, const fs::path& tmp) {
  for (const auto& rel : files) {
    const auto src = ctx.dir("evaluate") / "report" / rel, dst = tmp / rel;
    ensure_directory(dst.parent_path());
    if (const int err = copy_file_new(src, dst); err != 0) {
      throw UserError(ExitCode::kIoError, fmt::format("cannot copy {} to {}: {}{}", src.string(), dst.string(), std::strerror(err), disk_full_hint(err)));
    }
  }
}

class EmitStage final : public Stage {
 public:
  std::string name() const override { return "emit"; }
  std::string summary() const override { return "write the augmented image folder with manifests and a dataset card (--output)"; }
  std::vector<std::string> option_scopes() const override { return {"emit", "output"}; }
  std::vector<std::string> inputs(const Context& ctx) const override {
    std::vector<std::string> in = {"subsample/manifest.jsonl", "subsample/classes.json", "sample/plan.json"};
    // Optional: the card carries the evaluation figures when they exist (and goes stale when they appear).
    if (fs::exists(ctx.work() / "evaluate" / "metrics.json")) in.push_back("evaluate/metrics.json");
    for (const auto& f : report_files(ctx)) in.push_back("evaluate/report/" + f);
    for (const auto& j : find_journals(ctx.dir("sample"))) in.push_back("sample/" + j.second.filename().string());
    return in;
  }
  std::vector<std::string> outputs(const Context& ctx) const override {
    std::vector<std::string> out = {"emit/rows.jsonl", "emit/dataset.json"};
    // The folder outside the work dir (absolute paths): deleting or editing it makes emit stale.
    if (!ctx.global().output.empty()) {
      const auto dir = fs::absolute(ctx.global().output).lexically_normal();
      for (const char* f : {"manifest.csv", "metadata.jsonl", "dataset.json"}) out.push_back((dir / f).string());
      if (ctx.options<EmitOptions>().croissant) out.push_back((dir / "croissant.json").string());
      if (!report_files(ctx).empty()) out.push_back((report_folder(dir) / "index.html").string());
    }
    return out;
  }

  // Every image of the output is there at its size; synthetic ones (small) also by content.
  // Real images are not hashed here: they may be gigabytes, and a linked one is the input file,
  // whose changes scan notices.
  std::string verify(const Context& ctx) const override {
    if (ctx.global().output.empty()) return "";
    const fs::path out = fs::absolute(ctx.global().output).lexically_normal();
    std::string text;
    try {
      text = read_text_file(ctx.dir("emit") / "rows.jsonl");
    } catch (const UserError&) {
      return "output missing: emit/rows.jsonl";
    }
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      json row;
      try {
        row = json::parse(line);
      } catch (const std::exception&) {
        return "output modified: emit/rows.jsonl";
      }
      const auto file = out / fs::u8path(row.value("file_name", ""));
      struct stat st;
      if (::stat(file.c_str(), &st) != 0) return "output missing: " + file.string();
      if (row.contains("_bytes") && static_cast<std::uint64_t>(st.st_size) != row["_bytes"].get<std::uint64_t>()) {
        return "output modified: " + file.string();
      }
      if (row.value("source", "") == "synthetic" && hash_file(file) != row.value("_content", "")) return "output modified: " + file.string();
    }
    return "";
  }

  void run(Context& ctx) override {
    const auto o = ctx.options<EmitOptions>();
    const auto& g = ctx.global();
    if (g.output.empty()) {
      throw UserError(ExitCode::kUsage, "emit needs --output DIR: the folder that receives the augmented dataset (new or empty)");
    }
    const fs::path out = fs::absolute(g.output).lexically_normal();
    const auto plan = read_sample_plan(ctx.dir("sample") / "plan.json");
    const auto merged = merge_journals(ctx.dir("sample"), plan);
    const auto classes = read_class_list(ctx.dir("subsample") / "classes.json");
    if (classes.names.size() != plan.classes.size() ||
        !std::equal(classes.names.begin(), classes.names.end(), plan.classes.begin(), [](const auto& n, const auto& c) { return n == c.name; })) {
      throw UserError(ExitCode::kDataError, fmt::format("{} was made for another class list than {}; rerun `augment sample`",
                                                        (ctx.dir("sample") / "plan.json").string(), (ctx.dir("subsample") / "classes.json").string()));
    }
    const auto records = read_records_jsonl(ctx.dir("subsample") / "manifest.jsonl");
    const auto report = report_files(ctx);
    const fs::path report_dir = report_folder(out);
    // An output of this work dir may be replaced without --force when no finished emit stands
    // behind it (a killed emit's) or when it holds the very rows this emit writes (known once the
    // tree is built: the check before the swap decides, the early one only refuses foreign folders).
    json done = read_done(ctx);
    std::string key;
    const auto replaceable = [&](const json& marker) {
      if (marker.value("work", "") != ctx.work().string()) return false;
      const json finished = done["outputs"].value(out.string(), json::object());
      return key.empty() || finished.value("emit_id", "") != marker.value("emit_id", "-") || finished.value("key", "") == key;
    };
    check_output(out, g.force, replaceable);
    if (!report.empty()) check_output(report_dir, g.force, replaceable, "the report folder");
    ensure_directory(out.parent_path());
    remove_stale_siblings(out);
    remove_stale_siblings(report_dir);

    // Folder names, checked for clashes once made safe.
    std::vector<std::string> folders;
    std::map<std::string, std::string> folder_owner;
    for (const auto& name : classes.names) {
      const auto f = class_folder_name(name);
      if (auto [it, ok] = folder_owner.emplace(f, name); !ok) {
        throw UserError(ExitCode::kDataError, fmt::format("classes '{}' and '{}' would share the folder '{}'; rename one (scan.class_map)",
                                                          it->second, name, f));
      }
      folders.push_back(f);
    }

    TempTree tmp(temp_path_for(out));
    ensure_directory(tmp.path());
    for (const auto& f : folders) ensure_directory(tmp.path() / f);

    std::vector<json> rows;  // manifest rows, plus the internal fields export needs
    std::vector<std::int64_t> real_train(classes.names.size(), 0), real_in(classes.names.size(), 0), synthetic(classes.names.size(), 0);
    std::vector<std::int64_t> val(classes.names.size(), 0), test(classes.names.size(), 0);
    std::int64_t linked = 0, copied = 0;
    std::vector<std::set<std::string>> used(classes.names.size());
    std::int64_t total = static_cast<std::int64_t>(merged.accepted.size());
    for (const auto& r : records) total += (o.real != "none" && r.split == "train");
    Progress progress(ctx.report(), "emit", total, "img");

    for (std::size_t row = 0; row < records.size(); ++row) {
      const auto& r = records[row];
      if (r.label < 0 || static_cast<std::size_t>(r.label) >= classes.names.size()) continue;
      const auto c = static_cast<std::size_t>(r.label);
      if (r.split == "val") ++val[c];
      if (r.split == "test") ++test[c];
      if (r.split != "train") continue;
      ++real_train[c];
      if (o.real == "none") continue;
      // real_<original name>, with _2, _3, ... when two source folders held the same name.
      const fs::path orig = fs::path(r.path).filename();
      std::string fname = "real_" + orig.string();
      for (int k = 2; !used[c].insert(fname).second; ++k) fname = fmt::format("real_{}_{}{}", orig.stem().string(), k, orig.extension().string());
      const auto dst = tmp.path() / folders[c] / fname;
      if (o.real == "link" && try_link(r.path, dst)) {
        ++linked;
      } else {
        copy_real_file(r.path, dst);
        ++copied;
      }
      ++real_in[c];
      json j = {{"file_name", folders[c] + "/" + fname}, {"class", classes.names[c]}, {"label", r.label}, {"source", "real"},
                {"split", "train"}, {"origin", r.path}, {"seed", nullptr}, {"sampler", nullptr}, {"steps", nullptr},
                {"guidance", nullptr}, {"conditioning", nullptr}, {"checkpoint", nullptr}, {"confidence", nullptr},
                {"tries", nullptr}, {"weight", 1.0}};
      j["_manifest_row"] = row;
      j["_content"] = r.hash;
      j["_bytes"] = r.bytes;
      rows.push_back(std::move(j));
      progress.advance();
      if (rows.size() % 256 == 0) check_stop();
    }

    for (const auto& e : merged.accepted) {
      const auto c = static_cast<std::size_t>(e.label);
      const auto src = ctx.dir("sample") / e.file;
      std::string bytes;
      try {
        bytes = read_text_file(src);
      } catch (const UserError&) {
        throw UserError(ExitCode::kNoInput, fmt::format("{} is missing, though its journal line says it was written; rerun `augment sample` "
                                                        "to generate it again",
                                                        src.string()));
      }
      if (bytes.size() != e.png_bytes || hash_bytes(bytes.data(), bytes.size()) != e.png_hash) {
        throw UserError(ExitCode::kDataError, fmt::format("{} does not match its journal line (changed after sampling); delete it and rerun "
                                                          "`augment sample` to generate it again",
                                                          src.string()));
      }
      const std::string fname = fmt::format("synthetic_{:06}.png", e.index);
      used[c].insert(fname);
      const auto dst = tmp.path() / folders[c] / fname;
      // A copy, not a link: an edit in the sample store must not reach the dataset unnoticed.
      write_file(dst, bytes.data(), bytes.size());
      ++synthetic[c];
      json j = {{"file_name", folders[c] + "/" + fname},
                {"class", classes.names[c]},
                {"label", e.label},
                {"source", "synthetic"},
                {"split", "train"},
                {"origin", nullptr},
                {"seed", e.seed},
                {"sampler", e.settings.sampler},
                {"steps", e.settings.steps},
                {"guidance", e.settings.guidance},
                {"conditioning", e.settings.conditioning},
                {"checkpoint", e.settings.checkpoint},
                {"confidence", e.confidence ? json(*e.confidence) : json(nullptr)},
                {"tries", e.tries},
                {"weight", o.synthetic_weight}};
      j["_sample_file"] = e.file;
      j["_content"] = e.png_hash;
      j["_bytes"] = e.png_bytes;
      rows.push_back(std::move(j));
      progress.advance();
      if (rows.size() % 256 == 0) check_stop();
    }
    progress.finish();

    // Manifests: one row per image, real first (in manifest order), then synthetic by class and
    // index; metadata.jsonl mixes the two (mixed_order).
    std::vector<std::string> header;
    for (const auto& k : kColumns) header.push_back(k.name);
    std::string csv_text = csv::join_row(header) + "\n", meta_text, rows_text;
    for (const auto& j : rows) {
      std::vector<std::string> cells;
      for (const auto& k : kColumns) cells.push_back(csv_cell(j[k.name]));
      csv_text += csv::join_row(cells) + "\n";
      rows_text += j.dump() + "\n";
    }
    for (const auto i : mixed_order(rows)) {
      json meta = json::object();
      for (const auto& k : kColumns) meta[k.name] = rows[i][k.name];
      meta_text += meta.dump() + "\n";
    }
    write_text(tmp.path() / "manifest.csv", csv_text);
    write_text(tmp.path() / "metadata.jsonl", meta_text);

    json card = dataset_card(ctx, o, plan, merged, classes.names, folders, real_train, real_in, synthetic, val, test);
    if (!report.empty()) card["report"] = "../" + report_dir.filename().string() + "/index.html";
    const std::string card_text = card.dump(2) + "\n";
    write_text(tmp.path() / "dataset.json", card_text);
    if (o.croissant) write_croissant(ctx, tmp.path(), card["name"].get<std::string>(), rows);
    std::random_device random;
    const std::string emit_id = fmt::format("{:08x}{:08x}{:08x}{:08x}", random(), random(), random(), random());
    const json marker = {{"written_by", "augment"}, {"version", AUGMENT_VERSION}, {"work", ctx.work().string()}, {"emit_id", emit_id},
                         {"created", iso_time_now()}};
    write_text(tmp.path() / kOutputMarker, marker.dump(2) + "\n");
    TempTree report_tmp(report.empty() ? fs::path() : temp_path_for(report_dir));
    if (!report.empty()) {
      ensure_directory(report_tmp.path());
      copy_report(ctx, report, report_tmp.path());
      write_text(report_tmp.path() / kOutputMarker, marker.dump(2) + "\n");
    }
    sync_tree(tmp.path());
    check_stop();

    key = hash_text(rows_text);  // every image with its content hash, name, label and columns
    check_output(out, g.force, replaceable);
    if (!report.empty()) check_output(report_dir, g.force, replaceable, "the report folder");
    swap_into_place(tmp.path(), out);
    tmp.release();
    if (!report.empty()) {
      swap_into_place(report_tmp.path(), report_dir);
      report_tmp.release();
    }
    write_text_atomically(ctx.dir("emit") / "rows.jsonl", rows_text);
    write_text_atomically(ctx.dir("emit") / "dataset.json", card_text);
    done["outputs"][out.string()] = {{"emit_id", emit_id}, {"key", key}};
    write_text_atomically(done_path(ctx), done.dump(2) + "\n");

    std::int64_t n_real = 0, n_syn = 0;
    for (std::size_t c = 0; c < classes.names.size(); ++c) {
      n_real += real_in[c];
      n_syn += synthetic[c];
    }
    ctx.report().info(fmt::format("{}: {} real ({} linked, {} copied) + {} synthetic images in {} classes", out.string(), n_real, linked, copied,
                                  n_syn, classes.names.size()));
    if (o.real == "link" && copied > 0 && linked == 0) {
      ctx.report().info("real images were copied: the output is on another file system than the input (hard links need the same one)");
    }
  }

 private:
  // croissant.json: every file of the folder (images and manifests) with its size and SHA-256.
  static void write_croissant(const Context& ctx, const fs::path& dir, const std::string& name, const std::vector<json>& rows) {
    std::vector<CroissantFile> files(rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) files[i].path = rows[i]["file_name"].get<std::string>();
    for (const char* f : {"manifest.csv", "metadata.jsonl", "dataset.json"}) files.push_back({f, "", 0});
    const auto t0 = std::chrono::steady_clock::now();
    tbb::parallel_for(std::size_t(0), files.size(), [&](std::size_t i) {
      const auto p = dir / fs::u8path(files[i].path);
      files[i].sha256 = sha256_file(p);
      files[i].bytes = fs::file_size(p);
    });
    check_stop();
    CroissantDataset d{name, "image-folder dataset augmented with class-conditional diffusion samples by augment", iso_time_now(),
                       std::move(files), "manifest.csv", kColumns};
    write_text(dir / "croissant.json", croissant_document(d).dump(1) + "\n");
    ctx.report().info(fmt::format("croissant.json: SHA-256 of {} files in {:.1f} s", d.files.size(),
                                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));
  }

  // emit/done.json: per output folder, the id and key of the last emit that finished there,
  // written once its output is in place (the runner's record is removed when emit starts again).
  static fs::path done_path(const Context& ctx) { return ctx.dir("emit") / "done.json"; }
  static json read_done(const Context& ctx) {
    json done;
    try {
      done = json::parse(read_text_file(done_path(ctx)));
    } catch (const std::exception&) {
      done = json::object();
    }
    if (!done.contains("outputs") || !done["outputs"].is_object()) done["outputs"] = json::object();
    return done;
  }
  static json dataset_card(const Context& ctx, const EmitOptions& o, const SamplePlan& plan, const MergedSamples& merged,
                           const std::vector<std::string>& names, const std::vector<std::string>& folders,
                           const std::vector<std::int64_t>& real_train, const std::vector<std::int64_t>& real_in,
                           const std::vector<std::int64_t>& synthetic, const std::vector<std::int64_t>& val,
                           const std::vector<std::int64_t>& test) {
    json classes = json::array();
    std::vector<std::int64_t> rejected(names.size(), 0);
    for (const auto& e : merged.rejected) ++rejected[static_cast<std::size_t>(e.label)];
    std::int64_t before = 0, after = 0;
    for (std::size_t c = 0; c < names.size(); ++c) {
      classes.push_back({{"name", names[c]},
                         {"label", c},
                         {"folder", folders[c]},
                         {"before", {{"train", real_train[c]}, {"val", val[c]}, {"test", test[c]}}},
                         {"planned_synthetic", plan.classes[c].synthetic},
                         {"synthetic", synthetic[c]},
                         {"filter_gave_up", rejected[c]},
                         {"after", {{"real", real_in[c]}, {"synthetic", synthetic[c]}, {"total", real_in[c] + synthetic[c]},
                                    {"train_total", real_train[c] + synthetic[c]}}}});
      before += real_train[c];
      after += real_in[c] + synthetic[c];
    }
    json evaluation = nullptr;
    const auto metrics = ctx.dir("evaluate") / "metrics.json";
    std::error_code ec;
    if (fs::exists(metrics, ec)) {
      try {
        evaluation = json::parse(read_text_file(metrics));
      } catch (const std::exception& e) {
        ctx.report().warn(fmt::format("{} is not valid JSON ({}); the dataset card has no evaluation figures", metrics.string(), e.what()));
      }
    }
    const auto so = ctx.options<SampleOptions>();
    json files = {{"manifest", "manifest.csv"}, {"metadata", "metadata.jsonl"}};
    if (o.croissant) files["croissant"] = "croissant.json";
    return {{"name", fs::absolute(ctx.global().output).lexically_normal().filename().string()},
            {"description", "image-folder dataset augmented with class-conditional diffusion samples by augment"},
            {"created", iso_time_now()},
            {"class_names", names},
            {"classes", classes},
            {"totals", {{"real_train_before", before}, {"images_after", after}}},
            {"policy", plan.policy},
            {"real_images", o.real},
            {"synthetic_weight", o.synthetic_weight},
            {"generation",
             {{"sampler", merged.settings.sampler},
              {"steps", merged.settings.steps},
              {"guidance", merged.settings.guidance},
              {"conditioning", merged.settings.conditioning},
              {"checkpoint", merged.settings.checkpoint},
              {"resolution", merged.settings.resolution},
              {"channels", merged.settings.channels},
              {"seed", merged.run_seed},
              {"shards", merged.shard_count},
              {"min_confidence", so.min_confidence},
              {"max_tries", so.max_tries}}},
            {"files", files},
            {"versions", {{"augment", AUGMENT_VERSION}, {"git", AUGMENT_GIT_REVISION}}},
            {"evaluation", evaluation}};
  }
};

}  // namespace

std::unique_ptr<Stage> make_emit_stage() { return std::make_unique<EmitStage>(); }

}  // namespace augment
