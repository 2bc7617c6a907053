// How an export shard's image dataset is cut into chunks, and the checksum HDF5 stores with each
// chunk: computed by augment itself, which filters chunks in parallel outside the HDF5 library.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace augment {

// Chunk of the images dataset: whole images, as few as keep a chunk >= 10 KiB (at most `count`),
// or for images over 1 MiB, bands of rows of one image that stay <= 1 MiB.
std::array<unsigned long long, 4> image_chunk_shape(std::int64_t count, int height, int width, int channels);

// HDF5's fletcher32 filter checksum of `n` bytes (H5_checksum_fletcher32: big-endian 16-bit words).
std::uint32_t hdf5_fletcher32(const std::uint8_t* data, std::size_t n);

}  // namespace augment
