#include "pipeline/base/hash.h"

#include <cstdio>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <xxhash.h>

#include "pipeline/base/errors.h"

namespace augment {

static std::string to_hex(XXH128_hash_t h) { return fmt::format("{:016x}{:016x}", h.high64, h.low64); }

std::string hash_bytes(const void* data, std::size_t size) { return to_hex(XXH3_128bits(data, size)); }

std::string hash_text(std::string_view text) { return hash_bytes(text.data(), text.size()); }

unsigned long long hash64(std::string_view text, unsigned long long seed) {
  return XXH3_64bits_withSeed(text.data(), text.size(), seed);
}

std::string hash_file(const std::filesystem::path& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) throw UserError(ExitCode::kIoError, fmt::format("cannot read {} to hash it", path.string()));
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> state(XXH3_createState(), &XXH3_freeState);
  XXH3_128bits_reset(state.get());
  std::vector<char> buf(1 << 20);
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) XXH3_128bits_update(state.get(), buf.data(), n);
  if (std::ferror(f.get())) throw UserError(ExitCode::kIoError, fmt::format("read error in {}", path.string()));
  return to_hex(XXH3_128bits_digest(state.get()));
}

}  // namespace augment
