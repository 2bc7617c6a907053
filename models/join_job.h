// Joining the other ranks of a job, declared without LibTorch so the command layer can call it
// without compiling torch's headers. Implemented in models/distributed.cpp.
#pragma once

#include <chrono>
#include <memory>

#include "pipeline/base/launch.h"

namespace augment {

// Connects to the other ranks (rank 0 opens the store at MASTER_ADDR:MASTER_PORT) within
// `timeout`, which is also how long a collective may wait before the job is declared broken.
// `gpu`: the ranks train on GPUs (NCCL where LibTorch has it). Implemented in models/distributed.cpp.
std::unique_ptr<JobGroup> join_job(const LaunchEnv& env, std::chrono::seconds timeout, bool gpu);

}  // namespace augment
