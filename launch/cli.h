// Command-line front door: parses the subcommand and runs it.
//
// Contract: cli_main is the one place that catches errors. A ConfigError that every rank
// detects identically ends each rank with exit code 2 after MPI_Finalize (no collective is
// left half-entered); any other error is logged with its rank and ends the whole job through
// MPI_Abort, so no rank waits forever. Before it aborts, the failing rank prints one line of
// its own, `tandem: rank R failed: REASON; aborting the job (MPI_Abort, exit code 3)`, and the
// job's exit status (mpirun's) is kAbortExitCode.
#pragma once

#include "parallel/mpi_env.h"

namespace tandem {

inline constexpr int kAbortExitCode = kJobAbortExitCode;

int cli_main(int argc, char** argv);

}  // namespace tandem
