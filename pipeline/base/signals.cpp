#include "pipeline/base/signals.h"

#include <unistd.h>
#include <csignal>
#include <cstring>

#include "pipeline/base/errors.h"

namespace augment {

namespace {
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) {
  if (sig == SIGINT && g_stop_signal == SIGINT) {
    // Second Ctrl-C: the user wants out now. Outputs are atomic, so nothing half-written stays.
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
    return;
  }
  g_stop_signal = sig;
  static const char msg[] = "\nstop requested: finishing the current item (Ctrl-C again to abort now)\n";
  if (sig == SIGINT) {
    ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)ignored;
  }
}
}  // namespace

void install_stop_handlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGUSR1}) sigaction(sig, &sa, nullptr);
}

int stop_signal() { return g_stop_signal; }
void clear_stop_request() { g_stop_signal = 0; }

void check_stop() {
  if (const int sig = g_stop_signal) throw StopRequested(sig);
}

}  // namespace augment
