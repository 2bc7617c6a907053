// Export throughput: HDF5 shards (manifests/hdf5_shard.h, the writer `augment export` uses) next to
// a plain sequential write + fsync of the same image bytes on the same disk. Prints JSON.
//   bench_export [--images N] [--resolution R] [--channels C] [--deflate L] [--min-saving F]
//                [--content noisy|smooth] [--shard-size S] [--dir DIR]
// Content: "noisy" smooth colour fields with +-8 of noise per byte (deflate saves ~1%, like
// low-resolution photos at worst), "smooth" the fields alone (deflate saves a lot).
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "manifests/hdf5_shard.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  std::int64_t images = 20000, shard_size = 10000;
  int res = 32, channels = 3, deflate = 4;
  double min_saving = 0.05;
  std::string content = "noisy";
  fs::path dir = "/tmp/augment-bench-export";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--images") images = std::stoll(v);
    else if (a == "--resolution") res = std::stoi(v);
    else if (a == "--channels") channels = std::stoi(v);
    else if (a == "--deflate") deflate = std::stoi(v);
    else if (a == "--shard-size") shard_size = std::stoll(v);
    else if (a == "--min-saving") min_saving = std::stod(v);
    else if (a == "--content" && (v == "noisy" || v == "smooth")) content = v;
    else if (a == "--dir") dir = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 64;
    }
  }
  fs::remove_all(dir);
  fs::create_directories(dir);
  const int noise = content == "noisy" ? 16 : 1;
  const std::size_t bytes = static_cast<std::size_t>(res) * res * channels;
  std::vector<std::uint8_t> pixels(bytes * static_cast<std::size_t>(images));
  std::mt19937 rng(1);
  for (std::int64_t n = 0; n < images; ++n) {
    const double fx = 0.05 + (rng() % 100) / 400.0, fy = 0.05 + (rng() % 100) / 400.0, phase = rng() % 628 / 100.0;
    for (int y = 0; y < res; ++y)
      for (int x = 0; x < res; ++x)
        for (int c = 0; c < channels; ++c) {
          const double v = 127.5 + 100 * std::sin(fx * x + fy * y + phase + c) + static_cast<double>(rng() % noise) - noise / 2;
          pixels[static_cast<std::size_t>(n) * bytes + (static_cast<std::size_t>(y) * res + x) * channels + c] =
              static_cast<std::uint8_t>(std::clamp(v, 0.0, 255.0));
        }
  }
  std::vector<std::int64_t> labels(static_cast<std::size_t>(images));
  std::vector<std::uint8_t> flags(static_cast<std::size_t>(images));
  std::vector<std::string> files(static_cast<std::size_t>(images));
  for (std::int64_t n = 0; n < images; ++n) {
    labels[static_cast<std::size_t>(n)] = n % 10;
    flags[static_cast<std::size_t>(n)] = n % 2;
    files[static_cast<std::size_t>(n)] = fmt::format("class {}/synthetic_{:06}.png", n % 10, n);
  }

  const auto t0 = Clock::now();
  const std::int64_t nshards = (images + shard_size - 1) / shard_size;
  std::uint64_t h5_bytes = 0;
  std::int64_t chunks = 0, chunks_plain = 0;
  double commit_s = 0;  // finishing the shards; their disk writes overlap the next shard
  augment::BackgroundFileWriter background;
  for (std::int64_t k = 0; k < nshards; ++k) {
    const std::int64_t begin = k * shard_size, end = std::min(images, begin + shard_size);
    augment::ShardHeader h{{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, res, res, channels, "bench", static_cast<int>(k),
                           static_cast<int>(nshards), 0, "bench"};
    const auto path = dir / fmt::format("bench-{:05}-of-{:05}.h5", k, nshards);
    augment::ShardWriter w(path, h, end - begin, deflate, min_saving);
    constexpr std::int64_t kBlock = 512;  // as the export stage writes
    for (std::int64_t b = begin; b < end; b += kBlock) {
      const std::int64_t n = std::min(kBlock, end - b);
      std::vector<std::string> f(files.begin() + b, files.begin() + b + n);
      w.write(b - begin, n, pixels.data() + static_cast<std::size_t>(b) * bytes, labels.data() + b, flags.data() + b, f);
    }
    const auto c0 = Clock::now();
    w.commit(&background);
    chunks += w.chunks_written();
    chunks_plain += w.chunks_without_deflate();
    commit_s += std::chrono::duration<double>(Clock::now() - c0).count();
  }
  background.finish();
  for (std::int64_t k = 0; k < nshards; ++k) h5_bytes += fs::file_size(dir / fmt::format("bench-{:05}-of-{:05}.h5", k, nshards));
  const double h5_s = std::chrono::duration<double>(Clock::now() - t0).count();

  const auto t1 = Clock::now();
  {
    const auto path = dir / "plain.bin";
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::size_t off = 0;
    constexpr std::size_t kChunk = 1 << 20;
    while (off < pixels.size()) {
      const auto n = ::write(fd, pixels.data() + off, std::min(kChunk, pixels.size() - off));
      if (n <= 0) return 74;
      off += static_cast<std::size_t>(n);
    }
    ::fsync(fd);
    ::close(fd);
  }
  const double plain_s = std::chrono::duration<double>(Clock::now() - t1).count();
  const double mb = static_cast<double>(pixels.size()) / 1e6;
  const nlohmann::json out = {{"images", images},
                              {"resolution", res},
                              {"channels", channels},
                              {"deflate", deflate},
                              {"min_saving", min_saving},
                              {"content", content},
                              {"chunks", chunks},
                              {"chunks_without_deflate", chunks_plain},
                              {"shards", nshards},
                              {"image_mb", mb},
                              {"hdf5_file_mb", static_cast<double>(h5_bytes) / 1e6},
                              {"export_seconds", h5_s},
                              {"export_mb_per_s", mb / h5_s},
                              {"export_commit_seconds", commit_s},
                              {"plain_write_seconds", plain_s},
                              {"plain_write_mb_per_s", mb / plain_s},
                              {"export_vs_plain", (mb / h5_s) / (mb / plain_s)},
                              {"dir", dir.string()}};
  std::printf("%s\n", out.dump(2).c_str());
  fs::remove_all(dir);
  return 0;
}
