#include "manifests/background_writer.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <new>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"

namespace augment {

void write_buffer_file(const std::filesystem::path& path, const PageBuffer& bytes, std::size_t size) {
  try {
    write_text_atomically(path, std::string_view(reinterpret_cast<const char*>(bytes.data()), size));
  } catch (const UserError& e) {
    throw UserError(e.code(), fmt::format("{}; free space and rerun: finished files are kept", e.what()));
  }
}

BackgroundFileWriter::~BackgroundFileWriter() {
  if (pending_.valid()) {
    try {
      pending_.get();
    } catch (...) {  // the caller is already unwinding from another error
    }
  }
}

PageBuffer::PageBuffer(std::size_t capacity) {
  constexpr std::size_t kHuge = 2u << 20;
  capacity_ = (capacity + kHuge - 1) / kHuge * kHuge;
  mapped_ = capacity_ + kHuge;  // room to align the start to 2 MiB
  void* p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  base_ = static_cast<std::uint8_t*>(p);
  data_ = reinterpret_cast<std::uint8_t*>((reinterpret_cast<std::uintptr_t>(p) + kHuge - 1) / kHuge * kHuge);
  ::madvise(data_, mapped_ - static_cast<std::size_t>(data_ - base_), MADV_HUGEPAGE);  // a hint: fine if refused
}

PageBuffer::~PageBuffer() {
  if (base_ != nullptr) ::munmap(base_, mapped_);
}

PageBuffer::PageBuffer(PageBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      base_(std::exchange(other.base_, nullptr)),
      capacity_(std::exchange(other.capacity_, 0)),
      mapped_(std::exchange(other.mapped_, 0)) {}

PageBuffer& PageBuffer::operator=(PageBuffer&& other) noexcept {
  if (this != &other) {
    if (base_ != nullptr) ::munmap(base_, mapped_);
    data_ = std::exchange(other.data_, nullptr);
    base_ = std::exchange(other.base_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
    mapped_ = std::exchange(other.mapped_, 0);
  }
  return *this;
}

PageBuffer BackgroundFileWriter::buffer(std::size_t capacity) {
  // The smallest spare that is large enough; a new buffer when none is.
  auto best = spare_.end();
  for (auto it = spare_.begin(); it != spare_.end(); ++it) {
    if (it->capacity() >= capacity && (best == spare_.end() || it->capacity() < best->capacity())) best = it;
  }
  if (best == spare_.end()) return PageBuffer(capacity);
  PageBuffer out = std::move(*best);
  spare_.erase(best);
  return out;
}

void BackgroundFileWriter::recycle(PageBuffer buffer) {
  // Two buffers are in use per shard (HDF5's in-memory file and the image on its way to disk).
  constexpr std::size_t kKeep = 2;
  if (buffer.data() == nullptr) return;
  spare_.push_back(std::move(buffer));
  if (spare_.size() > kKeep) {
    spare_.erase(std::min_element(spare_.begin(), spare_.end(), [](const PageBuffer& a, const PageBuffer& b) {
      return a.capacity() < b.capacity();
    }));
  }
}

void BackgroundFileWriter::submit(const std::filesystem::path& path, PageBuffer bytes, std::size_t size) {
  finish();
  pending_ = std::async(std::launch::async, [path, bytes = std::move(bytes), size]() mutable {
    write_buffer_file(path, bytes, size);
    return std::move(bytes);
  });
}

void BackgroundFileWriter::finish() {
  if (pending_.valid()) recycle(pending_.get());
}

}  // namespace augment
