// MpiEnv: MPI initialisation and the process's place in the world and on its node.
//
// Contract: exactly one MpiEnv exists per process (made by launch/ main), initialising MPI
// with MPI_THREAD_FUNNELED on construction and finalising on destruction. It exposes the
// world rank/size and the node-local rank/size (from MPI_Comm_split_type SHARED), which the
// launcher uses to bind a rank to a GPU and to divide CPU cores. abort() ends the whole job.
// Listeners: before MPI_Init, a job that runs on one node keeps Open MPI off the network
// (single_node_mpi_settings(): only its shared-memory transports are loaded, not TCP or
// libfabric, which listen on the node's interfaces; and a singleton, a process started
// without mpirun/srun, starts no launcher daemon of its own), so that a serving job opens
// only the ports it is configured to. A setting the user made (in the environment, or
// through mpirun --mca, which puts it there) is left as it is.
#pragma once

#include <mpi.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace tandem {

// The Open MPI settings (environment name, value) to make before MPI_Init, read from the
// launcher's environment through `env` (getenv): on one node (a singleton; or mpirun with
// OMPI_COMM_WORLD_LOCAL_SIZE == OMPI_COMM_WORLD_SIZE; or srun with SLURM_STEP_NUM_NODES = 1)
// OMPI_MCA_btl=self,vader, and for a singleton also OMPI_MCA_ess_singleton_isolated=1; nothing for
// a job that spans nodes or whose layout the environment does not tell. Names already set in
// the environment are left out.
std::vector<std::pair<std::string, std::string>> single_node_mpi_settings(
    const std::function<const char*(const char*)>& env);

// The exit status of a job that Tandem ends with MPI_Abort (launch/cli.h, parallel/io_watchdog.h).
inline constexpr int kJobAbortExitCode = 3;

class MpiEnv {
 public:
  MpiEnv(int* argc, char*** argv);
  ~MpiEnv();
  MpiEnv(const MpiEnv&) = delete;
  MpiEnv& operator=(const MpiEnv&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  MPI_Comm world() const { return MPI_COMM_WORLD; }
  [[noreturn]] static void abort(int code);

 private:
  int rank_ = 0, world_ = 1, local_rank_ = 0, local_size_ = 1;
};

}  // namespace tandem
