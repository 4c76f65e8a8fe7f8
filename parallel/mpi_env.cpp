// MPI start-up and node-local rank discovery.
#include "parallel/mpi_env.h"

#include <cstdlib>

#include "runtime/core/error.h"

namespace tandem {

std::vector<std::pair<std::string, std::string>> single_node_mpi_settings(
    const std::function<const char*(const char*)>& env) {
  auto has = [&](const char* name) {
    const char* v = env(name);
    return v != nullptr && *v != '\0';
  };
  auto same = [&](const char* a, const char* b) { return has(a) && has(b) && std::string(env(a)) == env(b); };
  const bool by_mpirun = has("OMPI_COMM_WORLD_SIZE");
  const bool by_srun = has("SLURM_STEP_ID") || has("PMIX_RANK") || has("PMI_RANK");
  const bool singleton = !by_mpirun && !by_srun;
  const bool one_node = singleton || (by_mpirun && same("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE")) ||
                        (!by_mpirun && has("SLURM_STEP_NUM_NODES") && std::string(env("SLURM_STEP_NUM_NODES")) == "1");
  std::vector<std::pair<std::string, std::string>> out;
  if (!one_node) return out;
  if (!has("OMPI_MCA_btl")) out.emplace_back("OMPI_MCA_btl", "self,vader");
  if (singleton && !has("OMPI_MCA_ess_singleton_isolated")) out.emplace_back("OMPI_MCA_ess_singleton_isolated", "1");
  return out;
}

MpiEnv::MpiEnv(int* argc, char*** argv) {
  for (const auto& [name, value] : single_node_mpi_settings([](const char* n) { return std::getenv(n); }))
    ::setenv(name.c_str(), value.c_str(), 0);
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &world_);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &local_rank_);
  MPI_Comm_size(local, &local_size_);
  MPI_Comm_free(&local);
}

MpiEnv::~MpiEnv() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void MpiEnv::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::abort();  // MPI_Abort does not return; this satisfies [[noreturn]]
}

}  // namespace tandem
