// Per-rank start-up shared by the commands that run on every rank (train, serve): CPU threads,
// GPU binding, and the one collective that agrees whether every rank's config was valid.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "parallel/mpi_env.h"
#include "runtime/core/backend.h"

namespace tandem {

// CPU threads for this rank when the config says 0: the cores the launcher bound it to
// (mpirun binds to one core by default for small jobs), else this node's cores / its ranks.
int default_threads(int local_size);
// Binds this rank to a GPU by its node-local rank (works under mpirun and srun alike);
// "auto" becomes "cuda" when a GPU is visible, else "cpu". `share_gpus`: more ranks than GPUs
// go round robin (parallel/device_binding.h), for parallel.device_comm auto or staged.
BackendOptions bo_for_rank(BackendOptions bo, const MpiEnv& env, bool share_gpus);
// The backend of this rank for train.device, train.threads (0: default_threads) and
// parallel.device_comm (GPUs are shared round robin unless it is nccl).
std::unique_ptr<Backend> make_rank_backend(const std::string& device, int threads, const MpiEnv& env,
                                           const std::string& device_comm);
// Every rank validates on its own; then one collective agrees on the outcome, so a rank
// whose config failed never leaves the others waiting in a later collective.
bool all_ranks_ok(bool ok);
// Runs `check` (parsing and validating a command's config) on this rank, prints its error as
// "tandem: config error: ...", then agrees with every rank (all_ranks_ok); false when any
// rank failed (rank 0 says so when its own check passed).
bool config_ok_everywhere(const std::function<void()>& check, int rank);

}  // namespace tandem
