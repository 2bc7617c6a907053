#include <string>
#include <vector>

#include "pipeline/cli.h"

int main(int argc, char** argv) {
  return augment::run_cli(std::vector<std::string>(argv + 1, argv + argc));
}
