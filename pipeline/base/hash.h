// Content hashes (XXH3-128): fast enough to hash every image of a dataset and every output file.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

namespace augment {

std::string hash_bytes(const void* data, std::size_t size);  // 32 hex digits
std::string hash_text(std::string_view text);
std::string hash_file(const std::filesystem::path& path);  // streams the file
// 64-bit hash for seeding and bucketing.
unsigned long long hash64(std::string_view text, unsigned long long seed = 0);

}  // namespace augment
