#include "stages/emit_stage.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
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
#include <tbb/parallel_for.h>
#include <nlohmann/json.hpp>

#include "augment_version.h"
#include "manifests/croissant.h"
#include "manifests/dataset_card.h"
#include "manifests/dataset_rows.h"
#include "manifests/image_record.h"
#include "manifests/sample_store.h"
#include "pipeline/base/csv.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/hash.h"
#include "pipeline/base/sha256.h"
#include "pipeline/base/signals.h"
#include "pipeline/context.h"
#include "pipeline/work_paths.h"
#include "stages/output_folder.h"
#include "stages/sample_plan.h"

namespace augment {

using nlohmann::json;

void EmitOptions::bind(OptionBinder<EmitOptions>& b) {
  b.add(
      "real", &EmitOptions::real,
      "how real train images enter the output: link (hard link, copy when linking fails), copy, none (synthetic only)",
      {}, kField.with_alias("real").with_choices({"link", "copy", "none"}));
  b.add("croissant", &EmitOptions::croissant,
        "also write croissant.json (MLCommons Croissant 1.0: every file with its SHA-256, for dataset catalogues)");
  b.add("synthetic_weight", &EmitOptions::synthetic_weight,
        "value of the manifests' weight column for synthetic images (real: 1)", in_range(0.0, 1e6),
        {"synthetic-weight", {}});
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

void copy_real_file(const fs::path& src, const fs::path& dst) {
  if (const int err = copy_file_new(src, dst); err != 0) {
    if (err == ENOENT) {
      throw UserError(
          ExitCode::kNoInput,
          fmt::format("{} has disappeared since it was scanned; rerun `augment run` (scan notices the change) "
                      "or use --real none",
                      src.string()));
    }
    throw UserError(ExitCode::kIoError, fmt::format("cannot copy {} to {}: {}{}", src.string(), dst.string(),
                                                    std::strerror(err), disk_full_hint(err)));
  }
}

// Files of the evaluation report (relative, sorted), when `augment evaluate` has written one.
std::vector<std::string> report_files(const Context& ctx) {
  std::vector<std::string> files;
  const auto dir = ctx.path(work_file::kEvaluateReport);
  std::error_code ec;
  if (!fs::is_regular_file(dir / "index.html", ec)) return files;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file(ec)) files.push_back(fs::relative(it->path(), dir).generic_string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

fs::path report_folder(const fs::path& out) { return folder_beside(out, "_report"); }

// Copies the report into a temp sibling of `dst`, to be swapped into place after the dataset.
void copy_report(const Context& ctx, const std::vector<std::string>& files, const fs::path& tmp) {
  for (const auto& rel : files) {
    const auto src = ctx.path(work_file::kEvaluateReport) / rel, dst = tmp / rel;
    ensure_directory(dst.parent_path());
    if (const int err = copy_file_new(src, dst); err != 0) {
      throw UserError(ExitCode::kIoError, fmt::format("cannot copy {} to {}: {}{}", src.string(), dst.string(),
                                                      std::strerror(err), disk_full_hint(err)));
    }
  }
}

void check_class_lists(const Context& ctx, const SamplePlan& plan, const ClassList& classes) {
  if (classes.names.size() != plan.classes.size() ||
      !std::equal(classes.names.begin(), classes.names.end(), plan.classes.begin(),
                  [](const auto& n, const auto& c) { return n == c.name; })) {
    throw UserError(
        ExitCode::kDataError,
        fmt::format("{} was made for another class list than {}; rerun `augment sample`",
                    (ctx.path(work_file::kSamplePlan)).string(), (ctx.path(work_file::kSubsampleClasses)).string()));
  }
}

// Folder names, checked for clashes once made safe.
std::vector<std::string> class_folders(const std::vector<std::string>& names) {
  std::vector<std::string> folders;
  std::map<std::string, std::string> folder_owner;
  for (const auto& name : names) {
    const auto f = class_folder_name(name);
    if (auto [it, ok] = folder_owner.emplace(f, name); !ok) {
      throw UserError(ExitCode::kDataError,
                      fmt::format("classes '{}' and '{}' would share the folder '{}'; rename one (scan.class_map)",
                                  it->second, name, f));
    }
    folders.push_back(f);
  }
  return folders;
}

// The images of the output as they are gathered into its temp tree `root`, one folder per class.
struct Assembly {
  Assembly(fs::path tree, const std::vector<std::string>& class_names)
      : root(std::move(tree)),
        names(class_names),
        folders(class_folders(class_names)),
        tally(class_names.size()),
        used(class_names.size()) {
    ensure_directory(root);
    for (const auto& f : folders) ensure_directory(root / f);
  }
  const fs::path root;
  const std::vector<std::string>& names;
  const std::vector<std::string> folders;
  std::vector<json> rows;  // manifest rows, plus the internal fields export needs
  std::vector<ClassTally> tally;
  std::vector<std::set<std::string>> used;  // file names taken per class folder
  std::int64_t linked = 0, copied = 0;
};

// The real training images, linked or copied; every record counts toward the class tally.
void add_real_images(Assembly& a, const std::vector<ImageRecord>& records, const EmitOptions& o, Progress& progress) {
  for (std::size_t row = 0; row < records.size(); ++row) {
    const auto& r = records[row];
    if (r.label < 0 || static_cast<std::size_t>(r.label) >= a.names.size()) continue;
    const auto c = static_cast<std::size_t>(r.label);
    if (r.split == "val") ++a.tally[c].val;
    if (r.split == "test") ++a.tally[c].test;
    if (r.split != "train") continue;
    ++a.tally[c].real_train;
    if (o.real == "none") continue;
    // real_<original name>, with _2, _3, ... when two source folders held the same name.
    const fs::path orig = fs::path(r.path).filename();
    std::string fname = "real_" + orig.string();
    for (int k = 2; !a.used[c].insert(fname).second; ++k)
      fname = fmt::format("real_{}_{}{}", orig.stem().string(), k, orig.extension().string());
    const auto dst = a.root / a.folders[c] / fname;
    if (o.real == "link" && try_link(r.path, dst)) {
      ++a.linked;
    } else {
      copy_real_file(r.path, dst);
      ++a.copied;
    }
    ++a.tally[c].real_in;
    a.rows.push_back(real_dataset_row(a.folders[c] + "/" + fname, a.names[c], r.label, r.path, row, r.hash, r.bytes));
    progress.advance();
    if (a.rows.size() % 256 == 0) check_stop();
  }
}

// The synthetic images of the journals, copied from the sample store after checking each
// against its journal line.
void add_synthetic_images(Assembly& a, const Context& ctx, const MergedSamples& merged, const EmitOptions& o,
                          Progress& progress) {
  for (const auto& e : merged.accepted) {
    const auto c = static_cast<std::size_t>(e.label);
    const auto src = ctx.dir("sample") / e.file;
    std::string bytes;
    try {
      bytes = read_text_file(src);
    } catch (const UserError&) {
      throw UserError(ExitCode::kNoInput,
                      fmt::format("{} is missing, though its journal line says it was written; rerun `augment sample` "
                                  "to generate it again",
                                  src.string()));
    }
    if (bytes.size() != e.png_bytes || hash_bytes(bytes.data(), bytes.size()) != e.png_hash) {
      throw UserError(ExitCode::kDataError,
                      fmt::format("{} does not match its journal line (changed after sampling); delete it and rerun "
                                  "`augment sample` to generate it again",
                                  src.string()));
    }
    const std::string fname = fmt::format("synthetic_{:06}.png", e.index);
    a.used[c].insert(fname);
    const auto dst = a.root / a.folders[c] / fname;
    // A copy, not a link: an edit in the sample store must not reach the dataset unnoticed.
    write_new_file(dst, bytes.data(), bytes.size());
    ++a.tally[c].synthetic;
    a.rows.push_back(synthetic_dataset_row(a.folders[c] + "/" + fname, a.names[c], e, o.synthetic_weight));
    progress.advance();
    if (a.rows.size() % 256 == 0) check_stop();
  }
}

json output_marker(const Context& ctx, const std::string& emit_id) {
  return {{"written_by", "augment"},
          {"version", AUGMENT_VERSION},
          {"work", ctx.work().string()},
          {"emit_id", emit_id},
          {"created", iso_time_now()}};
}

void report_counts(const Context& ctx, const fs::path& out, const Assembly& a, const EmitOptions& o) {
  std::int64_t n_real = 0, n_syn = 0;
  for (const auto& t : a.tally) {
    n_real += t.real_in;
    n_syn += t.synthetic;
  }
  ctx.report().info(fmt::format("{}: {} real ({} linked, {} copied) + {} synthetic images in {} classes", out.string(),
                                n_real, a.linked, a.copied, n_syn, a.names.size()));
  if (o.real == "link" && a.copied > 0 && a.linked == 0) {
    ctx.report().info(
        "real images were copied: the output is on another file system than the input (hard links need the same "
        "one)");
  }
}

class EmitStage final : public Stage {
 public:
  std::string name() const override { return "emit"; }
  std::string summary() const override {
    return "write the augmented image folder with manifests and a dataset card (--output)";
  }
  std::vector<std::string> option_scopes() const override { return {"emit", "output"}; }
  std::vector<std::string> inputs(const Context& ctx) const override {
    std::vector<std::string> in = {work_file::kSubsampleManifest, work_file::kSubsampleClasses, work_file::kSamplePlan};
    // Optional: the card carries the evaluation figures when they exist (and goes stale when they appear).
    if (fs::exists(ctx.path(work_file::kEvaluateMetrics))) in.push_back(work_file::kEvaluateMetrics);
    for (const auto& f : report_files(ctx)) in.push_back(work_file::report_file(f));
    for (const auto& j : find_journals(ctx.dir("sample")))
      in.push_back(work_file::sample_file(j.second.filename().string()));
    return in;
  }
  std::vector<std::string> outputs(const Context& ctx) const override {
    std::vector<std::string> out = {work_file::kEmitRows, work_file::kEmitCard};
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
    std::vector<EmittedRow> rows;
    try {
      rows = read_emitted_rows(ctx.path(work_file::kEmitRows));
    } catch (const UserError& e) {
      return e.code() == ExitCode::kNoInput ? "output missing: emit/rows.jsonl" : "output modified: emit/rows.jsonl";
    }
    for (const auto& row : rows) {
      const auto file = out / fs::u8path(row.file_name);
      struct stat st;
      if (::stat(file.c_str(), &st) != 0) return "output missing: " + file.string();
      if (row.bytes && static_cast<std::uint64_t>(st.st_size) != *row.bytes) return "output modified: " + file.string();
      if (row.synthetic && hash_file(file) != row.content) return "output modified: " + file.string();
    }
    return "";
  }

  void run(Context& ctx) override {
    const auto o = ctx.options<EmitOptions>();
    const auto& g = ctx.global();
    if (g.output.empty()) {
      throw UserError(ExitCode::kUsage,
                      "emit needs --output DIR: the folder that receives the augmented dataset (new or empty)");
    }
    const fs::path out = fs::absolute(g.output).lexically_normal();
    const auto plan = read_sample_plan(ctx.path(work_file::kSamplePlan));
    const auto merged = merge_journals(ctx.dir("sample"), plan);
    const auto classes = read_class_list(ctx.path(work_file::kSubsampleClasses));
    check_class_lists(ctx, plan, classes);
    const auto records = read_records_jsonl(ctx.path(work_file::kSubsampleManifest));
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
      return key.empty() || finished.value("emit_id", "") != marker.value("emit_id", "-") ||
             finished.value("key", "") == key;
    };
    check_output(out, g.force, replaceable);
    if (!report.empty()) check_output(report_dir, g.force, replaceable, "the report folder");
    ensure_directory(out.parent_path());
    remove_stale_siblings(out);
    remove_stale_siblings(report_dir);

    TempTree tmp(temp_path_for(out));
    Assembly a(tmp.path(), classes.names);
    std::int64_t total = static_cast<std::int64_t>(merged.accepted.size());
    for (const auto& r : records) total += (o.real != "none" && r.split == "train");
    Progress progress(ctx.report(), "emit", total, "img");
    add_real_images(a, records, o, progress);
    add_synthetic_images(a, ctx, merged, o, progress);
    progress.finish();

    // Manifests: one row per image, real first (in manifest order), then synthetic by class and
    // index; metadata.jsonl mixes the two (mixed_order).
    const auto files = dataset_row_files(a.rows);
    write_new_text(tmp.path() / "manifest.csv", files.manifest_csv);
    write_new_text(tmp.path() / "metadata.jsonl", files.metadata_jsonl);

    const auto so = ctx.options<SampleOptions>();
    json card = dataset_card({out.filename().string(), classes.names, a.folders, a.tally, &plan, &merged, o.real,
                              o.synthetic_weight, so.min_confidence, so.max_tries, o.croissant, read_evaluation(ctx)});
    if (!report.empty()) card["report"] = "../" + report_dir.filename().string() + "/index.html";
    const std::string card_text = card.dump(2) + "\n";
    write_new_text(tmp.path() / "dataset.json", card_text);
    if (o.croissant) write_croissant(ctx, tmp.path(), card["name"].get<std::string>(), a.rows);
    std::random_device random;
    const std::string emit_id = fmt::format("{:08x}{:08x}{:08x}{:08x}", random(), random(), random(), random());
    const json marker = output_marker(ctx, emit_id);
    write_new_text(tmp.path() / kOutputMarker, marker.dump(2) + "\n");
    TempTree report_tmp(report.empty() ? fs::path() : temp_path_for(report_dir));
    if (!report.empty()) {
      ensure_directory(report_tmp.path());
      copy_report(ctx, report, report_tmp.path());
      write_new_text(report_tmp.path() / kOutputMarker, marker.dump(2) + "\n");
    }
    sync_tree(tmp.path());
    check_stop();

    key = hash_text(files.rows_jsonl);  // every image with its content hash, name, label and columns
    check_output(out, g.force, replaceable);
    if (!report.empty()) check_output(report_dir, g.force, replaceable, "the report folder");
    replace_directory(tmp.path(), out);
    tmp.release();
    if (!report.empty()) {
      replace_directory(report_tmp.path(), report_dir);
      report_tmp.release();
    }
    write_text_atomically(ctx.path(work_file::kEmitRows), files.rows_jsonl);
    write_text_atomically(ctx.path(work_file::kEmitCard), card_text);
    done["outputs"][out.string()] = {{"emit_id", emit_id}, {"key", key}};
    write_text_atomically(done_path(ctx), done.dump(2) + "\n");

    report_counts(ctx, out, a, o);
  }

 private:
  // croissant.json: every file of the folder (images and manifests) with its size and SHA-256.
  static void write_croissant(const Context& ctx, const fs::path& dir, const std::string& name,
                              const std::vector<json>& rows) {
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
    CroissantDataset d{
        name,           "image-folder dataset augmented with class-conditional diffusion samples by augment",
        iso_time_now(), std::move(files),
        "manifest.csv", dataset_columns()};
    write_new_text(dir / "croissant.json", croissant_document(d).dump(1) + "\n");
    ctx.report().info(fmt::format("croissant.json: SHA-256 of {} files in {:.1f} s", d.files.size(),
                                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));
  }

  // emit/done.json: per output folder, the id and key of the last emit that finished there,
  // written once its output is in place (the runner's record is removed when emit starts again).
  static fs::path done_path(const Context& ctx) { return ctx.path(work_file::kEmitDone); }
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
  // evaluate's metrics for the card, when evaluate has run.
  static json read_evaluation(const Context& ctx) {
    json evaluation = nullptr;
    const auto metrics = ctx.path(work_file::kEvaluateMetrics);
    std::error_code ec;
    if (fs::exists(metrics, ec)) {
      try {
        evaluation = json::parse(read_text_file(metrics));
      } catch (const std::exception& e) {
        ctx.report().warn(fmt::format("{} is not valid JSON ({}); the dataset card has no evaluation figures",
                                      metrics.string(), e.what()));
      }
    }
    return evaluation;
  }
};

}  // namespace

std::unique_ptr<Stage> make_emit_stage() { return std::make_unique<EmitStage>(); }

}  // namespace augment
