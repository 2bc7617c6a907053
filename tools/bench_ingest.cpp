// Ingest benchmark: the whole scan + subsample + cache of a folder of ~500x375 JPEGs to 64x64, run
// as a user runs it (the augment binary), with images/s and peak resident memory; and the usual
// Python route (PIL + 2-process pool, tools/bench_ingest_baseline.py) on the same files.
//
//   bench_ingest [--images 2000] [--memory] [--data DIR]
//
// --memory also runs 1,000 and 10,000 images and prints the peak-RSS ratio. Generated datasets are
// kept under --data (default /tmp/augment-bench) so repeated runs time only the ingest.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace fs = std::filesystem;

namespace {

// Photo-like content (smooth shapes, gradients, mild noise) compresses like real photos do.
void make_dataset(const fs::path& root, int images) {
  if (fs::exists(root / ".complete")) return;
  fs::remove_all(root);
  std::mt19937 rng(42);
  const int classes = 10;
  std::vector<int> params = {cv::IMWRITE_JPEG_QUALITY, 90};
  for (int i = 0; i < images; ++i) {
    cv::Mat img(375, 500, CV_8UC3);
    const int c = i % classes;
    for (int y = 0; y < img.rows; ++y)
      img.row(y).setTo(cv::Scalar((y * 255) / img.rows, 40 * c % 255, 255 - (y * 200) / img.rows));
    for (int k = 0; k < 12; ++k) {
      cv::circle(img, {static_cast<int>(rng() % 500), static_cast<int>(rng() % 375)}, 10 + static_cast<int>(rng() % 80),
                 cv::Scalar(rng() % 256, rng() % 256, rng() % 256), -1, cv::LINE_AA);
    }
    cv::Mat noise(img.size(), img.type());
    cv::randn(noise, cv::Scalar::all(0), cv::Scalar::all(12));
    img += noise;
    cv::GaussianBlur(img, img, {3, 3}, 0);
    const auto dir = root / fmt::format("class {:02}", c);
    fs::create_directories(dir);
    cv::imwrite((dir / fmt::format("{:06}.jpg", i)).string(), img, params);
  }
  std::FILE* f = std::fopen((root / ".complete").c_str(), "w");
  if (f) std::fclose(f);
}

struct Timed {
  double seconds = 0;
  long peak_rss_kb = 0;
  int code = -1;
};

Timed run(const std::vector<std::string>& argv_in, bool quiet_stdout) {
  std::vector<std::string> args = argv_in;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (quiet_stdout) {
      if (!std::freopen("/dev/null", "w", stdout)) ::_exit(127);
    }
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  struct rusage usage {};
  ::wait4(pid, &status, 0, &usage);
  Timed t;
  t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  t.peak_rss_kb = usage.ru_maxrss;
  t.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return t;
}

Timed ingest(const fs::path& augment, const fs::path& data, const fs::path& work) {
  fs::remove_all(work);
  return run(
      {augment.string(), "cache", "--input", data.string(), "--work", work.string(), "--resolution", "64", "--quiet"},
      true);
}

}  // namespace

int main(int argc, char** argv) {
  int images = 2000;
  bool memory = false;
  fs::path data_root = "/tmp/augment-bench";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--images" && i + 1 < argc)
      images = std::stoi(argv[++i]);
    else if (a == "--memory")
      memory = true;
    else if (a == "--data" && i + 1 < argc)
      data_root = argv[++i];
    else {
      std::cerr << "usage: bench_ingest [--images N] [--memory] [--data DIR]\n";
      return 64;
    }
  }
  const fs::path self = fs::canonical("/proc/self/exe");
  const fs::path augment = self.parent_path() / "augment";
  const fs::path source = fs::path(__FILE__).parent_path();
  const auto data = data_root / fmt::format("jpeg-{}", images);
  std::cerr << "generating " << images << " JPEGs (500x375) in " << data << " (once)\n";
  make_dataset(data, images);
  // One warm-up pass so both tools read from the page cache.
  ingest(augment, data, data_root / "work-warm");

  const auto t = ingest(augment, data, data_root / "work");
  if (t.code != 0) {
    std::cerr << "augment failed with code " << t.code << "\n";
    return 1;
  }
  std::string python_json = "null";
  double python_rate = 0;
  const auto baseline = source / "bench_ingest_baseline.py";
  if (fs::exists("/usr/bin/python3") && fs::exists(baseline)) {
    const auto cmd = fmt::format("/usr/bin/python3 {} '{}' 64 2", baseline.string(), data.string());
    std::FILE* p = ::popen(cmd.c_str(), "r");
    char buf[512] = {0};
    if (p && std::fgets(buf, sizeof(buf), p)) {
      python_json = buf;
      while (!python_json.empty() && python_json.back() == '\n') python_json.pop_back();
      const auto k = python_json.find("\"images_per_s\": ");
      if (k != std::string::npos) python_rate = std::stod(python_json.substr(k + 16));
    }
    if (p) ::pclose(p);
  }
  const double rate = images / t.seconds;
  std::cout << fmt::format(
      "{{\"images\": {}, \"augment_seconds\": {:.3f}, \"augment_images_per_s\": {:.1f}, \"augment_peak_rss_mb\": "
      "{:.1f}, "
      "\"python_pil_pool2\": {}, \"speedup_vs_python\": {:.2f}, \"cores\": {}}}\n",
      images, t.seconds, rate, t.peak_rss_kb / 1024.0, python_json, python_rate > 0 ? rate / python_rate : 0.0,
      std::thread::hardware_concurrency());

  if (memory) {
    long rss[2] = {0, 0};
    int i = 0;
    for (int n : {1000, 10000}) {
      const auto d = data_root / fmt::format("jpeg-{}", n);
      make_dataset(d, n);
      const auto m = ingest(augment, d, data_root / "work-mem");
      rss[i++] = m.peak_rss_kb;
      std::cout << fmt::format(
          "{{\"images\": {}, \"seconds\": {:.3f}, \"images_per_s\": {:.1f}, \"peak_rss_mb\": {:.1f}}}\n", n, m.seconds,
          n / m.seconds, m.peak_rss_kb / 1024.0);
    }
    std::cout << fmt::format("{{\"peak_rss_ratio_10000_vs_1000\": {:.2f}}}\n", static_cast<double>(rss[1]) / rss[0]);
  }
  return 0;
}
