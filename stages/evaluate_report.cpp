#include "stages/evaluate_report.h"

#include <cmath>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "models/downstream_variants.h"

namespace augment {

using nlohmann::json;

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

const char* const kStyle = R"(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em 1em}
.muted{color:#777}figure{margin:1.5em 0}figure img{max-width:100%;image-rendering:pixelated;border:1px solid #eee}
figcaption{color:#555;font-size:.9em;margin-top:.3em}
)";

bool has_number(const json& j, const char* key) { return j.is_object() && j.contains(key) && j[key].is_number(); }

const json& at_or_null(const json& j, const std::string& key) {
  static const json null_value;
  if (!j.is_object()) return null_value;
  const auto it = j.find(key);
  return it == j.end() ? null_value : *it;
}

std::string pct(const json& v) { return v.is_number() ? fmt::format("{:.1f}%", 100.0 * v.get<double>()) : "&ndash;"; }
std::string num(const json& v, int decimals = 3) {
  return v.is_number() ? fmt::format("{:.{}f}", v.get<double>(), decimals) : "&ndash;";
}
// {"mean", "std"} as "m ± s" in percent, or a signed difference.
std::string pct_ms(const json& v, bool signed_value = false) {
  if (!has_number(v, "mean")) return "&ndash;";
  const double m = 100.0 * v["mean"].get<double>();
  if (!has_number(v, "std")) return signed_value ? fmt::format("{:+.1f}", m) : fmt::format("{:.1f}%", m);
  const double s = 100.0 * v["std"].get<double>();
  return signed_value ? fmt::format("{:+.1f} &plusmn; {:.1f}", m, s) : fmt::format("{:.1f} &plusmn; {:.1f}%", m, s);
}

std::string row(const std::vector<std::string>& cells, bool header = false) {
  std::string s = "<tr>";
  for (const auto& c : cells) s += header ? "<th>" + c + "</th>" : "<td>" + c + "</td>";
  return s + "</tr>\n";
}

std::string summary_table(const json& m) {
  const auto& ca = at_or_null(m, "conditional_accuracy");
  const auto& ref = at_or_null(m, "classifier_on_real_test");
  const auto& fd = at_or_null(m, "frechet_distance");
  const auto& cs = at_or_null(m, "classifier_score");
  const auto& pr = at_or_null(m, "precision_recall");
  const auto& pr_syn = at_or_null(pr, "synthetic_vs_test");
  const auto& pr_ref = at_or_null(pr, "train_vs_test");
  std::string s = "<table>\n" + row({"metric", "synthetic images", "real reference", "what it says"}, true);
  s += row({"conditional accuracy", pct(at_or_null(ca, "accuracy")),
            pct(at_or_null(ref, "accuracy")) + " <span class=muted>(classifier on real test)</span>",
            "share of synthetic images the classifier assigns to the class they were generated for"});
  s += row({"conditional accuracy, balanced", pct(at_or_null(ca, "balanced_accuracy")),
            pct(at_or_null(ref, "balanced_accuracy")), "the same, each class weighted equally"});
  const auto& down = at_or_null(m, "downstream");
  const auto& ind = at_or_null(down, "independent_conditional_accuracy");
  if (ind.is_object()) {
    const auto& judges_on_test =
        at_or_null(at_or_null(at_or_null(at_or_null(down, "variants"), "real"), "accuracy"), "mean");
    s += row({"conditional accuracy, independent judges", pct(at_or_null(at_or_null(ind, "accuracy"), "mean")),
              pct(judges_on_test) + " <span class=muted>(the judges on real test)</span>",
              fmt::format("the same, judged by the {} real-only downstream classifiers (mean): the generator never "
                          "trained against them, "
                          "while an <code>ac</code> model is trained against the run's classifier",
                          num(at_or_null(ind, "judges"), 0))});
  }
  s += row({"Fr&eacute;chet distance (classifier features)",
            num(at_or_null(at_or_null(fd, "synthetic_vs_test"), "overall")),
            num(at_or_null(at_or_null(fd, "train_vs_test"), "overall")) +
                " <span class=muted>(real train vs. test, same classes: the floor)</span>",
            "distance between Gaussians fitted to the features of synthetic and real test images; lower is better"});
  s += row({"classifier score", num(at_or_null(cs, "synthetic")),
            num(at_or_null(cs, "real_test")) +
                fmt::format(" <span class=muted>(real test; at most {})</span>", num(at_or_null(cs, "maximum"), 0)),
            "the Inception-Score formula with the run's classifier: confident and varied predictions score high"});
  s += row({fmt::format("precision (k = {})", num(at_or_null(pr, "k"), 0)), pct(at_or_null(pr_syn, "precision")),
            pct(at_or_null(pr_ref, "precision")) + " <span class=muted>(real train vs. test)</span>",
            "share of synthetic images that fall inside the real images' manifold: fidelity"});
  s += row({"recall", pct(at_or_null(pr_syn, "recall")),
            pct(at_or_null(pr_ref, "recall")) + " <span class=muted>(real train vs. test)</span>",
            "share of real images covered by the synthetic images' manifold: diversity"});
  return s + "</table>\n";
}

std::string per_class_table(const json& m) {
  const auto& names = at_or_null(m, "classes");
  if (!names.is_array()) return "";
  const auto& counts = at_or_null(m, "per_class_images");
  const auto& ca = at_or_null(at_or_null(m, "conditional_accuracy"), "per_class_recall");
  const auto& ref = at_or_null(at_or_null(m, "classifier_on_real_test"), "per_class_recall");
  const auto& fd = at_or_null(m, "frechet_distance");
  const auto& pr = at_or_null(at_or_null(at_or_null(m, "precision_recall"), "synthetic_vs_test"), "per_class");
  std::string s =
      "<table>\n" + row({"class", "real train", "synthetic", "real test", "conditional accuracy",
                         "classifier recall (real test)", "FD synthetic/test", "FD train/test", "precision", "recall"},
                        true);
  for (std::size_t c = 0; c < names.size(); ++c) {
    const std::string name = names[c].get<std::string>();
    auto count = [&](const char* split) {
      const auto& v = at_or_null(counts, split);
      return v.is_array() && c < v.size() ? v[c].dump() : std::string("&ndash;");
    };
    const auto& p = at_or_null(pr, name);
    s += row({html_escape(name), count("real_train"), count("synthetic"), count("reference"), pct(at_or_null(ca, name)),
              pct(at_or_null(ref, name)),
              num(at_or_null(at_or_null(at_or_null(fd, "synthetic_vs_test"), "per_class"), name)),
              num(at_or_null(at_or_null(at_or_null(fd, "train_vs_test"), "per_class"), name)),
              pct(at_or_null(p, "precision")), pct(at_or_null(p, "recall"))});
  }
  return s + "</table>\n";
}

// What each downstream variant was trained on, as the report's tables say it.
std::string downstream_variant_label(const std::string& name) {
  if (name == "real") return "real (the classifier recipe)";
  if (name == "real_loss") return "real, class-weighted loss";
  if (name == "real_sampler") return "real, class-balanced sampling";
  if (name == "augmented") return "real + synthetic";
  if (name == "synthetic") return "synthetic only";
  return name;
}

std::string downstream_section(const json& m) {
  const auto& d = at_or_null(m, "downstream");
  std::string s = "<h2>Downstream utility</h2>\n";
  if (!d.is_object()) {
    return s + "<p class=muted>Not measured (evaluate.seeds = 0).</p>\n";
  }
  s += fmt::format(
      "<p>Fresh classifiers with the classifier stage's recipe ({} epochs, best epoch on the real val split, random "
      "crops and flips), trained on the real train split only (with the recipe's own class balancing, and as "
      "baselines with the other of a class-weighted loss and class-balanced sampling), on real + synthetic "
      "images, and on synthetic images only (the Classification Accuracy Score), scored on the real test split; "
      "mean &plusmn; sample standard deviation over {} seed(s). Differences are paired by seed.</p>\n",
      num(at_or_null(d, "epochs"), 0), at_or_null(d, "seeds").size());
  const auto& variants = at_or_null(d, "variants");
  const auto& diff = at_or_null(d, "difference");
  // JSON objects are sorted by key; the report keeps the order real, the baselines, augmented, synthetic.
  std::vector<std::string> order;
  for (const char* v : kDownstreamVariantOrder) {
    if (variants.is_object() && variants.contains(v)) order.push_back(v);
  }
  const auto& small = at_or_null(d, "smallest_classes");
  std::string small_head = "mean recall, 2 smallest classes";
  if (small.is_array() && small.size() == 2)
    small_head = fmt::format("mean recall, {} and {}", html_escape(small[0].get<std::string>()),
                             html_escape(small[1].get<std::string>()));
  s += "<table>\n" + row({"trained on", "images", "accuracy", "balanced accuracy", "&Delta; accuracy vs. real",
                          "&Delta; balanced vs. real", small_head},
                         true);
  for (const auto& name : order) {
    const auto& v = variants[name];
    const auto& dv = at_or_null(diff, name + "_minus_real");
    s += row({html_escape(downstream_variant_label(name)), num(at_or_null(v, "train_images"), 0),
              pct_ms(at_or_null(v, "accuracy")), pct_ms(at_or_null(v, "balanced_accuracy")),
              name == "real" ? "" : pct_ms(at_or_null(dv, "accuracy"), true),
              name == "real" ? "" : pct_ms(at_or_null(dv, "balanced_accuracy"), true),
              pct_ms(at_or_null(v, "smallest_classes_recall"))});
  }
  s += "</table>\n";
  const auto& strongest = at_or_null(d, "strongest_baseline");
  if (strongest.is_string() && variants.is_object() && variants.contains("augmented")) {
    const auto& dv = at_or_null(diff, "augmented_minus_" + strongest.get<std::string>());
    s += fmt::format(
        "<p>The stronger real-only baseline is <b>{}</b>; real + synthetic against it, paired by seed: "
        "&Delta; balanced accuracy {}.</p>\n",
        html_escape(downstream_variant_label(strongest.get<std::string>())),
        pct_ms(at_or_null(dv, "balanced_accuracy"), true));
  }
  const auto& names = at_or_null(m, "classes");
  if (names.is_array() && variants.is_object()) {
    std::vector<std::string> head = {"class"};
    for (const auto& name : order) head.push_back("recall, " + html_escape(downstream_variant_label(name)));
    s += "<table>\n" + row(head, true);
    for (const auto& n : names) {
      std::vector<std::string> cells = {html_escape(n.get<std::string>())};
      for (const auto& name : order)
        cells.push_back(pct_ms(at_or_null(at_or_null(variants[name], "per_class_recall"), n.get<std::string>())));
      s += row(cells);
    }
    s += "</table>\n";
  }
  return s;
}

}  // namespace

std::string evaluation_html(const json& m, const std::vector<ReportSection>& sections) {
  std::string s =
      "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n<title>augment evaluation</title>\n<style>";
  s += kStyle;
  s += "</style>\n</head>\n<body>\n<h1>augment evaluation</h1>\n";
  const auto& images = at_or_null(m, "images");
  const auto& gen = at_or_null(m, "generation");
  s += fmt::format(
      "<p>{} synthetic images of {} classes ({} conditioning, {} sampler, {} steps, guidance {}); real images: {} "
      "train, {} val, {} "
      "test. All figures: <a href=\"metrics.json\">metrics.json</a>.</p>\n",
      num(at_or_null(images, "synthetic"), 0), at_or_null(m, "classes").size(),
      html_escape(at_or_null(gen, "conditioning").is_string() ? gen["conditioning"].get<std::string>() : "?"),
      html_escape(at_or_null(gen, "sampler").is_string() ? gen["sampler"].get<std::string>() : "?"),
      num(at_or_null(gen, "steps"), 0), num(at_or_null(gen, "guidance"), 2), num(at_or_null(images, "real_train"), 0),
      num(at_or_null(images, "real_val"), 0), num(at_or_null(images, "real_test"), 0));
  const auto& space = at_or_null(m, "feature_space");
  s += fmt::format(
      "<p class=note>Fr&eacute;chet distance, precision/recall and the t-SNE maps use the {}-dimensional "
      "penultimate-layer "
      "features of <b>this run's classifier</b> (classifier/model.pt), and the classifier score uses its predictions. "
      "They are <b>not</b> Inception FID or Inception Score and cannot be compared with figures from other papers or "
      "other runs' classifiers; compare them with the real-data references next to them.</p>\n",
      num(at_or_null(space, "dims"), 0));
  const auto& reference = at_or_null(m, "reference_split");
  if (reference.is_string() && reference != "test") {
    s += fmt::format(
        "<p class=note>This run has no test split: wherever this page says <i>test</i>, it means the real <b>{}</b> "
        "split{}.</p>\n",
        html_escape(reference.get<std::string>()),
        reference == "train" ? ", the images the model was trained on, so the real references are left out" : "");
  }
  s += "<h2>Summary</h2>\n" + summary_table(m);
  s += "<h2>Per class</h2>\n" + per_class_table(m);
  s += downstream_section(m);
  for (const auto& section : sections) {
    if (section.figures.empty()) continue;
    s += "<h2>" + html_escape(section.title) + "</h2>\n";
    if (!section.intro.empty()) s += "<p>" + html_escape(section.intro) + "</p>\n";
    for (const auto& f : section.figures) {
      s += fmt::format(
          "<figure id=\"{0}\"><img src=\"{0}\" alt=\"{1}\" "
          "loading=lazy><figcaption><b>{1}</b>{2}</figcaption></figure>\n",
          html_escape(f.file), html_escape(f.title), f.caption.empty() ? "" : ". " + html_escape(f.caption));
    }
  }
  s += fmt::format("<p class=muted>Written by augment evaluate in {:.0f} s.</p>\n</body>\n</html>\n",
                   m.value("seconds", 0.0));
  return s;
}

}  // namespace augment
