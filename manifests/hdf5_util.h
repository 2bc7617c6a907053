// Small wrappers over the HDF5 C API shared by the image cache and the export shards: error
// checks that name the file, UTF-8 string attributes, scalar integer attributes. HDF5 in Debian
// is built without thread safety: call these from one thread only.
#pragma once

#include <hdf5.h>

#include <filesystem>
#include <string>
#include <vector>

namespace augment::h5 {

// Throw UserError(kIoError) naming `what` and the file when an HDF5 call failed.
void check(herr_t rc, const char* what, const std::filesystem::path& path);
hid_t check_id(hid_t id, const char* what, const std::filesystem::path& path);

// HDF5 prints its own error stack by default; augment reports errors itself. Called by every
// user of these helpers before its first HDF5 call (idempotent).
void silence_error_stack();

// Variable-length UTF-8 string type (caller closes it).
hid_t utf8_string_type();

void write_int_attr(hid_t obj, const char* name, long long value, const std::filesystem::path& path);
void write_string_attr(hid_t obj, const char* name, const std::string& value, const std::filesystem::path& path);
void write_strings_attr(hid_t obj, const char* name, const std::vector<std::string>& values,
                        const std::filesystem::path& path);
long long read_int_attr(hid_t obj, const char* name, const std::filesystem::path& path);
// Reads a scalar or 1-D UTF-8 string attribute (a scalar gives one element).
std::vector<std::string> read_strings_attr(hid_t obj, const char* name, const std::filesystem::path& path);

}  // namespace augment::h5
