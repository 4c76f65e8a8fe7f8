// tandem: the single entry point (see `tandem --help`).
#include "launch/cli.h"

int main(int argc, char** argv) { return tandem::cli_main(argc, argv); }
