#include "stages/image_decode.h"

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include <jerror.h>
#include <jpeglib.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace augment {

std::string TileOptions::key() const {
  return std::to_string(resolution) + "x" + std::to_string(channels) + "/" + name_of(fit);
}

namespace {

bool is_jpeg(const std::uint8_t* d, std::size_t n) { return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF; }

// The largest JPEG DCT scaling (1/2, 1/4, 1/8) that keeps the side the fit needs at or above the
// resolution; area resampling does the rest.
int jpeg_reduction(int width, int height, const TileOptions& o) {
  const int side = o.fit == Fit::kPad ? std::max(width, height) : std::min(width, height);
  int k = 1;
  while (k < 8 && side / (k * 2) >= o.resolution) k *= 2;
  return k;
}

// libjpeg reports errors through longjmp and counts warnings; a truncated file is only a warning.
struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  bool truncated = false;
  char message[JMSG_LENGTH_MAX] = {0};
};

extern "C" void jpeg_on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

extern "C" void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level < 0) {
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) reinterpret_cast<JpegError*>(cinfo->err)->truncated = true;
    cinfo->err->num_warnings++;
  }
}

// Decodes a JPEG at 1/k scale straight into RGB or gray. Returns "" or the reason it failed;
// `fallback` is set for colour spaces libjpeg cannot convert (CMYK), which OpenCV handles.
std::string decode_jpeg(const std::uint8_t* data, std::size_t size, int k, int channels, cv::Mat& out, bool& fallback) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_on_error;
  err.mgr.emit_message = jpeg_on_message;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return std::string("corrupt JPEG data: ") + err.message;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, const_cast<unsigned char*>(data), static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&cinfo);
    fallback = true;
    return "";
  }
  cinfo.scale_num = 1;
  cinfo.scale_denom = static_cast<unsigned>(k);
  cinfo.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  if (k > 1) {
    // The tile is downsampled further anyway: the fast IDCT and plain chroma upsampling cost
    // nothing visible at that size and save about a fifth of the decode.
    cinfo.dct_method = JDCT_IFAST;
    cinfo.do_fancy_upsampling = FALSE;
  }
  jpeg_start_decompress(&cinfo);
  out.create(static_cast<int>(cinfo.output_height), static_cast<int>(cinfo.output_width),
             channels == 1 ? CV_8UC1 : CV_8UC3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out.ptr<unsigned char>(static_cast<int>(cinfo.output_scanline));
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  const bool truncated = err.truncated;
  jpeg_destroy_decompress(&cinfo);
  return truncated ? "truncated (the JPEG data ends early)" : "";
}

std::uint32_t rd16(const std::uint8_t* p, bool le) { return le ? (p[0] | (p[1] << 8)) : ((p[0] << 8) | p[1]); }
std::uint32_t rd32(const std::uint8_t* p, bool le) {
  return le ? (p[0] | (p[1] << 8) | (p[2] << 16) | (std::uint32_t(p[3]) << 24))
            : ((std::uint32_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3]);
}

void apply_orientation(cv::Mat& img, int orientation) {
  switch (orientation) {
    case 2: cv::flip(img, img, 1); break;
    case 3: cv::rotate(img, img, cv::ROTATE_180); break;
    case 4: cv::flip(img, img, 0); break;
    case 5: cv::transpose(img, img); break;
    case 6: cv::rotate(img, img, cv::ROTATE_90_CLOCKWISE); break;
    case 7:
      cv::transpose(img, img);
      cv::rotate(img, img, cv::ROTATE_180);
      break;
    case 8: cv::rotate(img, img, cv::ROTATE_90_COUNTERCLOCKWISE); break;
    default: break;
  }
}

cv::Mat to_8bit(const cv::Mat& img) {
  if (img.depth() == CV_8U) return img;
  double scale = 1.0;
  switch (img.depth()) {
    case CV_16U: scale = 255.0 / 65535.0; break;
    case CV_16S: scale = 255.0 / 32767.0; break;
    case CV_32F:
    case CV_64F: scale = 255.0; break;
    default: break;
  }
  cv::Mat out;
  img.convertTo(out, CV_8U, scale);
  return out;
}

// OpenCV decodes to BGR(A); composites alpha over white and converts to RGB or gray.
cv::Mat bgr_to_channels(const cv::Mat& img, int channels) {
  cv::Mat out;
  switch (img.channels()) {
    case 1:
      if (channels == 1) return img;
      cv::cvtColor(img, out, cv::COLOR_GRAY2RGB);
      return out;
    case 2:
    case 4: {
      std::vector<cv::Mat> planes;
      cv::split(img, planes);
      cv::Mat alpha;
      planes.back().convertTo(alpha, CV_32F, 1.0 / 255.0);
      planes.pop_back();
      cv::Mat colour, colour_f, alpha_n;
      cv::merge(planes, colour);
      colour.convertTo(colour_f, CV_32F);
      cv::merge(std::vector<cv::Mat>(planes.size(), alpha), alpha_n);
      cv::Mat white(colour_f.size(), colour_f.type(), cv::Scalar::all(255.0));
      cv::Mat blended = colour_f.mul(alpha_n) + white.mul(cv::Scalar::all(1.0) - alpha_n);
      cv::Mat out8;
      blended.convertTo(out8, CV_8U);
      return bgr_to_channels(out8, channels);
    }
    case 3: cv::cvtColor(img, out, channels == 1 ? cv::COLOR_BGR2GRAY : cv::COLOR_BGR2RGB); return out;
    default: throw std::runtime_error("unsupported number of channels: " + std::to_string(img.channels()));
  }
}

cv::Mat fit_square(const cv::Mat& img, const TileOptions& o) {
  const int r = o.resolution;
  cv::Mat out;
  if (o.fit == Fit::kStretch) {
    cv::resize(img, out, cv::Size(r, r), 0, 0, img.cols > r ? cv::INTER_AREA : cv::INTER_CUBIC);
    return out;
  }
  const bool pad = o.fit == Fit::kPad;
  const double scale = pad ? double(r) / std::max(img.cols, img.rows) : double(r) / std::min(img.cols, img.rows);
  const int w = std::clamp(static_cast<int>(std::lround(img.cols * scale)), pad ? 1 : r, pad ? r : INT32_MAX);
  const int h = std::clamp(static_cast<int>(std::lround(img.rows * scale)), pad ? 1 : r, pad ? r : INT32_MAX);
  cv::Mat resized;
  if (w == img.cols && h == img.rows) {
    resized = img;
  } else {
    cv::resize(img, resized, cv::Size(w, h), 0, 0, scale < 1.0 ? cv::INTER_AREA : cv::INTER_CUBIC);
  }
  if (pad) {
    out = cv::Mat(r, r, resized.type(), cv::Scalar::all(255));
    resized.copyTo(out(cv::Rect((r - w) / 2, (r - h) / 2, w, h)));
    return out;
  }
  return resized(cv::Rect((w - r) / 2, (h - r) / 2, r, r));
}

}  // namespace

int jpeg_exif_orientation(const std::uint8_t* d, std::size_t n) {
  std::size_t i = 2;
  while (i + 4 <= n && d[i] == 0xFF) {
    const std::uint8_t marker = d[i + 1];
    if (marker == 0xDA || marker == 0xD9) break;
    const std::size_t len = (d[i + 2] << 8) | d[i + 3];
    if (marker == 0xE1 && len >= 16 && i + 2 + len <= n && std::memcmp(d + i + 4, "Exif\0\0", 6) == 0) {
      const std::uint8_t* t = d + i + 10;
      const std::size_t tn = len - 8;
      const bool le = t[0] == 'I';
      const std::size_t ifd = rd32(t + 4, le);
      if (ifd + 2 > tn) return 1;
      const std::size_t entries = rd16(t + ifd, le);
      for (std::size_t e = 0; e < entries && ifd + 2 + (e + 1) * 12 <= tn; ++e) {
        const std::uint8_t* entry = t + ifd + 2 + e * 12;
        if (rd16(entry, le) == 0x0112) {
          const int v = static_cast<int>(rd16(entry + 8, le));
          return v >= 1 && v <= 8 ? v : 1;
        }
      }
      return 1;
    }
    i += 2 + len;
  }
  return 1;
}

std::string decode_tile(const std::uint8_t* data, std::size_t size, int width, int height, const TileOptions& o,
                        std::uint8_t* out) {
  cv::Mat img;
  try {
    bool fallback = false;
    if (is_jpeg(data, size)) {
      const int orientation = jpeg_exif_orientation(data, size);
      const bool swapped = orientation >= 5;
      const int k = jpeg_reduction(swapped ? height : width, swapped ? width : height, o);
      if (auto err = decode_jpeg(data, size, k, o.channels, img, fallback); !err.empty()) return err;
      if (!fallback) apply_orientation(img, orientation);
    }
    if (img.empty()) {
      // Everything else keeps alpha and bit depth so compositing and scaling are right.
      cv::Mat buf(1, static_cast<int>(size), CV_8U, const_cast<std::uint8_t*>(data));
      cv::Mat decoded = cv::imdecode(buf, fallback ? cv::IMREAD_COLOR : cv::IMREAD_UNCHANGED);
      if (decoded.empty()) return "cannot be decoded (truncated or corrupt image data)";
      img = bgr_to_channels(to_8bit(decoded), o.channels);
    }
    cv::Mat tile = fit_square(img, o);
    if (!tile.isContinuous()) tile = tile.clone();
    std::memcpy(out, tile.data, static_cast<std::size_t>(o.resolution) * o.resolution * o.channels);
  } catch (const cv::Exception& e) {
    return std::string("cannot be decoded: ") + e.what();
  } catch (const std::exception& e) {
    return std::string("cannot be decoded: ") + e.what();
  }
  return "";
}

}  // namespace augment
