// Samplers against closed-form models: a denoiser that knows the data exactly must reproduce it.
#include <cmath>

#include <doctest/doctest.h>
#include <torch/torch.h>

#include "models/diffusion.h"
#include "models/guidance.h"
#include "models/sampler.h"
#include "models/unet.h"
#include "unet_fixtures.h"

using namespace augment;

namespace {

// The exact denoiser for data whose every pixel is +c or -c with equal probability (independent):
// E[x0 | x_t] = c tanh(c sqrt(ab) x_t / (1 - ab)); returned as eps or v as the model would.
ModelFn two_point_oracle(const GaussianDiffusion& d, double c) {
  return [&d, c](const torch::Tensor& x, int t) {
    const double ab = d.alpha_bar(t), a = std::sqrt(ab), s = std::sqrt(1.0 - ab);
    const auto x0 = c * torch::tanh(c * a * x / (1.0 - ab));
    const auto eps = (x - a * x0) / s;
    return d.v_prediction() ? a * eps - s * x0 : eps;
  };
}

}  // namespace

TEST_CASE("sampler timesteps: trailing spacing from T-1 down and every step when steps >= T") {
  const auto ts = sampling_timesteps(1000, 50);
  REQUIRE(ts.size() == 50);
  CHECK(ts.front() == 999);
  CHECK(ts.back() == 19);
  for (std::size_t i = 1; i < ts.size(); ++i) CHECK(ts[i] == ts[i - 1] - 20);
  const auto all = sampling_timesteps(10, 50);
  REQUIRE(all.size() == 10);
  for (int i = 0; i < 10; ++i) CHECK(all[static_cast<std::size_t>(i)] == 9 - i);
  CHECK(sampling_timesteps(1000, 1) == std::vector<int>{999});
  CHECK_THROWS(sampling_timesteps(1000, 0));
}

TEST_CASE("samplers with the exact denoiser land on the data for eps and v prediction") {
  for (const std::string prediction : {"eps", "v"}) {
    for (const std::string schedule : {"linear", "cosine"}) {
      const GaussianDiffusion d(
          DiffusionConfig{200, parse_name<NoiseSchedule>(schedule), parse_name<Prediction>(prediction)});
      const double c = 0.8;
      struct Case {
        SamplerSettings s;
        double tolerance;
      };
      const std::vector<Case> cases = {{{SamplerKind::kDdpm, 200, 0.0, false}, 0.05},
                                       {{SamplerKind::kDdim, 50, 0.0, false}, 0.05},
                                       {{SamplerKind::kDdim, 50, 1.0, false}, 0.05},
                                       {{SamplerKind::kDpmpp2m, 15, 0.0, false}, 0.05}};
      for (const auto& cs : cases) {
        CAPTURE(prediction);
        CAPTURE(schedule);
        CAPTURE(name_of(cs.s.kind));
        CAPTURE(cs.s.eta);
        std::vector<std::uint64_t> seeds;
        for (std::uint64_t i = 0; i < 16; ++i) seeds.push_back(1000 + i);
        NoiseSource noise(seeds, 1, 8, torch::kCPU);
        const auto x = make_sampler(cs.s)->run(d, two_point_oracle(d, c), noise);
        // Pixels end near +c or -c (a few-step solver leaves the rare pixel that started on the
        // boundary between the two in between), never beyond, and both values occur about equally often.
        const auto err = (x.abs() - c).abs();
        CHECK((err < cs.tolerance).to(torch::kFloat64).mean().item<double>() > 0.98);
        CHECK(x.abs().max().item<double>() < c + cs.tolerance);
        const double positive = (x > 0).to(torch::kFloat64).mean().item<double>();
        CHECK(positive > 0.4);
        CHECK(positive < 0.6);
      }
    }
  }
}

TEST_CASE("sampler noise is per image: an image does not depend on its batch") {
  const GaussianDiffusion d(DiffusionConfig{100, NoiseSchedule::kLinear, Prediction::kEps});
  const auto model = two_point_oracle(d, 0.5);
  for (const auto& [kind, name] : kSamplerNames.entries) {
    CAPTURE(name);
    const SamplerSettings s{kind, 10, kind == SamplerKind::kDdim ? 0.5 : 0.0, true};
    NoiseSource both({7, 42}, 3, 4, torch::kCPU);
    NoiseSource alone({42}, 3, 4, torch::kCPU);
    const auto a = make_sampler(s)->run(d, model, both);
    const auto b = make_sampler(s)->run(d, model, alone);
    CHECK(torch::equal(a[1], b[0]));
    CHECK(!torch::equal(a[0], a[1]));
  }
  // eta adds noise: ddim with eta 1 differs from the deterministic eta 0.
  NoiseSource n0({3}, 1, 4, torch::kCPU), n1({3}, 1, 4, torch::kCPU);
  const auto x0 = make_sampler({SamplerKind::kDdim, 10, 0.0, true})->run(d, model, n0);
  const auto x1 = make_sampler({SamplerKind::kDdim, 10, 1.0, true})->run(d, model, n1);
  CHECK(!torch::equal(x0, x1));
  CHECK_THROWS_AS(parse_name<SamplerKind>("euler"), std::invalid_argument);
  CHECK_THROWS_AS(make_sampler({SamplerKind::kDdim, 10, 1.5, true}), std::invalid_argument);
}

TEST_CASE("classifier-free guidance: scale 1 is the conditional pass and 0 the unconditional one") {
  torch::manual_seed(0);
  UNet net(test::tiny_unet(Conditioning::kCfg, 1, 8, {}));
  net->eval();
  // Zero-initialised output layers would make every prediction 0: perturb all weights.
  {
    torch::NoGradGuard g;
    for (auto& p : net->parameters()) p.add_(torch::randn_like(p) * 0.1);
  }
  const auto x = torch::randn({2, 1, 8, 8});
  const auto labels = torch::tensor({0, 2}, torch::kInt64);
  const auto t = torch::full({2}, 5, torch::kInt64);
  torch::NoGradGuard g;
  const auto cond = net->forward(x, t, labels);
  const auto uncond = net->forward(x, t, torch::full({2}, net->null_label(), torch::kInt64));
  CHECK(!torch::allclose(cond, uncond));
  CHECK(
      torch::allclose(denoiser_model_fn(net, labels, ModelCall{torch::kFloat32, false, 1.0})(x, 5), cond, 1e-5, 1e-6));
  // The guided pass runs both halves as one batch, whose matrix products may round differently
  // (the Winograd convolution's tile blocks span images): fp32 rounding, not the guidance, differs.
  CHECK(torch::allclose(denoiser_model_fn(net, labels, ModelCall{torch::kFloat32, false, 0.0})(x, 5), uncond, 1e-5,
                        1e-5));
  const auto g3 = denoiser_model_fn(net, labels, ModelCall{torch::kFloat32, false, 3.0})(x, 5);
  CHECK(torch::allclose(g3, uncond + 3.0 * (cond - uncond), 1e-4, 1e-5));
  // Outside the guidance interval the conditional pass runs alone.
  ModelCall limited{torch::kFloat32, false, 3.0};
  limited.guided_from = 6;
  limited.guided_to = 9;
  CHECK(torch::allclose(denoiser_model_fn(net, labels, limited)(x, 5), cond, 1e-5, 1e-6));
  limited.guided_from = 5;
  CHECK(torch::allclose(denoiser_model_fn(net, labels, limited)(x, 5), g3, 1e-5, 1e-6));
}
