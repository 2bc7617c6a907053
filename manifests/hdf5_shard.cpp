#include "manifests/hdf5_shard.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <utility>

#include <fmt/format.h>
#include <libdeflate.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include "manifests/hdf5_util.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"

namespace augment {

using h5::check;
using h5::check_id;

// libdeflate writes the same zlib streams as zlib's compress2 (HDF5's deflate filter inflates them)
// two to three times faster; one compressor per worker thread, reused across calls.
struct ShardWriter::Compressors {
  struct Worker {
    libdeflate_compressor* compressor = nullptr;
    std::vector<std::uint8_t> raw;
    Worker() = default;
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;
    ~Worker() {
      if (compressor != nullptr) libdeflate_free_compressor(compressor);
    }
  };
  tbb::enumerable_thread_specific<Worker> local;
};

// HDF5's core driver allocates and grows the in-memory file through these callbacks, so its memory
// is a PageBuffer that outlives the file: commit() copies the image out, and the buffer goes back
// to the BackgroundFileWriter for the next shard instead of being unmapped.
struct ShardWriter::CoreMemory {
  BackgroundFileWriter* background = nullptr;
  PageBuffer buffer;
  std::size_t size = 0;  // what HDF5 asked for last

  static void* allocate(std::size_t size, H5FD_file_image_op_t op, void* self) {
    return reallocate(nullptr, size, op, self);
  }
  static void* reallocate(void* ptr, std::size_t size, H5FD_file_image_op_t, void* self) {
    auto* m = static_cast<CoreMemory*>(self);
    if (size > m->buffer.capacity()) {
      try {
        PageBuffer bigger = m->background != nullptr ? m->background->buffer(size) : PageBuffer(size);
        if (ptr != nullptr) std::memcpy(bigger.data(), m->buffer.data(), std::min(m->size, size));
        m->buffer = std::move(bigger);
      } catch (const std::bad_alloc&) {
        return nullptr;  // HDF5 reports it and the file stays usable
      }
    }
    m->size = size;
    return m->buffer.data();
  }
  static herr_t release(void*, H5FD_file_image_op_t, void*) { return 0; }  // the writer keeps the memory
  static void* copy(void* dst, const void* src, std::size_t n, H5FD_file_image_op_t, void*) {
    return std::memcpy(dst, src, n);
  }
  static void* share(void* self) { return self; }  // property-list copies all point to the writer's memory
  static herr_t unshare(void*) { return 0; }
};

ShardWriter::ShardWriter(const std::filesystem::path& path, const ShardHeader& header, std::int64_t count,
                         int deflate_level, double min_saving, BackgroundFileWriter* background)
    : path_(path),
      tmp_(temp_path_for(path)),
      header_(header),
      count_(count),
      deflate_level_(deflate_level),
      min_saving_(min_saving),
      background_(background) {
  chunk_ = image_chunk_shape(count, header.height, header.width, header.channels);
  h5::silence_error_stack();
  ensure_directory(path.parent_path());
  const auto raw_bytes = static_cast<unsigned long long>(std::max<std::int64_t>(count, 0)) *
                         static_cast<unsigned long long>(header.height) *
                         static_cast<unsigned long long>(header.width) *
                         static_cast<unsigned long long>(header.channels);
  in_memory_ = raw_bytes <= kInMemoryShardBytes;
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (in_memory_) {
    // One allocation that holds the whole shard (pages the shard never touches cost nothing); no
    // backing store: commit() takes the file image and writes it itself.
    H5Pset_fapl_core(fapl, static_cast<size_t>(raw_bytes + raw_bytes / 16 + (1 << 20)), /*backing_store=*/0);
    core_ = std::make_unique<CoreMemory>();
    core_->background = background;
    H5FD_file_image_callbacks_t callbacks{
        &CoreMemory::allocate, &CoreMemory::copy, &CoreMemory::reallocate, &CoreMemory::release, &CoreMemory::share,
        &CoreMemory::unshare,  core_.get()};
    if (H5Pset_file_image_callbacks(fapl, &callbacks) < 0) {
      H5Pclose(fapl);
      throw std::runtime_error("H5Pset_file_image_callbacks failed");
    }
  }
  file_ = H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  check_id(file_, "file create", tmp_);
  try {
    const hsize_t n = static_cast<hsize_t>(count), h = header.height, w = header.width, c = header.channels;
    {
      hsize_t dims[4] = {n, h, w, c};
      hsize_t chunk[4] = {chunk_[0], chunk_[1], chunk_[2], chunk_[3]};
      hid_t space = H5Screate_simple(4, dims, nullptr);
      hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
      H5Pset_obj_track_times(plist, false);  // no timestamps: the same content gives the same bytes
      if (n > 0) {
        // h5py's order: byte shuffle, then deflate, then the checksum of the compressed chunk.
        H5Pset_chunk(plist, 4, chunk);
        H5Pset_shuffle(plist);
        if (deflate_level > 0) H5Pset_deflate(plist, static_cast<unsigned>(deflate_level));
        H5Pset_fletcher32(plist);
      }
      images_ = H5Dcreate2(file_, "images", H5T_STD_U8LE, space, H5P_DEFAULT, plist, H5P_DEFAULT);
      H5Pclose(plist);
      H5Sclose(space);
      check_id(images_, "dataset create", tmp_);
    }
    auto vector_dataset = [&](const char* name, hid_t type) {
      hsize_t dims[1] = {n};
      hid_t space = H5Screate_simple(1, dims, nullptr);
      hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
      H5Pset_obj_track_times(plist, false);
      hid_t d = H5Dcreate2(file_, name, type, space, H5P_DEFAULT, plist, H5P_DEFAULT);
      H5Pclose(plist);
      H5Sclose(space);
      return check_id(d, "dataset create", tmp_);
    };
    labels_ = vector_dataset("labels", H5T_STD_I64LE);
    synthetic_ = vector_dataset("is_synthetic", H5T_STD_U8LE);
    hid_t str = h5::utf8_string_type();
    files_ = vector_dataset("files", str);
    H5Tclose(str);
  } catch (...) {
    close_handles();
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
    throw;
  }
}

ShardWriter::~ShardWriter() {
  close_handles();
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
  }
  if (core_ != nullptr && background_ != nullptr) background_->recycle(std::move(core_->buffer));
}

void ShardWriter::close_handles() {
  for (long long* id : {&images_, &labels_, &synthetic_, &files_}) {
    if (*id >= 0) H5Dclose(*id);
    *id = -1;
  }
  if (file_ >= 0) H5Fclose(file_);
  file_ = -1;
}

namespace {

void write_rows(hid_t dset, int rank, hid_t mem_type, const void* data, hsize_t start, hsize_t n, const hsize_t* inner,
                const std::filesystem::path& p) {
  hid_t fspace = H5Dget_space(dset);
  hsize_t offset[4] = {start, 0, 0, 0};
  hsize_t size[4] = {n, inner[0], inner[1], inner[2]};
  herr_t rc = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, offset, nullptr, size, nullptr);
  hid_t mspace = H5Screate_simple(rank, size, nullptr);
  if (rc >= 0) rc = H5Dwrite(dset, mem_type, mspace, fspace, H5P_DEFAULT, data);
  H5Sclose(mspace);
  H5Sclose(fspace);
  // HDF5's error stack is silenced; a failed write is most often a full disk.
  if (rc < 0) {
    throw UserError(
        ExitCode::kIoError,
        fmt::format("cannot write {} (disk full?); free space and rerun: finished shards are kept", p.string()));
  }
}

}  // namespace

void ShardWriter::write(std::int64_t start, std::int64_t n, const std::uint8_t* pixels, const std::int64_t* labels,
                        const std::uint8_t* is_synthetic, const std::vector<std::string>& files) {
  if (n <= 0) return;
  if (start < 0 || start + n > count_ || static_cast<std::int64_t>(files.size()) != n)
    throw std::logic_error("ShardWriter::write out of range");
  const hsize_t img[3] = {static_cast<hsize_t>(header_.height), static_cast<hsize_t>(header_.width),
                          static_cast<hsize_t>(header_.channels)};
  if (start != written_) throw std::logic_error("ShardWriter::write: rows must come in order");
  const std::size_t image_bytes = static_cast<std::size_t>(img[0] * img[1] * img[2]);
  const std::int64_t per_chunk = static_cast<std::int64_t>(chunk_[0]);
  std::int64_t done = 0;
  if (!pending_.empty()) {  // complete the chunk an earlier call began
    const std::int64_t take =
        std::min<std::int64_t>(n, per_chunk - static_cast<std::int64_t>(pending_.size() / image_bytes));
    pending_.insert(pending_.end(), pixels, pixels + static_cast<std::size_t>(take) * image_bytes);
    done = take;
    if (static_cast<std::int64_t>(pending_.size() / image_bytes) == per_chunk || start + take == count_) {
      write_image_chunks(pending_.data(), pending_first_, static_cast<std::int64_t>(pending_.size() / image_bytes));
      pending_.clear();
    }
  }
  // Whole chunks straight from the caller's buffer; the shard's last chunk may be short.
  std::int64_t whole = (n - done) / per_chunk * per_chunk;
  if (start + n == count_) whole = n - done;
  if (whole > 0) write_image_chunks(pixels + static_cast<std::size_t>(done) * image_bytes, start + done, whole);
  done += whole;
  if (done < n) {
    pending_first_ = start + done;
    pending_.assign(pixels + static_cast<std::size_t>(done) * image_bytes,
                    pixels + static_cast<std::size_t>(n) * image_bytes);
  }
  // The small per-row datasets are written once, at commit.
  labels_buffer_.insert(labels_buffer_.end(), labels, labels + n);
  synthetic_buffer_.insert(synthetic_buffer_.end(), is_synthetic, is_synthetic + n);
  files_buffer_.insert(files_buffer_.end(), files.begin(), files.end());
  written_ += n;
}

void ShardWriter::write_image_chunks(const std::uint8_t* pixels, std::int64_t first_image, std::int64_t images) {
  const std::size_t row_bytes = static_cast<std::size_t>(header_.width) * static_cast<std::size_t>(header_.channels);
  const std::size_t image_bytes = row_bytes * static_cast<std::size_t>(header_.height);
  const std::int64_t per_chunk = static_cast<std::int64_t>(chunk_[0]);
  const std::int64_t bands =
      (header_.height + static_cast<std::int64_t>(chunk_[1]) - 1) / static_cast<std::int64_t>(chunk_[1]);
  const std::size_t chunk_bytes = static_cast<std::size_t>(chunk_[0] * chunk_[1]) * row_bytes;
  // Chunk j covers images [j*per_chunk, ...) of this call (a multiple of per_chunk from first_image)
  // and, for images over 1 MiB, band j % bands of their rows.
  const std::int64_t chunks = (images + per_chunk - 1) / per_chunk * bands;
  if (compressors_ == nullptr) compressors_ = std::make_unique<Compressors>();
  filtered_.resize(static_cast<std::size_t>(chunks));

  // Chunk j's bytes as HDF5 stores them before filtering: edge chunks whole, zero-filled beyond
  // the dataset. (Shuffle regroups the bytes of multi-byte elements; for uint8 it is the identity.)
  auto gather = [&](std::int64_t j, std::vector<std::uint8_t>& raw) {
    raw.resize(chunk_bytes);
    const std::int64_t image0 = j / bands * per_chunk, band = j % bands;
    const std::int64_t row0 = band * static_cast<std::int64_t>(chunk_[1]);
    const std::int64_t rows = std::min<std::int64_t>(static_cast<std::int64_t>(chunk_[1]), header_.height - row0);
    const std::int64_t present = std::min<std::int64_t>(per_chunk, images - image0);
    const std::size_t image_part = static_cast<std::size_t>(chunk_[1]) * row_bytes;
    for (std::int64_t i = 0; i < present; ++i) {
      std::uint8_t* dst = raw.data() + static_cast<std::size_t>(i) * image_part;
      std::memcpy(
          dst, pixels + static_cast<std::size_t>(image0 + i) * image_bytes + static_cast<std::size_t>(row0) * row_bytes,
          static_cast<std::size_t>(rows) * row_bytes);
      std::memset(dst + static_cast<std::size_t>(rows) * row_bytes, 0,
                  image_part - static_cast<std::size_t>(rows) * row_bytes);
    }
    std::memset(raw.data() + static_cast<std::size_t>(present) * image_part, 0,
                chunk_bytes - static_cast<std::size_t>(present) * image_part);
  };
  auto deflate = [&](Compressors::Worker& worker, const std::vector<std::uint8_t>& raw,
                     std::vector<std::uint8_t>& out) {
    if (worker.compressor == nullptr) worker.compressor = libdeflate_alloc_compressor(deflate_level_);
    if (worker.compressor == nullptr) throw std::bad_alloc();
    out.resize(libdeflate_zlib_compress_bound(worker.compressor, raw.size()) + 4);
    const std::size_t size =
        libdeflate_zlib_compress(worker.compressor, raw.data(), raw.size(), out.data(), out.size());
    if (size == 0) throw std::runtime_error("libdeflate_zlib_compress: output larger than its bound");
    out.resize(size);
  };

  // Deflate only where it pays. Every kProbeEvery-th chunk of the call is compressed first; if
  // these probes shrink by less than min_saving, the call's chunks are stored with the deflate
  // filter skipped. HDF5 records that in each chunk's filter mask, and every reader (h5py too)
  // honours it. Noise-like 8-bit images then cost one deflate in kProbeEvery, not one per chunk.
  constexpr std::int64_t kProbeEvery = 16;
  bool compress = deflate_level_ > 0;
  std::vector<char> done(static_cast<std::size_t>(chunks), 0);
  if (compress && min_saving_ > 0) {
    const std::int64_t probes = (chunks + kProbeEvery - 1) / kProbeEvery;
    std::vector<std::size_t> in(static_cast<std::size_t>(probes)), out(static_cast<std::size_t>(probes));
    tbb::parallel_for(std::int64_t(0), probes, [&](std::int64_t p) {
      Compressors::Worker& worker = compressors_->local.local();
      const std::int64_t j = p * kProbeEvery;
      gather(j, worker.raw);
      deflate(worker, worker.raw, filtered_[static_cast<std::size_t>(j)]);
      in[static_cast<std::size_t>(p)] = worker.raw.size();
      out[static_cast<std::size_t>(p)] = filtered_[static_cast<std::size_t>(j)].size();
      done[static_cast<std::size_t>(j)] = 1;
    });
    const double raw_total = static_cast<double>(std::accumulate(in.begin(), in.end(), std::size_t(0)));
    const double packed_total = static_cast<double>(std::accumulate(out.begin(), out.end(), std::size_t(0)));
    compress = packed_total <= raw_total * (1.0 - min_saving_);
    if (!compress) std::fill(done.begin(), done.end(), 0);
  }
  tbb::parallel_for(std::int64_t(0), chunks, [&](std::int64_t j) {
    std::vector<std::uint8_t>& out = filtered_[static_cast<std::size_t>(j)];
    if (!done[static_cast<std::size_t>(j)]) {
      Compressors::Worker& worker = compressors_->local.local();
      if (compress) {
        gather(j, worker.raw);
        deflate(worker, worker.raw, out);
      } else {
        gather(j, out);
      }
    }
    const std::uint32_t sum = hdf5_fletcher32(out.data(), out.size());
    for (int b = 0; b < 4; ++b)
      out.push_back(static_cast<std::uint8_t>(sum >> (8 * b)));  // little-endian, as the filter stores it
  });
  // Filter 0 is shuffle, 1 deflate (when the dataset has it), then fletcher32.
  const unsigned mask = deflate_level_ > 0 && !compress ? 1u << 1 : 0u;
  chunks_written_ += chunks;
  if (!compress && deflate_level_ > 0) chunks_without_deflate_ += chunks;
  for (std::int64_t j = 0; j < chunks; ++j) {
    const auto& c = filtered_[static_cast<std::size_t>(j)];
    const hsize_t offset[4] = {static_cast<hsize_t>(first_image + j / bands * per_chunk),
                               static_cast<hsize_t>(j % bands * static_cast<std::int64_t>(chunk_[1])), 0, 0};
    if (H5Dwrite_chunk(images_, H5P_DEFAULT, mask, offset, c.size(), c.data()) < 0) {
      throw UserError(
          ExitCode::kIoError,
          fmt::format("cannot write {} (disk full?); free space and rerun: finished shards are kept", tmp_.string()));
    }
  }
}

void ShardWriter::commit() {
  if (written_ != count_) throw std::logic_error(fmt::format("ShardWriter: {} of {} rows written", written_, count_));
  if (!pending_.empty()) throw std::logic_error("ShardWriter: an image chunk was not written");
  if (count_ > 0) {
    const hsize_t none[3] = {0, 0, 0};
    write_rows(labels_, 1, H5T_NATIVE_INT64, labels_buffer_.data(), 0, static_cast<hsize_t>(count_), none, tmp_);
    write_rows(synthetic_, 1, H5T_NATIVE_UINT8, synthetic_buffer_.data(), 0, static_cast<hsize_t>(count_), none, tmp_);
    std::vector<const char*> ptrs;
    ptrs.reserve(files_buffer_.size());
    for (const auto& f : files_buffer_) ptrs.push_back(f.c_str());
    hid_t str = h5::utf8_string_type();
    try {
      write_rows(files_, 1, str, ptrs.data(), 0, static_cast<hsize_t>(count_), none, tmp_);
    } catch (...) {
      H5Tclose(str);
      throw;
    }
    H5Tclose(str);
  }
  h5::write_strings_attr(file_, "class_names", header_.class_names, tmp_);
  h5::write_int_attr(file_, "height", header_.height, tmp_);
  h5::write_int_attr(file_, "width", header_.width, tmp_);
  h5::write_int_attr(file_, "channels", header_.channels, tmp_);
  h5::write_int_attr(file_, "format_version", kShardFormatVersion, tmp_);
  h5::write_string_attr(file_, "name", header_.name, tmp_);
  h5::write_int_attr(file_, "shard_index", header_.shard_index, tmp_);
  h5::write_int_attr(file_, "shard_count", header_.shard_count, tmp_);
  h5::write_int_attr(file_, "seed", static_cast<long long>(header_.seed), tmp_);
  h5::write_string_attr(file_, "key", header_.key, tmp_);
  for (long long* id : {&images_, &labels_, &synthetic_, &files_}) {
    if (*id >= 0) H5Dclose(*id);
    *id = -1;
  }
  if (in_memory_) {
    if (H5Fflush(file_, H5F_SCOPE_GLOBAL) < 0) throw std::runtime_error("H5Fflush of an in-memory shard failed");
    const ssize_t size = H5Fget_file_image(file_, nullptr, 0);
    if (size <= 0) throw std::runtime_error("H5Fget_file_image failed");
    // The previous shard's buffer is free once it is on disk; it has been writing while this shard was built.
    if (background_ != nullptr) background_->finish();
    PageBuffer image = background_ != nullptr ? background_->buffer(static_cast<std::size_t>(size))
                                              : PageBuffer(static_cast<std::size_t>(size));
    if (H5Fget_file_image(file_, image.data(), static_cast<std::size_t>(size)) != size)
      throw std::runtime_error("H5Fget_file_image failed");
    close_handles();
    committed_ = true;
    if (background_ != nullptr) {
      background_->submit(path_, std::move(image), static_cast<std::size_t>(size));
    } else {
      write_buffer_file(path_, image, static_cast<std::size_t>(size));
    }
    return;
  }
  const herr_t closed = H5Fclose(file_);
  file_ = -1;
  if (closed < 0) {
    throw UserError(
        ExitCode::kIoError,
        fmt::format("cannot write {} (disk full?); free space and rerun: finished shards are kept", tmp_.string()));
  }
  commit_temp_file(tmp_, path_);
  committed_ = true;
}

std::string read_shard_key(const std::filesystem::path& path) {
  h5::silence_error_stack();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return "";
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return "";
  std::string key;
  try {
    if (h5::read_int_attr(f, "format_version", path) == kShardFormatVersion) {
      const auto k = h5::read_strings_attr(f, "key", path);
      if (!k.empty()) key = k[0];
    }
  } catch (const std::exception&) {
    key.clear();
  }
  H5Fclose(f);
  return key;
}

}  // namespace augment
