// One HDF5 shard of `augment export`, laid out for training readers (h5py, PyTorch):
//   images        uint8 [N, H, W, C]  chunked (10 KiB .. 1 MiB per chunk), shuffle + deflate + fletcher32
//   labels        int64 [N]
//   is_synthetic  uint8 [N]
//   files         UTF-8 strings [N]   (file_name relative to the emitted folder)
// Attributes: class_names (UTF-8), height, width, channels, format_version, name, shard_index,
// shard_count, seed, key (identifies the content, for resuming).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "manifests/background_writer.h"
#include "manifests/hdf5_chunks.h"

namespace augment {

inline constexpr int kShardFormatVersion = 1;

struct ShardHeader {
  std::vector<std::string> class_names;
  int height = 0, width = 0, channels = 0;
  std::string name;
  int shard_index = 0, shard_count = 1;
  std::uint64_t seed = 0;
  std::string key;
};

// Shards of up to this many image bytes are assembled in memory (HDF5's core driver) and written
// to disk in one sequential pass; larger ones are written chunk by chunk.
inline constexpr unsigned long long kInMemoryShardBytes = 256ull << 20;

// Writes a shard of exactly `count` images to a temp sibling; commit() makes it appear under
// `path` (fsync + rename). Destroyed without commit, it leaves nothing. The caller uses one
// thread; image chunks are compressed on TBB's workers and handed to HDF5 on the caller's thread
// (Debian's HDF5 is not thread-safe).
class ShardWriter {
 public:
  // deflate_level 0: no deflate filter. min_saving: blocks whose sampled chunks deflate by less
  // than this fraction are stored uncompressed (the filter skipped per chunk); 0: always deflate.
  // With `background`, an in-memory shard takes its memory from it and commit() hands the file to
  // it: the shard is on disk after the writer's next submit() or finish().
  ShardWriter(const std::filesystem::path& path, const ShardHeader& header, std::int64_t count, int deflate_level,
              double min_saving, BackgroundFileWriter* background = nullptr);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Rows [start, start+n) in order (start = rows written so far): n images of H*W*C bytes,
  // labels, 0/1 flags and file names.
  void write(std::int64_t start, std::int64_t n, const std::uint8_t* pixels, const std::int64_t* labels,
             const std::uint8_t* is_synthetic, const std::vector<std::string>& files);
  // Finishes the shard and moves it into place atomically.
  void commit();

  std::int64_t chunks_written() const { return chunks_written_; }
  std::int64_t chunks_without_deflate() const { return chunks_without_deflate_; }

 private:
  void close_handles();
  // Filters (shuffle, deflate, fletcher32) applied here in parallel, then written with
  // H5Dwrite_chunk: HDF5's own filter pipeline runs on one thread and was the export's bottleneck.
  void write_image_chunks(const std::uint8_t* pixels, std::int64_t first_image, std::int64_t images);

  std::filesystem::path path_, tmp_;
  ShardHeader header_;
  std::int64_t count_ = 0, written_ = 0;
  int deflate_level_ = 0;
  double min_saving_ = 0;
  std::int64_t chunks_written_ = 0, chunks_without_deflate_ = 0;
  std::array<unsigned long long, 4> chunk_{};
  struct Compressors;  // per-thread deflate state, kept across calls
  std::unique_ptr<Compressors> compressors_;
  std::vector<std::vector<std::uint8_t>> filtered_;  // filtered chunks of one call, reused
  std::vector<std::int64_t> labels_buffer_;
  std::vector<std::uint8_t> synthetic_buffer_;
  std::vector<std::string> files_buffer_;
  std::vector<std::uint8_t> pending_;  // images of a chunk not yet complete (whole-image chunks only)
  std::int64_t pending_first_ = 0;
  long long file_ = -1, images_ = -1, labels_ = -1, synthetic_ = -1, files_ = -1;
  bool in_memory_ = false;
  BackgroundFileWriter* background_ = nullptr;
  struct CoreMemory;  // the in-memory file, given to HDF5's core driver through file-image callbacks
  std::unique_ptr<CoreMemory> core_;
  bool committed_ = false;
};

// The key attribute of a finished shard; "" when the file is missing, unreadable or of another format.
std::string read_shard_key(const std::filesystem::path& path);

}  // namespace augment
