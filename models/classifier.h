// The auxiliary classifier: a small pre-activation ResNet on [-1, 1] NCHW images that returns
// logits and its penultimate features. Pretrained on the real images and then frozen, it serves
// the `ac` loss, the sample filter and the evaluation scores.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace augment {

struct ClassifierConfig {
  int channels = 3;
  int resolution = 32;
  int num_classes = 2;
  int width = 32;              // channels of the first stage; doubles per stage up to 8x
  int blocks = 2;              // residual blocks per stage
  std::string norm = "group";  // group | batch
};

class ClassifierNetImpl : public torch::nn::Module {
 public:
  explicit ClassifierNetImpl(const ClassifierConfig& config);
  // [N, C, H, W] in [-1, 1] -> logits [N, K]
  torch::Tensor forward(const torch::Tensor& x);
  // (logits [N, K], features [N, F]) with F = feature_dim()
  std::pair<torch::Tensor, torch::Tensor> forward_features(const torch::Tensor& x);
  const ClassifierConfig& config() const { return config_; }
  std::int64_t feature_dim() const { return feature_dim_; }

 private:
  ClassifierConfig config_;
  std::int64_t feature_dim_ = 0;
  torch::nn::Conv2d stem_{nullptr};
  torch::nn::Sequential body_{nullptr};
  torch::nn::AnyModule final_norm_;
  torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(ClassifierNet);

// What the saved model was trained on; checked whenever another stage loads it.
struct ClassifierMeta {
  ClassifierConfig config;
  std::vector<std::string> class_names;
};

// Writes `<path>` (weights) and `<path>.json` (meta) atomically.
void save_classifier(ClassifierNet& net, const ClassifierMeta& meta, const std::filesystem::path& path);
ClassifierMeta read_classifier_meta(const std::filesystem::path& path);

// Loads a trained classifier for use as a fixed judge: eval mode, every parameter with
// requires_grad = false, on `device`. Refuses (UserError kDataError) a classifier trained on
// other classes, resolution or channels than the caller's data.
ClassifierNet load_frozen_classifier(const std::filesystem::path& path, const std::vector<std::string>& class_names,
                                     int resolution, int channels, const torch::Device& device);

}  // namespace augment
