// The Winograd F(4×4, 3×3) convolution for CPU inference against LibTorch's convolution, and
// the U-Net's use of it.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include "models/unet.h"
#include "models/winograd_conv_cpu.h"
#include "unet_fixtures.h"

using namespace augment;

namespace {

// The largest difference relative to the largest output magnitude.
double relative_error(const torch::Tensor& got, const torch::Tensor& want) {
  return (got.to(torch::kFloat64) - want.to(torch::kFloat64)).abs().max().item<double>() /
         std::max(1e-12, want.abs().max().item<double>());
}

// Turns the Winograd path on or off for one test and restores it, whatever the test's outcome.
struct WinogradSwitch {
  bool before = winograd_enabled();
  explicit WinogradSwitch(bool on) { set_winograd_enabled(on); }
  ~WinogradSwitch() { set_winograd_enabled(before); }
};

}  // namespace

TEST_CASE("winograd conv: matches a double-precision convolution - partial tiles - bias - both layouts") {
  torch::NoGradGuard no_grad;
  torch::manual_seed(11);
  struct Case {
    int64_t n, in, out, h, w;
  };
  for (const auto& c : {Case{2, 16, 24, 8, 8}, Case{3, 8, 8, 7, 5}, Case{1, 32, 16, 14, 14}, Case{2, 12, 8, 1, 1},
                        Case{1, 64, 64, 28, 28}}) {
    CAPTURE(c.in);
    CAPTURE(c.h);
    CAPTURE(c.w);
    const auto x = torch::randn({c.n, c.in, c.h, c.w});
    const auto weight = torch::randn({c.out, c.in, 3, 3}) * 0.2;
    const auto bias = torch::randn({c.out});
    const auto want = torch::conv2d(x.to(torch::kFloat64), weight.to(torch::kFloat64), bias.to(torch::kFloat64), 1, 1);
    const auto u = winograd_weights(weight);
    CHECK(u.sizes() == torch::IntArrayRef{36, c.in, c.out});
    for (auto format : {torch::MemoryFormat::Contiguous, torch::MemoryFormat::ChannelsLast}) {
      const auto xf = x.contiguous(format);
      const auto got = conv3x3_winograd(xf, u, bias);
      CHECK(got.is_contiguous(format));
      // F(4×4, 3×3) in fp32 loses about a decimal digit against the direct sum; a wrong
      // transform matrix or a tile placed one pixel off gives errors of order 1.
      CHECK(relative_error(got, want) < 3e-5);
      CHECK(relative_error(conv3x3_winograd(xf, u, at::Tensor()), want - bias.to(torch::kFloat64).view({1, -1, 1, 1})) <
            2e-5);
    }
  }
}

TEST_CASE("winograd conv: the same bytes on one thread and on all of them") {
  torch::NoGradGuard no_grad;
  torch::manual_seed(12);
  const auto x = torch::randn({4, 16, 12, 12});
  const auto u = winograd_weights(torch::randn({16, 16, 3, 3}));
  const auto bias = torch::randn({16});
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const auto one = conv3x3_winograd(x, u, bias);
  at::set_num_threads(std::max(2, threads));
  const auto many = conv3x3_winograd(x, u, bias);
  at::set_num_threads(threads);
  CHECK(torch::equal(one, many));
}

TEST_CASE("winograd conv: training gives the output and the gradients of the LibTorch convolution") {
  WinogradSwitch on(true);
  torch::manual_seed(14);
  for (auto format : {torch::MemoryFormat::Contiguous, torch::MemoryFormat::ChannelsLast}) {
    const auto x0 = torch::randn({3, 12, 9, 6}).contiguous(format);
    const auto w0 = torch::randn({16, 12, 3, 3}) * 0.2, b0 = torch::randn({16});
    const auto upstream = torch::randn({3, 16, 9, 6});
    struct Result {
      torch::Tensor y, dx, dw, db;
    };
    auto run = [&](bool winograd) {
      auto x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true),
           b = b0.clone().requires_grad_(true);
      Conv3x3Weights conv;
      const auto y = winograd ? conv.forward(x, w, b) : torch::conv2d(x, w, b, 1, 1);
      (y * upstream).sum().backward();
      return Result{y.detach(), x.grad(), w.grad(), b.grad()};
    };
    const auto want = run(false), got = run(true);
    // Rounding tells the two apart: the Winograd path did run.
    if (winograd_trains()) CHECK_FALSE(torch::equal(got.dx, want.dx));
    CHECK(relative_error(got.y, want.y) < 3e-5);
    CHECK(relative_error(got.dx, want.dx) < 3e-5);
    CHECK(relative_error(got.dw, want.dw) < 3e-5);
    CHECK(relative_error(got.db, want.db) < 3e-5);
  }
}

TEST_CASE("winograd conv: only for inference - training - thin layers and other types keep the LibTorch convolution") {
  WinogradSwitch on(true);
  const auto x = torch::randn({2, 16, 8, 8});
  const auto weight = torch::randn({16, 16, 3, 3});
  {
    torch::NoGradGuard no_grad;
    CHECK(winograd_applies(x, weight));
    CHECK_FALSE(winograd_applies(torch::randn({2, 3, 8, 8}), torch::randn({16, 3, 3, 3})));  // 3 channels in
    CHECK_FALSE(winograd_applies(x, torch::randn({3, 16, 3, 3})));                           // 3 channels out
    CHECK_FALSE(winograd_applies(x.to(torch::kFloat64), weight.to(torch::kFloat64)));
    CHECK_FALSE(winograd_applies(x, torch::randn({16, 16, 1, 1})));
  }
  CHECK(winograd_applies(x, weight));  // grad mode on, but nothing asks for a gradient
  auto w = weight.clone().requires_grad_(true);
  CHECK_FALSE(winograd_applies(x, w));
  set_winograd_enabled(false);
  torch::NoGradGuard no_grad;
  CHECK_FALSE(winograd_applies(x, weight));
}

TEST_CASE("winograd conv: the U-Net inference output matches LibTorch within fp32 rounding and follows new weights") {
  torch::NoGradGuard no_grad;
  torch::manual_seed(13);
  auto config = test::tiny_unet(Conditioning::kCfg, 3, 16, {8});
  config.base_channels = 16;
  UNet model(config);
  // A fresh U-Net's residual branches start at zero; random weights make every convolution count.
  for (auto& p : model->parameters()) p.normal_(0.0, 0.15);
  const auto x = torch::randn({3, 3, 16, 16});
  const auto t = torch::tensor({10, 400, 900}, torch::kInt64);
  const auto y = torch::tensor({0, 1, 2}, torch::kInt64);
  model->eval();
  torch::Tensor direct, wino;
  {
    WinogradSwitch off(false);
    direct = model->forward(x, t, y);
  }
  {
    WinogradSwitch on(true);
    wino = model->forward(x, t, y);
  }
  CHECK(direct.abs().max().item<double>() > 0.1);
  CHECK(relative_error(wino, direct) < 1e-4);
  // An in-place weight update (an optimizer step, an EMA copy) must not reuse the old transform.
  for (auto& p : model->parameters()) p.mul_(0.5);
  {
    WinogradSwitch off(false);
    direct = model->forward(x, t, y);
  }
  WinogradSwitch on(true);
  CHECK(relative_error(model->forward(x, t, y), direct) < 1e-4);
}
