// The start-up and shutdown handshakes of a serving job with several data-parallel replicas
// (parallel.dp > 1): every replica's leader runs its own engine and RpcServer, and world rank
// 0 (replica 0's leader) also runs the RpcRouter that clients talk to.
//
// Contract (all MPI calls on the main thread: MPI stays FUNNELED):
//   - ReplicaPeers(world, ...) is collective over `world` (every rank, once, before serving):
//     it duplicates the communicator for the handshakes below and gathers each replica
//     leader's advertised RPC address to rank 0, ordered by dp rank.
//   - stop_received() (a replica leader other than rank 0; cheap, non-blocking) says whether
//     rank 0 told it to stop; the engine polls it every step.
//   - Rank 0, once its own engine has stopped: stop_all() sends every other replica leader a
//     stop and waits (up to timeout_s) for each to report that its engine stopped, so their
//     last `shuttingDown` replies still pass through the router before it closes.
//   - Another replica leader, once its engine stopped: finish() waits (up to timeout_s) for
//     rank 0's stop if it has not come yet, then reports back.
// A wait that times out logs a warning naming the ranks and returns (nothing hangs forever).
#pragma once

#include <mpi.h>

#include <string>
#include <vector>

namespace tandem {

// The address a replica server advertises: `host` as given, or this node's name when host is
// a wildcard ("*", "0.0.0.0", "::").
std::string advertised_host(const std::string& host);

class ReplicaPeers {
 public:
  // leader: this rank leads replica dp_rank; address: its RPC server's "host:port" (leaders).
  ReplicaPeers(MPI_Comm world, int dp, int dp_rank, bool leader, const std::string& address,
               double timeout_s);
  ~ReplicaPeers();
  ReplicaPeers(const ReplicaPeers&) = delete;
  ReplicaPeers& operator=(const ReplicaPeers&) = delete;

  // Rank 0: "host:port" of every replica's server, index = dp rank. Empty on other ranks.
  const std::vector<std::string>& addresses() const { return addresses_; }
  bool stop_received();
  void stop_all();
  void finish();

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  bool leader_ = false, stopped_ = false;
  double timeout_s_;
  std::vector<std::string> addresses_;
  std::vector<int> leader_ranks_;  // rank 0: world ranks of the other replicas' leaders
};

}  // namespace tandem
