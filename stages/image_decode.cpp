#include "stages/image_decode.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace augment {

namespace {

bool is_jpeg(const std::uint8_t* d, std::size_t n) { return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF; }

// The largest JPEG DCT scaling (1/2, 1/4, 1/8) that keeps the side the fit needs >= resolution.
int jpeg_reduction(int width, int height, const TileOptions& o) {
  const int side = o.fit == "pad" ? std::max(width, height) : std::min(width, height);
  int k = 1;
  // Keep 2x headroom for crop/stretch quality; area resampling does the rest.
  while (k < 8 && side / (k * 2) >= o.resolution) k *= 2;
  return k;
}

cv::Mat to_8bit(const cv::Mat& img) {
  if (img.depth() == CV_8U) return img;
  cv::Mat out;
  double scale = 1.0;
  switch (img.depth()) {
    case CV_16U: scale = 255.0 / 65535.0; break;
    case CV_16S: scale = 255.0 / 32767.0; break;
    case CV_32F:
    case CV_64F: scale = 255.0; break;
    default: break;
  }
  img.convertTo(out, CV_8U, scale);
  return out;
}

// Composites alpha over white and converts to the requested channels (RGB or gray).
cv::Mat to_channels(const cv::Mat& img, int channels) {
  cv::Mat bgr;
  switch (img.channels()) {
    case 1:
      if (channels == 1) return img;
      cv::cvtColor(img, bgr, cv::COLOR_GRAY2RGB);
      return bgr;
    case 2:
    case 4: {
      std::vector<cv::Mat> planes;
      cv::split(img, planes);
      cv::Mat alpha;
      planes.back().convertTo(alpha, CV_32F, 1.0 / 255.0);
      planes.pop_back();
      cv::Mat colour;
      cv::merge(planes, colour);
      cv::Mat colour_f;
      colour.convertTo(colour_f, CV_32F);
      cv::Mat alpha_n;
      cv::merge(std::vector<cv::Mat>(planes.size(), alpha), alpha_n);
      cv::Mat white(colour_f.size(), colour_f.type(), cv::Scalar::all(255.0));
      cv::Mat blended = colour_f.mul(alpha_n) + white.mul(cv::Scalar::all(1.0) - alpha_n);
      cv::Mat out8;
      blended.convertTo(out8, CV_8U);
      return to_channels(out8, channels);
    }
    case 3:
      if (channels == 1) {
        cv::cvtColor(img, bgr, cv::COLOR_BGR2GRAY);
      } else {
        cv::cvtColor(img, bgr, cv::COLOR_BGR2RGB);
      }
      return bgr;
    default:
      throw std::runtime_error("unsupported number of channels: " + std::to_string(img.channels()));
  }
}

cv::Mat fit_square(const cv::Mat& img, const TileOptions& o) {
  const int r = o.resolution;
  cv::Mat out;
  if (o.fit == "stretch") {
    cv::resize(img, out, cv::Size(r, r), 0, 0, img.cols > r ? cv::INTER_AREA : cv::INTER_CUBIC);
    return out;
  }
  const bool pad = o.fit == "pad";
  const double scale = pad ? double(r) / std::max(img.cols, img.rows) : double(r) / std::min(img.cols, img.rows);
  const int w = std::max(1, static_cast<int>(std::lround(img.cols * scale)));
  const int h = std::max(1, static_cast<int>(std::lround(img.rows * scale)));
  cv::Mat resized;
  if (w == img.cols && h == img.rows) {
    resized = img;
  } else {
    cv::resize(img, resized, cv::Size(w, h), 0, 0, scale < 1.0 ? cv::INTER_AREA : cv::INTER_CUBIC);
  }
  if (pad) {
    out = cv::Mat(r, r, resized.type(), cv::Scalar::all(255));
    resized.copyTo(out(cv::Rect((r - w) / 2, (r - h) / 2, std::min(w, r), std::min(h, r))));
  } else {
    const int x = (w - r) / 2, y = (h - r) / 2;
    out = resized(cv::Rect(std::max(0, x), std::max(0, y), r, r));
  }
  return out;
}

}  // namespace

void decode_tile(const std::uint8_t* data, std::size_t size, int width, int height, const TileOptions& o, std::uint8_t* out) {
  cv::Mat buf(1, static_cast<int>(size), CV_8U, const_cast<std::uint8_t*>(data));
  cv::Mat img;
  if (is_jpeg(data, size)) {
    // JPEG has no alpha: decode straight to the target colour model, downscaled in the DCT.
    const int k = jpeg_reduction(width, height, o);
    static const int colour[] = {cv::IMREAD_COLOR, cv::IMREAD_REDUCED_COLOR_2, cv::IMREAD_REDUCED_COLOR_4, cv::IMREAD_REDUCED_COLOR_8};
    static const int gray[] = {cv::IMREAD_GRAYSCALE, cv::IMREAD_REDUCED_GRAYSCALE_2, cv::IMREAD_REDUCED_GRAYSCALE_4,
                               cv::IMREAD_REDUCED_GRAYSCALE_8};
    const int slot = k == 1 ? 0 : k == 2 ? 1 : k == 4 ? 2 : 3;
    img = cv::imdecode(buf, o.channels == 1 ? gray[slot] : colour[slot]);
  } else {
    // Everything else keeps alpha and bit depth so we can composite and scale properly.
    img = cv::imdecode(buf, cv::IMREAD_UNCHANGED);
  }
  if (img.empty()) throw std::runtime_error("cannot be decoded");
  cv::Mat tile = fit_square(to_channels(to_8bit(img), o.channels), o);
  if (!tile.isContinuous()) tile = tile.clone();
  std::copy(tile.data, tile.data + static_cast<std::size_t>(o.resolution) * o.resolution * o.channels, out);
}

}  // namespace augment
