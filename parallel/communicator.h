// Communicator: collectives and point-to-point transfers within one Group of ranks.
//
// Contract: one interface for host tensors (MPI) and device tensors (NCCL). Blocking calls
// finish or throw TimeoutError after the group's watchdog (`parallel.timeout_s`); a Request
// from a non-blocking call must complete (test() true, or wait()) before its tensors are
// written or its outputs read. The operation itself keeps every tensor handed to it alive
// until it is seen complete, so callers may drop their references at once: memory is never
// freed, and a device allocator never hands it out again, while the library may still touch
// it. Destroying an unfinished Request drains it (see the implementations). For a group of
// size 1 every collective is a no-op (or a local copy), so a 1-rank run executes the same
// code as a sharded one. stats() counts payload bytes per operation kind for benchmarks.
//
// Batched point-to-point: batch_isend_irecv(ops) posts every send and receive of `ops` together
// and returns one Request that completes when all of them have. Transfers that must progress
// together (a pipeline stage sending its output while receiving its next input from the same or
// another peer) belong in one batch: MPI posts every Isend/Irecv and then waits on all of them;
// NCCL issues them in one ncclGroupStart/End, without which a receive queued behind a send on
// the communicator's stream cannot start before that send completes, which needs the peer's
// receive (a deadlock once messages outgrow NCCL's buffers). Between a pair of ranks, messages
// match in the order they are posted (NCCL has no tags; MPI also matches tags), so both sides
// list them in the same order. An empty batch is complete at once. stats(): one call per send
// (its bytes) and per receive (0 bytes), as if each were posted alone. The default posts each
// receive, then each send, with irecv/isend and returns one Request over them: right for an
// implementation whose non-blocking transfers progress independently of each other (MPI-like);
// NCCL overrides it with one group (and MPI with one request set and one watchdog message).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/tensor.h"

namespace tandem {

enum class ReduceOp { Sum, Max };

struct CommStats {
  int64_t calls = 0;
  int64_t bytes = 0;  // payload bytes handed to collectives / sent point-to-point by this rank
};

class Request {
 public:
  virtual ~Request() = default;
  virtual bool test() = 0;  // true once complete (drives progress)
  virtual void wait() = 0;  // blocks (with the watchdog) until complete
};

// One transfer of a batch: send `tensor` to `peer`, or receive into it from `peer`.
struct P2POp {
  enum class Kind { Send, Recv };
  Kind kind = Kind::Send;
  Tensor tensor;  // shares the caller's storage; a Recv writes into it
  int peer = -1;
  int tag = 0;
  static P2POp send(const Tensor& t, int peer, int tag) { return {Kind::Send, t, peer, tag}; }
  static P2POp recv(const Tensor& t, int peer, int tag) { return {Kind::Recv, t, peer, tag}; }
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const std::string& name() const = 0;

  virtual void all_reduce(Tensor& t, ReduceOp op = ReduceOp::Sum) = 0;
  // out.numel() * size() == in.numel(); rank r receives the reduced r-th slice.
  virtual void reduce_scatter(Tensor& out, const Tensor& in) = 0;
  // out.numel() == in.numel() * size(); slices ordered by rank.
  virtual void all_gather(Tensor& out, const Tensor& in) = 0;
  virtual void broadcast(Tensor& t, int root) = 0;
  virtual void send(const Tensor& t, int peer, int tag) = 0;
  virtual void recv(Tensor& t, int peer, int tag) = 0;

  virtual std::unique_ptr<Request> iall_reduce(Tensor& t, ReduceOp op = ReduceOp::Sum) = 0;
  virtual std::unique_ptr<Request> ireduce_scatter(Tensor& out, const Tensor& in) = 0;
  virtual std::unique_ptr<Request> iall_gather(Tensor& out, const Tensor& in) = 0;
  virtual std::unique_ptr<Request> isend(const Tensor& t, int peer, int tag) = 0;
  virtual std::unique_ptr<Request> irecv(Tensor& t, int peer, int tag) = 0;
  // Posts every transfer of `ops` together (see the contract above).
  virtual std::unique_ptr<Request> batch_isend_irecv(const std::vector<P2POp>& ops);
  virtual void barrier() = 0;

  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

 protected:
  void count(int64_t bytes) {
    stats_.calls += 1;
    stats_.bytes += bytes;
  }
  CommStats stats_;
};

// The group of one: every collective is the identity (all_gather/reduce_scatter copy).
std::unique_ptr<Communicator> make_self_communicator(const std::string& name);

}  // namespace tandem
