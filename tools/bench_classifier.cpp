// Measures the classifier's training and inference speed on random data, for choosing defaults
// and checking the precision options on a machine:
//
//   bench_classifier [--resolution 28] [--channels 1] [--classes 5] [--width 32] [--blocks 1]
//                    [--norm group|batch] [--precision fp32|bf16] [--batch 128] [--steps 10]
//                    [--threads 0] [--device cpu]
//
// Prints images/s of a full training step (forward, backward, AdamW) and of an eval forward.
#include <chrono>
#include <iostream>
#include <map>
#include <string>

#include <fmt/format.h>
#include <torch/torch.h>

#include "models/autocast.h"
#include "models/classifier.h"
#include "models/device.h"
#include "pipeline/base/blas_threads.h"

int main(int argc, char** argv) {
  augment::single_threaded_blas();  // as augment runs
  std::map<std::string, std::string> a = {
      {"resolution", "28"},  {"channels", "1"}, {"classes", "5"}, {"width", "32"},  {"blocks", "1"},  {"norm", "group"},
      {"precision", "fp32"}, {"batch", "128"},  {"steps", "10"},  {"threads", "0"}, {"device", "cpu"}};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = std::string(argv[i]).substr(2);
    if (!a.count(key)) {
      std::cerr << "unknown option " << argv[i] << "\n";
      return 64;
    }
    a[key] = argv[i + 1];
  }
  if (std::stoi(a["threads"]) > 0) torch::set_num_threads(std::stoi(a["threads"]));
  const auto device = augment::resolve_device(a["device"]);
  const bool bf16 = a["precision"] == "bf16";
  augment::ClassifierConfig c;
  c.channels = std::stoi(a["channels"]);
  c.resolution = std::stoi(a["resolution"]);
  c.num_classes = std::stoi(a["classes"]);
  c.width = std::stoi(a["width"]);
  c.blocks = std::stoi(a["blocks"]);
  c.norm = a["norm"];
  const int batch = std::stoi(a["batch"]), steps = std::stoi(a["steps"]);
  augment::ClassifierNet net(c);
  net->to(device);
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(1e-3));
  auto x = torch::rand({batch, c.channels, c.resolution, c.resolution}).mul(2).sub(1).to(device);
  auto y = torch::randint(c.num_classes, {batch}, torch::kInt64).to(device);
  const auto precision = bf16 ? torch::kBFloat16 : torch::kFloat32;
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  auto train_step = [&] {
    torch::Tensor logits;
    {
      augment::AutocastScope autocast(device, precision);
      logits = net->forward(x);
    }
    auto loss = torch::nn::functional::cross_entropy(logits.to(torch::kFloat32), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
  };
  train_step();  // warm-up: allocations and kernel selection
  sync();
  auto t0 = std::chrono::steady_clock::now();
  for (int s = 0; s < steps; ++s) train_step();
  sync();
  const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  net->eval();
  torch::NoGradGuard no_grad;
  double eval_s = 0;
  {
    augment::AutocastScope autocast(device, precision);
    net->forward(x);
    sync();
    t0 = std::chrono::steady_clock::now();
    for (int s = 0; s < steps; ++s) net->forward(x);
    sync();
    eval_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  std::cout << fmt::format(
      "{} {}px x{} width {} blocks {} {} norm, batch {}, {} threads: train {:.1f} img/s, eval {:.1f} img/s\n",
      augment::describe(device, bf16 ? torch::kBFloat16 : torch::kFloat32), c.resolution, c.channels, c.width, c.blocks,
      c.norm, batch, torch::get_num_threads(), steps * batch / train_s, steps * batch / eval_s);
  return 0;
}
