// Data-parallel training on PyTorch's c10d: the process group of a job (Gloo on the CPU, NCCL on
// CUDA where LibTorch was built with it), rendezvous through a TCPStore served by rank 0, and the
// collectives the trainer needs: broadcast from rank 0, plain all-reduce, bucketed gradient
// averaging that overlaps the backward pass, and a differentiable sum for synchronised batch norm.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/join_job.h"

namespace augment {

enum class ReduceKind { kSum, kMax, kMin };

class Distributed final : public JobGroup {
 public:
  // Connects to the other ranks; see join_job. NCCL when `gpu` and LibTorch has it and a GPU is
  // present, else Gloo.
  Distributed(const LaunchEnv& env, std::chrono::seconds timeout, bool gpu);
  ~Distributed() override;

  const LaunchEnv& env() const override { return env_; }
  void publish(const std::string& key, const std::string& value) override;
  std::string wait_for(const std::string& key, std::chrono::seconds timeout) override;

  // Collectives run on the process group's device: the CPU for Gloo (tensors are moved there and
  // back when they live elsewhere), the rank's GPU for NCCL. Failures (a rank died, the timeout
  // passed) become UserError(kFailure) naming this rank and the cause.
  void broadcast_from_root(std::vector<torch::Tensor> tensors);
  void all_reduce(torch::Tensor& tensor, ReduceKind kind);

  // Handle of an all-reduce running in the background.
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void wait() = 0;
  };
  std::unique_ptr<Pending> all_reduce_async(torch::Tensor& tensor);

  // The sum of `x` over all ranks whose gradient is again summed over ranks: the identity that
  // makes batch statistics global (the gradient of a global mean reaches every rank's inputs).
  torch::Tensor sum_across_ranks(const torch::Tensor& x);

  std::string backend() const;
  // Turns a c10d failure into the message a user sees.
  std::string describe_failure(const std::exception& e) const;

  struct Impl;

 private:
  LaunchEnv env_;
  std::chrono::seconds timeout_;
  std::unique_ptr<Impl> impl_;
};

// The view of a JobGroup the trainer needs; null when `job` is null or single-process.
Distributed* as_distributed(JobGroup* job);

// Averages gradients over the ranks in a few flat buckets. Parameters are taken in reverse order
// (roughly the order the backward pass finishes them); a bucket's all-reduce starts as soon as
// it and every bucket before it are complete, so communication overlaps the rest of the
// backward pass. Buckets are always launched in the same order on every rank, which c10d needs.
class GradientAverager {
 public:
  GradientAverager(Distributed& dist, std::vector<torch::Tensor> params, std::int64_t bucket_bytes = 4 << 20);
  ~GradientAverager();
  GradientAverager(const GradientAverager&) = delete;
  GradientAverager& operator=(const GradientAverager&) = delete;

  // The next backward pass completes this step's gradients (the last micro-batch).
  void arm();
  // Launches the buckets the backward pass did not, waits for all, and leaves the mean over
  // ranks in every parameter's .grad. Returns the seconds spent waiting (exposed communication).
  double finish();
  std::size_t bucket_count() const { return buckets_.size(); }

 private:
  struct Bucket {
    torch::Tensor flat;
    std::vector<std::size_t> members;  // indices into params_
    std::size_t ready = 0;
    std::unique_ptr<Distributed::Pending> pending;
  };
  void on_gradient(std::size_t param, const torch::Tensor& grad);
  // Parameter k's place in its bucket, shaped like the parameter.
  torch::Tensor slot_of(std::size_t k);
  void launch_ready();

  Distributed& dist_;
  std::vector<torch::Tensor> params_;
  std::vector<std::size_t> bucket_of_, offset_of_;
  std::vector<bool> got_;
  std::vector<Bucket> buckets_;
  std::vector<unsigned> hooks_;
  std::size_t next_launch_ = 0;
  bool armed_ = false;
};

}  // namespace augment
