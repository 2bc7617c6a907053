// Device placement: one host-to-device copy per batch, strict device names, the fused
// GroupNorm+SiLU kernel. The "cuda:" cases compare the GPU with the CPU and run where LibTorch
// sees a GPU (tools/gpu_check.sh); elsewhere they say so and check nothing.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include "models/device.h"
#include "models/device_transfer.h"
#include "models/diffusion.h"
#include "models/fused_norm.h"
#include "pipeline/base/errors.h"

using namespace augment;

namespace {

bool have_cuda() {
  if (torch::cuda::is_available()) return true;
  MESSAGE("no CUDA device visible to LibTorch: nothing compared here (tools/gpu_check.sh runs this on a GPU)");
  return false;
}

const void* storage_of(const torch::Tensor& t) { return t.storage().data(); }

}  // namespace

TEST_CASE("device: a batch packed for one transfer keeps every tensor's dtype - shape and values") {
  torch::manual_seed(3);
  const auto images = torch::randn({3, 4, 5, 2}).permute({0, 3, 1, 2});  // not contiguous
  const auto steps = torch::randint(0, 1000, {3}, torch::kInt64);
  const auto mask = torch::rand({5}) > 0.5;
  const auto pixels = torch::randint(0, 256, {7}, torch::kUInt8);  // odd byte count before the next one
  const auto halves = torch::randn({2, 3}).to(torch::kBFloat16);
  const auto none = torch::empty({0, 4});
  const std::vector<torch::Tensor> host{images, steps, mask, pixels, halves, none};

  const auto packed = to_device_once(host, torch::kCPU, /*force_pack=*/true);
  REQUIRE(packed.size() == host.size());
  for (std::size_t i = 0; i < host.size(); ++i) {
    CAPTURE(i);
    CHECK((packed[i].scalar_type() == host[i].scalar_type()));
    CHECK((packed[i].sizes() == host[i].sizes()));
    CHECK(packed[i].is_contiguous());
    CHECK(torch::equal(packed[i], host[i]));
    // All views of one buffer: that buffer is what crosses to the device, in one copy.
    if (packed[i].numel() > 0) CHECK(storage_of(packed[i]) == storage_of(packed[0]));
  }
  // On the CPU without force_pack nothing is copied at all.
  const auto same = to_device_once(host, torch::kCPU);
  for (std::size_t i = 0; i < host.size(); ++i) CHECK(same[i].is_same(host[i]));
}

TEST_CASE("device: device names are parsed strictly and a missing GPU is a config error") {
  CHECK(resolve_device("cpu").is_cpu());
  for (const std::string bad : {"gpu", "cuda:", "cuda:x", "cuda0", "cudax", "cuda:-1", "cuda:123456789"}) {
    CAPTURE(bad);
    try {
      resolve_device(bad);
      if (!torch::cuda::is_available()) FAIL("accepted " << bad);
    } catch (const UserError& e) {
      CHECK(e.code() == ExitCode::kConfig);
      CHECK(std::string(e.what()).find("device " + bad + ":") != std::string::npos);
    }
  }
  if (!torch::cuda::is_available()) {
    try {
      resolve_device("cuda:0");
      FAIL("cuda:0 accepted without a GPU");
    } catch (const UserError& e) {
      CHECK(std::string(e.what()).find("sees no CUDA GPU") != std::string::npos);
    }
  }
}

TEST_CASE("device: on the CPU GroupNorm+SiLU matches the two LibTorch ops within fp32 rounding") {
  torch::manual_seed(5);
  const auto x = torch::randn({2, 8, 5, 3});
  const auto w = torch::randn({8}), b = torch::randn({8});
  CHECK_FALSE(fuses_group_norm_silu(x));  // the CUDA kernel's test; the CPU has its own kernel
  torch::NoGradGuard no_grad;
  const auto diff = [](const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); };
  CHECK(diff(group_norm_silu(x, 4, w, b), torch::silu(torch::group_norm(x, 4, w, b, 1e-5))) < 1e-5);
  CHECK(diff(group_norm_silu(x, 2, {}, {}), torch::silu(torch::group_norm(x, 2, {}, {}, 1e-5))) < 1e-5);
}

TEST_CASE("cuda: the fused GroupNorm+SiLU kernel matches LibTorch for each dtype and layout") {
  if (!have_cuda()) return;
  if (!fused_kernels_enabled()) {
    MESSAGE("this build has no augment CUDA kernels (LibTorch without CUDA or no nvcc at configure time)");
    return;
  }
  torch::manual_seed(11);
  const torch::Device gpu(torch::kCUDA, 0);
  torch::NoGradGuard no_grad;
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16, torch::kHalf}) {
    for (const bool channels_last : {false, true}) {
      for (const bool affine : {false, true}) {
        // 3 x 7 pixels: group sizes that do not divide the block.
        auto x = (torch::randn({3, 64, 3, 7}) * 2 + 0.5).to(gpu, dtype);
        if (channels_last) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
        const auto w = affine ? torch::randn({64}, gpu) : torch::Tensor();
        const auto b = affine ? torch::randn({64}, gpu) : torch::Tensor();
        CAPTURE(dtype);
        CAPTURE(channels_last);
        CAPTURE(affine);
        REQUIRE(fuses_group_norm_silu(x));
        const auto fused = group_norm_silu(x, 32, w, b).to(torch::kFloat32);
        const auto reference =
            torch::silu(torch::group_norm(x.to(torch::kFloat32), 32, w, b, 1e-5)).to(dtype).to(torch::kFloat32);
        const double tol = dtype == torch::kFloat32 ? 1e-5 : 2e-2;
        CHECK((fused - reference).abs().max().item<double>() <= tol * (1 + reference.abs().max().item<double>()));
        CHECK(group_norm_silu(x, 32, w, b)
                  .is_contiguous(channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous));
      }
    }
  }
}

TEST_CASE("cuda: diffusion coefficients looked up on the GPU equal the CPU's") {
  if (!have_cuda()) return;
  const torch::Device gpu(torch::kCUDA, 0);
  const GaussianDiffusion d(DiffusionConfig{1000, NoiseSchedule::kCosine, Prediction::kV});
  const auto t = torch::randint(0, 1000, {16}, torch::kInt64);
  const auto x0 = torch::randn({16, 3, 8, 8}), noise = torch::randn({16, 3, 8, 8});
  const auto cpu = d.q_sample(x0, t, noise);
  const auto gpu_result = d.q_sample(x0.to(gpu), t.to(gpu), noise.to(gpu));
  CHECK(gpu_result.device().is_cuda());
  CHECK(torch::allclose(gpu_result.cpu(), cpu, 1e-5, 1e-6));
  CHECK(torch::allclose(d.snr(t.to(gpu)).cpu(), d.snr(t), 1e-6, 0));
  const auto packed = to_device_once({x0, t}, gpu);
  CHECK(packed[0].device().is_cuda());
  CHECK(torch::equal(packed[0].cpu(), x0));
  CHECK(torch::equal(packed[1].cpu(), t));
}
