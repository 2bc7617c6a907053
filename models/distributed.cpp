#include "models/distributed.h"

#include <chrono>

#include <fmt/format.h>

// Debian's LibTorch ships c10d (with Gloo) inside libtorch_cpu but its CMake config does not
// define the backend macros the headers are guarded with.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(AUGMENT_HAVE_NCCL)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "models/torch_compat.h"
#include "pipeline/base/errors.h"

namespace augment {

namespace {

using Clock = std::chrono::steady_clock;

c10d::ReduceOp to_op(ReduceKind kind) {
  switch (kind) {
    case ReduceKind::kSum: return c10d::ReduceOp::SUM;
    case ReduceKind::kMax: return c10d::ReduceOp::MAX;
    case ReduceKind::kMin: return c10d::ReduceOp::MIN;
  }
  return c10d::ReduceOp::SUM;
}

// c10::Error appends a C++ backtrace after the first line; the first line says what happened.
std::string first_line(const std::exception& e) {
  std::string what = e.what();
  if (const auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
  return what;
}

bool is_loopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1"; }

}  // namespace

struct Distributed::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<compat::CollectiveGroup> group;
  bool nccl = false;
  torch::Device device = torch::kCPU;  // where the group's collectives run
};

Distributed::Distributed(const LaunchEnv& env, std::chrono::seconds timeout, bool gpu)
    : env_(env), timeout_(timeout), impl_(std::make_unique<Impl>()) {
  const auto where = fmt::format("{}:{}", env_.master_addr, env_.master_port);
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env_.master_port);
    so.isServer = env_.is_root();
    so.numWorkers = static_cast<std::size_t>(env_.world_size);
    so.waitWorkers = true;
    so.timeout = timeout_;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, so);
  } catch (const std::exception& e) {
    throw UserError(
        ExitCode::kFailure,
        fmt::format("rank {} of {}: no rendezvous with the other ranks at {} within {} s ({}): check MASTER_ADDR / "
                    "MASTER_PORT (or the SLURM node list), that every rank was started, and that the port is free",
                    env_.rank, env_.world_size, where, timeout_.count(), first_line(e)));
  }
  try {
    auto store = c10::make_intrusive<c10d::PrefixStore>("augment/pg", impl_->store);
#if defined(AUGMENT_HAVE_NCCL)
    if (gpu && torch::cuda::is_available()) {
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout_;
      impl_->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env_.rank, env_.world_size, options);
      impl_->nccl = true;
      impl_->device =
          torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env_.local_rank % torch::cuda::device_count()));
    }
#else
    (void)gpu;
#endif
    if (!impl_->group) {
      auto options = c10d::ProcessGroupGloo::Options::create(timeout_);
      // GLOO_SOCKET_IFNAME picks the network interface as in PyTorch; on one machine, loopback.
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (is_loopback(env_.master_addr)) {
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      options->threads = 2;
      impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, env_.rank, env_.world_size, options);
    }
  } catch (const std::exception& e) {
    throw UserError(ExitCode::kFailure, fmt::format("rank {} of {}: cannot set up the process group through {}: {}",
                                                    env_.rank, env_.world_size, where, first_line(e)));
  }
}

Distributed::~Distributed() = default;

std::string Distributed::backend() const { return impl_->nccl ? "nccl" : "gloo"; }

std::string Distributed::describe_failure(const std::exception& e) const {
  return fmt::format(
      "rank {} of {}: lost the other ranks of the data-parallel job (a rank died or stopped answering for {} s): "
      "{}. Rerun the job: it resumes from the last checkpoint",
      env_.rank, env_.world_size, timeout_.count(), first_line(e));
}

void Distributed::publish(const std::string& key, const std::string& value) {
  try {
    impl_->store->set(key, std::vector<std::uint8_t>(value.begin(), value.end()));
  } catch (const std::exception& e) {
    throw UserError(ExitCode::kFailure, describe_failure(e));
  }
}

std::string Distributed::wait_for(const std::string& key, std::chrono::seconds timeout) {
  try {
    impl_->store->wait({key}, timeout);
    const auto v = impl_->store->get(key);
    return std::string(v.begin(), v.end());
  } catch (const std::exception& e) {
    throw UserError(
        ExitCode::kFailure,
        fmt::format("rank {} of {}: waited for rank 0 ({}) and it did not answer within {} s or is gone: {}", env_.rank,
                    env_.world_size, key, timeout.count(), first_line(e)));
  }
}

namespace {

// A collective on a tensor the group cannot take directly (a CUDA tensor with Gloo): reduced in
// a staging copy, copied back when done.
class StagedWork final : public Distributed::Pending {
 public:
  StagedWork(c10::intrusive_ptr<c10d::Work> work, torch::Tensor staged, torch::Tensor target,
             std::function<std::string(const std::exception&)> describe)
      : work_(std::move(work)),
        staged_(std::move(staged)),
        target_(std::move(target)),
        describe_(std::move(describe)) {}
  void wait() override {
    if (!work_) return;
    try {
      work_->wait();
    } catch (const std::exception& e) {
      work_.reset();
      throw UserError(ExitCode::kFailure, describe_(e));
    }
    work_.reset();
    if (!staged_.is_same(target_)) target_.copy_(staged_);
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  torch::Tensor staged_, target_;
  std::function<std::string(const std::exception&)> describe_;
};

// The tensor itself when the group can work on it in place, else a contiguous copy on its device.
torch::Tensor staged_for(const torch::Tensor& t, const torch::Device& device) {
  return t.device() == device && t.is_contiguous() ? t : t.to(device).contiguous();
}

}  // namespace

std::unique_ptr<Distributed::Pending> Distributed::all_reduce_async(torch::Tensor& tensor) {
  auto staged = staged_for(tensor, impl_->device);
  std::vector<at::Tensor> list{staged};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::SUM;
  try {
    auto work = impl_->group->allreduce(list, options);
    return std::make_unique<StagedWork>(std::move(work), staged, tensor,
                                        [this](const std::exception& e) { return describe_failure(e); });
  } catch (const std::exception& e) {
    throw UserError(ExitCode::kFailure, describe_failure(e));
  }
}

void Distributed::all_reduce(torch::Tensor& tensor, ReduceKind kind) {
  auto staged = staged_for(tensor, impl_->device);
  std::vector<at::Tensor> list{staged};
  c10d::AllreduceOptions options;
  options.reduceOp = to_op(kind);
  try {
    impl_->group->allreduce(list, options)->wait();
  } catch (const std::exception& e) {
    throw UserError(ExitCode::kFailure, describe_failure(e));
  }
  if (!staged.is_same(tensor)) tensor.copy_(staged);
}

void Distributed::broadcast_from_root(std::vector<torch::Tensor> tensors) {
  torch::NoGradGuard no_grad;
  for (auto& t : tensors) {
    auto staged = staged_for(t, impl_->device);
    std::vector<at::Tensor> list{staged};
    c10d::BroadcastOptions options;
    options.rootRank = 0;
    try {
      impl_->group->broadcast(list, options)->wait();
    } catch (const std::exception& e) {
      throw UserError(ExitCode::kFailure, describe_failure(e));
    }
    if (!staged.is_same(t)) t.copy_(staged);
  }
}

torch::Tensor Distributed::sum_across_ranks(const torch::Tensor& x) {
  auto reduced = x.detach().clone();
  all_reduce(reduced, ReduceKind::kSum);
  if (!x.requires_grad()) return reduced;
  // Value: the global sum; gradient: the incoming gradient summed over ranks, i.e. every rank's
  // loss reaches this rank's inputs through the shared statistics.
  auto y = reduced + (x - x.detach());
  y.register_hook([this](torch::Tensor grad) {
    auto g = grad.clone();
    all_reduce(g, ReduceKind::kSum);
    return g;
  });
  return y;
}

Distributed* as_distributed(JobGroup* job) {
  auto* d = dynamic_cast<Distributed*>(job);
  return d && d->world_size() > 1 ? d : nullptr;
}

std::unique_ptr<JobGroup> join_job(const LaunchEnv& env, std::chrono::seconds timeout, bool gpu) {
  return std::make_unique<Distributed>(env, timeout, gpu);
}

GradientAverager::GradientAverager(Distributed& dist, std::vector<torch::Tensor> params, std::int64_t bucket_bytes)
    : dist_(dist), params_(std::move(params)) {
  const auto n = params_.size();
  bucket_of_.assign(n, 0);
  offset_of_.assign(n, 0);
  got_.assign(n, false);
  std::vector<std::int64_t> sizes;  // elements per bucket
  for (std::size_t k = n; k-- > 0;) {
    const auto& p = params_[k];
    const std::int64_t elements = p.numel();
    const bool fresh =
        buckets_.empty() || (sizes.back() + elements) * static_cast<std::int64_t>(p.element_size()) > bucket_bytes ||
        buckets_.back().flat.scalar_type() != p.scalar_type() || buckets_.back().flat.device() != p.device();
    if (fresh) {
      buckets_.emplace_back();
      buckets_.back().flat = torch::empty({0}, p.options());  // dtype and device; sized below
      sizes.push_back(0);
    }
    bucket_of_[k] = buckets_.size() - 1;
    offset_of_[k] = static_cast<std::size_t>(sizes.back());
    buckets_.back().members.push_back(k);
    sizes.back() += elements;
  }
  for (std::size_t i = 0; i < buckets_.size(); ++i)
    buckets_[i].flat = torch::empty({sizes[i]}, buckets_[i].flat.options());
  for (std::size_t k = 0; k < n; ++k) {
    hooks_.push_back(params_[k].register_hook([this, k](torch::Tensor grad) { on_gradient(k, grad); }));
  }
}

GradientAverager::~GradientAverager() {
  for (std::size_t k = 0; k < hooks_.size(); ++k) params_[k].remove_hook(hooks_[k]);
}

void GradientAverager::arm() {
  armed_ = true;
  next_launch_ = 0;
  std::fill(got_.begin(), got_.end(), false);
  for (auto& b : buckets_) b.ready = 0;
}

void GradientAverager::on_gradient(std::size_t k, const torch::Tensor& grad) {
  if (!armed_ || got_[k]) return;
  torch::NoGradGuard no_grad;
  const auto& p = params_[k];
  auto& b = buckets_[bucket_of_[k]];
  auto slot = slot_of(k);
  // The hook sees this pass's gradient before it is added to .grad, which holds the earlier
  // micro-batches of the step.
  slot.copy_(grad);
  if (p.grad().defined()) slot.add_(p.grad());
  got_[k] = true;
  ++b.ready;
  launch_ready();
}

torch::Tensor GradientAverager::slot_of(std::size_t k) {
  const auto& p = params_[k];
  return buckets_[bucket_of_[k]].flat.narrow(0, static_cast<std::int64_t>(offset_of_[k]), p.numel()).view(p.sizes());
}

void GradientAverager::launch_ready() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].ready == buckets_[next_launch_].members.size()) {
    auto& b = buckets_[next_launch_++];
    b.pending = dist_.all_reduce_async(b.flat);
  }
}

double GradientAverager::finish() {
  torch::NoGradGuard no_grad;
  // Parameters the backward pass did not reach (none in the denoiser, but a frozen branch could
  // leave some) contribute what .grad holds, or zero; every rank makes the same choice.
  for (std::size_t i = next_launch_; i < buckets_.size(); ++i) {
    auto& b = buckets_[i];
    for (const auto k : b.members) {
      if (got_[k]) continue;
      const auto& p = params_[k];
      auto slot = slot_of(k);
      if (p.grad().defined())
        slot.copy_(p.grad());
      else
        slot.zero_();
      ++b.ready;
    }
  }
  launch_ready();
  const auto start = Clock::now();
  for (auto& b : buckets_) {
    if (b.pending) b.pending->wait();
    b.pending.reset();
  }
  const double waited = std::chrono::duration<double>(Clock::now() - start).count();
  const double scale = 1.0 / static_cast<double>(dist_.world_size());
  for (auto& b : buckets_) b.flat.mul_(scale);
  for (std::size_t k = 0; k < params_.size(); ++k) {
    auto& p = params_[k];
    if (p.grad().defined()) p.mutable_grad().copy_(slot_of(k));
  }
  armed_ = false;
  return waited;
}

}  // namespace augment
