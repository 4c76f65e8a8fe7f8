// Data-parallel serving handshakes over MPI (contract in serve_replicas.h).
#include "launch/serve_replicas.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "parallel/mpi_communicator.h"
#include "runtime/core/error.h"

namespace tandem {

namespace {
constexpr int kAddressBytes = 256;
constexpr int kStopTag = 1, kStoppedTag = 2;

// Polls for a message (tag, from `source`) until timeout_s; receives it and returns true.
bool receive_within(MPI_Comm comm, int source, int tag, double timeout_s) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    int flag = 0;
    MPI_Status st;
    TANDEM_MPI_CHECK(MPI_Iprobe(source, tag, comm, &flag, &st));
    if (flag) {
      int v = 0;
      TANDEM_MPI_CHECK(MPI_Recv(&v, 1, MPI_INT, source, tag, comm, MPI_STATUS_IGNORE));
      return true;
    }
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}
}  // namespace

std::string advertised_host(const std::string& host) {
  if (host != "*" && host != "0.0.0.0" && host != "::") return host;
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  TANDEM_MPI_CHECK(MPI_Get_processor_name(name, &len));
  return std::string(name, static_cast<size_t>(len));
}

ReplicaPeers::ReplicaPeers(MPI_Comm world, int dp, int dp_rank, bool leader, const std::string& address,
                           double timeout_s)
    : leader_(leader), timeout_s_(timeout_s) {
  TANDEM_MPI_CHECK(MPI_Comm_dup(world, &comm_));
  TANDEM_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  int size = 0;
  TANDEM_MPI_CHECK(MPI_Comm_size(comm_, &size));
  TANDEM_CHECK(address.size() < kAddressBytes, "replica address '{}' is longer than {} bytes", address,
               kAddressBytes - 1);
  // Each rank sends (is leader, dp rank, address); rank 0 keeps the leaders'.
  std::vector<char> mine(kAddressBytes + 8, 0);
  const int32_t head[2] = {leader ? 1 : 0, dp_rank};
  std::memcpy(mine.data(), head, sizeof(head));
  std::memcpy(mine.data() + 8, address.data(), address.size());
  std::vector<char> all(rank_ == 0 ? mine.size() * static_cast<size_t>(size) : 0);
  TANDEM_MPI_CHECK(MPI_Gather(mine.data(), static_cast<int>(mine.size()), MPI_CHAR, all.data(),
                              static_cast<int>(mine.size()), MPI_CHAR, 0, comm_));
  if (rank_ != 0) return;
  addresses_.assign(static_cast<size_t>(dp), "");
  for (int r = 0; r < size; ++r) {
    const char* rec = all.data() + mine.size() * static_cast<size_t>(r);
    int32_t h[2];
    std::memcpy(h, rec, sizeof(h));
    if (!h[0]) continue;
    TANDEM_CHECK(h[1] >= 0 && h[1] < dp && addresses_[static_cast<size_t>(h[1])].empty(),
                 "serve: rank {} claims to lead replica {} of {} (already taken or out of range)", r,
                 h[1], dp);
    addresses_[static_cast<size_t>(h[1])] = std::string(rec + 8);
    if (r != 0) leader_ranks_.push_back(r);
  }
  for (int d = 0; d < dp; ++d)
    TANDEM_CHECK(!addresses_[static_cast<size_t>(d)].empty(), "serve: replica {} of {} has no leader", d, dp);
}

ReplicaPeers::~ReplicaPeers() {
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

bool ReplicaPeers::stop_received() {
  if (stopped_ || !leader_ || rank_ == 0) return stopped_;
  stopped_ = receive_within(comm_, 0, kStopTag, 0.0);
  return stopped_;
}

void ReplicaPeers::stop_all() {
  if (rank_ != 0) return;
  int v = 1;
  for (int r : leader_ranks_) TANDEM_MPI_CHECK(MPI_Send(&v, 1, MPI_INT, r, kStopTag, comm_));
  for (int r : leader_ranks_)
    if (!receive_within(comm_, r, kStoppedTag, timeout_s_))
      spdlog::warn("serve: the leader of a replica (world rank {}) did not report its stop within {} s "
                   "(parallel.timeout_s)", r, timeout_s_);
}

void ReplicaPeers::finish() {
  if (rank_ == 0 || !leader_) return;
  if (!stopped_ && !receive_within(comm_, 0, kStopTag, timeout_s_)) {
    spdlog::warn("serve: no stop from rank 0 within {} s (parallel.timeout_s); stopping anyway", timeout_s_);
    return;
  }
  stopped_ = true;
  int v = 1;
  TANDEM_MPI_CHECK(MPI_Send(&v, 1, MPI_INT, 0, kStoppedTag, comm_));
}

}  // namespace tandem
