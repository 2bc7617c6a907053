// SHA-256 (through OpenSSL's EVP interface, libssl-dev) for checksums that outside tools check
// (`sha256sum`, dataset catalogues); the faster XXH3 of pipeline/hash.h stays for internal use.
#pragma once

#include <filesystem>
#include <string>

namespace augment {

std::string sha256_file(const std::filesystem::path& path);  // 64 lowercase hex digits
std::string sha256_bytes(const void* data, std::size_t size);

}  // namespace augment
