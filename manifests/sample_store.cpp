#include "manifests/sample_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <regex>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"
#include "pipeline/base/hash.h"

namespace augment {

using nlohmann::json;

std::string SamplingSettings::key() const {
  return hash_text(fmt::format("{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}", sampler, steps, eta,
                               clip, guidance, conditioning, checkpoint, resolution, channels, guided_from, guided_to));
}

std::string sample_image_relpath(int label, std::int64_t index) {
  return fmt::format("images/{:03}/{:06}.png", label, index);
}

fs::path journal_path(const fs::path& sample_dir, const ShardSpec& shard) {
  return sample_dir / fmt::format("journal-{}.jsonl", shard.label());
}

std::vector<std::pair<ShardSpec, fs::path>> find_journals(const fs::path& sample_dir) {
  std::vector<std::pair<ShardSpec, fs::path>> out;
  std::error_code ec;
  if (!fs::is_directory(sample_dir, ec)) return out;
  static const std::regex pattern(R"(journal-(\d+)-of-(\d+)\.jsonl)");
  for (const auto& e : fs::directory_iterator(sample_dir, ec)) {
    std::smatch m;
    const auto name = e.path().filename().string();
    if (!std::regex_match(name, m, pattern)) continue;
    ShardSpec s{std::stoi(m[1]), std::stoi(m[2])};
    out.emplace_back(s, e.path());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.first.count != b.first.count ? a.first.count < b.first.count : a.first.index < b.first.index;
  });
  return out;
}

json sampling_settings_json(const SamplingSettings& s, std::initializer_list<std::string_view> fields) {
  json j = json::object();
  for (const auto f : fields) {
    const std::string k(f);
    if (k == "sampler")
      j[k] = s.sampler;
    else if (k == "steps")
      j[k] = s.steps;
    else if (k == "eta")
      j[k] = s.eta;
    else if (k == "clip")
      j[k] = s.clip;
    else if (k == "guidance")
      j[k] = s.guidance;
    else if (k == "guidance_interval")
      j[k] = {s.guided_from, s.guided_to};
    else if (k == "conditioning")
      j[k] = s.conditioning;
    else if (k == "checkpoint")
      j[k] = s.checkpoint;
    else if (k == "resolution")
      j[k] = s.resolution;
    else if (k == "channels")
      j[k] = s.channels;
    else
      throw std::invalid_argument("sampling_settings_json: unknown field " + k);
  }
  return j;
}

namespace {

json entry_to_json(const JournalEntry& e) {
  json j = {{"class", e.class_name},
            {"label", e.label},
            {"index", e.index},
            {"seed", e.seed},
            {"tries", e.tries},
            {"status", e.accepted ? "accepted" : "rejected"},
            {"confidence", e.confidence ? json(*e.confidence) : json(nullptr)},
            {"run_seed", e.run_seed},
            {"file", e.file.empty() ? json(nullptr) : json(e.file)},
            {"png_bytes", e.png_bytes},
            {"png_hash", e.png_hash}};
  j.update(sampling_settings_json(e.settings, {"sampler", "steps", "eta", "clip", "guidance", "guidance_interval",
                                               "conditioning", "checkpoint", "resolution", "channels"}));
  return j;
}

JournalEntry entry_from_json(const json& j) {
  JournalEntry e;
  e.class_name = j.at("class").get<std::string>();
  e.label = j.at("label").get<int>();
  e.index = j.at("index").get<std::int64_t>();
  e.seed = j.at("seed").get<std::uint64_t>();
  e.tries = j.at("tries").get<int>();
  const auto status = j.at("status").get<std::string>();
  if (status != "accepted" && status != "rejected") throw std::runtime_error("status must be accepted or rejected");
  e.accepted = status == "accepted";
  if (!j.at("confidence").is_null()) e.confidence = j.at("confidence").get<double>();
  e.settings.sampler = j.at("sampler").get<std::string>();
  e.settings.steps = j.at("steps").get<std::int64_t>();
  e.settings.eta = j.value("eta", 0.0);
  e.settings.clip = j.value("clip", true);
  e.settings.guidance = j.at("guidance").get<double>();
  if (j.contains("guidance_interval")) {
    e.settings.guided_from = j.at("guidance_interval").at(0).get<double>();
    e.settings.guided_to = j.at("guidance_interval").at(1).get<double>();
  }
  e.settings.conditioning = j.at("conditioning").get<std::string>();
  e.settings.checkpoint = j.at("checkpoint").get<std::string>();
  e.settings.resolution = j.at("resolution").get<int>();
  e.settings.channels = j.at("channels").get<int>();
  e.run_seed = j.at("run_seed").get<std::uint64_t>();
  if (!j.at("file").is_null()) e.file = j.at("file").get<std::string>();
  e.png_bytes = j.at("png_bytes").get<std::uint64_t>();
  e.png_hash = j.at("png_hash").get<std::string>();
  if (e.accepted && e.file.empty()) throw std::runtime_error("accepted entry without a file");
  return e;
}

}  // namespace

ParsedJournal parse_journal(const fs::path& path) {
  ParsedJournal out;
  std::error_code ec;
  if (!fs::exists(path, ec)) return out;
  const std::string text = read_text_file(path);
  out.total_bytes = text.size();
  std::size_t pos = 0;
  int lineno = 0;
  std::string first_bad;  // a damaged line: fatal only when a valid line follows it
  while (pos < text.size()) {
    ++lineno;
    const auto nl = text.find('\n', pos);
    const bool complete = nl != std::string::npos;
    const std::string line = text.substr(pos, complete ? nl - pos : std::string::npos);
    const std::size_t next = complete ? nl + 1 : text.size();
    if (line.empty() && complete) {
      pos = next;
      continue;
    }
    bool ok = false;
    std::string why;
    if (complete) {
      try {
        out.entries.push_back(entry_from_json(json::parse(line)));
        ok = true;
      } catch (const std::exception& e) {
        why = e.what();
      }
    } else {
      why = "cut short";
    }
    if (ok) {
      if (!first_bad.empty()) {
        throw UserError(
            ExitCode::kDataError,
            fmt::format("{}: damaged line {} before valid ones; the journal was edited or the disk is failing. "
                        "Remove the line (its image will be generated again) or delete the journal",
                        path.string(), first_bad));
      }
      out.valid_bytes = next;
    } else if (first_bad.empty()) {
      first_bad = fmt::format("{} ({})", lineno, why);
    }
    pos = next;
  }
  return out;
}

JournalWriter::JournalWriter(const fs::path& path, std::uint64_t valid_bytes) : path_(path) {
  ensure_directory(path.parent_path());
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw UserError(ExitCode::kCantCreate, fmt::format("cannot open {}: {}", path.string(), std::strerror(errno)));
  if (::ftruncate(fd_, static_cast<off_t>(valid_bytes)) != 0 || ::lseek(fd_, 0, SEEK_END) < 0) {
    const int err = errno;
    ::close(fd_);
    throw UserError(ExitCode::kIoError, fmt::format("cannot repair {}: {}", path.string(), std::strerror(err)));
  }
}

JournalWriter::~JournalWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void JournalWriter::append(const std::vector<JournalEntry>& entries) {
  if (entries.empty()) return;
  std::string text;
  for (const auto& e : entries) text += entry_to_json(e).dump() + "\n";
  if (const int err = write_to_fd(fd_, text.data(), text.size()); err != 0) {
    throw UserError(ExitCode::kIoError,
                    fmt::format("cannot write {}: {}{}", path_.string(), std::strerror(err), disk_full_hint(err)));
  }
  if (::fsync(fd_) != 0)
    throw UserError(ExitCode::kIoError, fmt::format("cannot sync {}: {}", path_.string(), std::strerror(errno)));
}

bool png_matches(const fs::path& sample_dir, const JournalEntry& e) {
  std::vector<std::uint8_t> bytes;
  if (!read_file_bytes(sample_dir / e.file, bytes)) return false;
  return bytes.size() == e.png_bytes && hash_bytes(bytes.data(), bytes.size()) == e.png_hash;
}

std::string damaged_sample(const fs::path& sample_dir, const SamplePlan& plan, const std::vector<fs::path>& journals) {
  for (const auto& path : journals) {
    std::map<SampleItem, JournalEntry> last;
    try {
      for (auto& e : read_journal(path)) last[SampleItem{e.label, e.index}] = std::move(e);
    } catch (const UserError&) {
      return "output modified: " + path.string();
    }
    for (const auto& [item, e] : last) {
      if (!e.accepted || item.label < 0 || static_cast<std::size_t>(item.label) >= plan.classes.size() ||
          item.index >= plan.classes[static_cast<std::size_t>(item.label)].synthetic) {
        continue;
      }
      if (!png_matches(sample_dir, e)) return "output missing or modified: " + (sample_dir / e.file).string();
    }
  }
  return "";
}

std::vector<JournalEntry> read_journal(const fs::path& path, std::uint64_t* torn_bytes) {
  auto parsed = parse_journal(path);
  if (torn_bytes) *torn_bytes = parsed.total_bytes - parsed.valid_bytes;
  return std::move(parsed.entries);
}

std::vector<std::uint8_t> encode_png(const std::uint8_t* pixels, int resolution, int channels) {
  cv::Mat img(resolution, resolution, channels == 1 ? CV_8UC1 : CV_8UC3, const_cast<std::uint8_t*>(pixels));
  cv::Mat bgr;
  if (channels == 3)
    cv::cvtColor(img, bgr, cv::COLOR_RGB2BGR);
  else
    bgr = img;
  std::vector<std::uint8_t> out;
  if (!cv::imencode(".png", bgr, out, {cv::IMWRITE_PNG_COMPRESSION, 6}))
    throw std::runtime_error("PNG encoding failed");
  return out;
}

std::string decode_png(const std::vector<std::uint8_t>& png, int resolution, int channels, std::uint8_t* out) {
  cv::Mat img;
  try {
    img = cv::imdecode(png, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    return fmt::format("cannot be decoded ({})", e.what());
  }
  if (img.empty()) return "cannot be decoded as PNG";
  if (img.depth() != CV_8U) return "is not an 8-bit image";
  if (img.rows != resolution || img.cols != resolution) {
    return fmt::format("is {}x{}, expected {}x{} (the cache resolution)", img.cols, img.rows, resolution, resolution);
  }
  if (img.channels() != channels) return fmt::format("has {} channels, expected {}", img.channels(), channels);
  cv::Mat dst(resolution, resolution, channels == 1 ? CV_8UC1 : CV_8UC3, out);
  if (channels == 3)
    cv::cvtColor(img, dst, cv::COLOR_BGR2RGB);
  else
    img.copyTo(dst);
  return "";
}

}  // namespace augment

namespace augment {

MergedSamples merge_journals(const fs::path& sample_dir, const SamplePlan& plan) {
  const auto journals = find_journals(sample_dir);
  if (journals.empty()) {
    throw UserError(
        ExitCode::kNoInput,
        fmt::format("no samples: run `augment sample` first (no journal-K-of-N.jsonl in {})", sample_dir.string()));
  }
  MergedSamples out;
  out.shard_count = journals.front().first.count;
  for (const auto& [spec, path] : journals) {
    if (spec.count != out.shard_count) {
      std::string names;
      for (const auto& j : journals) names += (names.empty() ? "" : ", ") + j.second.filename().string();
      throw UserError(
          ExitCode::kDataError,
          fmt::format(
              "{} holds journals of different shard counts ({}): keep the journals of one sampling run "
              "(delete the others, with their images if unsure) and rerun `augment sample` with one --shard count",
              sample_dir.string(), names));
    }
    out.journals.push_back(path);
  }
  for (int k = 0; k < out.shard_count; ++k) {
    const bool present =
        std::any_of(journals.begin(), journals.end(), [&](const auto& j) { return j.first.index == k; });
    if (!present) {
      throw UserError(ExitCode::kNoInput,
                      fmt::format("shard {} of {} is missing (no {}): run `augment sample --shard {}/{}` to produce it",
                                  k, out.shard_count, journal_path(sample_dir, ShardSpec{k, out.shard_count}).string(),
                                  k, out.shard_count));
    }
  }
  // The last line of an item within a journal wins (an item regenerated after a settings change).
  std::map<SampleItem, std::pair<JournalEntry, fs::path>> items;
  std::string settings_key;
  fs::path settings_from;
  for (const auto& [spec, path] : journals) {
    std::map<SampleItem, JournalEntry> last;
    for (auto& e : read_journal(path)) last[SampleItem{e.label, e.index}] = std::move(e);
    for (auto& [item, e] : last) {
      if (item.label < 0 || static_cast<std::size_t>(item.label) >= plan.classes.size() ||
          item.index >= plan.classes[static_cast<std::size_t>(item.label)].synthetic) {
        continue;  // beyond the current plan (the policy asked for more before): not part of the dataset
      }
      const auto& cls = plan.classes[static_cast<std::size_t>(item.label)].name;
      if (e.class_name != cls) {
        throw UserError(
            ExitCode::kDataError,
            fmt::format(
                "{} names class '{}' for label {}, but the plan has '{}': the class list changed since sampling; "
                "rerun `augment sample` (with --force)",
                path.string(), e.class_name, item.label, cls));
      }
      const auto key = e.settings.key() + "/" + std::to_string(e.run_seed);
      if (settings_key.empty()) {
        settings_key = key;
        settings_from = path;
        out.settings = e.settings;
        out.run_seed = e.run_seed;
      } else if (key != settings_key) {
        throw UserError(
            ExitCode::kDataError,
            fmt::format(
                "the shards were sampled with different settings: {} has {} {} steps guidance {} checkpoint {} seed "
                "{}, "
                "{} has {} {} steps guidance {} checkpoint {} seed {}; rerun `augment sample` for the stale shards",
                settings_from.filename().string(), out.settings.sampler, out.settings.steps, out.settings.guidance,
                out.settings.checkpoint, out.run_seed, path.filename().string(), e.settings.sampler, e.settings.steps,
                e.settings.guidance, e.settings.checkpoint, e.run_seed));
      }
      const auto [it, inserted] = items.emplace(item, std::make_pair(e, path));
      if (!inserted) {
        throw UserError(
            ExitCode::kDataError,
            fmt::format(
                "image {} of class '{}' is in both {} and {}: the journals come from overlapping runs; delete the "
                "journal of the run you do not want",
                item.index, cls, it->second.second.string(), path.string()));
      }
    }
  }
  std::int64_t missing = 0;
  std::string first_missing;
  for (const auto& item : plan_items(plan)) {
    const auto it = items.find(item);
    if (it == items.end()) {
      if (missing++ == 0) {
        const int k = shard_of(plan, item, out.shard_count);
        first_missing = fmt::format(
            "image {} of class '{}' (shard {}/{}: run `augment sample --shard {}/{}` to finish it)", item.index,
            plan.classes[static_cast<std::size_t>(item.label)].name, k, out.shard_count, k, out.shard_count);
      }
      continue;
    }
    auto& e = it->second.first;
    (e.accepted ? out.accepted : out.rejected).push_back(std::move(e));
  }
  if (missing > 0) {
    throw UserError(ExitCode::kNoInput, fmt::format("{} planned synthetic images are missing in {}, first {}", missing,
                                                    sample_dir.string(), first_missing));
  }
  return out;
}

}  // namespace augment
