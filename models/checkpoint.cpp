#include "models/checkpoint.h"

#include <algorithm>
#include <regex>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "pipeline/base/fs_util.h"
#include "pipeline/base/hash.h"

namespace augment {

namespace {
const std::regex kCheckpointName(R"(step-(\d+)\.pt)");
}

namespace {

void digest_archive(torch::serialize::InputArchive& archive, const std::string& prefix, std::string& out) {
  auto keys = archive.keys();
  std::sort(keys.begin(), keys.end());
  for (const auto& key : keys) {
    const std::string name = prefix + key;
    torch::Tensor t;
    if (archive.try_read(key, t)) {
      const auto c = t.detach().cpu().contiguous();
      out += fmt::format("{} {} [{}] {};", name, c10::toString(c.scalar_type()), fmt::join(c.sizes().vec(), ","),
                         hash_bytes(c.data_ptr(), static_cast<std::size_t>(c.nbytes())));
      continue;
    }
    torch::serialize::InputArchive sub;
    if (archive.try_read(key, sub)) {
      digest_archive(sub, name + ".", out);
      continue;
    }
    c10::IValue v;
    if (archive.try_read(key, v)) {
      if (v.isString())
        out += name + "=" + v.toStringRef() + ";";
      else if (v.isInt())
        out += fmt::format("{}={};", name, v.toInt());
      else if (v.isDouble())
        out += fmt::format("{}={};", name, v.toDouble());
      else if (v.isBool())
        out += fmt::format("{}={};", name, v.toBool());
      else
        out += fmt::format("{}:{};", name, v.tagKind());
    }
  }
}

}  // namespace

std::string archive_fingerprint(const std::filesystem::path& path) {
  torch::serialize::InputArchive archive;
  archive.load_from(path.string(), torch::Device(torch::kCPU));
  std::string text;
  digest_archive(archive, "", text);
  return hash_text(text);
}

std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& dir) {
  std::vector<std::pair<std::int64_t, std::filesystem::path>> found;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return {};
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::smatch m;
    const auto name = entry.path().filename().string();
    if (std::regex_match(name, m, kCheckpointName)) found.emplace_back(std::stoll(m[1].str()), entry.path());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::filesystem::path> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

void save_checkpoint(const std::filesystem::path& dir, std::int64_t step,
                     const std::function<void(torch::serialize::OutputArchive&)>& fill, int keep) {
  ensure_directory(dir);
  const auto target = dir / fmt::format("step-{:08}.pt", step);
  torch::serialize::OutputArchive archive;
  fill(archive);
  archive.write("checkpoint_step", c10::IValue(step));
  write_atomically(target, [&](const std::filesystem::path& tmp) { archive.save_to(tmp.string()); });
  auto all = list_checkpoints(dir);
  for (std::size_t i = static_cast<std::size_t>(std::max(1, keep)); i < all.size(); ++i) {
    std::error_code ec;
    std::filesystem::remove(all[i], ec);
  }
}

std::optional<RestoredCheckpoint> restore_latest_checkpoint(
    const std::filesystem::path& dir, const torch::Device& device,
    const std::function<RestoreResult(torch::serialize::InputArchive&)>& restore,
    std::vector<std::string>* skipped_out) {
  std::vector<std::string> skipped;
  std::optional<RestoredCheckpoint> result;
  for (const auto& path : list_checkpoints(dir)) {
    try {
      torch::serialize::InputArchive archive;
      archive.load_from(path.string(), device);
      // The step inside must match the name: a file renamed or mixed up is not trusted.
      c10::IValue step;
      archive.read("checkpoint_step", step);
      std::smatch m;
      const auto name = path.filename().string();
      std::regex_match(name, m, kCheckpointName);
      if (step.toInt() != std::stoll(m[1].str())) throw std::runtime_error("step inside does not match the file name");
      if (restore(archive) == RestoreResult::kIncompatible) {
        skipped.push_back(fmt::format("{}: written with other training options", path.string()));
        continue;
      }
      result = RestoredCheckpoint{path, {}};
      break;
    } catch (const std::exception& e) {
      std::string why = e.what();
      why = why.substr(0, why.find('\n'));  // c10 errors carry a backtrace
      skipped.push_back(fmt::format("{}: unreadable ({})", path.string(), why));
    }
  }
  if (result) result->skipped = skipped;
  if (skipped_out) *skipped_out = skipped;
  return result;
}

}  // namespace augment
