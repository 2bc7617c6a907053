#include "pipeline/base/launch.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "pipeline/base/errors.h"

namespace augment {

namespace {

int parse_int(const char* name, const char* text, int lo, int hi) {
  const std::string s = text;
  try {
    std::size_t used = 0;
    const long v = std::stol(s, &used);
    if (used == s.size() && v >= lo && v <= hi) return static_cast<int>(v);
  } catch (const std::exception&) {}
  throw UserError(ExitCode::kUsage,
                  fmt::format("environment variable {}={} is not an integer in [{}, {}]", name, s, lo, hi));
}

// SLURM_NTASKS_PER_NODE / SLURM_TASKS_PER_NODE look like "4", "2(x3)" or "2(x2),1": the first
// count is this node's on homogeneous allocations, which is what a thread budget needs.
int leading_count(const char* text) {
  int v = 0;
  for (const char* p = text; *p >= '0' && *p <= '9'; ++p) v = v * 10 + (*p - '0');
  return v;
}

[[noreturn]] void bad_list(const std::string& list, const std::string& why) {
  throw UserError(ExitCode::kUsage, fmt::format("cannot read the host list '{}': {}", list, why));
}

// Expands every bracket group of one host pattern ("rack[1-2]-n[01,03]"), left to right.
void expand_pattern(const std::string& list, const std::string& pattern, std::vector<std::string>& out) {
  const auto open = pattern.find('[');
  if (open == std::string::npos) {
    if (pattern.find(']') != std::string::npos) bad_list(list, "']' without '['");
    out.push_back(pattern);
    return;
  }
  const auto close = pattern.find(']', open);
  if (close == std::string::npos) bad_list(list, "'[' without ']'");
  const std::string head = pattern.substr(0, open), tail = pattern.substr(close + 1);
  const std::string body = pattern.substr(open + 1, close - open - 1);
  if (body.empty()) bad_list(list, "empty brackets");
  std::size_t pos = 0;
  while (pos <= body.size()) {
    auto comma = body.find(',', pos);
    if (comma == std::string::npos) comma = body.size();
    const std::string range = body.substr(pos, comma - pos);
    const auto dash = range.find('-');
    const std::string a = range.substr(0, dash), b = dash == std::string::npos ? a : range.substr(dash + 1);
    auto digits = [](const std::string& s) {
      return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
    };
    if (!digits(a) || !digits(b)) bad_list(list, fmt::format("'{}' is not a number or range", range));
    const long lo = std::stol(a), hi = std::stol(b);
    if (hi < lo) bad_list(list, fmt::format("range '{}' runs backwards", range));
    if (hi - lo > 100000) bad_list(list, fmt::format("range '{}' is too long", range));
    const std::size_t width = a.size();  // "01-04": zero padding to the width of the first bound
    for (long v = lo; v <= hi; ++v) expand_pattern(list, head + fmt::format("{:0{}}", v, width) + tail, out);
    pos = comma + 1;
  }
}

}  // namespace

std::vector<std::string> expand_host_list(const std::string& list) {
  // Split on commas outside brackets.
  std::vector<std::string> out;
  int depth = 0;
  std::string current;
  for (const char c : list) {
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (depth < 0 || depth > 1) bad_list(list, "unbalanced or nested brackets");
    if (c == ',' && depth == 0) {
      if (current.empty()) bad_list(list, "empty host name");
      expand_pattern(list, current, out);
      current.clear();
    } else if (c != ' ') {
      current += c;
    }
  }
  if (depth != 0) bad_list(list, "'[' without ']'");
  if (current.empty()) bad_list(list, "empty host name");
  expand_pattern(list, current, out);
  return out;
}

LaunchEnv detect_launch_env(const EnvLookup& getenv) {
  LaunchEnv env;
  constexpr int kMaxRanks = 1 << 20;
  auto get = [&](const char* name) -> const char* {
    const char* v = getenv(name);
    return v && *v ? v : nullptr;
  };
  if (get("RANK") && get("WORLD_SIZE")) {
    env.launcher = "torchrun";
    env.world_size = parse_int("WORLD_SIZE", get("WORLD_SIZE"), 1, kMaxRanks);
    env.rank = parse_int("RANK", get("RANK"), 0, kMaxRanks);
    env.local_rank = get("LOCAL_RANK") ? parse_int("LOCAL_RANK", get("LOCAL_RANK"), 0, kMaxRanks) : 0;
    env.local_world_size =
        get("LOCAL_WORLD_SIZE") ? parse_int("LOCAL_WORLD_SIZE", get("LOCAL_WORLD_SIZE"), 1, kMaxRanks) : 1;
  } else if (get("SLURM_PROCID") && get("SLURM_NTASKS")) {
    env.launcher = "slurm";
    env.world_size = parse_int("SLURM_NTASKS", get("SLURM_NTASKS"), 1, kMaxRanks);
    env.rank = parse_int("SLURM_PROCID", get("SLURM_PROCID"), 0, kMaxRanks);
    env.local_rank = get("SLURM_LOCALID") ? parse_int("SLURM_LOCALID", get("SLURM_LOCALID"), 0, kMaxRanks) : 0;
    const char* per_node = get("SLURM_NTASKS_PER_NODE") ? get("SLURM_NTASKS_PER_NODE") : get("SLURM_TASKS_PER_NODE");
    if (per_node && leading_count(per_node) > 0) env.local_world_size = leading_count(per_node);
    const char* nodes = get("SLURM_STEP_NODELIST") ? get("SLURM_STEP_NODELIST") : get("SLURM_JOB_NODELIST");
    if (nodes) env.master_addr = expand_host_list(nodes).front();
    if (const char* job = get("SLURM_JOB_ID")) env.master_port = 29500 + leading_count(job) % 1000;
  } else {
    return env;
  }
  if (const char* addr = get("MASTER_ADDR")) env.master_addr = addr;
  if (const char* port = get("MASTER_PORT")) env.master_port = parse_int("MASTER_PORT", port, 1, 65535);
  if (env.rank >= env.world_size) {
    throw UserError(ExitCode::kUsage, fmt::format("rank {} is outside the world of {} processes ({} variables)",
                                                  env.rank, env.world_size, env.launcher));
  }
  if (env.local_rank >= env.local_world_size) env.local_world_size = env.local_rank + 1;
  return env;
}

LaunchEnv detect_launch_env() {
  return detect_launch_env([](const char* name) { return static_cast<const char*>(std::getenv(name)); });
}

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw UserError(ExitCode::kIoError, fmt::format("no socket for a free port: {}", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  if (!ok) throw UserError(ExitCode::kIoError, "no free loopback port: bind to 127.0.0.1:0 failed");
  return ntohs(addr.sin_port);
}

}  // namespace augment
