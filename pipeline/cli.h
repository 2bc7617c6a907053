// The `augment` command: a table of subcommands, each a thin function returning an exit code.
#pragma once

#include <string>
#include <vector>

namespace augment {

int run_cli(const std::vector<std::string>& args);

}  // namespace augment
