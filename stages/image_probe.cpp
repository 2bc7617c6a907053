#include "stages/image_probe.h"

#include <cstdio>
#include <cstring>
#include <vector>

namespace augment {

namespace {

std::uint32_t be16(const std::uint8_t* p) { return (p[0] << 8) | p[1]; }
std::uint32_t be32(const std::uint8_t* p) { return (std::uint32_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }
std::uint32_t le16(const std::uint8_t* p) { return p[0] | (p[1] << 8); }
std::uint32_t le32(const std::uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (std::uint32_t(p[3]) << 24); }

ImageProbe fail(const char* format, const char* why) {
  ImageProbe p;
  p.format = format;
  p.error = why;
  return p;
}

ImageProbe probe_jpeg(const std::uint8_t* d, std::size_t n) {
  std::size_t i = 2;
  while (i + 4 <= n) {
    if (d[i] != 0xFF) return fail("jpeg", "damaged JPEG header (marker expected)");
    while (i < n && d[i] == 0xFF) ++i;  // fill bytes
    if (i >= n) break;
    const std::uint8_t marker = d[i++];
    if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) continue;  // no length
    if (marker == 0xD9 || marker == 0xDA) break;  // end or scan before a frame header
    if (i + 2 > n) break;
    const std::size_t len = be16(d + i);
    if (len < 2) return fail("jpeg", "damaged JPEG header (bad segment length)");
    const bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      if (i + 8 > n) break;
      ImageProbe p;
      p.format = "jpeg";
      p.bit_depth = d[i + 2];
      p.height = static_cast<int>(be16(d + i + 3));
      p.width = static_cast<int>(be16(d + i + 5));
      p.channels = d[i + 7];
      if (p.width == 0 || p.height == 0) return fail("jpeg", "JPEG header declares an empty image");
      return p;
    }
    i += len;
  }
  return fail("jpeg", "truncated (the JPEG header ends before the image size)");
}

ImageProbe probe_png(const std::uint8_t* d, std::size_t n) {
  if (n < 33 || std::memcmp(d + 12, "IHDR", 4) != 0) return fail("png", "truncated (no PNG IHDR header)");
  ImageProbe p;
  p.format = "png";
  p.width = static_cast<int>(std::min<std::uint32_t>(be32(d + 16), 0x7fffffff));
  p.height = static_cast<int>(std::min<std::uint32_t>(be32(d + 20), 0x7fffffff));
  p.bit_depth = d[24];
  switch (d[25]) {
    case 0: p.channels = 1; break;
    case 2: p.channels = 3; break;
    case 3:
      p.channels = 3;
      p.bit_depth = 8;
      break;  // palette expands to colour
    case 4: p.channels = 2; break;
    case 6: p.channels = 4; break;
    default: return fail("png", "PNG header has an unknown colour type");
  }
  if (p.width == 0 || p.height == 0) return fail("png", "PNG header declares an empty image");
  return p;
}

ImageProbe probe_bmp(const std::uint8_t* d, std::size_t n) {
  if (n < 30) return fail("bmp", "truncated BMP header");
  ImageProbe p;
  p.format = "bmp";
  const std::uint32_t header = le32(d + 14);
  if (header == 12) {
    p.width = static_cast<int>(le16(d + 18));
    p.height = static_cast<int>(le16(d + 20));
  } else {
    p.width = static_cast<int>(le32(d + 18));
    const auto h = static_cast<std::int32_t>(le32(d + 22));
    p.height = h < 0 ? -h : h;
  }
  const int bpp = static_cast<int>(le16(d + (header == 12 ? 24 : 28)));
  p.channels = bpp == 32 ? 4 : 3;
  if (p.width <= 0 || p.height <= 0) return fail("bmp", "BMP header declares an empty image");
  return p;
}

ImageProbe probe_webp(const std::uint8_t* d, std::size_t n) {
  if (n < 30) return fail("webp", "truncated WebP header");
  ImageProbe p;
  p.format = "webp";
  p.channels = 3;
  if (std::memcmp(d + 12, "VP8 ", 4) == 0) {
    p.width = static_cast<int>(le16(d + 26) & 0x3fff);
    p.height = static_cast<int>(le16(d + 28) & 0x3fff);
  } else if (std::memcmp(d + 12, "VP8L", 4) == 0) {
    const std::uint32_t bits = le32(d + 21);
    p.width = static_cast<int>((bits & 0x3fff) + 1);
    p.height = static_cast<int>(((bits >> 14) & 0x3fff) + 1);
    if ((bits >> 28) & 1) p.channels = 4;
  } else if (std::memcmp(d + 12, "VP8X", 4) == 0) {
    if (d[20] & 0x10) p.channels = 4;
    p.width = static_cast<int>((d[24] | (d[25] << 8) | (d[26] << 16)) + 1);
    p.height = static_cast<int>((d[27] | (d[28] << 8) | (d[29] << 16)) + 1);
  } else {
    return fail("webp", "unknown WebP chunk");
  }
  if (p.width <= 0 || p.height <= 0) return fail("webp", "WebP header declares an empty image");
  return p;
}

ImageProbe probe_tiff(const std::uint8_t* d, std::size_t n) {
  const bool le = d[0] == 'I';
  auto u16 = [&](std::size_t o) { return le ? le16(d + o) : be16(d + o); };
  auto u32 = [&](std::size_t o) { return le ? le32(d + o) : be32(d + o); };
  const std::size_t ifd = u32(4);
  if (ifd + 2 > n) return fail("tiff", "truncated TIFF header");
  const std::size_t entries = u16(ifd);
  ImageProbe p;
  p.format = "tiff";
  p.channels = 1;
  for (std::size_t e = 0; e < entries; ++e) {
    const std::size_t o = ifd + 2 + e * 12;
    if (o + 12 > n) return fail("tiff", "truncated TIFF directory");
    const auto tag = u16(o), type = u16(o + 2);
    const std::uint32_t value = type == 3 ? u16(o + 8) : u32(o + 8);
    if (tag == 256) p.width = static_cast<int>(value);
    if (tag == 257) p.height = static_cast<int>(value);
    if (tag == 258 && u32(o + 4) == 1) p.bit_depth = static_cast<int>(value);
    if (tag == 277) p.channels = static_cast<int>(value);
  }
  if (p.width <= 0 || p.height <= 0) return fail("tiff", "TIFF header declares no image size");
  return p;
}

ImageProbe probe_pnm(const std::uint8_t* d, std::size_t n) {
  const char kind = static_cast<char>(d[1]);
  std::size_t i = 2;
  auto next_number = [&]() -> long long {
    while (i < n) {
      if (d[i] == '#') {
        while (i < n && d[i] != '\n') ++i;
      } else if (std::isspace(d[i])) {
        ++i;
      } else {
        break;
      }
    }
    long long v = -1;
    if (i < n && std::isdigit(d[i])) v = 0;
    while (i < n && std::isdigit(d[i]) && v < (1LL << 40)) v = v * 10 + (d[i++] - '0');
    return v;
  };
  ImageProbe p;
  p.format = "pnm";
  const long long w = next_number(), h = next_number();
  long long maxval = 1;
  if (kind != '1' && kind != '4') maxval = next_number();
  if (w <= 0 || h <= 0 || maxval <= 0 || w > 0x7fffffff || h > 0x7fffffff) return fail("pnm", "damaged PNM header");
  p.width = static_cast<int>(w);
  p.height = static_cast<int>(h);
  p.channels = (kind == '3' || kind == '6') ? 3 : 1;
  p.bit_depth = maxval > 255 ? 16 : 8;
  return p;
}

}  // namespace

ImageProbe probe_image(const std::uint8_t* d, std::size_t n) {
  if (n == 0) return fail("", "empty file (0 bytes)");
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return probe_jpeg(d, n);
  if (n >= 8 && std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) return probe_png(d, n);
  if (n >= 2 && d[0] == 'B' && d[1] == 'M') return probe_bmp(d, n);
  if (n >= 12 && std::memcmp(d, "RIFF", 4) == 0 && std::memcmp(d + 8, "WEBP", 4) == 0) return probe_webp(d, n);
  if (n >= 8 && (std::memcmp(d, "II*\0", 4) == 0 || std::memcmp(d, "MM\0*", 4) == 0)) return probe_tiff(d, n);
  if (n >= 3 && d[0] == 'P' && d[1] >= '1' && d[1] <= '6' && std::isspace(d[2])) return probe_pnm(d, n);
  return fail("", "not an image (the content is no JPEG, PNG, BMP, WebP, TIFF or PNM)");
}

}  // namespace augment
