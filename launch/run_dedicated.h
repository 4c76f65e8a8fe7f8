// `tandem run` with serve.mode dedicated: the job's last serve.ranks ranks are set apart as a
// serving group with its own layout (serve.tp x serve.pp per replica, dp = serve.ranks /
// (tp x pp)), the others train as parallel.* says. Every serve.sync_every optimizer steps the
// trainers' weights move to the servers, resharded over MPI (serve/weight_sync.h); the servers
// answer requests through the same RPC front ends as `tandem serve` (launch/serve_front.h;
// --port-file is written by the first serving rank). The job ends when training ends and the
// servers have taken its last weights and answered what was queued.
#pragma once

#include "launch/config.h"
#include "launch/train_command.h"
#include "parallel/mpi_env.h"

namespace tandem {

// Called on every rank after the config was checked everywhere (check_train_config(.., run)).
int run_dedicated(MpiEnv& env, const RunConfig& cfg, const CommandArgs& args);

}  // namespace tandem
