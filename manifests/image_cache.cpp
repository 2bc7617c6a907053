#include "manifests/image_cache.h"

#include <hdf5.h>

#include <fmt/format.h>

#include "manifests/hdf5_util.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"

namespace augment {

namespace {

using h5::check;
using h5::check_id;
using h5::read_int_attr;
using h5::read_strings_attr;
using h5::write_int_attr;
using h5::write_strings_attr;

CacheInfo read_info(hid_t file, const std::filesystem::path& p) {
  CacheInfo info;
  info.resolution = static_cast<int>(read_int_attr(file, "resolution", p));
  info.channels = static_cast<int>(read_int_attr(file, "channels", p));
  info.class_names = read_strings_attr(file, "class_names", p);
  const auto split = read_strings_attr(file, "split", p);
  info.split = split.empty() ? "" : split[0];
  const auto key = read_strings_attr(file, "key", p);
  info.key = key.empty() ? "" : key[0];
  return info;
}

hid_t open_for_read(const std::filesystem::path& path) {
  h5::silence_error_stack();
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    throw UserError(
        ExitCode::kDataError,
        fmt::format("cannot open image cache {} (missing or damaged); rerun `augment cache --force`", path.string()));
  }
  return f;
}

}  // namespace

CacheWriter::CacheWriter(const std::filesystem::path& path, const CacheInfo& info)
    : path_(path), tmp_(temp_path_for(path)), info_(info) {
  h5::silence_error_stack();
  ensure_directory(path.parent_path());
  file_ = check_id(H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "file create", tmp_);
  const hsize_t r = info.resolution, c = info.channels;
  // Chunks of a few images: h5py readers slicing batches touch few chunks.
  const hsize_t chunk_images = std::max<hsize_t>(1, std::min<hsize_t>(64, (1 << 20) / std::max<hsize_t>(1, r * r * c)));
  {
    hsize_t dims[4] = {0, r, r, c}, maxdims[4] = {H5S_UNLIMITED, r, r, c}, chunk[4] = {chunk_images, r, r, c};
    hid_t space = H5Screate_simple(4, dims, maxdims);
    hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(plist, 4, chunk);
    H5Pset_obj_track_times(plist, false);  // no timestamps: the same images give the same bytes
    images_ = check_id(H5Dcreate2(file_, "images", H5T_STD_U8LE, space, H5P_DEFAULT, plist, H5P_DEFAULT),
                       "dataset create", tmp_);
    H5Pclose(plist);
    H5Sclose(space);
  }
  for (auto [name, id] : {std::pair<const char*, long long*>{"labels", &labels_}, {"source_index", &index_}}) {
    hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {4096};
    hid_t space = H5Screate_simple(1, dims, maxdims);
    hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(plist, 1, chunk);
    H5Pset_obj_track_times(plist, false);
    *id = check_id(H5Dcreate2(file_, name, H5T_STD_I64LE, space, H5P_DEFAULT, plist, H5P_DEFAULT), "dataset create",
                   tmp_);
    H5Pclose(plist);
    H5Sclose(space);
  }
}

CacheWriter::~CacheWriter() {
  close_handles();
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
  }
}

void CacheWriter::close_handles() {
  for (long long* id : {&images_, &labels_, &index_}) {
    if (*id >= 0) H5Dclose(*id);
    *id = -1;
  }
  if (file_ >= 0) H5Fclose(file_);
  file_ = -1;
}

static void append_rows(hid_t dset, int rank, const hsize_t* row_dims, hid_t mem_type, const void* data, hsize_t start,
                        hsize_t count, const std::filesystem::path& p) {
  hsize_t new_dims[4] = {start + count, row_dims[1], row_dims[2], row_dims[3]};
  check(H5Dset_extent(dset, new_dims), "extend", p);
  hid_t fspace = H5Dget_space(dset);
  hsize_t offset[4] = {start, 0, 0, 0};
  hsize_t size[4] = {count, row_dims[1], row_dims[2], row_dims[3]};
  check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, offset, nullptr, size, nullptr), "select", p);
  hid_t mspace = H5Screate_simple(rank, size, nullptr);
  check(H5Dwrite(dset, mem_type, mspace, fspace, H5P_DEFAULT, data), "write", p);
  H5Sclose(mspace);
  H5Sclose(fspace);
}

void CacheWriter::append(const std::uint8_t* pixels, const std::int64_t* labels, const std::int64_t* source_index,
                         std::int64_t count) {
  if (count <= 0) return;
  const hsize_t r = info_.resolution, c = info_.channels;
  const hsize_t img_dims[4] = {0, r, r, c};
  const hsize_t vec_dims[4] = {0, 0, 0, 0};
  append_rows(images_, 4, img_dims, H5T_NATIVE_UINT8, pixels, count_, count, tmp_);
  append_rows(labels_, 1, vec_dims, H5T_NATIVE_INT64, labels, count_, count, tmp_);
  append_rows(index_, 1, vec_dims, H5T_NATIVE_INT64, source_index, count_, count, tmp_);
  count_ += count;
}

void CacheWriter::commit() {
  write_int_attr(file_, "resolution", info_.resolution, tmp_);
  write_int_attr(file_, "channels", info_.channels, tmp_);
  write_strings_attr(file_, "class_names", info_.class_names, tmp_);
  write_strings_attr(file_, "split", {info_.split}, tmp_);
  write_strings_attr(file_, "key", {info_.key}, tmp_);
  check(H5Fflush(file_, H5F_SCOPE_GLOBAL), "flush", tmp_);
  close_handles();
  commit_temp_file(tmp_, path_);
  committed_ = true;
}

CacheReader::CacheReader(const std::filesystem::path& path) : path_(path) {
  file_ = open_for_read(path);
  try {
    info_ = read_info(file_, path);
    hid_t d = check_id(H5Dopen2(file_, "labels", H5P_DEFAULT), "open labels", path);
    hid_t s = H5Dget_space(d);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(s, &n, nullptr);
    count_ = static_cast<std::int64_t>(n);
    H5Sclose(s);
    H5Dclose(d);
  } catch (...) {
    H5Fclose(file_);
    throw;
  }
}

CacheReader::~CacheReader() {
  if (file_ >= 0) H5Fclose(file_);
}

void CacheReader::read(std::int64_t start, std::int64_t count, std::uint8_t* pixels, std::int64_t* labels,
                       std::int64_t* source_index) const {
  if (start < 0 || count < 0 || start + count > count_) throw std::out_of_range("cache read past the end");
  if (count == 0) return;
  const hsize_t r = info_.resolution, c = info_.channels;
  auto read_rows = [&](const char* name, int rank, hid_t mem_type, void* out) {
    if (!out) return;
    hid_t d = check_id(H5Dopen2(file_, name, H5P_DEFAULT), "dataset open", path_);
    hid_t fspace = H5Dget_space(d);
    hsize_t offset[4] = {static_cast<hsize_t>(start), 0, 0, 0};
    hsize_t size[4] = {static_cast<hsize_t>(count), r, r, c};
    check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, offset, nullptr, size, nullptr), "select", path_);
    hid_t mspace = H5Screate_simple(rank, size, nullptr);
    check(H5Dread(d, mem_type, mspace, fspace, H5P_DEFAULT, out), "read", path_);
    H5Sclose(mspace);
    H5Sclose(fspace);
    H5Dclose(d);
  };
  read_rows("images", 4, H5T_NATIVE_UINT8, pixels);
  read_rows("labels", 1, H5T_NATIVE_INT64, labels);
  read_rows("source_index", 1, H5T_NATIVE_INT64, source_index);
}

CacheInfo read_cache_info(const std::filesystem::path& path) {
  hid_t f = open_for_read(path);
  try {
    auto info = read_info(f, path);
    H5Fclose(f);
    return info;
  } catch (...) {
    H5Fclose(f);
    throw;
  }
}

}  // namespace augment
