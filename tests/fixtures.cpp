#include "fixtures.h"

#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "augment_test_paths.h"

namespace augment::test {

TempDir::TempDir() {
  std::string templ = (fs::temp_directory_path() / "augment-test-XXXXXX").string();
  if (!::mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed");
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  // Tests make read-only trees sometimes; restore write bits before removing.
  fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
  fs::remove_all(path_, ec);
}

void write_image(const fs::path& path, int width, int height, int channels, int seed, bool depth16) {
  std::mt19937 rng(static_cast<unsigned>(seed));
  cv::Mat img(height, width, CV_8UC(channels), cv::Scalar::all(0));
  cv::randu(img, cv::Scalar::all(0), cv::Scalar::all(255));
  cv::circle(img, {width / 2, height / 2}, std::max(1, std::min(width, height) / 3),
             cv::Scalar::all(static_cast<double>(rng() % 255)), -1);
  if (channels == 4) {
    std::vector<cv::Mat> planes;
    cv::split(img, planes);
    planes[3].setTo(128);
    cv::merge(planes, img);
  }
  if (depth16) img.convertTo(img, CV_16U, 257.0);
  fs::create_directories(path.parent_path());
  if (!cv::imwrite(path.string(), img)) throw std::runtime_error("cannot write " + path.string());
}

static void put_be32(std::string& s, std::uint32_t v) {
  for (int i = 3; i >= 0; --i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
}

static void put_chunk(std::string& png, const char* type, const std::string& data) {
  put_be32(png, static_cast<std::uint32_t>(data.size()));
  std::string body = std::string(type, 4) + data;
  png += body;
  put_be32(png, static_cast<std::uint32_t>(
                    crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
}

void write_palette_png(const fs::path& path, int width, int height) {
  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  put_be32(ihdr, static_cast<std::uint32_t>(width));
  put_be32(ihdr, static_cast<std::uint32_t>(height));
  ihdr += std::string("\x08\x03\x00\x00\x00", 5);  // 8-bit, palette
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "PLTE", std::string("\xff\x00\x00\x00\x00\xff\x00\xff\x00", 9));  // red, blue, green
  put_chunk(png, "tRNS", std::string("\xff\xff\x00", 3));                          // green transparent
  std::string raw;
  for (int y = 0; y < height; ++y) {
    raw += '\0';  // filter: none
    for (int x = 0; x < width; ++x) raw += static_cast<char>((x + y) % 3);
  }
  uLongf zsize = compressBound(static_cast<uLong>(raw.size()));
  std::string z(zsize, '\0');
  compress(reinterpret_cast<Bytef*>(z.data()), &zsize, reinterpret_cast<const Bytef*>(raw.data()),
           static_cast<uLong>(raw.size()));
  z.resize(zsize);
  put_chunk(png, "IDAT", z);
  put_chunk(png, "IEND", "");
  write_bytes(path, png);
}

void write_huge_header_png(const fs::path& path, std::uint32_t width, std::uint32_t height) {
  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  put_be32(ihdr, width);
  put_be32(ihdr, height);
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IEND", "");
  write_bytes(path, png);
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

static std::string slurp(int fd) {
  std::string s;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) s.append(buf, static_cast<std::size_t>(n));
  return s;
}

int spawn_augment(const std::vector<std::string>& args, const std::string& out_file, const std::string& err_file,
                  const std::vector<std::string>& env) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::string bin = AUGMENT_BINARY;
    std::vector<std::string> copy = args;
    std::vector<char*> argv = {bin.data()};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (const auto& e : env) {
      const auto eq = e.find('=');
      const std::string name = e.substr(0, eq), value = eq == std::string::npos ? "" : e.substr(eq + 1);
      if (value.empty())
        ::unsetenv(name.c_str());
      else
        ::setenv(name.c_str(), value.c_str(), 1);
    }
    if (!out_file.empty() && !std::freopen(out_file.c_str(), "w", stdout)) ::_exit(127);
    if (!err_file.empty() && !std::freopen(err_file.c_str(), "w", stderr)) ::_exit(127);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

int wait_exit(int pid, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

RunResult run_augment(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  TempDir io;
  const auto out_path = io / "out", err_path = io / "err";
  const pid_t pid = spawn_augment(args, out_path.string(), err_path.string(), env);
  int status = 0;
  ::waitpid(pid, &status, 0);
  RunResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_bytes(out_path);
  r.err = read_bytes(err_path);
  return r;
}

RunResult run_shell(const std::string& command) {
  RunResult r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  r.out = slurp(fileno(p));
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::vector<std::uint8_t> seeded_bytes(std::uint64_t seed, std::size_t n) {
  std::vector<std::uint8_t> out(n);
  std::uint64_t x = seed;
  for (auto& p : out) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    p = static_cast<std::uint8_t>(x >> 56);
  }
  return out;
}

std::string python() { return fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3"; }

std::vector<std::string> stage_args(const std::filesystem::path& input, const std::filesystem::path& work,
                                    int resolution, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"--input",
                                   input.string(),
                                   "--work",
                                   work.string(),
                                   "--resolution",
                                   std::to_string(resolution),
                                   "--subsample.val_fraction",
                                   "0",
                                   "--subsample.test_fraction",
                                   "0"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

}  // namespace augment::test
