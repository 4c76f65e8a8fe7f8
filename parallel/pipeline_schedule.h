// Pipeline schedules as data (docs/architecture.md, principle 3): GPipe, 1F1B and interleaved 1F1B.
//
// Contract: pure functions, no communication, no state. make_schedule(kind, stages, stage, M,
// chunks) returns the ordered (micro-batch, chunk, F|B) actions of one pipeline rank; an
// executor runs that list in order. Every (micro-batch, chunk) pair appears exactly once as F
// and once as B, and its F comes first. Virtual stage v = chunk * stages + stage holds model
// layers in order v = 0 .. stages*chunks-1. simulate() runs all ranks' lists in order under
// blocking dependencies (communication free) and reports deadlock, makespan and bubble.
// check_schedule() raises a ConfigError naming the parallel.* keys and values for a layout a
// user must change; make_schedule() only refuses what it cannot build (see below).
#pragma once

#include <string>
#include <vector>

namespace tandem {

enum class Phase { Forward, Backward };

struct Action {
  int microbatch = 0;
  int chunk = 0;  // virtual-stage index on this rank (0 unless interleaved)
  Phase phase = Phase::Forward;
  bool operator==(const Action&) const = default;
};

enum class ScheduleKind { GPipe, OneFOneB, Interleaved };

// "gpipe" | "1f1b" | "interleaved"; anything else is a ConfigError naming parallel.schedule.
ScheduleKind parse_schedule(const std::string& name);
const char* schedule_name(ScheduleKind kind);  // inverse of parse_schedule

// User-facing validation of (parallel.schedule, parallel.pp, parallel.microbatches,
// parallel.chunks). Rules: pp >= 1; microbatches >= 1; gpipe and 1f1b use chunks == 1;
// 1f1b needs microbatches >= pp; interleaved needs chunks >= 2 and microbatches % pp == 0.
void check_schedule(ScheduleKind kind, int stages, int microbatches, int chunks);

// The ordered actions of pipeline rank `stage` (0-based) of `stages`.
//   GPipe:       F(0..M-1) then B(0..M-1) in ascending micro-batch order (FIFO, like 1F1B's
//                backward order; descending would be equally valid for the dependencies).
//   OneFOneB:    PipeDream-flush as in Megatron-LM: min(stages-stage-1, M) warm-up forwards,
//                then steady (F, B) pairs, then cool-down backwards.
//   Interleaved: Megatron's virtual pipeline: forwards visit micro-batches in groups of
//                `stages`, chunk 0..chunks-1 per group (backwards visit chunks in reverse);
//                warm-up min((stages-stage-1)*2 + (chunks-1)*stages, M*chunks) forwards, then
//                steady (F, B) pairs, then cool-down backwards.
// Throws ConfigError for what cannot be built (pp < 1, M < 1, chunks != 1 for gpipe/1f1b,
// the interleaved rules) and Error for stage outside [0, stages). It accepts 1f1b with
// M < stages (a valid, bubble-heavy schedule); check_schedule rejects that as policy.
std::vector<Action> make_schedule(ScheduleKind kind, int stages, int stage, int microbatches,
                                  int chunks = 1);

// Number of forwards a rank runs before its first backward (the warm-up, as defined above;
// GPipe: all M).
int warmup_forwards(ScheduleKind kind, int stages, int stage, int microbatches, int chunks = 1);

// Virtual stage <-> (rank, chunk): v = chunk * stages + stage.
int virtual_stage(int stages, int stage, int chunk);
struct StageChunk {
  int stage = 0;
  int chunk = 0;
  bool operator==(const StageChunk&) const = default;
};
StageChunk stage_chunk_of(int stages, int virtual_stage);

// Largest number of (micro-batch, chunk) pairs whose forward has run but whose backward has
// not, over the prefix of `actions` (the activation memory high-water mark, in micro-batches).
int max_in_flight(const std::vector<Action>& actions);

// "F3" / "B3" for chunk 0, "F3c1" for chunk 1; a list as space-separated actions.
std::string to_string(const Action& action);
std::string to_string(const std::vector<Action>& actions);

// Discrete simulation: every rank runs its list in order, one action at a time, and an action
// waits for its dependencies (v = virtual stage, V = stages * chunks):
//   F(m, v) after F(m, v-1) (v > 0); B(m, v) after F(m, v) and after B(m, v+1) (v < V-1).
// Forward costs fwd_cost, backward bwd_cost, per virtual stage; communication is free.
struct SimResult {
  bool deadlock = false;
  double makespan = 0.0;     // finish time of the last action (of those that ran)
  std::vector<double> busy;  // per rank: summed cost of the actions that ran
  double bubble_fraction = 0.0;  // 1 - mean(busy) / makespan (0 for an empty run)
  std::string blocked;       // on deadlock: where each stuck rank waits, and for what
};
SimResult simulate(ScheduleKind kind, int stages, int microbatches, int chunks, double fwd_cost,
                   double bwd_cost);
// The same over hand-made lists: per_rank[r] is rank r's list; the pipeline has
// per_rank.size() stages and `chunks` chunks per rank. Actions out of range or repeated on a
// rank throw Error; an action whose dependency never runs shows up as a deadlock.
SimResult simulate_actions(const std::vector<std::vector<Action>>& per_rank, int chunks,
                           double fwd_cost, double bwd_cost);

// Safe cuts (serving windows inside a pipelined step, docs/architecture.md, principle 5): cut k
// means "after each rank's first k actions". All ranks must have lists of one length n. Cut k
// is safe when no action among the first k of any rank depends on an action past the first k
// of another (dependencies as in simulate()), so every rank can reach cut k without waiting
// for a rank that is itself waiting at cut k: a collective there cannot deadlock against the
// pipeline's receives. Returns n + 1 flags (cuts 0 and n are always safe). With one stage
// every cut is safe.
std::vector<bool> safe_cuts(const std::vector<std::vector<Action>>& per_rank, int chunks);

}  // namespace tandem
