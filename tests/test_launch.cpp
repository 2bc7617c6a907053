// Data-parallel training, in one process: launcher variables and host lists, the rank slices of
// the batch order, and synchronised batch norm reducing to plain batch norm on one rank.
#include <map>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <torch/torch.h>

#include "models/unet.h"
#include "pipeline/base/errors.h"
#include "pipeline/base/launch.h"
#include "stages/batch_order.h"
#include "unet_fixtures.h"

using namespace augment;

namespace {

EnvLookup lookup(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

}  // namespace

TEST_CASE("launch: torchrun variables make a rank") {
  const auto env = detect_launch_env(lookup({{"RANK", "3"},
                                             {"WORLD_SIZE", "4"},
                                             {"LOCAL_RANK", "1"},
                                             {"LOCAL_WORLD_SIZE", "2"},
                                             {"MASTER_ADDR", "node07"},
                                             {"MASTER_PORT", "29400"},
                                             {"SLURM_PROCID", "0"},
                                             {"SLURM_NTASKS", "9"}}));
  CHECK(env.launcher == "torchrun");
  CHECK(env.rank == 3);
  CHECK(env.world_size == 4);
  CHECK(env.local_rank == 1);
  CHECK(env.local_world_size == 2);
  CHECK(env.master_addr == "node07");
  CHECK(env.master_port == 29400);
  CHECK(env.distributed());
  CHECK_FALSE(env.is_root());
}

TEST_CASE("launch: SLURM variables and the first host of the node list") {
  const auto env = detect_launch_env(lookup({{"SLURM_PROCID", "5"},
                                             {"SLURM_NTASKS", "8"},
                                             {"SLURM_LOCALID", "1"},
                                             {"SLURM_NTASKS_PER_NODE", "4(x2)"},
                                             {"SLURM_JOB_NODELIST", "gpu[07-08],cpu1"},
                                             {"SLURM_JOB_ID", "123456"}}));
  CHECK(env.launcher == "slurm");
  CHECK(env.rank == 5);
  CHECK(env.world_size == 8);
  CHECK(env.local_rank == 1);
  CHECK(env.local_world_size == 4);
  CHECK(env.master_addr == "gpu07");
  CHECK(env.master_port == 29500 + 456);
  // MASTER_PORT (e.g. exported by the batch script) wins.
  CHECK(detect_launch_env(
            lookup(
                {{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_JOB_NODELIST", "n1"}, {"MASTER_PORT", "40000"}}))
            .master_port == 40000);
  // No launcher: one process.
  const auto single = detect_launch_env(lookup({}));
  CHECK_FALSE(single.distributed());
  CHECK(single.launcher == "none");
  CHECK_THROWS_AS(detect_launch_env(lookup({{"RANK", "2"}, {"WORLD_SIZE", "2"}})), UserError);
  CHECK_THROWS_AS(detect_launch_env(lookup({{"RANK", "x"}, {"WORLD_SIZE", "2"}})), UserError);
}

TEST_CASE("launch: compact host lists expand like scontrol show hostnames") {
  using V = std::vector<std::string>;
  CHECK(expand_host_list("node[01-04,07],gpu2") == V{"node01", "node02", "node03", "node04", "node07", "gpu2"});
  CHECK(expand_host_list("a1") == V{"a1"});
  CHECK(expand_host_list("rack[1-2]-n[08-10]") ==
        V{"rack1-n08", "rack1-n09", "rack1-n10", "rack2-n08", "rack2-n09", "rack2-n10"});
  CHECK(expand_host_list("x[9-10]") == V{"x9", "x10"});
  for (const char* bad : {"node[01-", "node]1", "a,,b", "n[4-2]", "n[a-b]", "n[]", ""}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(expand_host_list(bad), UserError);
  }
}

TEST_CASE("distributed sampler: rank slices are disjoint - cover the global batch - and reshuffle per epoch") {
  const std::int64_t n = 37, batch = 12;  // 3 batches per epoch, 1 image left over
  const std::vector<std::int64_t> labels(n, 0);
  BatchOrder order(5, labels, 1.0, batch);
  auto batch_for_rank = [&](std::int64_t micro, int rank, int world) { return order.for_rank(micro, rank, world); };
  for (int world : {1, 2, 3, 4}) {
    CAPTURE(world);
    for (std::int64_t micro = 0; micro < 7; ++micro) {
      const auto whole = batch_for_rank(micro, 0, 1);
      std::vector<std::int64_t> joined;
      for (int r = 0; r < world; ++r) {
        const auto part = batch_for_rank(micro, r, world);
        CHECK(static_cast<std::int64_t>(part.size()) == batch / world);
        joined.insert(joined.end(), part.begin(), part.end());
      }
      CHECK(joined == whole);
      CHECK(std::set<std::int64_t>(joined.begin(), joined.end()).size() == joined.size());
    }
  }
  // An epoch visits distinct images; the next epoch is another order.
  std::vector<std::int64_t> epoch0, epoch1;
  for (std::int64_t m = 0; m < 3; ++m) {
    for (int r = 0; r < 2; ++r) {
      auto a = batch_for_rank(m, r, 2), b = batch_for_rank(m + 3, r, 2);
      epoch0.insert(epoch0.end(), a.begin(), a.end());
      epoch1.insert(epoch1.end(), b.begin(), b.end());
    }
  }
  CHECK(std::set<std::int64_t>(epoch0.begin(), epoch0.end()).size() == 36);
  CHECK(epoch0 != epoch1);
  CHECK(BatchOrder(6, labels, 1.0, batch).for_rank(0, 0, 1) != order.for_rank(0, 0, 1));
}

TEST_CASE("synchronised batch norm: with one rank it is plain batch norm - forward - backward and running statistics") {
  const auto c = test::tiny_unet(Conditioning::kCbn, 3, 8, {}, 2);
  torch::manual_seed(3);
  UNet plain(c), synced(c);
  {
    torch::NoGradGuard no_grad;
    auto from = plain->parameters(), to = synced->parameters();
    for (std::size_t i = 0; i < from.size(); ++i) to[i].copy_(from[i] + 0.01 * torch::randn_like(from[i]));
    for (std::size_t i = 0; i < from.size(); ++i) from[i].copy_(to[i]);
  }
  int calls = 0;
  synced->set_rank_sum([&](const torch::Tensor& x) {
    ++calls;
    return x * 1.0;  // one rank: the sum over ranks is the tensor itself
  });
  auto x = torch::randn({6, 3, 8, 8}) * 2 + 0.5;
  auto t = torch::randint(50, {6});
  auto y = torch::tensor({0, 1, 0, 1, 1, 0});
  auto xa = x.clone().requires_grad_(), xb = x.clone().requires_grad_();
  auto out_a = plain->forward(xa, t, y), out_b = synced->forward(xb, t, y);
  CHECK(calls > 0);
  CHECK((out_a - out_b).abs().max().item<double>() < 1e-4);
  (out_a * out_a).sum().backward();
  (out_b * out_b).sum().backward();
  CHECK((xa.grad() - xb.grad()).abs().max().item<double>() < 1e-3 * (1 + xa.grad().abs().max().item<double>()));
  auto pa = plain->parameters(), pb = synced->parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) {
    if (!pa[i].grad().defined()) continue;
    CHECK((pa[i].grad() - pb[i].grad()).abs().max().item<double>() <
          1e-3 * (1 + pa[i].grad().abs().max().item<double>()));
  }
  auto ba = plain->buffers(), bb = synced->buffers();
  REQUIRE(ba.size() == bb.size());
  for (std::size_t i = 0; i < ba.size(); ++i) CHECK((ba[i] - bb[i]).abs().max().item<double>() < 1e-5);
}
