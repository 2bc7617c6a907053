// The defaults that depend on the data and the machine: the U-Net sized by the cached resolution
// (the size table), the training budget by the device, both scaled by train.preset. Applied to
// every option the user did not set, before any stage reads its options; an explicit option or
// config file always wins.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace augment {

class Config;

struct SizedDefaults {
  std::string row;                            // the size-table row used, e.g. "28-32 px"
  std::string note;                           // why and where from, for messages and `augment status`
  std::string warning;                        // non-empty when the resolution is not a row of the table
  std::map<std::string, std::string> values;  // option key -> text value
};

// What the table gives for square images of side `resolution` (any positive side: the nearest row
// is used and `warning` says so), `preset` quick | default | thorough, on CUDA or on a CPU.
SizedDefaults sized_defaults(int resolution, const std::string& preset, bool cuda);

// Whether the table sets this option (its help then says so instead of showing one default).
bool is_sized_option(const std::string& key);

// The table as text, for `augment help defaults`.
std::string size_table_text();

// Whether --device (auto | cpu | cuda | cuda:N) puts the models on a GPU in this process.
bool device_option_is_cuda(const std::string& device);

// Sets every sized option that `config` does not set explicitly, from cache.resolution,
// train.preset and --device. Returns what was applied (for the train stage's message).
SizedDefaults apply_sized_defaults(Config& config);

// The "model and budget from the size table" line the train stage prints: the sized keys that the
// user did not set, with their values ("" when none).
std::string sized_defaults_line(const Config& config);

}  // namespace augment
