// The evaluation's pictures, drawn with OpenCV: image grids, t-SNE maps and the loss curve. Every
// function returns an 8-bit BGR image on a white background; input tiles are RGB or gray.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace augment {

// A distinct colour per class (BGR): a ten-colour qualitative palette, then evenly spaced hues.
cv::Scalar class_colour(int label);

// Tiles in rows of `columns`, each scaled up by the smallest integer factor (nearest neighbour, so
// pixels stay visible) that makes it at least `cell` pixels, with `gap` white pixels between them. Empty input: an
// empty Mat.
cv::Mat tile_grid(const std::vector<cv::Mat>& tiles, int columns, int cell, int gap = 2);

// `body` with a line of text above it.
cv::Mat with_title(const cv::Mat& body, const std::string& title);

// Panels next to each other, top-aligned, each with its title.
cv::Mat side_by_side(const std::vector<std::pair<std::string, cv::Mat>>& panels);

// Images one below the other, left-aligned, with `gap` white pixels between them.
cv::Mat stacked(const std::vector<cv::Mat>& images, int gap = 12);

struct MapPoint {
  float x = 0, y = 0;
  int label = 0;
  bool synthetic = false;
};

// Scatter plot of an embedding coloured by class (real: filled dots, synthetic: crosses) with a
// legend of the classes and markers. Points are drawn in the given order.
cv::Mat scatter_map(const std::vector<MapPoint>& points, const std::vector<std::string>& class_names, int size);

// The same layout with each point drawn as its image (`tiles[i]` for points[i]) framed in its class
// colour (real: a solid frame, synthetic: corners only), with the same legend; where images would
// overlap, only the first one of a cell of the thumbnail's size is drawn.
cv::Mat thumbnail_map(const std::vector<MapPoint>& points, const std::vector<cv::Mat>& tiles,
                      const std::vector<std::string>& class_names, int size, int thumb);

// A line chart with axes, ticks and labels: the raw series thin and light, its moving average
// (when `smooth` > 1 points) bold. The y axis is logarithmic when all values are positive and
// span more than a factor of 20.
cv::Mat line_chart(const std::vector<double>& x, const std::vector<double>& y, const std::string& title,
                   const std::string& x_label, const std::string& y_label, int smooth);

// Encodes as PNG and writes atomically; throws UserError on failure.
void write_png(const std::filesystem::path& path, const cv::Mat& image);

}  // namespace augment
