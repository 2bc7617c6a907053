// What the emit and export tests share: a tiny cached dataset with awkward class names, a sample
// store filled by a fake model through the store's API, and a full disk.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "fixtures.h"
#include "manifests/sample_plan.h"
#include "stages/sampling_driver.h"

namespace augment::test {

inline const std::vector<std::pair<std::string, int>> kClasses = {
    {"with space", 6}, {"R&D", 3}, {"comma, class", 8}, {"quote \"q\"", 4}, {"ñandú", 5}};
inline constexpr int kRes = 8;

GeneratedImage fake_image(std::uint64_t seed);
// scan + subsample + cache by the binary, then two shards of fake samples through the store API.
SamplePlan prepare(const fs::path& input, const fs::path& work);
void sample_fake(const fs::path& work, const SamplePlan& plan);
std::vector<std::map<std::string, std::string>> read_csv(const fs::path& p);
// Runs `run` under a file size limit of `bytes`, which stands in for a full disk: a child's write
// past it fails (EFBIG) instead of killing the process (SIGXFSZ ignored, inherited).
RunResult with_full_disk_at(std::uint64_t bytes, const std::function<RunResult()>& run);

}  // namespace augment::test
