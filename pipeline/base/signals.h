// Stop requests (SIGINT, SIGTERM, SIGUSR1) turned into a flag that loops poll at safe points.
#pragma once

namespace augment {

// Installs the handlers; a second SIGINT ends the process at once.
void install_stop_handlers();
// 0 when no stop was requested, else the signal number.
int stop_signal();
void clear_stop_request();
// Throws StopRequested when a stop was requested.
void check_stop();

}  // namespace augment
