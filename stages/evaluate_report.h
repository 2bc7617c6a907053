// The evaluation's HTML page: the metrics tables and the figures on one self-contained page (inline
// style, relative links only) that opens offline in a browser.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace augment {

struct ReportFigure {
  std::string file;  // relative to the page; the caller lists only files it wrote
  std::string title;
  std::string caption;
};

struct ReportSection {
  std::string title;
  std::string intro;
  std::vector<ReportFigure> figures;
};

// The page for metrics.json's content (as written by the evaluate stage) and the figure sections.
// Links to `metrics.json` next to the page.
std::string evaluation_html(const nlohmann::json& metrics, const std::vector<ReportSection>& sections);

// Text made safe inside HTML elements and attribute values.
std::string html_escape(const std::string& text);

}  // namespace augment
