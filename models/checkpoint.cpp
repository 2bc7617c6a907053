#include "models/checkpoint.h"

#include <algorithm>
#include <regex>

#include <fmt/format.h>

#include "pipeline/fs_util.h"

namespace augment {

namespace {
const std::regex kCheckpointName(R"(step-(\d+)\.pt)");
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
    const std::function<RestoreResult(torch::serialize::InputArchive&)>& restore, std::vector<std::string>* skipped_out) {
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
