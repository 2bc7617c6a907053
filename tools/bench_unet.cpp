// Speed of the denoiser on the reference configuration: training images/s (forward, backward,
// AdamW step) and denoiser forward images/s, per precision and memory layout, as JSON, each also
// as a share of what this machine's convolutions can do: a probe times a 3x3 convolution
// (128 channels, 16x16, batch 64) per precision, the model's matrix FLOPs are counted by
// LibTorch's profiler, and `*_share_of_conv_peak` = images/s x FLOPs per image / probe FLOP/s.
// Uses every core unless --threads says otherwise; prints the CPU model and its vector flags.
//
//   bench_unet [--config ref32|recipe28] [--conditioning cfg] [--batch 64] [--iters 3] [--threads N]
//              [--precisions fp32,bf16] [--formats contiguous,channels_last] [--device cpu]
//              [--profile trace.json]   (one training step of the first combination, Chrome trace format,
//                                        and one denoising pass in trace.json.denoise.json)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <thread>
#include "pipeline/base/allocator.h"
#include "pipeline/base/blas_threads.h"

#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include "models/autocast.h"
#include "models/device.h"
#include "models/unet.h"
#include "models/winograd_conv_cpu.h"

using namespace augment;

namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(item);
  return out;
}

std::string read_first(const char* path, const std::string& prefix) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return line.substr(line.find(':') + 1);
  }
  return "";
}

// The CPU flags that decide the kernels LibTorch and oneDNN pick.
std::vector<std::string> vector_flags() {
  std::istringstream in(read_first("/proc/cpuinfo", "flags"));
  std::vector<std::string> out;
  for (std::string f; in >> f;) {
    for (const char* want :
         {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}) {
      if (f == want) out.push_back(f);
    }
  }
  return out;
}

// FLOP/s of a 3x3 convolution, 128 -> 128 channels, 16x16, batch 64, in `precision`.
double conv_peak(const torch::Device& device, torch::ScalarType precision) {
  const auto opts = torch::TensorOptions().device(device).dtype(precision);
  auto x = torch::randn({64, 128, 16, 16}, opts), w = torch::randn({128, 128, 3, 3}, opts);
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  torch::NoGradGuard no_grad;
  for (int i = 0; i < 2; ++i) torch::conv2d(x, w, {}, 1, 1);
  sync();
  // The best of five rounds: a shared machine's noise only ever slows a round down.
  const int iters = 8;
  double best = 0;
  for (int round = 0; round < 5; ++round) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) torch::conv2d(x, w, {}, 1, 1);
    sync();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, 2.0 * 64 * 128 * 16 * 16 * 128 * 9 * iters / seconds);
  }
  return best;
}

// Matrix FLOPs (convolutions, matrix products) of one denoiser forward pass per image, as
// LibTorch's profiler counts them.
double forward_flops_per_image(UNet& net, const UNetConfig& config, const torch::Device& device) {
  const int batch = 2;
  auto x = torch::randn({batch, config.in_channels, config.resolution, config.resolution}).to(device);
  auto t = torch::randint(1000, {batch}, torch::kInt64).to(device);
  auto y = torch::randint(config.num_classes, {batch}, torch::kInt64).to(device);
  double flops = 0;
  torch::NoGradGuard no_grad;
  net->eval();
  // The direct convolutions' arithmetic, whichever kernel runs them: the share of the probe then
  // says how far the pass gets past the direct kernels (Winograd does fewer multiplications).
  const bool winograd = winograd_enabled();
  set_winograd_enabled(false);
  {
    using namespace torch::autograd::profiler;
    TLSLegacyProfilerGuard guard(torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU,
                                                                       /*report_input_shapes=*/true, false, false,
                                                                       /*with_flops=*/true),
                                 [&](const thread_event_lists& lists) {
                                   for (const auto& list : lists) {
                                     for (auto event : list) {
                                       const std::string name = event.name();
                                       if (name == "aten::conv2d" || name == "aten::mm" || name == "aten::addmm" ||
                                           name == "aten::bmm" || name == "aten::baddbmm") {
                                         flops += static_cast<double>(event.flops());
                                       }
                                     }
                                   }
                                 });
    net->forward(x, t, y);
  }
  set_winograd_enabled(winograd);
  return flops / batch;
}

double load_average() {
  std::ifstream in("/proc/loadavg");
  double v = 0;
  in >> v;
  return v;
}

struct Measured {
  double train = 0, denoise = 0;
};

Measured measure(const UNetConfig& config, int batch, int iters, const torch::Device& device,
                 torch::ScalarType precision, bool channels_last, const std::string& profile = "") {
  torch::manual_seed(0);
  UNet net(config);
  net->to(device);
  if (channels_last) net->to_channels_last();
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(1e-4));
  const auto format = channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  auto x =
      torch::randn({batch, config.in_channels, config.resolution, config.resolution}).to(device).contiguous(format);
  auto target = torch::randn_like(x);
  auto t = torch::randint(1000, {batch}, torch::kInt64).to(device);
  auto y = torch::randint(config.num_classes, {batch}, torch::kInt64).to(device);
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  using Clock = std::chrono::steady_clock;
  Measured m;

  net->train();
  auto train_step = [&] {
    torch::Tensor out;
    {
      AutocastScope autocast(device, precision);
      out = net->forward(x, t, y);
    }
    auto loss = (out.to(torch::kFloat32) - target).pow(2).mean();
    opt.zero_grad();
    loss.backward();
    opt.step();
  };
  train_step();  // warm-up: oneDNN primitive creation, allocator
  sync();
  if (!profile.empty()) {
    {
      torch::autograd::profiler::RecordProfile guard(profile);
      train_step();
    }
    net->eval();
    torch::NoGradGuard no_grad;
    AutocastScope autocast(device, precision);
    net->forward(x, t, y);
    torch::autograd::profiler::RecordProfile guard(profile + ".denoise.json");
    net->forward(x, t, y);
    return {};
  }
  auto start = Clock::now();
  for (int i = 0; i < iters; ++i) train_step();
  sync();
  m.train = batch * iters / std::chrono::duration<double>(Clock::now() - start).count();

  net->eval();
  torch::NoGradGuard no_grad;
  auto forward = [&] {
    AutocastScope autocast(device, precision);
    return net->forward(x, t, y);
  };
  forward();
  sync();
  start = Clock::now();
  const int fiters = iters * 2;
  for (int i = 0; i < fiters; ++i) forward();
  sync();
  m.denoise = batch * fiters / std::chrono::duration<double>(Clock::now() - start).count();
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  augment::keep_freed_memory_in_heap();
  augment::single_threaded_blas();  // as augment runs
  std::string config_name = "ref32", conditioning = "cfg", precisions = "fp32,bf16",
              formats = "contiguous,channels_last", device_name = "cpu", profile;
  int batch = 64, iters = 3, threads = static_cast<int>(std::thread::hardware_concurrency());
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--config")
      config_name = v;
    else if (k == "--conditioning")
      conditioning = v;
    else if (k == "--batch")
      batch = std::stoi(v);
    else if (k == "--iters")
      iters = std::stoi(v);
    else if (k == "--threads")
      threads = std::stoi(v);
    else if (k == "--precisions")
      precisions = v;
    else if (k == "--formats")
      formats = v;
    else if (k == "--device")
      device_name = v;
    else if (k == "--profile")
      profile = v;
    else {
      std::cerr << "unknown option " << k << "\n";
      return 64;
    }
  }
  // All cores by default: LibTorch sizes its pool from the physical cores it sees, which was 1 of
  // 2 on the VMs measured here (augment's stages correct that the same way).
  if (threads > 0) torch::set_num_threads(threads);
  const auto config = UNetConfig::named(config_name, parse_name<Conditioning>(conditioning));
  const auto device = resolve_device(device_name);
  UNet probe(config);
  if (!profile.empty()) {
    measure(config, batch, iters, device, resolve_precision(split_list(precisions).front(), device),
            split_list(formats).front() == "channels_last", profile);
    return 0;
  }

  nlohmann::json out;
  out["config"] = config_name;
  out["conditioning"] = conditioning;
  out["parameters"] = probe->parameter_count();
  out["batch"] = batch;
  out["iterations"] = iters;
  out["device"] = device.str();
  out["threads"] = torch::get_num_threads();
  out["cpu"] = read_first("/proc/cpuinfo", "model name");
  out["cpu_fast_bf16"] = cpu_has_fast_bf16();
  out["cpu_flags"] = vector_flags();
  probe->to(device);
  const double flops = forward_flops_per_image(probe, config, device);
  out["forward_gflop_per_image"] = flops / 1e9;
  out["train_gflop_per_image"] = 3 * flops / 1e9;  // backward costs about twice the forward
  out["conv_peak_gflop_per_s"] = nlohmann::json::object();
  out["load_average_before"] = load_average();
  out["results"] = nlohmann::json::array();
  nlohmann::json best_train, best_denoise;
  for (const auto& p : split_list(precisions)) {
    const auto precision = resolve_precision(p, device);
    const double peak = conv_peak(device, precision);
    out["conv_peak_gflop_per_s"][p] = peak / 1e9;
    for (const auto& f : split_list(formats)) {
      const auto m = measure(config, batch, iters, device, precision, f == "channels_last");
      nlohmann::json row{{"precision", p},
                         {"memory_format", f},
                         {"train_images_per_s", m.train},
                         {"denoise_images_per_s", m.denoise},
                         {"train_share_of_conv_peak", m.train * 3 * flops / peak},
                         {"denoise_share_of_conv_peak", m.denoise * flops / peak}};
      std::cerr << row.dump() << "\n";
      out["results"].push_back(row);
      if (best_train.is_null() || m.train > best_train["train_images_per_s"].get<double>()) best_train = row;
      if (best_denoise.is_null() || m.denoise > best_denoise["denoise_images_per_s"].get<double>()) best_denoise = row;
    }
  }
  out["best_train"] = best_train;
  out["best_denoise"] = best_denoise;
  out["load_average_after"] = load_average();
  std::cout << out.dump(2) << std::endl;
  return 0;
}
