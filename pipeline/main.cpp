#include <string>
#include <vector>

#include "pipeline/allocator.h"
#include "pipeline/blas_threads.h"
#include "pipeline/cli.h"

int main(int argc, char** argv) {
  augment::keep_freed_memory_in_heap();
  augment::single_threaded_blas();
  return augment::run_cli(std::vector<std::string>(argv + 1, argv + argc));
}
