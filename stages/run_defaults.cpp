#include "stages/run_defaults.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/cuda.h>

#include "pipeline/base/config.h"
#include "pipeline/base/errors.h"

namespace augment {

namespace {

// One row per family of resolutions. The 28-32 px row is the recipe measured on the bundled
// example and the colour shapes (docs/recipe.md); the others keep its width and add a level per
// doubling of the side, so the lowest level (where attention runs) stays at 6-8 px.
struct SizeRow {
  const char* name;
  int lo, hi;  // sides the row is meant for
  std::vector<int> mult;
};

const std::vector<SizeRow>& size_rows() {
  static const std::vector<SizeRow> rows = {
      {"16 px", 16, 16, {1, 2}},       {"28-32 px", 28, 32, {1, 2, 2}},         {"48 px", 48, 48, {1, 2, 2, 2}},
      {"64 px", 64, 64, {1, 2, 2, 2}}, {"96-128 px", 96, 128, {1, 1, 2, 2, 2}},
  };
  return rows;
}

// A preset scales the model and the budget together. A CPU run is bounded by the clock (the model
// is small enough to learn something in it); a GPU run by steps, with a wider, deeper model and
// larger batches (the DDPM paper's batch 128 at lr 2e-4).
struct Preset {
  const char* name;
  double cpu_minutes;
  int cpu_width;
  int cpu_blocks;
  std::int64_t gpu_steps;
  int gpu_width;
};

const std::vector<Preset>& presets() {
  static const std::vector<Preset> p = {
      {"quick", 20, 24, 1, 5000, 48},
      {"default", 60, 32, 1, 20000, 64},
      {"thorough", 180, 48, 1, 60000, 96},
  };
  return p;
}

constexpr const char* kTableNote = "size table";  // how the notes of its values begin
constexpr std::int64_t kCpuSteps = 1'000'000;     // the clock ends a CPU run
constexpr int kGpuBlocks = 2;

int distance(const SizeRow& row, int side) {
  if (side < row.lo) return row.lo - side;
  if (side > row.hi) return side - row.hi;
  return 0;
}

std::string row_names() {
  std::vector<std::string> names;
  for (const auto& r : size_rows()) names.emplace_back(r.name);
  return fmt::format("{}", fmt::join(names, ", "));
}

std::string ints(const std::vector<int>& v) { return fmt::format("{}", fmt::join(v, ",")); }

// The options the table sets, in the order they are shown.
const std::vector<std::string>& sized_keys() {
  static const std::vector<std::string> keys = {"train.channels",  "train.channel_mult", "train.blocks",
                                                "train.attention", "train.heads",        "train.batch_size",
                                                "train.lr",        "train.steps",        "train.minutes"};
  return keys;
}

}  // namespace

SizedDefaults sized_defaults(int resolution, const std::string& preset_name, bool cuda) {
  if (resolution < 1) throw std::invalid_argument("resolution must be positive");
  const Preset* preset = nullptr;
  for (const auto& p : presets()) {
    if (preset_name == p.name) preset = &p;
  }
  if (!preset) throw std::invalid_argument("unknown preset " + preset_name);

  const SizeRow* row = &size_rows().front();
  for (const auto& r : size_rows()) {
    if (distance(r, resolution) < distance(*row, resolution)) row = &r;
  }
  SizedDefaults d;
  d.row = row->name;
  if (distance(*row, resolution) > 0) {
    d.warning = fmt::format(
        "cache.resolution {} is not a row of the size table ({}): the model is sized by the nearest row, {}",
        resolution, row_names(), row->name);
  }
  // Each level halves the side: the side must halve cleanly and the lowest level keep 4 px.
  std::size_t levels = row->mult.size();
  while (levels > 1 && (resolution % (1 << (levels - 1)) != 0 || (resolution >> (levels - 1)) < 4)) --levels;
  const std::vector<int> mult(row->mult.begin(), row->mult.begin() + static_cast<std::ptrdiff_t>(levels));
  std::vector<int> sides;
  for (std::size_t l = 0; l < levels; ++l) sides.push_back(resolution >> l);
  if (levels < row->mult.size()) {
    const std::string more =
        fmt::format("{} px halves cleanly into {} levels ({}) where the row has {}; a multiple of {} gets them all",
                    resolution, levels, ints(sides), row->mult.size(), 1 << (row->mult.size() - 1));
    d.warning = d.warning.empty() ? "the U-Net gets fewer levels: " + more : d.warning + "; " + more;
  }
  const int width = cuda ? preset->gpu_width : preset->cpu_width;
  d.values["train.channels"] = std::to_string(width);
  d.values["train.channel_mult"] = ints(mult);
  d.values["train.blocks"] = std::to_string(cuda ? kGpuBlocks : preset->cpu_blocks);
  // Attention on the lowest level only: a few dozen positions, cheap at any batch.
  d.values["train.attention"] = std::to_string(sides.back());
  d.values["train.heads"] = cuda ? "4" : "2";
  d.values["train.batch_size"] = cuda ? "128" : "32";
  d.values["train.lr"] = cuda ? "0.0002" : "0.0005";
  d.values["train.steps"] = std::to_string(cuda ? preset->gpu_steps : kCpuSteps);
  d.values["train.minutes"] = cuda ? "0" : fmt::format("{:g}", preset->cpu_minutes);
  d.note = fmt::format("{} row {} for {} px, preset {}, on {}", kTableNote, row->name, resolution, preset->name,
                       cuda ? "CUDA" : "CPU");
  return d;
}

bool is_sized_option(const std::string& key) {
  const auto& keys = sized_keys();
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

std::string size_table_text() {
  std::string out =
      "Defaults sized by the data (cache.resolution) and the device; every value is an option, and one you\n"
      "set (command line or config file) wins. Levels halve the side; attention runs on the lowest level.\n\n";
  out += fmt::format("{:<11} {:<18} {}\n", "row", "channel_mult", "levels at the row's first side");
  for (const auto& r : size_rows()) {
    std::vector<int> sides;
    for (std::size_t l = 0; l < r.mult.size(); ++l) sides.push_back(r.lo >> l);
    out += fmt::format("{:<11} {:<18} {}\n", r.name, ints(r.mult), ints(sides));
  }
  out += fmt::format("\n{:<10} {:>12} {:>10} {:>10}   {:>10} {:>10}\n", "preset", "CPU minutes", "CPU width",
                     "CPU blocks", "CUDA steps", "CUDA width");
  for (const auto& p : presets()) {
    out += fmt::format("{:<10} {:>12g} {:>10} {:>10}   {:>10} {:>10}\n", p.name, p.cpu_minutes, p.cpu_width,
                       p.cpu_blocks, p.gpu_steps, p.gpu_width);
  }
  out += fmt::format(
      "\nCPU: batch 32, lr 5e-4, 2 heads, train.steps {} (the clock ends the run). CUDA: batch 128, lr 2e-4,\n"
      "{} blocks, 4 heads, train.minutes 0 (the steps end the run). A side between rows uses the nearest row.\n",
      kCpuSteps, kGpuBlocks);
  return out;
}

bool device_option_is_cuda(const std::string& device) {
  if (device == "cpu") return false;
  if (device.rfind("cuda", 0) == 0) return true;
  return torch::cuda::is_available();
}

SizedDefaults apply_sized_defaults(Config& config) {
  const auto& keys = sized_keys();
  // Asking for CUDA initialises it: not when the user set every sized option.
  if (std::all_of(keys.begin(), keys.end(), [&](const std::string& k) { return config.is_set(k); })) return {};
  std::int64_t resolution = 0;
  parse_value(config.value("cache.resolution"), resolution);
  const auto d = sized_defaults(static_cast<int>(resolution), config.value("train.preset"),
                                device_option_is_cuda(config.value("device")));
  for (const auto& [key, value] : d.values) {
    if (!config.is_set(key)) config.set_derived(key, value, d.note);
  }
  return d;
}

std::string sized_defaults_line(const Config& config) {
  std::vector<std::string> parts;
  std::string note;
  for (const auto& key : sized_keys()) {
    const auto n = config.derived_note(key);
    if (n.rfind(kTableNote, 0) != 0) continue;  // the user's value, a built-in or a kept one
    note = n;
    parts.push_back(fmt::format("{} {}", key.substr(key.find('.') + 1), config.value(key)));
  }
  if (parts.empty()) return {};
  return fmt::format(
      "model and budget from the {}: {} (any of them can be set; `augment help defaults` shows the table)", note,
      fmt::join(parts, ", "));
}

}  // namespace augment
