#include "models/guidance.h"

#include "models/autocast.h"

namespace augment {

ModelFn denoiser_model_fn(UNet model, torch::Tensor labels, const ModelCall& call) {
  const bool guided = model->config().conditioning == Conditioning::kCfg && call.guidance != 1.0;
  torch::Tensor y = labels;
  if (guided) y = torch::cat({labels, torch::full_like(labels, model->null_label())});
  return [model, labels, y, call, guided](const torch::Tensor& x_t, int t) mutable {
    torch::NoGradGuard no_grad;
    const auto n = x_t.size(0);
    const bool guide_now = guided && call.guides_at(t);
    auto x = guide_now ? torch::cat({x_t, x_t}) : x_t;
    if (call.channels_last) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
    const auto tt = torch::full({x.size(0)}, t, torch::dtype(torch::kInt64).device(x.device()));
    torch::Tensor out;
    {
      AutocastScope autocast(x.device(), call.precision);
      out = model->forward(x, tt, guide_now ? y : labels);
    }
    out = out.to(torch::kFloat32);
    if (!guide_now) return out;
    const auto cond = out.slice(0, 0, n), uncond = out.slice(0, n, 2 * n);
    return (uncond + call.guidance * (cond - uncond)).contiguous();
  };
}

}  // namespace augment
