#include <cmath>
#include <vector>

#include <doctest/doctest.h>
#include <torch/torch.h>

#include "models/diffusion.h"

using namespace augment;

namespace {

// Independent closed forms, in double precision.
std::vector<double> linear_betas(int T) {
  std::vector<double> b(T);
  const double scale = 1000.0 / T;
  for (int i = 0; i < T; ++i) b[i] = scale * 1e-4 + (scale * 0.02 - scale * 1e-4) * i / (T - 1);
  return b;
}

std::vector<double> cumprod_alphas(const std::vector<double>& betas) {
  std::vector<double> ab(betas.size());
  double p = 1.0;
  for (std::size_t i = 0; i < betas.size(); ++i) ab[i] = (p *= 1.0 - betas[i]);
  return ab;
}

GaussianDiffusion make(const std::string& schedule, const std::string& prediction = "eps", int T = 1000) {
  DiffusionConfig c;
  c.steps = T;
  c.schedule = parse_name<NoiseSchedule>(schedule);
  c.prediction = parse_name<Prediction>(prediction);
  return GaussianDiffusion(c);
}

}  // namespace

TEST_CASE("diffusion: linear schedule is DDPM's and alpha_bar is the running product") {
  auto d = make("linear");
  const auto betas = linear_betas(1000);
  const auto ab = cumprod_alphas(betas);
  CHECK(d.betas()[0].item<double>() == doctest::Approx(1e-4));
  CHECK(d.betas()[999].item<double>() == doctest::Approx(0.02));
  for (int t : {0, 1, 10, 250, 500, 999}) {
    CHECK(d.betas()[t].item<double>() == doctest::Approx(betas[t]).epsilon(1e-12));
    CHECK(d.alpha_bar(t) == doctest::Approx(ab[t]).epsilon(1e-10));
  }
  CHECK(d.alpha_bar(-1) == 1.0);
  CHECK(d.alpha_bar(999) < 1e-4);  // nearly pure noise at the end
  CHECK_THROWS(d.alpha_bar(1000));
}

TEST_CASE("diffusion: cosine schedule follows cos^2 of Nichol & Dhariwal") {
  auto d = make("cosine", "eps", 1000);
  auto f = [](double u) { return std::pow(std::cos((u + 0.008) / 1.008 * M_PI / 2), 2); };
  for (int t : {0, 100, 500, 900}) CHECK(d.alpha_bar(t) == doctest::Approx(f((t + 1) / 1000.0) / f(0)).epsilon(1e-9));
  CHECK(d.betas().max().item<double>() <= 0.999);
}

TEST_CASE("diffusion: q_sample and the training target match the closed form") {
  for (const char* pred : {"eps", "v"}) {
    auto d = make("linear", pred);
    const auto ab = cumprod_alphas(linear_betas(1000));
    auto x0 = torch::full({2, 1, 2, 2}, 0.5);
    auto noise = torch::full({2, 1, 2, 2}, -1.5);
    auto t = torch::tensor({0, 600});
    auto xt = d.q_sample(x0, t, noise);
    auto target = d.target(x0, t, noise);
    for (int i = 0; i < 2; ++i) {
      const double a = ab[t[i].item<int>()];
      CHECK(xt[i][0][1][1].item<double>() ==
            doctest::Approx(std::sqrt(a) * 0.5 + std::sqrt(1 - a) * -1.5).epsilon(1e-5));
      const double want = std::string(pred) == "v" ? std::sqrt(a) * -1.5 - std::sqrt(1 - a) * 0.5 : -1.5;
      CHECK(target[i][0][0][1].item<double>() == doctest::Approx(want).epsilon(1e-5));
    }
  }
}

TEST_CASE("diffusion: denoise inverts the target for eps and v prediction") {
  torch::manual_seed(0);
  for (const char* pred : {"eps", "v"}) {
    auto d = make("cosine", pred);
    auto x0 = torch::rand({3, 2, 4, 4}) * 2 - 1;
    auto noise = torch::randn({3, 2, 4, 4});
    auto t = torch::tensor({5, 400, 990});
    auto xt = d.q_sample(x0, t, noise);
    auto out = d.target(x0, t, noise);
    auto den = d.denoise(out, xt, t);
    CHECK((den.x0 - x0).abs().max().item<double>() < 1e-3);
    CHECK((den.eps - noise).abs().max().item<double>() < 1e-3);
    // The scalar-timestep form used by samplers agrees with the per-example form.
    auto one = d.denoise(out.slice(0, 1, 2), xt.slice(0, 1, 2), 400);
    CHECK((one.x0 - den.x0.slice(0, 1, 2)).abs().max().item<double>() < 1e-6);
  }
}

TEST_CASE("diffusion: DDPM posterior q(x_{t-1} | x_t - x_0) matches equations 6-7 of Ho et al.") {
  auto d = make("linear");
  const auto betas = linear_betas(1000);
  const auto ab = cumprod_alphas(betas);
  auto x0 = torch::full({2, 1, 1, 1}, 0.3);
  auto xt = torch::full({2, 1, 1, 1}, -0.7);
  auto t = torch::tensor({1, 700});
  auto post = d.posterior(x0, xt, t);
  for (int i = 0; i < 2; ++i) {
    const int tt = t[i].item<int>();
    const double a = ab[tt], ap = ab[tt - 1], b = betas[tt];
    const double mean = std::sqrt(ap) * b / (1 - a) * 0.3 + std::sqrt(1 - b) * (1 - ap) / (1 - a) * -0.7;
    const double var = (1 - ap) / (1 - a) * b;
    CHECK(post.mean[i].item<double>() == doctest::Approx(mean).epsilon(1e-5));
    CHECK(post.variance[i].item<double>() == doctest::Approx(var).epsilon(1e-5));
    // The (t, s) form with s = t - 1 is the same distribution.
    auto general = d.posterior(x0.slice(0, i, i + 1), xt.slice(0, i, i + 1), tt, tt - 1);
    CHECK(general.mean.item<double>() == doctest::Approx(mean).epsilon(1e-5));
    CHECK(general.variance.item<double>() == doctest::Approx(var).epsilon(1e-5));
  }
  // At t = 0 the posterior is the clean image itself.
  auto last = d.posterior(x0, xt, 0, -1);
  CHECK(last.variance.item<double>() == doctest::Approx(0.0));
  CHECK(last.mean[0].item<double>() == doctest::Approx(0.3).epsilon(1e-5));
}

TEST_CASE("diffusion: the respaced posterior q(x_s | x_t - x_0) keeps the forward marginals") {
  // x_t ~ q(x_t | x_0) followed by x_s ~ q(x_s | x_t, x_0) must give q(x_s | x_0):
  // mean c0 x0 + ct sqrt(ab_t) x0 = sqrt(ab_s) x0 and variance var + ct^2 (1 - ab_t) = 1 - ab_s.
  auto d = make("cosine");
  for (auto [t, s] : std::vector<std::pair<int, int>>{{999, 979}, {500, 100}, {20, 0}, {3, -1}}) {
    const double ab_t = d.alpha_bar(t), ab_s = d.alpha_bar(s);
    auto x0 = torch::ones({1, 1, 1, 1});
    auto zero = torch::zeros({1, 1, 1, 1});
    const double c0 = d.posterior(x0, zero, t, s).mean.item<double>();
    const double ct = d.posterior(zero, x0, t, s).mean.item<double>();
    const double var = d.posterior(zero, zero, t, s).variance.item<double>();
    CAPTURE(t);
    CHECK(c0 + ct * std::sqrt(ab_t) == doctest::Approx(std::sqrt(ab_s)).epsilon(1e-5));
    CHECK(var + ct * ct * (1 - ab_t) == doctest::Approx(1 - ab_s).epsilon(1e-5));
  }
  CHECK_THROWS(d.posterior(torch::zeros({1}), torch::zeros({1}), 5, 5));
}

TEST_CASE("diffusion: loss is the MSE to the target - min-SNR reweights it per timestep") {
  torch::manual_seed(1);
  for (const char* pred : {"eps", "v"}) {
    auto d = make("linear", pred);
    auto x0 = torch::rand({4, 1, 4, 4});
    auto noise = torch::randn({4, 1, 4, 4});
    auto t = torch::tensor({0, 10, 300, 999});
    auto out = torch::randn({4, 1, 4, 4});
    auto plain = d.loss_per_example(out, x0, t, noise);
    auto expect = (out - d.target(x0, t, noise)).pow(2).mean({1, 2, 3});
    CHECK((plain - expect).abs().max().item<double>() < 1e-6);
    auto weighted = d.loss_per_example(out, x0, t, noise, 5.0);
    auto snr = d.snr(t);
    for (int i = 0; i < 4; ++i) {
      const double s = snr[i].item<double>();
      const double w = std::min(s, 5.0) / (std::string(pred) == "v" ? s + 1 : s);
      CHECK(weighted[i].item<double>() == doctest::Approx(plain[i].item<double>() * w).epsilon(1e-4));
    }
  }
}

TEST_CASE("diffusion: bad configurations are refused") {
  CHECK_THROWS_AS(make("quadratic"), std::invalid_argument);
  CHECK_THROWS_AS(make("linear", "x0"), std::invalid_argument);
  CHECK_THROWS_AS(make("linear", "eps", 1), std::invalid_argument);
  CHECK(make("linear", "eps", 100).betas()[99].item<double>() == doctest::Approx(0.2));
}
