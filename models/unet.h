// The denoiser: a DDPM / improved-DDPM U-Net (residual blocks with GroupNorm + SiLU, sinusoidal
// timestep embedding, self-attention at chosen resolutions, skip connections) with the class
// conditioning methods of the study built in: none, cbn, ac and cfg.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/conditioning.h"

namespace augment {

struct UNetConfig {
  int in_channels = 3;  // image channels (1 or 3); the output has the same number
  int resolution = 32;  // square input side; must be divisible by 2^(levels-1)
  int base_channels = 64;
  std::vector<int> channel_mult = {1, 2, 2};      // one entry per resolution level
  int blocks = 2;                                 // residual blocks per level (the decoder has one more)
  std::vector<int> attention_resolutions = {16};  // feature-map sides that get self-attention
  int heads = 4;
  double dropout = 0.1;
  int num_classes = 0;
  Conditioning conditioning = Conditioning::kNone;
  std::string cbn_norm = "batch";  // cbn only: batch | group

  // "ref32": 32x32x3, channels 64, multipliers 1,2,2, 2 blocks, attention at 16, 10 classes
  // (the benchmark configuration); "recipe28": the model of examples/fashion_mnist.ini (28x28x1,
  // channels 32, 1,2,2, 1 block, attention at 7, 2 heads, no dropout, 5 classes). Throws
  // std::invalid_argument for unknown names.
  static UNetConfig named(const std::string& name, Conditioning conditioning = Conditioning::kCfg);
  // Throws std::invalid_argument naming the inconsistent field.
  void validate() const;
};

// Sums a tensor over the ranks of a data-parallel job, differentiably (see models/distributed.h).
using RankSum = std::function<torch::Tensor(const torch::Tensor&)>;

// The conditioning signal shared by every layer of one forward pass.
struct LayerCond {
  torch::Tensor emb;                  // [N, E] time (+ class for cfg) embedding
  torch::Tensor class_emb;            // [N, E] class embedding for cbn norms; undefined otherwise
  torch::Tensor sample_seeds;         // int64 [N] on the CPU: per-sample dropout streams; undefined: plain dropout
  const RankSum* rank_sum = nullptr;  // set: training batch norm uses statistics over all ranks
};

// A layer of the U-Net that sees the conditioning.
class UNetLayer : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x, const LayerCond& cond) = 0;
};

class UNetImpl : public torch::nn::Module {
 public:
  explicit UNetImpl(const UNetConfig& config);

  // x [N, C, H, W] (noisy image in model range), t int64 [N] (0..T-1), y int64 [N] class
  // labels (cfg: null_label() for "no class"; ignored by none) -> [N, C, H, W].
  // sample_seeds int64 [N] (CPU): each sample's dropout masks come from its own seed, so a
  // sample is treated the same whichever batch or rank it lands in.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& y = {},
                        const torch::Tensor& sample_seeds = {});

  // Data-parallel training: cbn's batch norm then normalises with statistics over the global
  // batch (synchronised batch norm). An empty function restores per-process statistics.
  void set_rank_sum(RankSum sum) { rank_sum_ = std::move(sum); }

  const UNetConfig& config() const { return config_; }
  // The extra label index of a cfg model that means "unconditional".
  std::int64_t null_label() const { return config_.num_classes; }
  bool uses_labels() const { return config_.conditioning != Conditioning::kNone; }
  std::int64_t parameter_count() const;
  // Moves 4-D weights to channels-last (NHWC): oneDNN's fastest convolution layout on CPU.
  void to_channels_last();

 private:
  using Block = std::vector<std::shared_ptr<UNetLayer>>;
  torch::Tensor run_block(Block& block, torch::Tensor h, const LayerCond& cond);

  UNetConfig config_;
  RankSum rank_sum_;
  torch::nn::Linear time_fc1_{nullptr}, time_fc2_{nullptr};
  torch::nn::Embedding label_emb_{nullptr};    // cfg: added to the time embedding; cbn: feeds the norms
  torch::nn::Embedding label_plane_{nullptr};  // ac: one H x W plane per class
  std::vector<Block> input_blocks_, output_blocks_;
  Block middle_;
  std::shared_ptr<UNetLayer> out_norm_;
  torch::nn::Conv2d out_conv_{nullptr};
};
TORCH_MODULE(UNet);

// Sinusoidal embedding of integer timesteps: t [N] -> [N, dim] (cos half, then sin half).
torch::Tensor timestep_embedding(const torch::Tensor& t, int dim, double max_period = 10000.0);

}  // namespace augment
