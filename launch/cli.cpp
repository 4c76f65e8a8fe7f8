// Command-line front door (work in progress: subcommands are wired as they land).
#include "launch/cli.h"

#include <cstdio>
#include <string>

namespace tandem {

int cli_main(int argc, char** argv) {
  std::string cmd = argc > 1 ? argv[1] : "--help";
  std::printf("usage: tandem train CONFIG [--set key.path=value ...] [--metrics-out FILE]\n");
  return cmd == "--help" ? 0 : 2;
}

}  // namespace tandem
