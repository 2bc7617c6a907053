#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <hdf5.h>

#include "manifests/hdf5_shard.h"

using namespace augment;
namespace fs = std::filesystem;

namespace {

std::vector<std::uint8_t> read_images(const fs::path& path, std::size_t bytes) {
  std::vector<std::uint8_t> out(bytes, 0);
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(f >= 0);
  hid_t d = H5Dopen2(f, "images", H5P_DEFAULT);
  REQUIRE(d >= 0);
  // The read runs HDF5's own filter pipeline: inflate and the fletcher32 verification.
  const herr_t rc = H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data());
  H5Dclose(d);
  H5Fclose(f);
  REQUIRE(rc >= 0);
  return out;
}

// Writes `count` images in uneven blocks and reads them back through HDF5. `noisy`: the images of
// blocks with an odd index are pure noise (deflate cannot shrink them); the others compress.
// Returns the writer's (chunks written, chunks stored without deflate).
std::pair<std::int64_t, std::int64_t> round_trip(int height, int width, int channels, std::int64_t count,
                                                 const std::vector<std::int64_t>& blocks, int deflate,
                                                 double min_saving = 0.05, bool noisy = false) {
  const auto dir = fs::temp_directory_path() / ("augment_test_shard_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const auto path = dir / "s-00000-of-00001.h5";
  const std::size_t image = static_cast<std::size_t>(height) * width * channels;
  std::vector<std::uint8_t> pixels(image * static_cast<std::size_t>(count));
  std::uint32_t state = 12345;
  std::vector<bool> noise_image(static_cast<std::size_t>(count), false);
  for (std::int64_t start = 0, b = 0; start < count; ++b) {
    const std::int64_t n = std::min(count - start, blocks[static_cast<std::size_t>(b) % blocks.size()]);
    for (std::int64_t i = start; i < start + n; ++i) noise_image[static_cast<std::size_t>(i)] = noisy && b % 2 == 1;
    start += n;
  }
  for (std::size_t i = 0; i < pixels.size(); ++i) {
    state = state * 1664525u + 1013904223u;
    const bool noise = noise_image[i / image] || i % 7 == 0;
    pixels[i] = static_cast<std::uint8_t>(noise ? state >> 24 : (i / 97) % 256);  // compressible, not constant
  }
  std::pair<std::int64_t, std::int64_t> chunks;
  {
    ShardWriter w(path, ShardHeader{{"a", "b"}, height, width, channels, "s", 0, 1, 0, "k"}, count, deflate,
                  min_saving);
    std::int64_t start = 0;
    for (std::size_t b = 0; start < count; ++b) {
      const std::int64_t n = std::min(count - start, blocks[b % blocks.size()]);
      std::vector<std::int64_t> labels(static_cast<std::size_t>(n), 1);
      std::vector<std::uint8_t> flags(static_cast<std::size_t>(n), 0);
      std::vector<std::string> files(static_cast<std::size_t>(n), "x.png");
      w.write(start, n, pixels.data() + static_cast<std::size_t>(start) * image, labels.data(), flags.data(), files);
      start += n;
    }
    w.commit();
    chunks = {w.chunks_written(), w.chunks_without_deflate()};
  }
  CHECK(read_images(path, pixels.size()) == pixels);
  fs::remove_all(dir);
  return chunks;
}

}  // namespace

TEST_CASE("hdf5 shard: fletcher32 matches HDF5's checksum of known bytes") {
  // Values from HDF5's algorithm worked by hand: "ab" -> sum1 = sum2 = 0x6162.
  const std::uint8_t ab[] = {'a', 'b'};
  CHECK(hdf5_fletcher32(ab, 2) == 0x61626162u);
  // Odd length: the last byte is the high byte of a final word.
  const std::uint8_t abc[] = {'a', 'b', 'c'};
  CHECK(hdf5_fletcher32(abc, 3) == 0x25C5C462u);  // sum1 0x6162 + 0x6300; sum2 0x6162 + 0xC462 folded
}

TEST_CASE("hdf5 shard: fletcher32 equals HDF5's word-by-word sums on long inputs") {
  // HDF5's loop as its source states it (H5_checksum_fletcher32): one word at a time, folded every 360 words.
  auto stepwise = [](const std::uint8_t* data, std::size_t n) {
    std::uint32_t sum1 = 0, sum2 = 0;
    std::size_t len = n / 2;
    while (len > 0) {
      std::size_t tlen = len > 360 ? 360 : len;
      len -= tlen;
      do {
        sum1 += static_cast<std::uint32_t>((static_cast<std::uint32_t>(data[0]) << 8) | data[1]);
        data += 2;
        sum2 += sum1;
      } while (--tlen);
      sum1 = (sum1 & 0xffff) + (sum1 >> 16);
      sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    }
    if (n % 2 != 0) {
      sum1 += static_cast<std::uint32_t>(data[0]) << 8;
      sum2 += sum1;
      sum1 = (sum1 & 0xffff) + (sum1 >> 16);
      sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    }
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    return (sum2 << 16) | sum1;
  };
  std::vector<std::uint8_t> bytes(12289);
  std::uint32_t state = 7;
  for (auto& b : bytes) {
    state = state * 1664525u + 1013904223u;
    b = static_cast<std::uint8_t>(state >> 24);
  }
  for (const std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(719), std::size_t(720), std::size_t(721),
                              std::size_t(12288), std::size_t(12289)}) {
    CAPTURE(n);
    CHECK(hdf5_fletcher32(bytes.data(), n) == stepwise(bytes.data(), n));
  }
  // All 0xff: the largest sums, where the folds matter most.
  const std::vector<std::uint8_t> ones(12289, 0xff);
  for (const std::size_t n : {std::size_t(720), std::size_t(12288), std::size_t(12289)}) {
    CAPTURE(n);
    CHECK(hdf5_fletcher32(ones.data(), n) == stepwise(ones.data(), n));
  }
}

TEST_CASE("hdf5 shard: images written in uneven blocks read back exactly through HDF5's filters") {
  // 20x20x3 = 1200 bytes per image: 9 images per chunk, blocks that split chunks, a short last chunk.
  round_trip(20, 20, 3, 50, {7, 13, 1, 30}, 4);
  round_trip(20, 20, 3, 50, {50}, 0);  // no deflate: shuffle and checksum only
  round_trip(28, 28, 1, 1, {1}, 9);    // one image: the chunk is that image
}

TEST_CASE("hdf5 shard: images over 1 MiB are stored in bands of rows and read back exactly") {
  // 700x700x3 = 1.47 MB: bands of 499 rows, the second band short.
  round_trip(700, 700, 3, 3, {2, 1}, 1);
}

TEST_CASE("hdf5 shard: blocks that deflate would not shrink are stored without it and read back exactly") {
  // 16x16x3 = 768 bytes: 14 images per chunk; blocks of 56 images = 4 chunks, every other one noise.
  const auto mixed = round_trip(16, 16, 3, 224, {56}, 4, 0.05, true);
  CHECK(mixed.first == 16);
  CHECK(mixed.second == 8);  // exactly the noise blocks
  // min_saving 0: everything deflated, noise too.
  CHECK(round_trip(16, 16, 3, 224, {56}, 4, 0.0, true).second == 0);
  // Compressible images only: nothing skipped.
  CHECK(round_trip(16, 16, 3, 224, {56}, 4, 0.05, false).second == 0);
  // Without a deflate filter there is nothing to skip.
  CHECK(round_trip(16, 16, 3, 224, {56}, 0, 0.05, true).second == 0);
  // Blocks of one chunk each decide on that chunk alone.
  CHECK(round_trip(16, 16, 3, 56, {14}, 1, 0.05, true) == std::make_pair<std::int64_t, std::int64_t>(4, 2));
  // Blocks that split chunks: a chunk of 5 smooth and 9 noise images still deflates by more than 5%.
  CHECK(round_trip(16, 16, 3, 60, {5, 9}, 1, 0.05, true).second == 0);
}

TEST_CASE(
    "hdf5 shard: shards through one background writer reuse its memory and read back exactly with names that outgrow "
    "the estimate") {
  // 2x2x1 images (4 bytes) with 260-character names: the names need several times the memory the
  // pixels suggest, so HDF5's in-memory file grows (and is copied) while it is built. Three shards
  // of different sizes go through one writer, so each reuses the buffers of the one before.
  const auto dir = fs::temp_directory_path() / ("augment_test_shard_bg_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::vector<std::int64_t> counts = {6000, 9000, 2500};
  std::vector<std::vector<std::uint8_t>> pixels(counts.size());
  std::vector<std::vector<std::string>> names(counts.size());
  {
    BackgroundFileWriter background;
    for (std::size_t k = 0; k < counts.size(); ++k) {
      const std::int64_t n = counts[k];
      pixels[k].resize(static_cast<std::size_t>(n) * 4);
      for (std::size_t i = 0; i < pixels[k].size(); ++i)
        pixels[k][i] = static_cast<std::uint8_t>((i * 7 + k * 31) % 251);
      for (std::int64_t i = 0; i < n; ++i) names[k].push_back(fmt::format("class {} & ü/{:0>240}.png", k, i));
      ShardWriter w(dir / fmt::format("s-{}.h5", k),
                    ShardHeader{{"a", "b"}, 2, 2, 1, "s", static_cast<int>(k), 3, 0, "k"}, n, 4, 0.10, &background);
      std::vector<std::int64_t> labels(static_cast<std::size_t>(n), 1);
      std::vector<std::uint8_t> flags(static_cast<std::size_t>(n), 0);
      w.write(0, n, pixels[k].data(), labels.data(), flags.data(), names[k]);
      w.commit();
    }
    background.finish();
  }
  for (std::size_t k = 0; k < counts.size(); ++k) {
    CAPTURE(k);
    const auto path = dir / fmt::format("s-{}.h5", k);
    CHECK(read_images(path, pixels[k].size()) == pixels[k]);
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    REQUIRE(f >= 0);
    hid_t d = H5Dopen2(f, "files", H5P_DEFAULT);
    hid_t type = H5Dget_type(d);
    std::vector<char*> got(static_cast<std::size_t>(counts[k]), nullptr);
    REQUIRE(H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, got.data()) >= 0);
    std::size_t same = 0;
    for (std::size_t i = 0; i < got.size(); ++i) same += got[i] != nullptr && names[k][i] == got[i];
    CHECK(same == got.size());
    hid_t space = H5Dget_space(d);
    H5Dvlen_reclaim(type, space, H5P_DEFAULT, got.data());
    H5Sclose(space);
    H5Tclose(type);
    H5Dclose(d);
    H5Fclose(f);
  }
  fs::remove_all(dir);
}
