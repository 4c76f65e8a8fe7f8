// MpiEnv: MPI initialisation and the process's place in the world and on its node.
//
// Contract: exactly one MpiEnv exists per process (made by launch/ main), initialising MPI
// with MPI_THREAD_FUNNELED on construction and finalising on destruction. It exposes the
// world rank/size and the node-local rank/size (from MPI_Comm_split_type SHARED), which the
// launcher uses to bind a rank to a GPU and to divide CPU cores. abort() ends the whole job.
#pragma once

#include <mpi.h>

namespace tandem {

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
