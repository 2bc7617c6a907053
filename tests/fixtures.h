// Helpers shared by the tests: temporary folders, generated images, and running the binary.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace augment::test {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with its content at scope exit.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& rel) const { return path_ / rel; }

 private:
  fs::path path_;
};

// Writes an image with OpenCV: `channels` 1, 3 or 4; `depth16` for 16-bit PNG. The content is a
// class-dependent pattern seeded by `seed` so files differ.
void write_image(const fs::path& path, int width, int height, int channels, int seed, bool depth16 = false);
// A palette (colour type 3) PNG with a transparent entry, written by hand (OpenCV cannot).
void write_palette_png(const fs::path& path, int width, int height);
// A PNG whose header declares width x height but holds almost no data.
void write_huge_header_png(const fs::path& path, std::uint32_t width, std::uint32_t height);
void write_bytes(const fs::path& path, const std::string& bytes);
std::string read_bytes(const fs::path& path);
// `n` bytes of a 64-bit LCG seeded by `seed`: fake pixels that are a function of the seed alone.
std::vector<std::uint8_t> seeded_bytes(std::uint64_t seed, std::size_t n);
// The Python the tests run their checks with (Debian's, where h5py and PIL are installed).
std::string python();

// The options a test that runs stages on a small folder starts from: its input and work dir, the
// cache resolution and every image in the train split; then `extra`.
std::vector<std::string> stage_args(const std::filesystem::path& input, const std::filesystem::path& work,
                                    int resolution, const std::vector<std::string>& extra = {});

struct RunResult {
  int code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Starts the augment binary with `args` (no shell) in the background, stdout/stderr to the given
// files ("" keeps them); returns its pid. `env` entries NAME=VALUE are set in the child (NAME=
// with an empty value unsets NAME).
int spawn_augment(const std::vector<std::string>& args, const std::string& out_file, const std::string& err_file,
                  const std::vector<std::string>& env = {});
// Waits for `pid` up to `seconds`; its exit code (128 + signal when killed), or -1 on timeout
// (the process is then killed).
int wait_exit(int pid, double seconds);
// Runs the augment binary with `args` (no shell), capturing output; `env` as for spawn_augment.
RunResult run_augment(const std::vector<std::string>& args, const std::vector<std::string>& env = {});
// Runs a shell command line; returns its exit code and output.
RunResult run_shell(const std::string& command);

}  // namespace augment::test
