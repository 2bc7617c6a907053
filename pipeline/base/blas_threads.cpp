#include "pipeline/base/blas_threads.h"

#include <dlfcn.h>

#include <cstdlib>

namespace augment {

void single_threaded_blas() {
  if (std::getenv("OPENBLAS_NUM_THREADS") != nullptr) return;
  // Looked up at run time: the BLAS behind libblas.so.3 is chosen by Debian's alternatives.
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(1);
}

}  // namespace augment
