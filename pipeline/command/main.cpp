#include <string>
#include <vector>

#include "pipeline/base/allocator.h"
#include "pipeline/base/blas_threads.h"
#include "pipeline/command/cli.h"

int main(int argc, char** argv) {
  augment::keep_freed_memory_in_heap();
  augment::single_threaded_blas();
  return augment::run_cli(std::vector<std::string>(argv + 1, argv + argc));
}
