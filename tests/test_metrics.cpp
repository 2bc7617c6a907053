// Evaluation metrics and t-SNE on constructed inputs whose answers are known in closed form.
#include <doctest/doctest.h>

#include <cmath>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "models/downstream_utility.h"
#include "models/metrics.h"
#include "models/tsne.h"

using namespace augment;

namespace {

torch::Tensor gaussian(std::int64_t n, std::int64_t d, std::uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn({n, d}, torch::kFloat64);
}

}  // namespace

TEST_SUITE("evaluation metrics") {
  TEST_CASE("Frechet distance: 0 for identical sets and the closed form for shifted and for non-commuting Gaussians") {
    const auto a = gaussian(400, 6, 1);
    CHECK(frechet_distance(a, a) == doctest::Approx(0.0).epsilon(1e-9));
    // A shifted copy has the same covariance: the distance is the squared shift.
    const auto shift = torch::tensor({1.0, -2.0, 0.5, 0.0, 3.0, 0.25}, torch::kFloat64);
    CHECK(frechet_distance(a, a + shift) == doctest::Approx(shift.pow(2).sum().item<double>()).epsilon(1e-9));
    CHECK(frechet_distance(a.to(torch::kFloat32), (a + shift).to(torch::kFloat32)) ==
          doctest::Approx(14.3125).epsilon(1e-5));

    // Diagonal covariances: |dmu|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    const auto mu_a = torch::tensor({0.0, 1.0, 2.0}, torch::kFloat64),
               mu_b = torch::tensor({1.0, 1.0, 0.0}, torch::kFloat64);
    const auto va = torch::tensor({1.0, 4.0, 9.0}, torch::kFloat64),
               vb = torch::tensor({4.0, 4.0, 1.0}, torch::kFloat64);
    CHECK(frechet_distance(mu_a, torch::diag(va), mu_b, torch::diag(vb)) == doctest::Approx(5.0 + 1.0 + 0.0 + 4.0));

    // Non-commuting 2x2: for M with positive eigenvalues, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)).
    const auto s1 = torch::tensor({2.0, 1.0, 1.0, 2.0}, torch::kFloat64).view({2, 2});
    const auto s2 = torch::tensor({1.0, 0.0, 0.0, 3.0}, torch::kFloat64).view({2, 2});
    const auto zero = torch::zeros({2}, torch::kFloat64);
    CHECK(frechet_distance(zero, s1, zero, s2) ==
          doctest::Approx(4.0 + 4.0 - 2.0 * std::sqrt(8.0 + 2.0 * 3.0)).epsilon(1e-12));
    // Symmetric in its arguments.
    CHECK(frechet_distance(zero, s2, zero, s1) == doctest::Approx(frechet_distance(zero, s1, zero, s2)));
    // Too few rows for a covariance.
    CHECK(std::isnan(frechet_distance(a.slice(0, 0, 1), a)));
  }

  TEST_CASE("Frechet distance at the reference class mix: the same classes in other proportions score near 0") {
    // Two classes, far apart; a has them 1:9, b 9:1 (as a balance plan samples the rare class).
    auto cls = [](std::int64_t n0, std::int64_t n1, std::uint64_t seed) {
      auto x = gaussian(n0 + n1, 4, seed);
      x.slice(0, n0, n0 + n1).add_(6.0);
      auto l = torch::cat({torch::zeros({n0}, torch::kInt64), torch::ones({n1}, torch::kInt64)});
      return std::make_pair(x, l);
    };
    const auto [a, la] = cls(300, 2700, 11);
    const auto [b, lb] = cls(2700, 300, 12);
    const auto w = class_mix_weights(la, lb, 2);
    CHECK(w.slice(0, 0, 300).sum().item<double>() == doctest::Approx(0.9));
    CHECK(w.slice(0, 300, 3000).sum().item<double>() == doctest::Approx(0.1));
    const double plain = frechet_distance(a, b), matched = frechet_distance(a, w, b);
    CHECK(plain > 40.0);   // mostly the class mix: means 4.8 apart in each of 4 dimensions
    CHECK(matched < 0.1);  // sampling noise only
    // Equal weights give the unweighted distance.
    CHECK(frechet_distance(a, torch::ones({3000}), b) == doctest::Approx(plain).epsilon(1e-9));
  }

  TEST_CASE("Frechet distance restricted to classes: a class left out no longer counts - on either side") {
    // Three classes; in a, class 2 is shifted far from where b has it.
    auto set = [](std::uint64_t seed, double shift2) {
      auto x = gaussian(900, 4, seed);
      x.slice(0, 300, 600).add_(6.0);
      x.slice(0, 600, 900).add_(-6.0 + shift2);
      auto l = torch::cat({torch::zeros({300}, torch::kInt64), torch::ones({300}, torch::kInt64),
                           torch::full({300}, 2, torch::kInt64)});
      return std::make_pair(x, l);
    };
    const auto [a, la] = set(21, 20.0);
    const auto [b, lb] = set(22, 0.0);
    const auto all = torch::ones({3}, torch::kBool), two = torch::tensor({true, true, false});
    CHECK(frechet_distance_at_mix(a, la, b, lb, all) > 50.0);
    CHECK(frechet_distance_at_mix(a, la, b, lb, two) < 0.2);
    // Restricting b alone is not enough: b's class 2 would be a mode a lacks.
    CHECK(frechet_distance(a.slice(0, 0, 600), b) > 10.0);
    // All classes marked: the class-mix distance itself.
    CHECK(frechet_distance_at_mix(a, la, b, lb, all) ==
          doctest::Approx(frechet_distance(a, class_mix_weights(la, lb, 3), b)).epsilon(1e-12));
  }

  TEST_CASE(
      "precision and recall: 1 for identical sets and 0 for disjoint ones and half the recall for a dropped mode") {
    const auto a = gaussian(200, 5, 2);
    auto pr = knn_precision_recall(a, a, 3);
    CHECK(pr.precision == 1.0);
    CHECK(pr.recall == 1.0);
    pr = knn_precision_recall(a, a + 100.0, 3);
    CHECK(pr.precision == 0.0);
    CHECK(pr.recall == 0.0);
    // Real data has two far-apart modes; the synthetic set copies one of them: every synthetic image
    // is realistic, half of the real images are covered.
    const auto mode_a = gaussian(100, 5, 3), mode_b = gaussian(100, 5, 4) + 50.0;
    pr = knn_precision_recall(torch::cat({mode_a, mode_b}), mode_a, 3);
    CHECK(pr.precision == 1.0);
    CHECK(pr.recall == 0.5);
    CHECK_THROWS(knn_precision_recall(a.slice(0, 0, 3), a, 3));
  }

  TEST_CASE("classifier score: K for confident predictions spread evenly over K classes and 1 for one class") {
    const auto labels = torch::arange(400, torch::kInt64).remainder(4);
    const auto confident = torch::one_hot(labels, 4).to(torch::kFloat32) * 60.0f;
    CHECK(classifier_score(confident) == doctest::Approx(4.0).epsilon(1e-6));
    const auto one_class = torch::one_hot(torch::zeros({50}, torch::kInt64), 4).to(torch::kFloat32) * 60.0f;
    CHECK(classifier_score(one_class) == doctest::Approx(1.0).epsilon(1e-9));
    CHECK(classifier_score(torch::zeros({50, 4})) == doctest::Approx(1.0).epsilon(1e-9));
    // Two classes only, evenly: 2.
    const auto two = torch::one_hot(torch::arange(100, torch::kInt64).remainder(2), 4).to(torch::kFloat32) * 60.0f;
    CHECK(classifier_score(two) == doctest::Approx(2.0).epsilon(1e-6));
    CHECK(std::isnan(classifier_score(torch::zeros({0, 4}))));
  }

  TEST_CASE("conditional accuracy: 1 for a classifier that is always right and per-class recall for one that is not") {
    const auto requested = torch::arange(90, torch::kInt64).remainder(3);
    torch::manual_seed(5);
    const auto right = torch::one_hot(requested, 3).to(torch::kFloat32) * 5.0f + torch::rand({90, 3});
    const auto m = conditional_confusion(right, requested, 3);
    CHECK(m.accuracy() == 1.0);
    CHECK(m.balanced_accuracy() == 1.0);
    CHECK(m.total() == 90);
    // Always class 0: right for class 0 only.
    const auto zero = torch::one_hot(torch::zeros({90}, torch::kInt64), 3).to(torch::kFloat32);
    const auto r = conditional_confusion(zero, requested, 3).recall();
    CHECK(r[0] == 1.0);
    CHECK(r[1] == 0.0);
    CHECK(r[2] == 0.0);
  }
}

TEST_SUITE("t-SNE") {
  TEST_CASE(
      "independent conditional accuracy: the real-only classifiers judge the synthetic images and the mean is over "
      "seeds") {
    auto run = [](std::uint64_t seed, std::vector<std::vector<std::int64_t>> synthetic) {
      DownstreamRun r;
      r.variant = "real";
      r.seed = seed;
      r.test = ConfusionMatrix(2);
      r.test.add(0, 0, 5);
      r.test.add(1, 1, 5);
      ConfusionMatrix m(2);
      for (std::size_t t = 0; t < 2; ++t)
        for (std::size_t p = 0; p < 2; ++p)
          m.add(static_cast<std::int64_t>(t), static_cast<std::int64_t>(p), synthetic[t][p]);
      r.synthetic = m;
      return r;
    };
    const std::vector<DownstreamRun> runs = {run(0, {{3, 1}, {0, 4}}), run(1, {{4, 0}, {0, 4}})};
    const auto j = downstream_to_json(runs, {"a", "b"});
    const auto& ind = j["independent_conditional_accuracy"];
    CHECK(ind["judges"] == 2);
    CHECK(ind["accuracy"]["mean"].get<double>() == doctest::Approx((7.0 / 8 + 1.0) / 2));
    CHECK(ind["per_class_recall"]["a"]["mean"].get<double>() == doctest::Approx((0.75 + 1.0) / 2));
    // The verdict survives the journal.
    const auto back = downstream_run_from_json(downstream_run_to_json(runs[0]));
    REQUIRE(back.synthetic.has_value());
    CHECK(back.synthetic->counts() == runs[0].synthetic->counts());
    // Without synthetic images there is no verdict.
    DownstreamRun plain = runs[0];
    plain.synthetic.reset();
    CHECK(downstream_to_json({plain}, {"a", "b"})["independent_conditional_accuracy"].is_null());
    CHECK_FALSE(downstream_run_to_json(plain).contains("synthetic_confusion"));
  }

  TEST_CASE(
      "downstream baselines: class-weighted loss and class-balanced sampling beside the recipe - the two smallest "
      "classes recall - augmented against the stronger baseline") {
    DownstreamData data;
    CHECK(downstream_variants(data, ClassBalance::kLoss) == std::vector<std::string>{"real", "real_sampler"});
    CHECK(downstream_variants(data, ClassBalance::kSampler) == std::vector<std::string>{"real", "real_loss"});
    CHECK(downstream_variants(data, ClassBalance::kNone) ==
          std::vector<std::string>{"real", "real_loss", "real_sampler"});
    CHECK(is_real_only_variant("real_sampler"));
    CHECK_FALSE(is_real_only_variant("augmented"));
    // Three classes; c and a are the smallest. Each run gets `right[k]` of 4 test images of class k right.
    auto run = [](const std::string& variant, std::uint64_t seed, std::vector<std::int64_t> right) {
      DownstreamRun r;
      r.variant = variant;
      r.seed = seed;
      r.test = ConfusionMatrix(3);
      for (std::int64_t k = 0; k < 3; ++k) {
        r.test.add(k, k, right[static_cast<std::size_t>(k)]);
        r.test.add(k, (k + 1) % 3, 4 - right[static_cast<std::size_t>(k)]);
      }
      return r;
    };
    const std::vector<DownstreamRun> runs = {run("real", 0, {1, 4, 1}),         run("real_sampler", 0, {2, 4, 2}),
                                             run("augmented", 0, {3, 4, 4}),    run("real", 1, {1, 4, 1}),
                                             run("real_sampler", 1, {2, 4, 0}), run("augmented", 1, {4, 4, 3})};
    const auto j = downstream_to_json(runs, {"a", "b", "c"}, {20, 200, 10});
    CHECK(j["smallest_classes"] == nlohmann::json({"c", "a"}));
    // Mean recall over a and c: real 0.25 both seeds; sampler 0.5 and 0.25; augmented 0.875 both.
    CHECK(j["variants"]["real"]["smallest_classes_recall"]["mean"].get<double>() == doctest::Approx(0.25));
    CHECK(j["variants"]["real_sampler"]["smallest_classes_recall"]["mean"].get<double>() == doctest::Approx(0.375));
    CHECK(j["variants"]["augmented"]["smallest_classes_recall"]["mean"].get<double>() == doctest::Approx(0.875));
    CHECK(j["strongest_baseline"] == "real_sampler");
    // Paired by seed: balanced accuracy (3+4+4)/12 - (2+4+2)/12 and (4+4+3)/12 - (2+4+0)/12.
    const auto& d = j["difference"]["augmented_minus_real_sampler"]["balanced_accuracy"];
    CHECK(d["mean"].get<double>() == doctest::Approx((3.0 / 12 + 5.0 / 12) / 2));
    CHECK(j["difference"].contains("real_sampler_minus_real"));
    // Without the class counts there is no smallest-class figure.
    CHECK(downstream_to_json(runs, {"a", "b", "c"})["smallest_classes"].empty());
  }

  TEST_CASE("t-SNE separates two clusters and is reproducible for a seed") {
    // Two clusters in 20 dimensions whose centres are 8 standard deviations apart.
    auto x = gaussian(120, 20, 6);
    auto labels = (torch::arange(120, torch::kInt64) >= 60).to(torch::kInt64);
    x.slice(0, 60, 120).select(1, 0).add_(8.0);
    TsneOptions o;
    o.perplexity = 15;
    o.iterations = 400;
    o.seed = 11;
    const auto y = tsne(x, o);
    REQUIRE(y.sizes() == torch::IntArrayRef({120, 2}));
    CHECK(torch::isfinite(y).all().item<bool>());
    CHECK(nearest_neighbour_agreement(y, labels) >= 0.95);
    // Same seed: the same layout, bit for bit; another seed: another layout.
    CHECK(torch::equal(y, tsne(x, o)));
    o.seed = 12;
    CHECK_FALSE(torch::equal(y, tsne(x, o)));
    // The input alone scores the same on the agreement measure (a sanity check of the measure).
    CHECK(nearest_neighbour_agreement(x, labels) >= 0.95);
    // PCA first for wide inputs: still separated.
    o.pca_dims = 5;
    CHECK(nearest_neighbour_agreement(tsne(x, o), labels) >= 0.95);
  }
}
