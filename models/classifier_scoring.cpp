// Scoring with a trained classifier: logits, features and metrics over image tensors, in batches.
#include "models/classifier_training.h"

#include <cmath>
#include <limits>

#include "models/device_transfer.h"
#include "models/pixel_range.h"

namespace augment {

namespace F = torch::nn::functional;

torch::Tensor classifier_logits(ClassifierNet& net, const torch::Tensor& images, const torch::Device& device,
                                std::int64_t batch_size) {
  const bool was_training = net->is_training();
  net->eval();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  for (std::int64_t s = 0; s < images.size(0); s += batch_size) {
    const auto e = std::min(images.size(0), s + batch_size);
    // The stored pixels go to the device as they are (uint8: a quarter of the bytes) and the
    // results come back once, after the last batch.
    parts.push_back(net->forward(as_model_input(images.slice(0, s, e).to(device))).to(torch::kFloat32));
  }
  net->train(was_training);
  if (parts.empty()) return torch::empty({0, net->config().num_classes});
  return torch::cat(parts).cpu();
}

ClassifierOutputs classifier_outputs(ClassifierNet& net, const torch::Tensor& images, const torch::Device& device,
                                     std::int64_t batch_size) {
  const bool was_training = net->is_training();
  net->eval();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> logits, features;
  for (std::int64_t s = 0; s < images.size(0); s += batch_size) {
    const auto e = std::min(images.size(0), s + batch_size);
    auto [l, f] = net->forward_features(as_model_input(images.slice(0, s, e).to(device)));
    logits.push_back(l.to(torch::kFloat32));
    features.push_back(f.to(torch::kFloat32));
  }
  net->train(was_training);
  if (logits.empty()) return {torch::empty({0, net->config().num_classes}), torch::empty({0, net->feature_dim()})};
  return {torch::cat(logits).cpu(), torch::cat(features).cpu()};
}

ClassifierScores evaluate_classifier(ClassifierNet& net, const LabeledImages& data, const torch::Device& device,
                                     std::int64_t batch_size) {
  const int k = net->config().num_classes;
  ClassifierScores scores{ConfusionMatrix(static_cast<std::size_t>(k)), kNaN};
  if (data.size() == 0) return scores;
  const auto logits = classifier_logits(net, data.images, device, batch_size);
  const auto labels = data.labels.to(torch::kInt64).contiguous();
  scores.loss = F::cross_entropy(logits, labels).item<double>();
  const auto predicted = logits.argmax(1).contiguous();
  const auto* t = labels.data_ptr<std::int64_t>();
  const auto* p = predicted.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < labels.size(0); ++i) scores.confusion.add(t[i], p[i]);
  return scores;
}

}  // namespace augment
