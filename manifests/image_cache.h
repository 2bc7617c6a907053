// The training-resolution image cache: one HDF5 file per split with
//   images        uint8 [N, H, W, C]  (RGB or grayscale, row-major, as h5py/numpy expect)
//   labels        int64 [N]           (index into class_names)
//   source_index  int64 [N]           (row of the subsample manifest the image came from)
// and attributes class_names (UTF-8 strings), resolution, channels, split, key.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace augment {

struct CacheInfo {
  std::string split;
  int resolution = 0;
  int channels = 0;
  std::vector<std::string> class_names;
  std::string key;  // identifies the inputs and options the file was made from
};

// Appends images to a new file; nothing is visible under the final name until commit().
class CacheWriter {
 public:
  CacheWriter(const std::filesystem::path& path, const CacheInfo& info);
  ~CacheWriter();
  CacheWriter(const CacheWriter&) = delete;
  CacheWriter& operator=(const CacheWriter&) = delete;

  // `pixels` holds resolution*resolution*channels bytes per image, `count` images.
  void append(const std::uint8_t* pixels, const std::int64_t* labels, const std::int64_t* source_index,
              std::int64_t count);
  std::int64_t size() const { return count_; }
  // The key is often known only at the end (it may cover the content written).
  void set_key(const std::string& key) { info_.key = key; }
  // Writes the attributes, flushes, fsyncs and renames the temp file to the final path.
  void commit();

 private:
  void close_handles();

  std::filesystem::path path_, tmp_;
  CacheInfo info_;
  long long file_ = -1, images_ = -1, labels_ = -1, index_ = -1;
  std::int64_t count_ = 0;
  bool committed_ = false;
};

// Reads a cache file (or part of it).
class CacheReader {
 public:
  explicit CacheReader(const std::filesystem::path& path);
  ~CacheReader();
  CacheReader(const CacheReader&) = delete;
  CacheReader& operator=(const CacheReader&) = delete;

  const CacheInfo& info() const { return info_; }
  std::int64_t size() const { return count_; }
  std::size_t image_bytes() const {
    return static_cast<std::size_t>(info_.resolution) * info_.resolution * info_.channels;
  }
  // Rows [start, start+count) into caller buffers (either may be null).
  void read(std::int64_t start, std::int64_t count, std::uint8_t* pixels, std::int64_t* labels,
            std::int64_t* source_index) const;

 private:
  std::filesystem::path path_;
  CacheInfo info_;
  long long file_ = -1;
  std::int64_t count_ = 0;
};

// Just the attributes (cheap): used to decide whether a cache part can be reused.
CacheInfo read_cache_info(const std::filesystem::path& path);

}  // namespace augment
