#include "models/unet.h"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "models/attention.h"
#include "models/cpu_gemm.h"
#include "models/fused_norm.h"
#include "models/winograd_conv_cpu.h"
#include "pipeline/base/rng.h"

namespace augment {

namespace {

// Groups of at least two channels, at most 32 (GroupNorm32 at the widths of the papers).
int group_count(int channels) {
  int g = std::min(32, std::max(1, channels / 2));
  while (channels % g) --g;
  return g;
}

// GroupNorm with learned affine parameters, or, for cbn, a parameter-free norm whose scale and
// shift are predicted per sample from the class embedding.
class NormLayer : public UNetLayer {
 public:
  NormLayer(int channels, const UNetConfig& config, int emb_dim) : channels_(channels), groups_(group_count(channels)) {
    conditional_ = config.conditioning == Conditioning::kCbn;
    batch_ = conditional_ && config.cbn_norm == "batch";
    if (conditional_) {
      // Zero-initialised so a fresh model starts as the plain norm; the class signal is learned.
      modulation_ = register_module("modulation", torch::nn::Linear(emb_dim, 2 * channels));
      torch::NoGradGuard no_grad;
      modulation_->weight.zero_();
      modulation_->bias.zero_();
    } else {
      weight_ = register_parameter("weight", torch::ones({channels}));
      bias_ = register_parameter("bias", torch::zeros({channels}));
    }
    if (batch_) {
      running_mean_ = register_buffer("running_mean", torch::zeros({channels}));
      running_var_ = register_buffer("running_var", torch::ones({channels}));
    }
  }

  // silu(forward(x)): the plain GroupNorm goes through the fused op (one CUDA kernel at inference).
  torch::Tensor forward_silu(const torch::Tensor& x, const LayerCond& cond) {
    if (!conditional_) return group_norm_silu(x, groups_, weight_, bias_);
    return torch::silu(forward(x, cond));
  }

  torch::Tensor forward(const torch::Tensor& x, const LayerCond& cond) override {
    if (!conditional_) return group_norm_in_input_type(x, groups_, weight_, bias_);
    torch::Tensor h;
    if (batch_ && cond.rank_sum && is_training()) {
      h = synchronised_batch_norm(x.to(torch::kFloat32), *cond.rank_sum).to(x.scalar_type());
    } else if (batch_) {
      // Batch statistics need fp32 accumulation and the running stats stay fp32.
      h = torch::batch_norm(x.to(torch::kFloat32), {}, {}, running_mean_, running_var_, is_training(), 0.1, 1e-5, true)
              .to(x.scalar_type());
    } else {
      h = group_norm_in_input_type(x, groups_, {}, {});
    }
    auto gb = modulation_->forward(cond.class_emb).to(x.scalar_type());  // [N, 2C]
    auto gamma = gb.slice(1, 0, channels_).unsqueeze(-1).unsqueeze(-1);
    auto beta = gb.slice(1, channels_).unsqueeze(-1).unsqueeze(-1);
    return h * (gamma + 1) + beta;
  }

 private:
  // Training-mode batch norm over the batches of all ranks: per-channel sums of x and x^2 and
  // the count go through one all-reduce; the running statistics get the global mean and the
  // unbiased global variance, so they stay identical on every rank.
  torch::Tensor synchronised_batch_norm(const torch::Tensor& x, const RankSum& rank_sum) {
    const double eps = 1e-5, momentum = 0.1;
    const auto c = x.size(1);
    auto count = torch::full({1}, static_cast<double>(x.numel() / c), x.options());
    auto stats = rank_sum(torch::cat({x.sum({0, 2, 3}), (x * x).sum({0, 2, 3}), count}));  // [2C + 1]
    const auto n = stats.slice(0, 2 * c).detach();
    auto mean = stats.slice(0, 0, c) / n;
    auto var = (stats.slice(0, c, 2 * c) / n - mean * mean).clamp_min(0.0);
    {
      torch::NoGradGuard no_grad;
      const double total = n.item<double>();
      running_mean_.mul_(1 - momentum).add_(mean.detach(), momentum);
      running_var_.mul_(1 - momentum).add_(var.detach() * (total / std::max(1.0, total - 1)), momentum);
    }
    return (x - mean.view({1, c, 1, 1})) * torch::rsqrt(var + eps).view({1, c, 1, 1});
  }

  int channels_, groups_;
  bool conditional_ = false, batch_ = false;
  torch::Tensor weight_, bias_, running_mean_, running_var_;
  torch::nn::Linear modulation_{nullptr};
};

torch::nn::Conv2d conv3x3(int in, int out, int stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1));
}

void zero_parameters(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters()) p.zero_();
}

class ConvIn : public UNetLayer {
 public:
  ConvIn(int in, int out) { conv_ = register_module("conv", conv3x3(in, out)); }
  torch::Tensor forward(const torch::Tensor& x, const LayerCond&) override { return conv_->forward(x); }

 private:
  torch::nn::Conv2d conv_{nullptr};
};

// Dropout whose mask for sample i comes from a generator seeded by (sample_seeds[i], stream):
// the same sample gets the same mask whatever its batch, so a data-parallel run matches a
// single-process one, and each layer (stream) draws independently.
torch::Tensor per_sample_dropout(const torch::Tensor& h, double p, const torch::Tensor& sample_seeds,
                                 std::uint64_t stream) {
  auto keep = torch::empty(h.sizes(), h.options().dtype(torch::kFloat32).memory_format(h.suggest_memory_format()));
  const auto seeds = sample_seeds.accessor<std::int64_t, 1>();
  if (h.device().is_cpu()) {
    // Each sample has its own generator, so the samples draw on all cores at once.
    at::parallel_for(0, h.size(0), 1, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i)
        keep[i].bernoulli_(1.0 - p,
                           at::detail::createCPUGenerator(mix_seed(static_cast<std::uint64_t>(seeds[i]), stream)));
    });
    return h * (keep / (1.0 - p)).to(h.scalar_type());
  }
  for (std::int64_t i = 0; i < h.size(0); ++i) {
    const auto seed = mix_seed(static_cast<std::uint64_t>(seeds[i]), stream);
    {
      // One generator per device: reseeding it per sample keeps the draw a function of the seed.
      auto gen = at::globalContext().defaultGenerator(h.device());
      {
        std::lock_guard<std::mutex> lock(gen.mutex());
        gen.set_current_seed(seed);
      }
      keep[i].bernoulli_(1.0 - p, gen);
    }
  }
  return h * (keep / (1.0 - p)).to(h.scalar_type());
}

class ResBlock : public UNetLayer {
 public:
  ResBlock(int in, int out, int emb_dim, const UNetConfig& config, int stream)
      : dropout_(config.dropout), stream_(stream) {
    norm1_ = register_module("norm1", std::make_shared<NormLayer>(in, config, emb_dim));
    conv1_ = register_module("conv1", conv3x3(in, out));
    emb_proj_ = register_module("emb_proj", torch::nn::Linear(emb_dim, out));
    norm2_ = register_module("norm2", std::make_shared<NormLayer>(out, config, emb_dim));
    conv2_ = register_module("conv2", conv3x3(out, out));
    zero_parameters(*conv2_);  // each block starts as the identity
    if (in != out) skip_ = register_module("skip", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1)));
  }

  torch::Tensor forward(const torch::Tensor& x, const LayerCond& cond) override {
    auto h = wino1_.forward(norm1_->forward_silu(x, cond), conv1_->weight, conv1_->bias);
    auto e = emb_proj_->forward(torch::silu(cond.emb)).to(h.scalar_type());  // [N, out]
    h = h + e.unsqueeze(-1).unsqueeze(-1);
    h = norm2_->forward_silu(h, cond);
    if (dropout_ > 0 && is_training() && cond.sample_seeds.defined()) {
      h = per_sample_dropout(h, dropout_, cond.sample_seeds, static_cast<std::uint64_t>(stream_));
    } else if (dropout_ > 0) {
      h = torch::dropout(h, dropout_, is_training());
    }
    h = wino2_.forward(h, conv2_->weight, conv2_->bias);
    return (skip_ ? skip_->forward(x) : x) + h;
  }

 private:
  double dropout_;
  int stream_;  // this block's dropout stream within a sample
  std::shared_ptr<NormLayer> norm1_, norm2_;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, skip_{nullptr};
  Conv3x3Weights wino1_, wino2_;
  torch::nn::Linear emb_proj_{nullptr};
};

// Multi-head self-attention over the H*W positions. Works on [N, HW, C] tokens, which is a free
// view of a channels-last feature map.
class AttentionBlock : public UNetLayer {
 public:
  AttentionBlock(int channels, int heads, int emb_dim, const UNetConfig& config) : channels_(channels), heads_(heads) {
    norm_ = register_module("norm", std::make_shared<NormLayer>(channels, config, emb_dim));
    qkv_ = register_module("qkv", torch::nn::Linear(channels, 3 * channels));
    proj_ = register_module("proj", torch::nn::Linear(channels, channels));
    zero_parameters(*proj_);
  }

  torch::Tensor forward(const torch::Tensor& x, const LayerCond& cond) override {
    const auto n = x.size(0), h = x.size(2), w = x.size(3);
    auto tokens = norm_->forward(x, cond).permute({0, 2, 3, 1}).reshape({n, h * w, channels_});  // [N, HW, C]
    auto qkv = linear(tokens, qkv_->weight, qkv_->bias);
    auto out = linear(multi_head_attention(qkv, heads_), proj_->weight, proj_->bias);  // [N, HW, C]
    return x + out.view({n, h, w, channels_}).permute({0, 3, 1, 2}).to(x.scalar_type());
  }

 private:
  int64_t channels_, heads_;
  std::shared_ptr<NormLayer> norm_;
  torch::nn::Linear qkv_{nullptr}, proj_{nullptr};
};

class Downsample : public UNetLayer {
 public:
  explicit Downsample(int channels) { conv_ = register_module("conv", conv3x3(channels, channels, 2)); }
  torch::Tensor forward(const torch::Tensor& x, const LayerCond&) override { return conv_->forward(x); }

 private:
  torch::nn::Conv2d conv_{nullptr};
};

class Upsample : public UNetLayer {
 public:
  explicit Upsample(int channels) { conv_ = register_module("conv", conv3x3(channels, channels)); }
  torch::Tensor forward(const torch::Tensor& x, const LayerCond&) override {
    return wino_.forward(torch::upsample_nearest2d(x, std::vector<int64_t>{x.size(2) * 2, x.size(3) * 2}),
                         conv_->weight, conv_->bias);
  }

 private:
  torch::nn::Conv2d conv_{nullptr};
  Conv3x3Weights wino_;
};

}  // namespace

UNetConfig UNetConfig::named(const std::string& name, Conditioning conditioning) {
  if (name == "ref32") {
    UNetConfig c;
    c.in_channels = 3;
    c.resolution = 32;
    c.base_channels = 64;
    c.channel_mult = {1, 2, 2};
    c.blocks = 2;
    c.attention_resolutions = {16};
    c.num_classes = 10;
    c.conditioning = conditioning;
    return c;
  }
  if (name == "recipe28") {
    // The model of examples/fashion_mnist.ini (5 classes of 28x28 grayscale).
    UNetConfig c;
    c.in_channels = 1;
    c.resolution = 28;
    c.base_channels = 32;
    c.channel_mult = {1, 2, 2};
    c.blocks = 1;
    c.attention_resolutions = {7};
    c.heads = 2;
    c.dropout = 0;
    c.num_classes = 5;
    c.conditioning = conditioning;
    return c;
  }
  throw std::invalid_argument("unknown model configuration '" + name + "' (known: ref32, recipe28)");
}

void UNetConfig::validate() const {
  auto fail = [](const std::string& m) { throw std::invalid_argument(m); };
  if (cbn_norm != "batch" && cbn_norm != "group") fail("cbn norm must be batch or group, not '" + cbn_norm + "'");
  if (conditioning != Conditioning::kNone && num_classes < 1) fail("a conditional model needs at least one class");
  if (in_channels < 1 || in_channels > 4) fail(fmt::format("input channels must be 1 to 4, not {}", in_channels));
  if (channel_mult.empty()) fail("channel multipliers must not be empty");
  if (base_channels < 1 || blocks < 1 || heads < 1) fail("channels, blocks and heads must be positive");
  const int factor = 1 << (channel_mult.size() - 1);
  if (resolution % factor != 0)
    fail(fmt::format("resolution {} is not divisible by 2^{} ({} levels of channel multipliers)", resolution,
                     channel_mult.size() - 1, channel_mult.size()));
  for (std::size_t level = 0; level < channel_mult.size(); ++level) {
    const int side = resolution >> level;
    const int ch = base_channels * channel_mult[level];
    const bool attn =
        std::find(attention_resolutions.begin(), attention_resolutions.end(), side) != attention_resolutions.end();
    if ((attn || level + 1 == channel_mult.size()) && ch % heads != 0)
      fail(fmt::format("{} attention heads do not divide the {} channels at resolution {}", heads, ch, side));
  }
  if (dropout < 0 || dropout >= 1) fail("dropout must be in [0, 1)");
}

torch::Tensor timestep_embedding(const torch::Tensor& t, int dim, double max_period) {
  const int half = dim / 2;
  auto freqs =
      torch::exp(-std::log(max_period) * torch::arange(half, torch::dtype(torch::kFloat32).device(t.device())) / half);
  auto args = t.to(torch::kFloat32).unsqueeze(1) * freqs.unsqueeze(0);  // [N, half]
  auto emb = torch::cat({torch::cos(args), torch::sin(args)}, 1);
  if (dim % 2) emb = torch::cat({emb, torch::zeros({t.size(0), 1}, emb.options())}, 1);
  return emb;
}

UNetImpl::UNetImpl(const UNetConfig& config) : config_(config) {
  config_.validate();
  const int mc = config_.base_channels;
  const int emb_dim = 4 * mc;
  time_fc1_ = register_module("time_fc1", torch::nn::Linear(mc, emb_dim));
  time_fc2_ = register_module("time_fc2", torch::nn::Linear(emb_dim, emb_dim));
  if (config_.conditioning == Conditioning::kCfg)
    label_emb_ = register_module("label_emb", torch::nn::Embedding(config_.num_classes + 1, emb_dim));
  if (config_.conditioning == Conditioning::kCbn)
    label_emb_ = register_module("label_emb", torch::nn::Embedding(config_.num_classes, emb_dim));
  if (config_.conditioning == Conditioning::kAc) {
    label_plane_ = register_module(
        "label_plane",
        torch::nn::Embedding(config_.num_classes, static_cast<int64_t>(config_.resolution) * config_.resolution));
  }

  auto has_attention = [&](int ds) {
    const int side = config_.resolution / ds;
    const auto& a = config_.attention_resolutions;
    return std::find(a.begin(), a.end(), side) != a.end();
  };
  int layer_id = 0;
  auto add = [&](Block& block, std::shared_ptr<UNetLayer> layer) {
    block.push_back(register_module(fmt::format("layer{}", layer_id++), std::move(layer)));
  };

  const int in = config_.in_channels + (config_.conditioning == Conditioning::kAc ? 1 : 0);
  int ch = mc * config_.channel_mult[0];
  input_blocks_.emplace_back();
  add(input_blocks_.back(), std::make_shared<ConvIn>(in, ch));
  std::vector<int> skip_channels{ch};
  int ds = 1;
  const int levels = static_cast<int>(config_.channel_mult.size());
  for (int level = 0; level < levels; ++level) {
    for (int b = 0; b < config_.blocks; ++b) {
      input_blocks_.emplace_back();
      const int out = mc * config_.channel_mult[level];
      add(input_blocks_.back(), std::make_shared<ResBlock>(ch, out, emb_dim, config_, layer_id));
      ch = out;
      if (has_attention(ds))
        add(input_blocks_.back(), std::make_shared<AttentionBlock>(ch, config_.heads, emb_dim, config_));
      skip_channels.push_back(ch);
    }
    if (level + 1 < levels) {
      input_blocks_.emplace_back();
      add(input_blocks_.back(), std::make_shared<Downsample>(ch));
      skip_channels.push_back(ch);
      ds *= 2;
    }
  }
  add(middle_, std::make_shared<ResBlock>(ch, ch, emb_dim, config_, layer_id));
  add(middle_, std::make_shared<AttentionBlock>(ch, config_.heads, emb_dim, config_));
  add(middle_, std::make_shared<ResBlock>(ch, ch, emb_dim, config_, layer_id));
  for (int level = levels - 1; level >= 0; --level) {
    for (int b = 0; b <= config_.blocks; ++b) {
      output_blocks_.emplace_back();
      const int skip = skip_channels.back();
      skip_channels.pop_back();
      const int out = mc * config_.channel_mult[level];
      add(output_blocks_.back(), std::make_shared<ResBlock>(ch + skip, out, emb_dim, config_, layer_id));
      ch = out;
      if (has_attention(ds))
        add(output_blocks_.back(), std::make_shared<AttentionBlock>(ch, config_.heads, emb_dim, config_));
      if (level > 0 && b == config_.blocks) {
        add(output_blocks_.back(), std::make_shared<Upsample>(ch));
        ds /= 2;
      }
    }
  }
  out_norm_ = register_module("out_norm", std::make_shared<NormLayer>(ch, config_, emb_dim));
  out_conv_ = register_module("out_conv", conv3x3(ch, config_.in_channels));
  zero_parameters(*out_conv_);
}

torch::Tensor UNetImpl::run_block(Block& block, torch::Tensor h, const LayerCond& cond) {
  for (auto& layer : block) h = layer->forward(h, cond);
  return h;
}

torch::Tensor UNetImpl::forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& y,
                                const torch::Tensor& sample_seeds) {
  const auto n = x.size(0);
  if (uses_labels() && (!y.defined() || y.size(0) != n)) {
    throw std::invalid_argument(fmt::format("a {} model needs one label per image", name_of(config_.conditioning)));
  }
  LayerCond cond;
  if (sample_seeds.defined()) {
    if (sample_seeds.size(0) != n) throw std::invalid_argument("one dropout seed per image is needed");
    cond.sample_seeds = sample_seeds.to(torch::kCPU, torch::kInt64).contiguous();
  }
  if (rank_sum_) cond.rank_sum = &rank_sum_;
  cond.emb =
      time_fc2_->forward(torch::silu(time_fc1_->forward(timestep_embedding(t, config_.base_channels))));  // [N, E]
  if (config_.conditioning == Conditioning::kCfg) cond.emb = cond.emb + label_emb_->forward(y);
  if (config_.conditioning == Conditioning::kCbn) cond.class_emb = label_emb_->forward(y);

  auto h = x;
  if (config_.conditioning == Conditioning::kAc) {
    auto plane = label_plane_->forward(y).view({n, 1, config_.resolution, config_.resolution}).to(x.scalar_type());
    h = torch::cat({x, plane}, 1).contiguous(x.suggest_memory_format());  // [N, C+1, H, W]
  }
  std::vector<torch::Tensor> skips;
  skips.reserve(input_blocks_.size());
  for (auto& block : input_blocks_) {
    h = run_block(block, h, cond);
    skips.push_back(h);
  }
  h = run_block(middle_, h, cond);
  for (auto& block : output_blocks_) {
    auto skip = std::move(skips.back());
    skips.pop_back();
    h = run_block(block, torch::cat({h, skip.to(h.scalar_type())}, 1), cond);  // [N, ch + skip, H, W]
  }
  return out_conv_->forward(static_cast<NormLayer&>(*out_norm_).forward_silu(h, cond));
}

std::int64_t UNetImpl::parameter_count() const {
  std::int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

void UNetImpl::to_channels_last() {
  torch::NoGradGuard no_grad;
  for (auto& p : parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
  }
}

}  // namespace augment
