// `tandem serve CONFIG --checkpoint DIR|FILE [--set key=value ...] [--port-file FILE]`:
// loads a checkpoint into the config's layout (resharded on load) and serves it over
// Cap'n Proto RPC until SIGINT/SIGTERM reaches the leader (world rank 0; other ranks ignore them
// and stop when the leader broadcasts Stop). --port-file receives the RPC port, the metrics
// port and the leader's pid, one per line, once the server listens. Every rank runs it; world rank 0 (the leader of the
// one replica) runs the RPC front end and the metrics endpoint. Returns the exit status.
#pragma once

#include "parallel/mpi_env.h"

namespace tandem {

int serve_command(MpiEnv& env, int argc, char** argv);

}  // namespace tandem
