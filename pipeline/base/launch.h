// Where this process stands in a multi-process job, read from the launcher's environment
// (torchrun, or SLURM's srun), and the job group the ranks share. No torch here: the CLI uses it
// to decide who takes the work-dir lock and who runs the stages before training.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace augment {

struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;  // ranks on this node (sizes each rank's CPU thread pool)
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string launcher = "none";  // none | torchrun | slurm

  bool distributed() const { return world_size > 1; }
  bool is_root() const { return rank == 0; }
};

using EnvLookup = std::function<const char*(const char*)>;

// torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT when RANK and
// WORLD_SIZE are set; else SLURM's SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
// SLURM_NTASKS_PER_NODE and the first host of SLURM_JOB_NODELIST (MASTER_ADDR / MASTER_PORT
// override them; the port defaults to 29500 + the job id modulo 1000 so that jobs sharing a node
// do not collide); else a single process. Throws UserError(kUsage) for values that do not parse
// or a rank outside the world.
LaunchEnv detect_launch_env(const EnvLookup& getenv);
LaunchEnv detect_launch_env();

// A loopback TCP port nobody listens on right now (the kernel's pick for port 0): MASTER_PORT
// for ranks started on this machine by hand, a test or a benchmark.
int free_loopback_port();

// SLURM's compact host lists: "node[01-04,07],gpu2,rack1-[3-4]" -> node01 node02 node03 node04
// node07 gpu2 rack1-3 rack1-4 (zero padding kept, several bracket groups per name expanded).
// Throws UserError(kUsage) for malformed lists.
std::vector<std::string> expand_host_list(const std::string& list);

// The ranks of one job: a store every rank reaches (rank 0 serves it) and the collectives the
// trainer needs. Created once per process by `join_job` (models/join_job.h, on torch's c10d).
class JobGroup {
 public:
  virtual ~JobGroup() = default;
  virtual const LaunchEnv& env() const = 0;
  int rank() const { return env().rank; }
  int world_size() const { return env().world_size; }
  bool is_root() const { return env().is_root(); }
  // A value every rank can read (rank 0 announces, the others wait for it).
  virtual void publish(const std::string& key, const std::string& value) = 0;
  // Waits up to `timeout` for `key`; throws UserError when it does not come or rank 0 is gone.
  virtual std::string wait_for(const std::string& key, std::chrono::seconds timeout) = 0;
};

}  // namespace augment
