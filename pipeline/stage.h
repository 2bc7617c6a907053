// The unit the runner sequences: declared option scopes, inputs, outputs and a Run().
#pragma once

#include <string>
#include <vector>

namespace augment {

class Context;

class Stage {
 public:
  virtual ~Stage() = default;

  virtual std::string name() const = 0;
  virtual std::string summary() const = 0;
  // Bump when the stage's output format or algorithm changes, so old records go stale.
  virtual int format_version() const { return 1; }
  // Option groups and global keys whose values shape this stage's outputs ("scan", "seed").
  virtual std::vector<std::string> option_scopes() const = 0;
  // Files of earlier stages this stage reads, relative to the work dir.
  virtual std::vector<std::string> inputs(const Context& ctx) const { return {}; }
  // Fingerprint of inputs outside the work dir (the user's dataset); "" when there are none.
  virtual std::string external_fingerprint(const Context& ctx) const { return ""; }
  // Final output files, relative to the work dir.
  virtual std::vector<std::string> outputs(const Context& ctx) const = 0;
  // Digest of an output file's meaning, for files whose bytes differ between saves of equal
  // content (LibTorch archives); "" means the bytes are the content. The runner records it and
  // later stages see it as the digest of their input, so equal weights never make them stale.
  virtual std::string content_digest(const Context& ctx, const std::string& rel) const { return ""; }
  // What the stage vouches for beyond the files its record lists (the images a journal names, an
  // output folder's images): "" when all is intact, else what is wrong ("output modified: …").
  // `augment status` and every run call it, so it must be cheap: sizes, and hashes of small files.
  virtual std::string verify(const Context& ctx) const { return ""; }
  // True when this invocation is one of several processes working in the work dir at once (a
  // shard of a sampling array): it takes the work-dir lock shared, leaves temporary files of
  // other processes alone, and needs the stages before it done instead of running them.
  virtual bool runs_alongside_others(const Context& ctx) const { return false; }
  // Produces the outputs. Must be safe to kill at any point and rerun: finished items are kept.
  virtual void run(Context& ctx) = 0;
};

}  // namespace augment
