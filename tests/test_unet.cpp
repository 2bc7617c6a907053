#include <doctest/doctest.h>
#include <torch/torch.h>

#include "models/autocast.h"
#include "models/unet.h"
#include "unet_fixtures.h"

using namespace augment;

namespace {

UNetConfig tiny(const std::string& conditioning, int channels = 3) {
  return test::tiny_unet(parse_name<Conditioning>(conditioning), channels);
}

// Zero-initialised output layers make a fresh model ignore everything; random weights let the
// tests see which inputs reach the output.
void randomize(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters()) p.copy_(torch::randn_like(p) * 0.3);
}

std::int64_t sum_norm_channels(UNet& net) {
  std::int64_t c = 0;
  for (const auto& item : net->named_parameters()) {
    const auto& name = item.key();
    if (name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0 && item.value().dim() == 1 &&
        name.find("norm") != std::string::npos)
      c += item.value().size(0);
  }
  return c;
}

}  // namespace

TEST_CASE("unet: output shape equals input shape for every conditioning and channel count") {
  torch::manual_seed(1);
  for (const char* cond : {"none", "cbn", "ac", "cfg"}) {
    for (int ch : {1, 3}) {
      UNet net(tiny(cond, ch));
      auto x = torch::randn({2, ch, 16, 16});
      auto out = net->forward(x, torch::tensor({0, 999}), torch::tensor({0, 2}));
      CHECK(out.sizes() == x.sizes());
    }
  }
}

TEST_CASE("unet: a fresh model outputs zeros (zero-initialised output convolution)") {
  UNet net(tiny("cfg"));
  auto out = net->forward(torch::randn({2, 3, 16, 16}), torch::tensor({5, 7}), torch::tensor({0, 1}));
  CHECK(out.abs().max().item<float>() == 0.0f);
}

TEST_CASE("unet: parameter counts differ by exactly what each conditioning adds") {
  UNet none(tiny("none")), cfg(tiny("cfg")), ac(tiny("ac")), cbn_batch(tiny("cbn"));
  auto group_cfg = tiny("cbn");
  group_cfg.cbn_norm = "group";
  UNet cbn_group(group_cfg);
  const std::int64_t E = 4 * 8, K = 3, HW = 16 * 16, base = 8;
  const auto n = none->parameter_count();
  CHECK(n > 0);
  // cfg: one embedding row per class plus the null token.
  CHECK(cfg->parameter_count() - n == (K + 1) * E);
  // ac: one H*W plane per class and one more input channel on the first 3x3 convolution.
  CHECK(ac->parameter_count() - n == K * HW + base * 9);
  // cbn: a class embedding; each norm swaps its 2C affine parameters for a Linear(E, 2C).
  const auto sum_c = sum_norm_channels(none);
  CHECK(sum_c > 0);
  CHECK(cbn_batch->parameter_count() - n == K * E + 2 * E * sum_c);
  CHECK(cbn_group->parameter_count() == cbn_batch->parameter_count());
  CHECK(cbn_batch->buffers().size() > 0);  // running statistics
  CHECK(cbn_group->buffers().empty());
}

TEST_CASE("unet: the class input changes the output for cbn - ac and cfg and is ignored by none") {
  torch::manual_seed(2);
  auto x = torch::randn({2, 3, 16, 16});
  auto t = torch::tensor({10, 500});
  for (const char* cond : {"none", "cbn", "ac", "cfg"}) {
    auto cfgc = tiny(cond);
    cfgc.cbn_norm = "group";
    for (const char* norm : {"group", "batch"}) {
      if (std::string(cond) != "cbn" && std::string(norm) == "batch") continue;
      cfgc.cbn_norm = norm;
      UNet net(cfgc);
      randomize(*net);
      net->eval();
      torch::NoGradGuard no_grad;
      auto a = net->forward(x, t, torch::tensor({0, 0}));
      auto b = net->forward(x, t, torch::tensor({1, 2}));
      const double diff = (a - b).abs().max().item<double>();
      CAPTURE(cond);
      CAPTURE(norm);
      if (std::string(cond) == "none") {
        CHECK(diff == 0.0);
      } else {
        CHECK(diff > 1e-3);
      }
    }
  }
  UNet cfg_net(tiny("cfg"));
  CHECK(cfg_net->null_label() == 3);
  randomize(*cfg_net);
  auto with_null = cfg_net->forward(x, t, torch::tensor({3, 3}));
  CHECK(torch::isfinite(with_null).all().item<bool>());
}

TEST_CASE("unet: the timestep changes the output") {
  torch::manual_seed(3);
  UNet net(tiny("none"));
  randomize(*net);
  torch::NoGradGuard no_grad;
  auto x = torch::randn({1, 3, 16, 16});
  auto a = net->forward(x, torch::tensor({1}));
  auto b = net->forward(x, torch::tensor({900}));
  CHECK((a - b).abs().max().item<double>() > 1e-3);
}

TEST_CASE("unet: timestep embedding matches its closed form") {
  auto e = timestep_embedding(torch::tensor({0, 3}), 6);
  REQUIRE(e.sizes() == torch::IntArrayRef({2, 6}));
  for (int i = 0; i < 3; ++i) {
    const double freq = std::exp(-std::log(10000.0) * i / 3.0);
    CHECK(e[0][i].item<double>() == doctest::Approx(1.0));
    CHECK(e[0][3 + i].item<double>() == doctest::Approx(0.0));
    CHECK(e[1][i].item<double>() == doctest::Approx(std::cos(3 * freq)).epsilon(1e-5));
    CHECK(e[1][3 + i].item<double>() == doctest::Approx(std::sin(3 * freq)).epsilon(1e-5));
  }
}

TEST_CASE("unet: channels-last and bf16 autocast compute the same function") {
  torch::manual_seed(4);
  auto config = tiny("cbn");
  config.cbn_norm = "group";
  UNet net(config);
  randomize(*net);
  net->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 3, 16, 16});
  auto t = torch::tensor({3, 300});
  auto y = torch::tensor({0, 2});
  auto ref = net->forward(x, t, y);
  net->to_channels_last();
  auto cl = net->forward(x.contiguous(torch::MemoryFormat::ChannelsLast), t, y);
  CHECK((cl - ref).abs().max().item<double>() < 1e-4 * (1 + ref.abs().max().item<double>()));
  torch::Tensor low;
  {
    AutocastScope scope(torch::kCPU, torch::kBFloat16);
    low = net->forward(x.contiguous(torch::MemoryFormat::ChannelsLast), t, y);
  }
  CHECK((low.scalar_type() == torch::kBFloat16));
  const double rel = ((low.to(torch::kFloat32) - ref).norm() / ref.norm()).item<double>();
  CHECK(rel < 0.1);
}

TEST_CASE("unet: invalid configurations are refused with a reason") {
  auto c = tiny("cfg");
  c.resolution = 18;
  c.channel_mult = {1, 2, 2};
  auto build = [](const UNetConfig& config) { return UNet(config); };
  CHECK_THROWS_WITH_AS(build(c), doctest::Contains("not divisible"), std::invalid_argument);
  c = tiny("cfg");
  c.num_classes = 0;
  CHECK_THROWS_AS(build(c), std::invalid_argument);
  // An unknown conditioning cannot reach the model: its name is refused where it is read.
  CHECK_THROWS_WITH_AS(parse_name<Conditioning>("sometimes"), doctest::Contains("none, cbn, ac, cfg"),
                       std::invalid_argument);
  CHECK(UNetConfig::named("ref32").base_channels == 64);
  CHECK_THROWS_AS(UNetConfig::named("huge"), std::invalid_argument);
}
