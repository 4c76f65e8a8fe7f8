// Communicator: collectives and point-to-point transfers within one Group of ranks.
//
// Contract: one interface for host tensors (MPI) and device tensors (NCCL). Blocking calls
// finish or throw TimeoutError after the group's watchdog (`parallel.timeout_s`); a Request
// from a non-blocking call must be waited on before its tensors are reused. For a group of
// size 1 every collective is a no-op (or a local copy), so a 1-rank run executes the same
// code as a sharded one. stats() counts payload bytes per operation kind for benchmarks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

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
