// `tandem run CONFIG [--set key.path=value ...] [--metrics-out FILE] [--resume]
//  [--port-file FILE]`: trains as `tandem train` does and serves the weights it is training,
// as serve.mode says. serve.mode windows: the training ranks answer requests at the
// trainer's safe points (serve/serving_windows.h) through the same RPC front ends as
// `tandem serve` (launch/serve_front.h); the job ends when training ends, after the requests
// already admitted or queued are answered (later ones get ShuttingDown). --port-file as for
// `tandem serve`, written once the server listens (before the first step).
#pragma once

#include "parallel/mpi_env.h"

namespace tandem {

int run_command(MpiEnv& env, int argc, char** argv);

}  // namespace tandem
