#include "stages/evaluate_figures.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <functional>
#include <set>

#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"

namespace augment {

namespace {

const cv::Scalar kWhite(255, 255, 255), kBlack(0, 0, 0), kGrey(150, 150, 150), kLightGrey(225, 225, 225);
constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
constexpr double kTextScale = 0.5;

// Hershey fonts draw ASCII only: other characters become '?', one per UTF-8 sequence.
std::string ascii(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if ((c & 0xC0) != 0x80) {
      out += '?';
    }
  }
  return out;
}

cv::Size text_size(const std::string& text, double scale = kTextScale, int thickness = 1) {
  int baseline = 0;
  return cv::getTextSize(ascii(text), kFont, scale, thickness, &baseline);
}

void put_text(cv::Mat& img, const std::string& text, cv::Point origin, const cv::Scalar& colour = kBlack,
              double scale = kTextScale, int thickness = 1) {
  cv::putText(img, ascii(text), origin, kFont, scale, colour, thickness, cv::LINE_AA);
}

cv::Mat to_bgr(const cv::Mat& tile) {
  cv::Mat out;
  if (tile.channels() == 1) {
    cv::cvtColor(tile, out, cv::COLOR_GRAY2BGR);
  } else if (tile.channels() == 3) {
    cv::cvtColor(tile, out, cv::COLOR_RGB2BGR);
  } else {
    throw std::invalid_argument("figures: tiles must have 1 or 3 channels");
  }
  return out;
}

cv::Mat scaled_tile(const cv::Mat& tile, int side) {
  cv::Mat out;
  cv::resize(to_bgr(tile), out, cv::Size(side, side), 0, 0, side >= tile.cols ? cv::INTER_NEAREST : cv::INTER_AREA);
  return out;
}

// 1, 2 or 5 times a power of ten, near range / target.
double nice_step(double range, int target) {
  const double raw = range / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

std::string tick_label(double v) {
  if (v == 0) return "0";
  const double a = std::abs(v);
  if (a >= 1e5 || a < 1e-3) return fmt::format("{:.0e}", v);
  if (a >= 100) return fmt::format("{:.0f}", v);
  return fmt::format("{:.3g}", v);
}

}  // namespace

cv::Scalar class_colour(int label) {
  // A qualitative palette that stays apart for colour-blind viewers (Tableau 10), as BGR.
  static const cv::Scalar kPalette[] = {{180, 119, 31},  {14, 127, 255}, {44, 160, 44},   {40, 39, 214},
                                        {189, 103, 148}, {75, 86, 140},  {194, 119, 227}, {127, 127, 127},
                                        {34, 189, 188},  {207, 190, 23}};
  if (label >= 0 && label < 10) return kPalette[label];
  // Golden-ratio hue steps: neighbours differ strongly, any number of classes.
  const int hue = static_cast<int>(std::fmod(label * 0.61803398875 * 180.0, 180.0));
  cv::Mat hsv(1, 1, CV_8UC3, cv::Scalar(hue, 200, label % 2 ? 170 : 220)), bgr;
  cv::cvtColor(hsv, bgr, cv::COLOR_HSV2BGR);
  const auto p = bgr.at<cv::Vec3b>(0, 0);
  return {static_cast<double>(p[0]), static_cast<double>(p[1]), static_cast<double>(p[2])};
}

cv::Mat tile_grid(const std::vector<cv::Mat>& tiles, int columns, int cell, int gap) {
  if (tiles.empty()) return {};
  columns = std::max(1, std::min<int>(columns, static_cast<int>(tiles.size())));
  const int rows = (static_cast<int>(tiles.size()) + columns - 1) / columns;
  const int src = tiles.front().cols;
  const int side = src >= cell ? src : src * ((cell + src - 1) / src);
  cv::Mat grid(rows * side + (rows + 1) * gap, columns * side + (columns + 1) * gap, CV_8UC3, kWhite);
  for (std::size_t i = 0; i < tiles.size(); ++i) {
    const int r = static_cast<int>(i) / columns, c = static_cast<int>(i) % columns;
    scaled_tile(tiles[i], side).copyTo(grid(cv::Rect(gap + c * (side + gap), gap + r * (side + gap), side, side)));
  }
  return grid;
}

cv::Mat with_title(const cv::Mat& body, const std::string& title) {
  const auto ts = text_size(title);
  const int head = ts.height + 14;
  const int width = std::max(body.empty() ? 0 : body.cols, ts.width + 12);
  cv::Mat out(head + (body.empty() ? 0 : body.rows), width, CV_8UC3, kWhite);
  put_text(out, title, {6, ts.height + 6});
  if (!body.empty()) body.copyTo(out(cv::Rect(0, head, body.cols, body.rows)));
  return out;
}

cv::Mat side_by_side(const std::vector<std::pair<std::string, cv::Mat>>& panels) {
  std::vector<cv::Mat> titled;
  int width = 0, height = 0;
  for (const auto& [title, body] : panels) {
    titled.push_back(with_title(body, title));
    width += titled.back().cols;
    height = std::max(height, titled.back().rows);
  }
  const int gap = 16;
  width += gap * static_cast<int>(titled.empty() ? 0 : titled.size() - 1);
  cv::Mat out(std::max(1, height), std::max(1, width), CV_8UC3, kWhite);
  int x = 0;
  for (const auto& t : titled) {
    t.copyTo(out(cv::Rect(x, 0, t.cols, t.rows)));
    x += t.cols + gap;
  }
  return out;
}

cv::Mat stacked(const std::vector<cv::Mat>& images, int gap) {
  int width = 1, height = 0;
  for (const auto& m : images) {
    width = std::max(width, m.cols);
    height += m.rows;
  }
  height += gap * static_cast<int>(images.empty() ? 0 : images.size() - 1);
  cv::Mat out(std::max(1, height), width, CV_8UC3, kWhite);
  int y = 0;
  for (const auto& m : images) {
    if (!m.empty()) m.copyTo(out(cv::Rect(0, y, m.cols, m.rows)));
    y += m.rows + gap;
  }
  return out;
}

namespace {

// Maps embedding coordinates into a square of `size` pixels inside `margin`, keeping the aspect.
struct MapFrame {
  float min_x = 0, min_y = 0, scale = 1;
  int margin = 0, size = 0;
  MapFrame(const std::vector<MapPoint>& points, int size_, int margin_) : margin(margin_), size(size_) {
    if (points.empty()) return;
    float max_x = points[0].x, max_y = points[0].y;
    min_x = points[0].x;
    min_y = points[0].y;
    for (const auto& p : points) {
      min_x = std::min(min_x, p.x), max_x = std::max(max_x, p.x);
      min_y = std::min(min_y, p.y), max_y = std::max(max_y, p.y);
    }
    const float span = std::max({max_x - min_x, max_y - min_y, 1e-6f});
    scale = static_cast<float>(size - 2 * margin) / span;
    // Centre the shorter extent.
    min_x -= ((span - (max_x - min_x)) / 2);
    min_y -= ((span - (max_y - min_y)) / 2);
  }
  cv::Point at(const MapPoint& p) const {
    return {margin + static_cast<int>(std::lround((p.x - min_x) * scale)),
            margin + static_cast<int>(std::lround((p.y - min_y) * scale))};
  }
};

void draw_marker(cv::Mat& img, cv::Point at, const cv::Scalar& colour, bool synthetic) {
  if (synthetic) {
    cv::line(img, at + cv::Point(-3, -3), at + cv::Point(3, 3), colour, 1, cv::LINE_AA);
    cv::line(img, at + cv::Point(-3, 3), at + cv::Point(3, -3), colour, 1, cv::LINE_AA);
  } else {
    cv::circle(img, at, 3, colour, cv::FILLED, cv::LINE_AA);
  }
}

// Class swatches, then what real and synthetic points look like, in a column from x.
void draw_legend(cv::Mat& out, int x, const std::vector<MapPoint>& points, const std::vector<std::string>& class_names,
                 const std::function<void(cv::Mat&, cv::Point, bool)>& marker) {
  std::set<int> present;
  bool any_real = false, any_synthetic = false;
  for (const auto& p : points) {
    present.insert(p.label);
    (p.synthetic ? any_synthetic : any_real) = true;
  }
  int y = 24;
  for (const int label : present) {
    cv::circle(out, {x + 5, y - 4}, 5, class_colour(label), cv::FILLED, cv::LINE_AA);
    const auto name =
        label >= 0 && static_cast<std::size_t>(label) < class_names.size() ? class_names[label] : std::to_string(label);
    put_text(out, name.size() > 26 ? name.substr(0, 25) + "~" : name, {x + 16, y});
    y += 22;
  }
  y += 10;
  if (any_real) {
    marker(out, {x + 5, y - 4}, false);
    put_text(out, "real", {x + 16, y});
    y += 22;
  }
  if (any_synthetic) {
    marker(out, {x + 5, y - 4}, true);
    put_text(out, "synthetic", {x + 16, y});
  }
}

// A thumbnail's frame in its class colour: solid and thick for a real image, only the corners
// for a synthetic one, so the two can be told apart at a glance.
void draw_frame(cv::Mat& img, const cv::Rect& box, const cv::Scalar& colour, bool synthetic) {
  if (!synthetic) {
    cv::rectangle(img, box, colour, 2);
    return;
  }
  const int l = std::max(3, box.width / 4), x0 = box.x, y0 = box.y, x1 = box.x + box.width - 1,
            y1 = box.y + box.height - 1;
  for (const auto& [cx, cy, dx, dy] :
       {std::array<int, 4>{x0, y0, 1, 1}, {x1, y0, -1, 1}, {x0, y1, 1, -1}, {x1, y1, -1, -1}}) {
    cv::line(img, {cx, cy}, {cx + dx * l, cy}, colour, 2);
    cv::line(img, {cx, cy}, {cx, cy + dy * l}, colour, 2);
  }
}

constexpr int kLegendWidth = 240;

}  // namespace

cv::Mat scatter_map(const std::vector<MapPoint>& points, const std::vector<std::string>& class_names, int size) {
  cv::Mat out(size, size + kLegendWidth, CV_8UC3, kWhite);
  cv::rectangle(out, {0, 0}, {size - 1, size - 1}, kLightGrey);
  const MapFrame frame(points, size, 12);
  for (const auto& p : points) draw_marker(out, frame.at(p), class_colour(p.label), p.synthetic);
  draw_legend(out, size + 16, points, class_names,
              [](cv::Mat& img, cv::Point at, bool synthetic) { draw_marker(img, at, kBlack, synthetic); });
  return out;
}

cv::Mat thumbnail_map(const std::vector<MapPoint>& points, const std::vector<cv::Mat>& tiles,
                      const std::vector<std::string>& class_names, int size, int thumb) {
  if (tiles.size() != points.size()) throw std::invalid_argument("thumbnail_map: one tile per point expected");
  cv::Mat out(size, size + kLegendWidth, CV_8UC3, kWhite);
  cv::rectangle(out, {0, 0}, {size - 1, size - 1}, kLightGrey);
  const int half = thumb / 2 + 1;
  const MapFrame frame(points, size, half + 1);
  std::set<std::pair<int, int>> taken;
  for (std::size_t i = 0; i < points.size(); ++i) {
    const auto c = frame.at(points[i]);
    if (!taken.insert({c.x / thumb, c.y / thumb}).second) continue;
    const cv::Rect box(c.x - thumb / 2, c.y - thumb / 2, thumb, thumb);
    const cv::Rect inside = box & cv::Rect(0, 0, size, size);
    if (inside.area() != box.area()) continue;
    scaled_tile(tiles[i], thumb).copyTo(out(box));
    draw_frame(out, box, class_colour(points[i].label), points[i].synthetic);
  }
  draw_legend(out, size + 16, points, class_names, [](cv::Mat& img, cv::Point at, bool synthetic) {
    draw_frame(img, cv::Rect(at.x - 7, at.y - 7, 14, 14), kBlack, synthetic);
  });
  return out;
}

cv::Mat line_chart(const std::vector<double>& x, const std::vector<double>& y, const std::string& title,
                   const std::string& x_label, const std::string& y_label, int smooth) {
  const int width = 900, height = 520, left = 80, right = 20, top = 40, bottom = 60;
  cv::Mat out(height, width, CV_8UC3, kWhite);
  put_text(out, title, {left, 24}, kBlack, 0.6);
  std::vector<std::pair<double, double>> pts;
  for (std::size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
    if (std::isfinite(x[i]) && std::isfinite(y[i])) pts.emplace_back(x[i], y[i]);
  }
  const cv::Rect plot(left, top, width - left - right, height - top - bottom);
  cv::rectangle(out, plot, kBlack);
  if (pts.empty()) {
    put_text(out, "no data", {plot.x + plot.width / 2 - 30, plot.y + plot.height / 2});
    return out;
  }
  double x0 = pts.front().first, x1 = x0, y0 = pts.front().second, y1 = y0;
  for (const auto& [px, py] : pts) {
    x0 = std::min(x0, px), x1 = std::max(x1, px), y0 = std::min(y0, py), y1 = std::max(y1, py);
  }
  const bool log_y = y0 > 0 && y1 / y0 > 20;
  auto fy = [&](double v) { return log_y ? std::log10(v) : v; };
  double ly0 = fy(y0), ly1 = fy(y1);
  if (ly1 - ly0 < 1e-12) ly0 -= 0.5, ly1 += 0.5;
  if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
  const double pad = 0.04 * (ly1 - ly0);
  ly0 -= pad, ly1 += pad;
  auto px = [&](double v) { return plot.x + static_cast<int>(std::lround((v - x0) / (x1 - x0) * plot.width)); };
  auto py = [&](double v) {
    return plot.y + plot.height - static_cast<int>(std::lround((fy(v) - ly0) / (ly1 - ly0) * plot.height));
  };

  // Ticks and grid lines.
  const double xs = nice_step(x1 - x0, 6);
  for (double v = std::ceil(x0 / xs) * xs; v <= x1 + 1e-9 * xs; v += xs) {
    const int p = px(v);
    cv::line(out, {p, plot.y}, {p, plot.y + plot.height}, kLightGrey);
    cv::line(out, {p, plot.y + plot.height}, {p, plot.y + plot.height + 5}, kBlack);
    const auto l = tick_label(v);
    put_text(out, l, {p - text_size(l, 0.45).width / 2, plot.y + plot.height + 20}, kBlack, 0.45);
  }
  std::vector<double> yticks;
  if (log_y) {
    for (int e = static_cast<int>(std::floor(ly0)); e <= static_cast<int>(std::ceil(ly1)); ++e) {
      for (double m : {1.0, 2.0, 5.0}) {
        const double v = m * std::pow(10.0, e);
        if (std::log10(v) >= ly0 && std::log10(v) <= ly1) yticks.push_back(v);
      }
    }
  } else {
    const double ys = nice_step(ly1 - ly0, 6);
    for (double v = std::ceil(ly0 / ys) * ys; v <= ly1 + 1e-9 * ys; v += ys) yticks.push_back(v);
  }
  for (double v : yticks) {
    const int p = py(v);
    cv::line(out, {plot.x, p}, {plot.x + plot.width, p}, kLightGrey);
    cv::line(out, {plot.x - 5, p}, {plot.x, p}, kBlack);
    const auto l = tick_label(v);
    put_text(out, l, {plot.x - 8 - text_size(l, 0.45).width, p + 5}, kBlack, 0.45);
  }
  cv::rectangle(out, plot, kBlack);
  put_text(out, x_label, {plot.x + plot.width / 2 - text_size(x_label).width / 2, height - 14});
  cv::Mat label(24, text_size(y_label).width + 8, CV_8UC3, kWhite);
  put_text(label, y_label, {4, 17});
  cv::rotate(label, label, cv::ROTATE_90_COUNTERCLOCKWISE);
  if (label.rows <= plot.height)
    label.copyTo(out(cv::Rect(4, plot.y + (plot.height - label.rows) / 2, label.cols, label.rows)));

  std::vector<cv::Point> raw;
  for (const auto& [vx, vy] : pts) raw.emplace_back(px(vx), py(vy));
  cv::polylines(out, raw, false, smooth > 1 ? cv::Scalar(230, 200, 170) : cv::Scalar(180, 119, 31), 1, cv::LINE_AA);
  if (smooth > 1 && pts.size() > static_cast<std::size_t>(smooth)) {
    // Centred moving average, in the axis's scale (a geometric mean for a log axis).
    std::vector<cv::Point> avg;
    const int h = smooth / 2;
    for (std::size_t i = 0; i < pts.size(); ++i) {
      const std::size_t a = i >= static_cast<std::size_t>(h) ? i - h : 0, b = std::min(pts.size() - 1, i + h);
      double s = 0;
      for (std::size_t j = a; j <= b; ++j) s += fy(pts[j].second);
      const double m = s / static_cast<double>(b - a + 1);
      avg.emplace_back(px(pts[i].first),
                       plot.y + plot.height - static_cast<int>(std::lround((m - ly0) / (ly1 - ly0) * plot.height)));
    }
    cv::polylines(out, avg, false, cv::Scalar(180, 119, 31), 2, cv::LINE_AA);
  }
  return out;
}

void write_png(const std::filesystem::path& path, const cv::Mat& image) {
  std::vector<unsigned char> bytes;
  if (image.empty() || !cv::imencode(".png", image, bytes)) {
    throw UserError(ExitCode::kSoftware, fmt::format("cannot encode the figure {}", path.string()));
  }
  write_atomically(path, [&](const std::filesystem::path& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw UserError(ExitCode::kIoError, fmt::format("cannot write {}", tmp.string()));
  });
}

}  // namespace augment
