// A colour image folder for checking a recipe away from Fashion-MNIST: five classes of shapes
// (one colour family each, on textured backgrounds), unbalanced, with class names that need care
// (spaces, '&', non-ASCII) and images of other sizes than the training resolution.
//
//   make_shapes --out DIR [--counts 800,400,200,100,50] [--size 40] [--seed 1]
//
// Classes: "disc", "square", "triangle", "cross & bar", "anneau (ring)". Each image has a random
// position, scale, rotation, colour shade and background texture; the class is the shape. The
// folder is built under a temporary name and renamed when complete; an existing DIR is refused.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace fs = std::filesystem;

namespace {

const char* const kClassNames[] = {"disc", "square", "triangle", "cross & bar", "anneau (ring)"};

cv::Mat draw(int cls, int size, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  // Background: a smooth two-colour gradient plus noise, dark or light at random.
  const bool dark = u(rng) < 0.5;
  cv::Mat img(size, size, CV_8UC3);
  const cv::Vec3d a(u(rng) * 90 + (dark ? 0 : 150), u(rng) * 90 + (dark ? 0 : 150), u(rng) * 90 + (dark ? 0 : 150));
  const cv::Vec3d b(u(rng) * 90 + (dark ? 0 : 150), u(rng) * 90 + (dark ? 0 : 150), u(rng) * 90 + (dark ? 0 : 150));
  std::normal_distribution<double> noise(0.0, 8.0);
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      const double t = (x + y) / (2.0 * size);
      for (int c = 0; c < 3; ++c)
        img.at<cv::Vec3b>(y, x)[c] = cv::saturate_cast<std::uint8_t>(a[c] * (1 - t) + b[c] * t + noise(rng));
    }
  }
  // Foreground: a shade of the class's colour family (hue), strong against either background.
  const double hue = cls * 36.0 + u(rng) * 20.0;  // OpenCV hue in [0, 180)
  cv::Mat hsv(1, 1, CV_8UC3, cv::Scalar(hue, 170 + u(rng) * 85, dark ? 200 + u(rng) * 55 : 90 + u(rng) * 60));
  cv::Mat bgr;
  cv::cvtColor(hsv, bgr, cv::COLOR_HSV2BGR);
  const cv::Scalar colour(bgr.at<cv::Vec3b>(0, 0)[0], bgr.at<cv::Vec3b>(0, 0)[1], bgr.at<cv::Vec3b>(0, 0)[2]);
  const double r = size * (0.22 + u(rng) * 0.12);
  const cv::Point2d centre(size * (0.35 + u(rng) * 0.3), size * (0.35 + u(rng) * 0.3));
  const double angle = u(rng) * 2 * M_PI;
  auto polygon = [&](const std::vector<cv::Point2d>& unit) {
    std::vector<cv::Point> pts;
    for (const auto& p : unit) {
      const double x = p.x * std::cos(angle) - p.y * std::sin(angle), y = p.x * std::sin(angle) + p.y * std::cos(angle);
      pts.emplace_back(cvRound(centre.x + r * x), cvRound(centre.y + r * y));
    }
    cv::fillPoly(img, std::vector<std::vector<cv::Point>>{pts}, colour, cv::LINE_AA);
  };
  switch (cls) {
    case 0: cv::circle(img, centre, cvRound(r), colour, cv::FILLED, cv::LINE_AA); break;
    case 1: polygon({{-0.8, -0.8}, {0.8, -0.8}, {0.8, 0.8}, {-0.8, 0.8}}); break;
    case 2: polygon({{0, -1}, {0.87, 0.5}, {-0.87, 0.5}}); break;
    case 3:
      polygon({{-1, -0.25}, {1, -0.25}, {1, 0.25}, {-1, 0.25}});
      polygon({{-0.25, -1}, {0.25, -1}, {0.25, 1}, {-0.25, 1}});
      break;
    default: cv::circle(img, centre, cvRound(r * 0.8), colour, std::max(2, size / 12), cv::LINE_AA); break;
  }
  return img;
}

}  // namespace

int main(int argc, char** argv) {
  fs::path out;
  std::vector<int> counts = {800, 400, 200, 100, 50};
  int size = 40;
  unsigned seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "missing value after " << a << "\n";
      return 64;
    }
    const std::string v = argv[++i];
    if (a == "--out") {
      out = v;
    } else if (a == "--counts") {
      counts.clear();
      for (std::size_t p = 0; p <= v.size();) {
        const auto q = v.find(',', p);
        counts.push_back(std::stoi(v.substr(p, q == std::string::npos ? std::string::npos : q - p)));
        if (q == std::string::npos) break;
        p = q + 1;
      }
    } else if (a == "--size") {
      size = std::stoi(v);
    } else if (a == "--seed") {
      seed = static_cast<unsigned>(std::stoul(v));
    } else {
      std::cerr << "unknown option " << a
                << "\nusage: make_shapes --out DIR [--counts 800,400,200,100,50] [--size 40] [--seed 1]\n";
      return 64;
    }
  }
  if (out.empty() || counts.empty() || counts.size() > 5 || size < 8) {
    std::cerr << "usage: make_shapes --out DIR [--counts 800,400,200,100,50] [--size 40 (>= 8)] [--seed 1] (at most 5 "
                 "counts)\n";
    return 64;
  }
  if (fs::exists(out)) {
    std::cerr << out.string() << " exists; choose a new folder (make_shapes never overwrites)\n";
    return 73;
  }
  const fs::path tmp = out.parent_path() / ("." + out.filename().string() + ".partial");
  fs::remove_all(tmp);
  std::mt19937 rng(seed);
  for (std::size_t c = 0; c < counts.size(); ++c) {
    const auto dir = tmp / kClassNames[c];
    fs::create_directories(dir);
    for (int i = 0; i < counts[c]; ++i) {
      if (!cv::imwrite((dir / fmt::format("{:05}.png", i)).string(), draw(static_cast<int>(c), size, rng))) {
        std::cerr << "cannot write into " << dir.string() << "\n";
        return 74;
      }
    }
  }
  fs::rename(tmp, out);
  std::cout << fmt::format("{}: {} classes, {}x{} RGB\n", out.string(), counts.size(), size, size);
  return 0;
}
