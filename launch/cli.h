// Command-line front door: parses the subcommand and runs it.
//
// Contract: cli_main is the one place that catches errors. A ConfigError that every rank
// detects identically ends each rank with exit code 2 after MPI_Finalize (no collective is
// left half-entered); any other error is logged with its rank and ends the whole job through
// MPI_Abort, so no rank waits forever.
#pragma once

namespace tandem {

int cli_main(int argc, char** argv);

}  // namespace tandem
