// WatchedCommunicator: the request bookkeeping and watchdog that the MPI and NCCL communicators
// share (parallel/mpi_communicator.h, parallel/cuda/nccl_communicator.h). Users see only
// Communicator; this header is for implementations.
//
// Contract:
//   Every operation an implementation starts becomes a PendingOp of its own derived type (what
//   it is, for messages; the tensors it keeps alive; an optional completion step). A blocking
//   call finish()es it at once; a non-blocking one hand_out()s a Request that owns it.
//   Waiting: poll() until it reports completion, pacing with PollBackoff; after timeout_s
//   seconds counted from the start of the wait (<= 0 disables the watchdog) the implementation's
//   on_timeout() says what became of the operation: it completed after all (the wait returns),
//   it was cancelled (its tensors are released), or it must be stranded. A stranded operation is
//   kept, with its tensors, until the communicator is destroyed, because the library may still
//   touch its buffers; an implementation's destructor calls release_stranded(), which leaks the
//   ones still unfinished then. A verdict may mark the group broken: every later call throws
//   Error naming why. The wait then throws TimeoutError naming the group, the operation, its
//   bytes, peer/root/tag, the seconds waited and the verdict's consequence. An Error thrown by
//   poll() (an MPI or NCCL failure) strands the operation and propagates.
//   Completion observed (by test or wait): on_done() (e.g. order the compute stream after the
//   operation), then the completion step, then the tensors are released. A tensor handed to an
//   operation is therefore never freed, and its memory never reused, before the operation is
//   known to be finished.
//   Requests: test() polls; wait() waits with the watchdog; after a failure both repeat the
//   error. A Request destroyed before completion is abandoned: on_abandon() may drop it (a
//   cancelled receive) or strand it; otherwise it is waited for with the watchdog and a failure
//   is logged, not thrown. A Request must not outlive its communicator.
//   stats: implementations count() each operation as it starts.
//   Threading: none of its own; the owner's thread (MPI_THREAD_FUNNELED) makes every call.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "runtime/core/error.h"

namespace tandem::detail {

// The watchdog's pacing: after each unsuccessful poll call pause(); it spins for the first
// kSpinSeconds, then sleeps 50, 100, 200, 200... us, and returns false (without pausing) once
// timeout_s has passed since construction (never when timeout_s <= 0).
class PollBackoff {
 public:
  static constexpr double kSpinSeconds = 30e-6;
  static constexpr int kFirstSleepUs = 50;
  static constexpr int kMaxSleepUs = 200;

  explicit PollBackoff(double timeout_s)
      : start_(std::chrono::steady_clock::now()), timeout_s_(timeout_s) {}
  bool pause();
  double elapsed_s() const;

 private:
  std::chrono::steady_clock::time_point start_;
  double timeout_s_;
  int sleep_us_ = kFirstSleepUs;
};

enum class OpKind { AllReduce, ReduceScatter, AllGather, Broadcast, Send, Recv, Barrier, Batch };
const char* op_name(OpKind k);
const char* reduce_name(ReduceOp op);

// One in-flight operation. Implementations derive their own (with the library's handles).
struct PendingOp {
  virtual ~PendingOp() = default;
  OpKind kind = OpKind::Barrier;
  const char* reduce = nullptr;  // reductions: "sum" / "max"
  int64_t bytes = 0;             // payload (a batch: of all its transfers)
  int peer = -1;                 // send/recv peer, broadcast root
  int tag = -1;
  std::vector<P2POp> parts;           // Batch: its transfers, in the order posted
  std::vector<Tensor> keep;           // buffers the library may still touch
  std::function<void()> on_complete;  // e.g. the move of an in-place reduce_scatter result
};

class WatchedCommunicator : public Communicator {
 public:
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }

  // ---------------------------------------------------------------- used by the Request
  // True once complete (completion observed: on_done, completion step, tensors released).
  bool test_pending(std::unique_ptr<PendingOp>& p);
  // Waits with the watchdog. Throws TimeoutError (p released or stranded: then null) or the
  // Error of a failed poll (p stranded).
  void wait_pending(std::unique_ptr<PendingOp>& p);
  // A request dropped before completion.
  void abandon(std::unique_ptr<PendingOp> p) noexcept;

 protected:
  WatchedCommunicator(std::string name, double timeout_s, const char* library, DeviceKind device)
      : name_(std::move(name)), timeout_s_(timeout_s), library_(library), device_(device) {}

  // ---------------------------------------------------------------- what implementations provide
  // True once the operation has finished; may throw Error (the library reported a failure).
  virtual bool poll(PendingOp& p) = 0;
  // Called once completion is observed, before the completion step and the release.
  virtual void on_done(PendingOp&) {}
  struct TimeoutVerdict {
    enum class Outcome { Completed, Released, Stranded };
    Outcome outcome = Outcome::Stranded;
    std::string after;   // the end of the TimeoutError message: what became of the operation
    std::string broken;  // non-empty: the group is now unusable, for this reason
  };
  // The watchdog fired on `p` (described as `what`) after `waited` seconds.
  virtual TimeoutVerdict on_timeout(PendingOp& p, const std::string& what, double waited) = 0;
  enum class AbandonVerdict { Wait, Dropped, Stranded };
  // A request dropped before completion: Wait (with the watchdog), Dropped (cancelled, or
  // moot: its tensors are released without the completion step) or Stranded (kept; the
  // implementation says why in the group's broken state).
  virtual AbandonVerdict on_abandon(PendingOp&) { return AbandonVerdict::Wait; }

  // ---------------------------------------------------------------- helpers for implementations
  void finish(std::unique_ptr<PendingOp> p) { wait_pending(p); }
  std::unique_ptr<Request> hand_out(std::unique_ptr<PendingOp> p);
  // Keeps `finished` stranded operations' buffers for good when any is still unfinished.
  void release_stranded(const std::function<bool(PendingOp&)>& finished) noexcept;
  // Keeps `p` (and its tensors) until the communicator is destroyed.
  void strand(std::unique_ptr<PendingOp> p) { stranded_.push_back(std::move(p)); }
  void mark_broken(std::string why) {
    if (broken_.empty()) broken_ = std::move(why);
  }
  bool broken() const { return !broken_.empty(); }
  std::string describe(const PendingOp& p) const;

  // Precondition checks (errors print the group and the values involved).
  void check_usable(OpKind kind) const;
  // Defined, on this communicator's device, f32 or i32 when `reduce`.
  void check_tensor(const Tensor& t, OpKind kind, const char* what, bool reduce) const;
  // reduce_scatter: in.numel() == out.numel() * size; all_gather: out.numel() == in.numel() * size;
  // same dtypes; `part` overlaps `whole` only as its rank-th slice. True when they overlap.
  bool check_reduce_scatter(const Tensor& out, const Tensor& in) const;
  bool check_all_gather(const Tensor& out, const Tensor& in) const;
  void check_root(int root) const;
  // peer in [0, size) (and != rank unless allow_self); tag in [0, tag_ub].
  void check_peer_tag(OpKind kind, int peer, int tag, bool allow_self, int tag_ub) const;
  // Every transfer of a batch (its peer and tag as above, its tensor as check_tensor).
  void check_batch(const std::vector<P2POp>& ops, bool allow_self, int tag_ub) const;
  // A PendingOp's description fields for a batch (kind, bytes, parts, keep).
  static void describe_batch(PendingOp& p, const std::vector<P2POp>& ops);

  int rank_ = 0, size_ = 1;
  std::string name_;
  double timeout_s_;

 private:
  bool check_in_place(const Tensor& part, const Tensor& whole, OpKind kind, const char* pn,
                      const char* wn) const;
  void complete(PendingOp& p);

  const char* library_;  // "MPI" / "NCCL", in messages
  DeviceKind device_;
  std::string broken_;  // non-empty: why every later call fails
  std::vector<std::unique_ptr<PendingOp>> stranded_;
};

}  // namespace tandem::detail
