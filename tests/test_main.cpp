#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "pipeline/base/blas_threads.h"

// The tests run with the thread settings augment itself uses.
int main(int argc, char** argv) {
  augment::single_threaded_blas();
  doctest::Context context(argc, argv);
  return context.run();
}
