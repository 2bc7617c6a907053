#include "manifests/hdf5_util.h"

#include <fmt/format.h>

#include "pipeline/base/errors.h"

namespace augment::h5 {

void check(herr_t rc, const char* what, const std::filesystem::path& path) {
  if (rc < 0) throw UserError(ExitCode::kIoError, fmt::format("HDF5 {} failed for {}", what, path.string()));
}

hid_t check_id(hid_t id, const char* what, const std::filesystem::path& path) {
  if (id < 0) throw UserError(ExitCode::kIoError, fmt::format("HDF5 {} failed for {}", what, path.string()));
  return id;
}

void silence_error_stack() {
  static const bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

hid_t utf8_string_type() {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}

void write_int_attr(hid_t obj, const char* name, long long v, const std::filesystem::path& p) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = check_id(H5Acreate2(obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT), "attribute create", p);
  check(H5Awrite(attr, H5T_NATIVE_LLONG, &v), "attribute write", p);
  H5Aclose(attr);
  H5Sclose(space);
}

void write_string_attr(hid_t obj, const char* name, const std::string& v, const std::filesystem::path& p) {
  hid_t t = utf8_string_type();
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = check_id(H5Acreate2(obj, name, t, space, H5P_DEFAULT, H5P_DEFAULT), "attribute create", p);
  const char* s = v.c_str();
  check(H5Awrite(attr, t, &s), "attribute write", p);
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(t);
}

void write_strings_attr(hid_t obj, const char* name, const std::vector<std::string>& v,
                        const std::filesystem::path& p) {
  hid_t t = utf8_string_type();
  hsize_t n = v.size();
  hid_t space = H5Screate_simple(1, &n, nullptr);
  hid_t attr = check_id(H5Acreate2(obj, name, t, space, H5P_DEFAULT, H5P_DEFAULT), "attribute create", p);
  std::vector<const char*> ptrs;
  for (const auto& s : v) ptrs.push_back(s.c_str());
  if (n > 0) check(H5Awrite(attr, t, ptrs.data()), "attribute write", p);
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(t);
}

long long read_int_attr(hid_t obj, const char* name, const std::filesystem::path& p) {
  hid_t attr = check_id(H5Aopen(obj, name, H5P_DEFAULT), "attribute open", p);
  long long v = 0;
  const herr_t rc = H5Aread(attr, H5T_NATIVE_LLONG, &v);
  H5Aclose(attr);
  check(rc, "attribute read", p);
  return v;
}

std::vector<std::string> read_strings_attr(hid_t obj, const char* name, const std::filesystem::path& p) {
  hid_t attr = check_id(H5Aopen(obj, name, H5P_DEFAULT), "attribute open", p);
  hid_t space = H5Aget_space(attr);
  const int rank = H5Sget_simple_extent_ndims(space);
  hsize_t n = 1;
  if (rank == 1) H5Sget_simple_extent_dims(space, &n, nullptr);
  hid_t t = utf8_string_type();
  std::vector<char*> ptrs(n, nullptr);
  std::vector<std::string> out;
  herr_t rc = 0;
  if (n > 0) {
    rc = H5Aread(attr, t, ptrs.data());
    if (rc >= 0) {
      for (auto* s : ptrs) out.emplace_back(s ? s : "");
      H5Dvlen_reclaim(t, space, H5P_DEFAULT, ptrs.data());
    }
  }
  H5Tclose(t);
  H5Sclose(space);
  H5Aclose(attr);
  check(rc, "attribute read", p);
  return out;
}

}  // namespace augment::h5
