// Pipeline transfers as data (docs/architecture.md, principle 3): when each pipeline rank posts
// which sends and receives, so that a pipeline over NCCL cannot deadlock, with a checker that
// runs every rank's plan under rendezvous semantics.
//
// Why: NCCL has no tags and runs a communicator's operations one after the other on its
// stream, so a send posted alone cannot complete until its peer's receive is posted, and a
// receive queued behind it cannot start before; two stages that each send, then receive from
// the other, wait for each other forever once messages outgrow NCCL's buffers. Sends and
// receives that must progress together therefore go into one batch (one NCCL group, see
// Communicator::batch_isend_irecv), waited for as a whole. Pairing each action's send with the
// next action's receive (Megatron's send_forward_recv_backward) is enough for GPipe and 1F1B
// but deadlocks interleaved schedules (check_transfers() shows it); the plan below is deadlock
// free for any lists that can run at all.
//
// Contract: pure functions, no communication. A transfer is named by what it feeds: the
// activation entering F(m) of virtual stage v, or the gradient entering B(m) of v (v = chunk *
// stages + stage; F(m) on v > 0 needs F's output from v - 1, B(m) on v < V - 1 needs B's input
// gradient from v + 1). Outputs passed between virtual stages of one rank (stages == 1) are
// handed over locally, never transferred.
// plan_transfers(per_rank, chunks, windows) returns each rank's steps, in order:
//   Compute k   run action k of the rank's list (its input is there);
//   Exchange    post every listed transfer as one batch, then wait for all of them;
//   Window k    a serving window at cut k (windows[k]): every transfer of data produced by the
//               first k actions of any rank has completed, and nothing is posted.
// Construction: synchronous rounds. In each round every rank whose next action has its input
// (and does not lie past the next window) runs it, and each output for another rank moves in
// the same round: the sender posts it right after computing it, the receiver where it is in its
// list (ahead of the action that consumes it: a prefetch). A rank's transfers of consecutive
// rounds without a compute between them form one Exchange. Every rank meets its rounds in
// increasing order and each round's transfers are posted on both sides within that round, so
// the earliest unfinished round can always complete: no deadlock under rendezvous semantics (a
// transfer completes once both sides have posted it; an Exchange once all of its transfers
// have). Between a pair of ranks, transfers come in the same order on both sides (by round), as
// NCCL's tagless matching needs. A window stops every rank at cut k until all ranks are there.
// Errors (Error, naming ranks and actions): lists that cannot run (an input never produced),
// windows on lists of different lengths, a window at a cut that is not safe (safe_cuts()).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "parallel/pipeline_schedule.h"

namespace tandem {

struct Transfer {
  Phase phase = Phase::Forward;  // what it feeds: F (activation) or B (gradient) ...
  int microbatch = 0;            // ... of this micro-batch ...
  int vstage = 0;                // ... on this virtual stage
  int peer = 0;                  // the other pipeline rank
  bool send = false;             // this rank sends it (else receives it)
  bool operator==(const Transfer&) const = default;
};

struct PipelineStep {
  enum class Kind { Compute, Exchange, Window };
  Kind kind = Kind::Compute;
  size_t index = 0;                 // Compute: the action's index in the list; Window: the cut
  std::vector<Transfer> transfers;  // Exchange: posted together, in this order
  bool operator==(const PipelineStep&) const = default;
};

// One rank's steps.
using TransferPlan = std::vector<PipelineStep>;

// Every rank's plan for the lists per_rank[r] (rank r's actions, make_schedule() or
// PipelineExecutor::forward_only()); windows: empty, or n + 1 flags for lists of one length n.
std::vector<TransferPlan> plan_transfers(const std::vector<std::vector<Action>>& per_rank,
                                         int chunks, const std::vector<bool>& windows = {});

// Runs the plans together under rendezvous semantics (above; a Window waits for every rank to be
// at the same Window). Returns "" when every rank finishes, every action ran once and in order
// with its input present, every transfer was sent once by its producer after computing it and
// received once by its consumer, in the same order per pair of ranks. Otherwise says what is
// wrong: the first inconsistency, or for a deadlock where each rank waits.
std::string check_transfers(const std::vector<std::vector<Action>>& per_rank, int chunks,
                            const std::vector<TransferPlan>& plans);

// "F0 {>F0v1@1 <B0v0@1} B0 |3| ..." (> send to @rank, < receive from; |k| a window at cut k).
std::string to_string(const TransferPlan& plan, const std::vector<Action>& actions);

}  // namespace tandem
