// Export throughput: HDF5 shards (manifests/hdf5_shard.h, the writer `augment export` uses) next to
// a plain sequential write + fsync of the same image bytes on the same disk. Prints JSON.
//   bench_export [--images N] [--resolution R] [--channels C] [--deflate L] [--min-saving F]
//                [--content noisy|smooth] [--noise W] [--shard-size S] [--repeat K] [--dir DIR]
// K rounds (default 5) each time both writes, alternating which goes first; medians are printed.
// Content: "noisy" smooth colour fields with +-8 of noise per byte (deflate saves ~4%, like
// low-resolution photos at worst), "smooth" the fields alone (deflate saves a lot).
#include <fcntl.h>
#include <sys/resource.h>
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

namespace {

// CPU seconds (user + system) of the whole process so far, all threads.
double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t images = 100000, shard_size = 10000;
  int repeat = 5;
  int res = 32, channels = 3, deflate = 4;
  double min_saving = 0.10;  // export.min_saving's default
  std::string content = "noisy";
  int noise = -1;  // width of the uniform noise added per byte; --content picks 16 or 1
  fs::path dir = "/tmp/augment-bench-export";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--images")
      images = std::stoll(v);
    else if (a == "--resolution")
      res = std::stoi(v);
    else if (a == "--channels")
      channels = std::stoi(v);
    else if (a == "--deflate")
      deflate = std::stoi(v);
    else if (a == "--shard-size")
      shard_size = std::stoll(v);
    else if (a == "--min-saving")
      min_saving = std::stod(v);
    else if (a == "--content" && (v == "noisy" || v == "smooth"))
      content = v;
    else if (a == "--dir")
      dir = v;
    else if (a == "--noise")
      noise = std::max(1, std::stoi(v));
    else if (a == "--repeat")
      repeat = std::max(1, std::stoi(v));
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 64;
    }
  }
  fs::remove_all(dir);
  fs::create_directories(dir);
  if (noise < 0) noise = content == "noisy" ? 16 : 1;
  const std::size_t bytes = static_cast<std::size_t>(res) * res * channels;
  std::vector<std::uint8_t> pixels(bytes * static_cast<std::size_t>(images));
  std::mt19937 rng(1);
  for (std::int64_t n = 0; n < images; ++n) {
    const double fx = 0.05 + (rng() % 100) / 400.0, fy = 0.05 + (rng() % 100) / 400.0, phase = rng() % 628 / 100.0;
    for (int y = 0; y < res; ++y)
      for (int x = 0; x < res; ++x)
        for (int c = 0; c < channels; ++c) {
          const double v =
              127.5 + 100 * std::sin(fx * x + fy * y + phase + c) + static_cast<double>(rng() % noise) - noise / 2;
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

  const std::int64_t nshards = (images + shard_size - 1) / shard_size;
  struct Round {
    double export_s = 0, export_cpu = 0, commit_s = 0, plain_s = 0, plain_cpu = 0;
  };
  std::uint64_t h5_bytes = 0;
  std::int64_t chunks = 0, chunks_plain = 0;
  auto export_round = [&](Round& r) {
    const auto t0 = Clock::now();
    const double cpu0 = cpu_seconds();
    chunks = chunks_plain = 0;
    augment::BackgroundFileWriter background;
    for (std::int64_t k = 0; k < nshards; ++k) {
      const std::int64_t begin = k * shard_size, end = std::min(images, begin + shard_size);
      augment::ShardHeader h{{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"},
                             res,
                             res,
                             channels,
                             "bench",
                             static_cast<int>(k),
                             static_cast<int>(nshards),
                             0,
                             "bench"};
      const auto path = dir / fmt::format("bench-{:05}-of-{:05}.h5", k, nshards);
      augment::ShardWriter w(path, h, end - begin, deflate, min_saving, &background);
      constexpr std::int64_t kBlock = 512;  // as the export stage writes
      for (std::int64_t b = begin; b < end; b += kBlock) {
        const std::int64_t n = std::min(kBlock, end - b);
        std::vector<std::string> f(files.begin() + b, files.begin() + b + n);
        w.write(b - begin, n, pixels.data() + static_cast<std::size_t>(b) * bytes, labels.data() + b, flags.data() + b,
                f);
      }
      const auto c0 = Clock::now();
      w.commit();  // its disk write overlaps the next shard
      chunks += w.chunks_written();
      chunks_plain += w.chunks_without_deflate();
      r.commit_s += std::chrono::duration<double>(Clock::now() - c0).count();
    }
    background.finish();
    r.export_s = std::chrono::duration<double>(Clock::now() - t0).count();
    r.export_cpu = cpu_seconds() - cpu0;
    h5_bytes = 0;
    for (std::int64_t k = 0; k < nshards; ++k)
      h5_bytes += fs::file_size(dir / fmt::format("bench-{:05}-of-{:05}.h5", k, nshards));
  };
  auto plain_round = [&](Round& r) {
    const auto t1 = Clock::now();
    const double cpu1 = cpu_seconds();
    const auto path = dir / "plain.bin";
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::size_t off = 0;
    constexpr std::size_t kChunk = 1 << 20;
    while (off < pixels.size()) {
      const auto n = ::write(fd, pixels.data() + off, std::min(kChunk, pixels.size() - off));
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    ::fsync(fd);
    ::close(fd);
    r.plain_s = std::chrono::duration<double>(Clock::now() - t1).count();
    r.plain_cpu = cpu_seconds() - cpu1;
    fs::remove(path);
    return true;
  };
  // Rounds alternate which write goes first, so neither always meets the other's dirty pages.
  std::vector<Round> rounds(static_cast<std::size_t>(repeat));
  for (std::size_t i = 0; i < rounds.size(); ++i) {
    if (i % 2 == 0) {
      if (!plain_round(rounds[i])) return 74;
      export_round(rounds[i]);
    } else {
      export_round(rounds[i]);
      if (!plain_round(rounds[i])) return 74;
    }
  }
  auto median = [&](double Round::*field) {
    std::vector<double> v;
    for (const auto& r : rounds) v.push_back(r.*field);
    std::sort(v.begin(), v.end());
    return v.size() % 2 == 1 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  };
  std::vector<double> ratios;  // in round order: the first round often runs with cold buffers
  for (const auto& r : rounds) ratios.push_back(r.plain_s / r.export_s);
  const double mb = static_cast<double>(pixels.size()) / 1e6;
  const double h5_s = median(&Round::export_s), plain_s = median(&Round::plain_s);
  const nlohmann::json out = {{"images", images},
                              {"resolution", res},
                              {"channels", channels},
                              {"deflate", deflate},
                              {"min_saving", min_saving},
                              {"content", content},
                              {"noise", noise},
                              {"rounds", repeat},
                              {"chunks", chunks},
                              {"chunks_without_deflate", chunks_plain},
                              {"shards", nshards},
                              {"image_mb", mb},
                              {"hdf5_file_mb", static_cast<double>(h5_bytes) / 1e6},
                              {"export_seconds_median", h5_s},
                              {"export_mb_per_s", mb / h5_s},
                              {"export_commit_seconds_median", median(&Round::commit_s)},
                              {"export_cpu_seconds_median", median(&Round::export_cpu)},
                              {"plain_write_seconds_median", plain_s},
                              {"plain_write_mb_per_s", mb / plain_s},
                              {"plain_write_cpu_seconds_median", median(&Round::plain_cpu)},
                              {"export_vs_plain_per_round", ratios},
                              {"export_vs_plain", plain_s / h5_s},
                              {"dir", dir.string()}};
  std::printf("%s\n", out.dump(2).c_str());
  fs::remove_all(dir);
  return 0;
}
