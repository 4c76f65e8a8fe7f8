// Per-rank start-up helpers (contract in rank_setup.h).
#include "launch/rank_setup.h"

#include <mpi.h>
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>

#include "parallel/device_binding.h"

namespace tandem {

int default_threads(int local_size) {
  const int hw = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int bound = CPU_COUNT(&set);
    if (bound > 0 && bound < hw) return bound;
  }
  return std::max(1, hw / local_size);
}

BackendOptions bo_for_rank(BackendOptions bo, const MpiEnv& env, bool share_gpus) {
  if (bo.device == "auto") bo.device = cuda_available() ? "cuda" : "cpu";
  if (bo.device == "cuda")
    bo.device_index =
        local_device_for(env.local_rank(), env.local_size(), cuda_device_count(), share_gpus);
  return bo;
}

bool all_ranks_ok(bool ok) {
  int mine = ok ? 1 : 0, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all == 1;
}

bool config_ok_everywhere(const std::function<void()>& check, int rank) {
  std::string error;
  try {
    check();
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!error.empty()) std::fprintf(stderr, "tandem: config error: %s\n", error.c_str());
  if (all_ranks_ok(error.empty())) return true;
  if (error.empty() && rank == 0)
    std::fprintf(stderr, "tandem: another rank rejected the configuration; stopping\n");
  return false;
}

std::unique_ptr<Backend> make_rank_backend(const std::string& device, int threads, const MpiEnv& env,
                                           const std::string& device_comm) {
  BackendOptions bo;
  bo.device = device;
  bo.threads = threads == 0 ? default_threads(env.local_size()) : threads;
  return make_backend(bo_for_rank(bo, env, device_comm != "nccl"));
}

}  // namespace tandem
