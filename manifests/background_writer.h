// Large files written from memory on a background thread (export's in-memory HDF5 shards), with
// the memory kept for the next file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <future>
#include <vector>

namespace augment {

// A large byte buffer from its own mapping, with transparent huge pages requested: filling tens of
// MB of fresh 4 KiB pages cost about as much as writing them to the page cache.
class PageBuffer {
 public:
  PageBuffer() = default;
  explicit PageBuffer(std::size_t capacity);
  ~PageBuffer();
  PageBuffer(PageBuffer&& other) noexcept;
  PageBuffer& operator=(PageBuffer&& other) noexcept;
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;
  std::uint8_t* data() const { return data_; }
  std::size_t capacity() const { return capacity_; }

 private:
  std::uint8_t* data_ = nullptr;  // 2 MiB-aligned start inside the mapping
  std::uint8_t* base_ = nullptr;
  std::size_t capacity_ = 0, mapped_ = 0;
};

// Writes the first `size` bytes of `bytes` atomically to `path` (on the caller's thread).
void write_buffer_file(const std::filesystem::path& path, const PageBuffer& bytes, std::size_t size);

// Writes finished in-memory files (shards) to disk on a background thread, one at a time, so the
// next shard is built meanwhile. Only POSIX I/O runs there: HDF5 stays on the caller's thread.
// It also keeps the shards' memory for the next shard: the kernel zero-fills every fresh page, and
// for a new 30 MB buffer per shard that cost as much as the copy to the page cache.
class BackgroundFileWriter {
 public:
  BackgroundFileWriter() = default;
  ~BackgroundFileWriter();  // waits; an error nobody collected is dropped
  BackgroundFileWriter(const BackgroundFileWriter&) = delete;
  BackgroundFileWriter& operator=(const BackgroundFileWriter&) = delete;
  // A buffer of at least `capacity` bytes, from a finished shard where one is free.
  PageBuffer buffer(std::size_t capacity);
  // Gives a buffer back for later shards.
  void recycle(PageBuffer buffer);
  // Waits for the previous file (rethrowing its error), then writes the first `size` bytes of
  // `bytes` atomically to `path`; the buffer is recycled once written.
  void submit(const std::filesystem::path& path, PageBuffer bytes, std::size_t size);
  // Waits for the last file; rethrows its error (e.g. a full disk).
  void finish();

 private:
  std::future<PageBuffer> pending_;
  std::vector<PageBuffer> spare_;
};

}  // namespace augment
