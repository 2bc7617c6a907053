// Exit codes and the exceptions that carry them to the command boundary.
#pragma once

#include <stdexcept>
#include <string>

namespace augment {

// sysexits.h-style codes, documented in `augment help`.
enum class ExitCode : int {
  kOk = 0,
  kFailure = 1,        // a stage failed for a reason not listed below
  kUsage = 64,         // bad command line
  kDataError = 65,     // input data is wrong (rejected images with --strict, empty class, ...)
  kNoInput = 66,       // input missing or unreadable
  kSoftware = 70,      // internal error (a bug): please report
  kCantCreate = 73,    // output cannot be created (e.g. inside the input)
  kIoError = 74,       // read/write failed
  kConfig = 78,        // bad configuration (unknown key, bad value)
  kPreempted = 75,     // stopped by SIGTERM/SIGUSR1 at a safe point; rerun to continue (EX_TEMPFAIL)
  kInterrupted = 130,  // stopped by SIGINT; rerun to continue
};

// A problem the user can fix: the message names the file or key and says how.
class UserError : public std::runtime_error {
 public:
  UserError(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

// Runs `f`; a missing (kNoInput) or damaged (kDataError) input it reports gets what to run about it
// appended. The layer that finds the problem says what is wrong; the stage that called it knows
// the command that fixes it.
template <class F>
decltype(auto) with_hints(F&& f, const char* if_missing, const char* if_damaged) {
  try {
    return f();
  } catch (const UserError& e) {
    const char* hint = e.code() == ExitCode::kNoInput     ? if_missing
                       : e.code() == ExitCode::kDataError ? if_damaged
                                                          : nullptr;
    if (hint == nullptr) throw;
    throw UserError(e.code(), std::string(e.what()) + "; " + hint);
  }
}

// Runs `f`; a UserError of `code` it throws gets `hint` appended.
template <class F>
decltype(auto) with_hint(F&& f, ExitCode code, const char* hint) {
  try {
    return f();
  } catch (const UserError& e) {
    if (e.code() != code) throw;
    throw UserError(e.code(), std::string(e.what()) + "; " + hint);
  }
}

// Thrown from inside a loop when a stop was requested; the runner turns it into a resumable exit.
class StopRequested : public std::runtime_error {
 public:
  explicit StopRequested(int signal) : std::runtime_error("stop requested"), signal_(signal) {}
  int signal() const { return signal_; }

 private:
  int signal_;
};

}  // namespace augment
