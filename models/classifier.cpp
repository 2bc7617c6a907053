#include "models/classifier.h"

#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "pipeline/base/errors.h"
#include "pipeline/base/fs_util.h"

namespace augment {

namespace {

torch::nn::AnyModule make_norm(const std::string& kind, int channels) {
  if (kind == "batch") return torch::nn::AnyModule(torch::nn::BatchNorm2d(channels));
  // Up to 32 groups, each with at least 4 channels where possible.
  int groups = std::min(32, std::max(1, channels / 4));
  while (channels % groups) --groups;
  return torch::nn::AnyModule(torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels)));
}

// Norms compute in their parameters' precision: under CPU autocast LibTorch 1.13 hands bf16
// activations to GroupNorm with fp32 weights, which it rejects, and fp32 statistics are the
// numerically safe choice anyway. The following convolution casts back to bf16 itself.
torch::Tensor normalize(torch::nn::AnyModule& norm, const torch::Tensor& x) {
  const auto params = norm.ptr()->parameters(false);
  if (params.empty() || params.front().scalar_type() == x.scalar_type()) return norm.forward(x);
  return norm.forward(x.to(params.front().scalar_type()));
}

// Pre-activation residual block: norm -> relu -> conv -> norm -> relu -> conv, plus shortcut.
class PreActBlockImpl : public torch::nn::Module {
 public:
  PreActBlockImpl(int in, int out, int stride, const std::string& norm) {
    norm1_ = make_norm(norm, in);
    register_module("norm1", norm1_.ptr());
    conv1_ = register_module(
        "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)));
    norm2_ = make_norm(norm, out);
    register_module("norm2", norm2_.ptr());
    conv2_ = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(out, out, 3).padding(1).bias(false)));
    if (stride != 1 || in != out) {
      shortcut_ = register_module("shortcut",
                                  torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)));
    }
  }
  torch::Tensor forward(torch::Tensor x) {
    auto h = torch::relu(normalize(norm1_, x));
    auto skip = shortcut_ ? shortcut_->forward(h) : x;
    h = conv1_->forward(h);
    h = conv2_->forward(torch::relu(normalize(norm2_, h)));
    return h + skip;
  }

 private:
  torch::nn::AnyModule norm1_, norm2_;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, shortcut_{nullptr};
};
TORCH_MODULE(PreActBlock);

}  // namespace

ClassifierNetImpl::ClassifierNetImpl(const ClassifierConfig& config) : config_(config) {
  // Stages down to about 4x4 pixels: 16 -> 3 stages, 28/32 -> 3/4, 64 -> 5 (capped at 5).
  const int stages = std::clamp(static_cast<int>(std::floor(std::log2(config.resolution / 4.0))) + 1, 2, 5);
  stem_ = register_module(
      "stem", torch::nn::Conv2d(torch::nn::Conv2dOptions(config.channels, config.width, 3).padding(1).bias(false)));
  body_ = torch::nn::Sequential();
  int in = config.width;
  for (int s = 0; s < stages; ++s) {
    const int out = config.width * (1 << std::min(s, 3));
    for (int b = 0; b < config.blocks; ++b) {
      body_->push_back(PreActBlock(in, out, (b == 0 && s > 0) ? 2 : 1, config.norm));
      in = out;
    }
  }
  register_module("body", body_);
  final_norm_ = make_norm(config.norm, in);
  register_module("final_norm", final_norm_.ptr());
  feature_dim_ = in;
  head_ = register_module("head", torch::nn::Linear(in, config.num_classes));
}

std::pair<torch::Tensor, torch::Tensor> ClassifierNetImpl::forward_features(const torch::Tensor& x) {
  auto h = body_->forward(stem_->forward(x));  // [N, F, h, w]
  h = torch::relu(normalize(final_norm_, h));
  auto features = h.mean({2, 3});  // [N, F]
  return {head_->forward(features), features};
}

torch::Tensor ClassifierNetImpl::forward(const torch::Tensor& x) { return forward_features(x).first; }

static nlohmann::json meta_to_json(const ClassifierMeta& m) {
  const auto& c = m.config;
  return {{"channels", c.channels},       {"resolution", c.resolution},
          {"num_classes", c.num_classes}, {"width", c.width},
          {"blocks", c.blocks},           {"norm", c.norm},
          {"class_names", m.class_names}};
}

void save_classifier(ClassifierNet& net, const ClassifierMeta& meta, const std::filesystem::path& path) {
  write_atomically(path, [&](const std::filesystem::path& tmp) { torch::save(net, tmp.string()); });
  write_text_atomically(path.string() + ".json", meta_to_json(meta).dump(2) + "\n");
}

ClassifierMeta read_classifier_meta(const std::filesystem::path& path) {
  const auto meta_path = std::filesystem::path(path.string() + ".json");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(meta_path));
  } catch (const UserError&) {
    throw UserError(ExitCode::kNoInput, fmt::format("no trained classifier at {}", path.string()));
  } catch (const std::exception& e) {
    throw UserError(ExitCode::kDataError, fmt::format("{} is damaged ({})", meta_path.string(), e.what()));
  }
  ClassifierMeta m;
  m.config.channels = j.at("channels");
  m.config.resolution = j.at("resolution");
  m.config.num_classes = j.at("num_classes");
  m.config.width = j.at("width");
  m.config.blocks = j.at("blocks");
  m.config.norm = j.at("norm");
  m.class_names = j.at("class_names").get<std::vector<std::string>>();
  return m;
}

ClassifierNet load_frozen_classifier(const std::filesystem::path& path, const std::vector<std::string>& class_names,
                                     int resolution, int channels, const torch::Device& device) {
  const auto meta = read_classifier_meta(path);
  if (meta.class_names != class_names || meta.config.resolution != resolution || meta.config.channels != channels) {
    std::string theirs, ours;
    for (const auto& n : meta.class_names) theirs += (theirs.empty() ? "" : ", ") + n;
    for (const auto& n : class_names) ours += (ours.empty() ? "" : ", ") + n;
    throw UserError(ExitCode::kDataError, fmt::format("the classifier at {} was trained on classes [{}] at {}px x {} "
                                                      "channels, but this run has [{}] at {}px x {} "
                                                      "channels",
                                                      path.string(), theirs, meta.config.resolution,
                                                      meta.config.channels, ours, resolution, channels));
  }
  ClassifierNet net(meta.config);
  try {
    torch::load(net, path.string());
  } catch (const c10::Error& e) {
    throw UserError(ExitCode::kDataError, fmt::format("cannot load classifier weights {} (damaged?)", path.string()));
  }
  net->to(device);
  net->eval();
  for (auto& p : net->parameters()) p.set_requires_grad(false);
  return net;
}

}  // namespace augment
