// The `augment` command: a table of subcommands, each a thin function returning an exit code.
#pragma once

#include <string>
#include <vector>

namespace augment {

class OptionRegistry;

// Every option of every command: the stages' and those of the commands above them (compare).
void declare_all_options(OptionRegistry& registry);

int run_cli(const std::vector<std::string>& args);

}  // namespace augment
