#include <doctest/doctest.h>

#include <opencv2/imgcodecs.hpp>

#include "fixtures.h"
#include "stages/image_decode.h"
#include "stages/image_probe.h"

using namespace augment;
using namespace augment::test;

namespace {

std::vector<std::uint8_t> encode(const cv::Mat& img, const std::string& ext) {
  std::vector<std::uint8_t> buf;
  cv::imencode(ext, img, buf);
  return buf;
}

cv::Mat pattern(int w, int h, int type) {
  cv::Mat m(h, w, type);
  cv::randu(m, cv::Scalar::all(0), cv::Scalar::all(255));
  return m;
}

}  // namespace

TEST_SUITE("image probe") {
  TEST_CASE("headers give format - size and channels without decoding") {
    struct Case {
      std::string ext, format;
      int type, channels;
    };
    for (const auto& c :
         {Case{".jpg", "jpeg", CV_8UC3, 3}, Case{".png", "png", CV_8UC4, 4}, Case{".png", "png", CV_8UC1, 1},
          Case{".bmp", "bmp", CV_8UC3, 3}, Case{".tiff", "tiff", CV_8UC3, 3}, Case{".ppm", "pnm", CV_8UC3, 3},
          Case{".pgm", "pnm", CV_8UC1, 1}, Case{".webp", "webp", CV_8UC3, 3}}) {
      CAPTURE(c.ext);
      const auto buf = encode(pattern(37, 21, c.type), c.ext);
      const auto p = probe_image(buf.data(), buf.size());
      CHECK(p.error == "");
      CHECK(p.format == c.format);
      CHECK(p.width == 37);
      CHECK(p.height == 21);
      CHECK(p.channels == c.channels);
      std::vector<std::uint8_t> tile(16 * 16 * 3);
      CHECK(decode_tile(buf.data(), buf.size(), p.width, p.height, {16, 3, Fit::kCrop}, tile.data()) == "");
    }
  }

  TEST_CASE("truncated JPEG and PNG files fail to decode - with the reason") {
    for (const std::string ext : {".jpg", ".png"}) {
      CAPTURE(ext);
      auto buf = encode(pattern(64, 64, CV_8UC3), ext);
      buf.resize(buf.size() / 2);
      const auto p = probe_image(buf.data(), buf.size());
      REQUIRE(p.error == "");
      std::vector<std::uint8_t> tile(16 * 16 * 3);
      const auto why = decode_tile(buf.data(), buf.size(), p.width, p.height, {16, 3, Fit::kCrop}, tile.data());
      CHECK(why != "");
      if (ext == ".jpg") CHECK(why.find("truncated") != std::string::npos);
    }
  }

  TEST_CASE("empty files and non-images are named as such") {
    CHECK(probe_image(nullptr, 0).error.find("0 bytes") != std::string::npos);
    const std::string text = "hello, I am a text file with a .jpg extension";
    CHECK(probe_image(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()).error.find("not an image") !=
          std::string::npos);
  }

  TEST_CASE("a 40000x40000 header is read without allocating the image") {
    TempDir dir;
    write_huge_header_png(dir / "huge.png", 40000, 40000);
    const auto bytes = read_bytes(dir / "huge.png");
    const auto p = probe_image(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    CHECK(p.width == 40000);
    CHECK(p.height == 40000);
  }

  TEST_CASE("tiles: alpha is composited on white - 16-bit and palette PNGs convert - crop keeps the centre") {
    TempDir dir;
    // Fully transparent RGBA -> white.
    cv::Mat rgba(20, 40, CV_8UC4, cv::Scalar(0, 0, 255, 0));
    auto buf = encode(rgba, ".png");
    std::vector<std::uint8_t> tile(8 * 8 * 3);
    decode_tile(buf.data(), buf.size(), 40, 20, {8, 3, Fit::kCrop}, tile.data());
    CHECK(tile[0] == 255);
    CHECK(tile[1] == 255);
    // 16-bit grayscale at 65535 -> 255, in 1 channel.
    cv::Mat g16(16, 16, CV_16UC1, cv::Scalar(65535));
    buf = encode(g16, ".png");
    std::vector<std::uint8_t> gray(8 * 8);
    decode_tile(buf.data(), buf.size(), 16, 16, {8, 1, Fit::kCrop}, gray.data());
    CHECK(gray[0] == 255);
    // Palette PNG: pixel (0,0) is palette entry 0 = red, stored as RGB.
    write_palette_png(dir / "pal.png", 8, 8);
    const auto pal = read_bytes(dir / "pal.png");
    const auto* pd = reinterpret_cast<const std::uint8_t*>(pal.data());
    const auto probe = probe_image(pd, pal.size());
    CHECK(probe.format == "png");
    CHECK(decode_tile(pd, pal.size(), 8, 8, {8, 3, Fit::kCrop}, tile.data()) == "");
    CHECK(tile[0] == 255);
    CHECK(tile[1] == 0);
    CHECK(tile[2] == 0);
    // Pixel (2,0) is entry 2 = green with alpha 0 -> white.
    CHECK(tile[6] == 255);
    CHECK(tile[7] == 255);
    // Crop: a 30x10 image whose centre is bright and sides dark gives a bright tile.
    cv::Mat wide(10, 30, CV_8UC3, cv::Scalar::all(0));
    wide(cv::Rect(10, 0, 10, 10)).setTo(cv::Scalar::all(200));
    buf = encode(wide, ".png");
    tile.resize(10 * 10 * 3);
    decode_tile(buf.data(), buf.size(), 30, 10, {10, 3, Fit::kCrop}, tile.data());
    CHECK(tile[0] == 200);
    // Pad: the same image padded keeps white borders top and bottom.
    std::vector<std::uint8_t> padded(30 * 30 * 3);
    decode_tile(buf.data(), buf.size(), 30, 10, {30, 3, Fit::kPad}, padded.data());
    CHECK(padded[0] == 255);
    CHECK(padded[(15 * 30 + 15) * 3] == 200);
  }

  TEST_CASE("EXIF orientation is applied to JPEGs") {
    // A 40x20 image, left half black, right half white, tagged "rotate 90 clockwise" (6).
    cv::Mat img(20, 40, CV_8UC1, cv::Scalar(0));
    img(cv::Rect(20, 0, 20, 20)).setTo(255);
    auto jpg = encode(img, ".jpg");
    // APP1 Exif segment with one IFD entry: orientation = 6 (big-endian TIFF).
    const std::uint8_t exif[] = {0xFF, 0xE1, 0x00, 0x22, 'E', 'x', 'i', 'f', 0, 0, 'M', 'M', 0, 42, 0, 0, 0, 8,
                                 0,    1,    0x01, 0x12, 0,   3,   0,   0,   0, 1, 0,   6,   0, 0,  0, 0, 0, 0};
    jpg.insert(jpg.begin() + 2, std::begin(exif), std::end(exif));
    CHECK(jpeg_exif_orientation(jpg.data(), jpg.size()) == 6);
    std::vector<std::uint8_t> tile(20 * 20);
    REQUIRE(decode_tile(jpg.data(), jpg.size(), 40, 20, {20, 1, Fit::kPad}, tile.data()) == "");
    // Rotated clockwise, the white half is at the bottom: top rows dark, bottom rows bright.
    CHECK(tile[2 * 20 + 10] < 60);
    CHECK(tile[17 * 20 + 10] > 200);
  }

  TEST_CASE("large JPEGs are downscaled in the decoder to the same result size") {
    cv::Mat big = pattern(500, 375, CV_8UC3);
    const auto buf = encode(big, ".jpg");
    std::vector<std::uint8_t> tile(64 * 64 * 3);
    REQUIRE(decode_tile(buf.data(), buf.size(), 500, 375, {64, 3, Fit::kCrop}, tile.data()) == "");
    // Uniform-noise image: mean stays near 127 whatever the scaling.
    double sum = 0;
    for (auto v : tile) sum += v;
    CHECK(sum / static_cast<double>(tile.size()) == doctest::Approx(127).epsilon(0.1));
  }
}
