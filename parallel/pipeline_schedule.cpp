// Pipeline schedules as data: generators (GPipe, 1F1B, Megatron interleaved) and an in-order
// blocking simulator. Pure functions, no communication. Contract: pipeline_schedule.h.
#include "parallel/pipeline_schedule.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "runtime/core/error.h"

namespace tandem {
namespace {

// What make_schedule needs to build a list at all; check_schedule adds the 1f1b M >= pp policy.
void check_buildable(ScheduleKind kind, int stages, int microbatches, int chunks) {
  const char* name = schedule_name(kind);
  if (stages < 1)
    throw ConfigError(fmt::format("parallel.pp must be >= 1 (got pp={})", stages));
  if (microbatches < 1)
    throw ConfigError(
        fmt::format("parallel.microbatches must be >= 1 (got microbatches={})", microbatches));
  if (kind == ScheduleKind::Interleaved) {
    if (chunks < 2)
      throw ConfigError(fmt::format(
          "parallel.schedule=interleaved needs parallel.chunks >= 2 (got chunks={}); with one "
          "chunk per rank use parallel.schedule=1f1b",
          chunks));
    if (microbatches % stages != 0)
      throw ConfigError(fmt::format(
          "parallel.schedule=interleaved needs parallel.microbatches to be a multiple of "
          "parallel.pp (got microbatches={}, pp={})",
          microbatches, stages));
  } else if (chunks != 1) {
    throw ConfigError(fmt::format(
        "parallel.schedule={} runs one model chunk per rank, so parallel.chunks must be 1 (got "
        "chunks={}); use parallel.schedule=interleaved for virtual stages",
        name, chunks));
  }
}

// Megatron's interleaved order: the k-th forward (or backward) of a rank. Micro-batches go in
// groups of `stages`; within a group of stages*chunks slots, chunk = slot / stages (reversed
// for backward) and micro-batch = group * stages + slot % stages.
Action interleaved_action(int k, int stages, int chunks, Phase phase) {
  const int group_size = stages * chunks;
  const int group = k / group_size;
  const int slot = k % group_size;
  int chunk = slot / stages;
  if (phase == Phase::Backward) chunk = chunks - 1 - chunk;
  return Action{group * stages + slot % stages, chunk, phase};
}

}  // namespace

ScheduleKind parse_schedule(const std::string& name) {
  if (name == "gpipe") return ScheduleKind::GPipe;
  if (name == "1f1b") return ScheduleKind::OneFOneB;
  if (name == "interleaved") return ScheduleKind::Interleaved;
  throw ConfigError(fmt::format(
      "parallel.schedule: unknown schedule '{}' (expected gpipe, 1f1b or interleaved)", name));
}

const char* schedule_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::GPipe: return "gpipe";
    case ScheduleKind::OneFOneB: return "1f1b";
    case ScheduleKind::Interleaved: return "interleaved";
  }
  return "?";
}

void check_schedule(ScheduleKind kind, int stages, int microbatches, int chunks) {
  check_buildable(kind, stages, microbatches, chunks);
  if (kind == ScheduleKind::OneFOneB && microbatches < stages)
    throw ConfigError(fmt::format(
        "parallel.schedule=1f1b needs parallel.microbatches >= parallel.pp (got "
        "microbatches={}, pp={})",
        microbatches, stages));
}

int warmup_forwards(ScheduleKind kind, int stages, int stage, int microbatches, int chunks) {
  check_buildable(kind, stages, microbatches, chunks);
  TANDEM_CHECK(stage >= 0 && stage < stages, "pipeline stage {} out of range [0, {})", stage,
               stages);
  switch (kind) {
    case ScheduleKind::GPipe: return microbatches;
    case ScheduleKind::OneFOneB: return std::min(stages - stage - 1, microbatches);
    case ScheduleKind::Interleaved:
      return std::min((stages - stage - 1) * 2 + (chunks - 1) * stages, microbatches * chunks);
  }
  return 0;
}

std::vector<Action> make_schedule(ScheduleKind kind, int stages, int stage, int microbatches,
                                  int chunks) {
  const int warmup = warmup_forwards(kind, stages, stage, microbatches, chunks);
  const int total = microbatches * chunks;  // forwards (and backwards) on this rank
  auto fwd = [&](int k) {
    return kind == ScheduleKind::Interleaved ? interleaved_action(k, stages, chunks, Phase::Forward)
                                             : Action{k, 0, Phase::Forward};
  };
  auto bwd = [&](int k) {
    return kind == ScheduleKind::Interleaved
               ? interleaved_action(k, stages, chunks, Phase::Backward)
               : Action{k, 0, Phase::Backward};
  };
  std::vector<Action> out;
  out.reserve(2 * static_cast<size_t>(total));
  for (int k = 0; k < warmup; ++k) out.push_back(fwd(k));
  const int steady = total - warmup;
  for (int i = 0; i < steady; ++i) {
    out.push_back(fwd(warmup + i));
    out.push_back(bwd(i));
  }
  for (int i = steady; i < total; ++i) out.push_back(bwd(i));
  return out;
}

int virtual_stage(int stages, int stage, int chunk) {
  TANDEM_CHECK(stages >= 1 && stage >= 0 && stage < stages && chunk >= 0,
               "virtual_stage(stages={}, stage={}, chunk={}): bad arguments", stages, stage, chunk);
  return chunk * stages + stage;
}

StageChunk stage_chunk_of(int stages, int v) {
  TANDEM_CHECK(stages >= 1 && v >= 0, "stage_chunk_of(stages={}, virtual_stage={}): bad arguments",
               stages, v);
  return StageChunk{v % stages, v / stages};
}

int max_in_flight(const std::vector<Action>& actions) {
  std::set<std::pair<int, int>> live;
  int peak = 0;
  for (const Action& a : actions) {
    const std::pair<int, int> key{a.microbatch, a.chunk};
    if (a.phase == Phase::Forward) {
      live.insert(key);
      peak = std::max(peak, static_cast<int>(live.size()));
    } else {
      live.erase(key);
    }
  }
  return peak;
}

std::string to_string(const Action& a) {
  const char p = a.phase == Phase::Forward ? 'F' : 'B';
  if (a.chunk == 0) return fmt::format("{}{}", p, a.microbatch);
  return fmt::format("{}{}c{}", p, a.microbatch, a.chunk);
}

std::string to_string(const std::vector<Action>& actions) {
  std::string out;
  for (size_t i = 0; i < actions.size(); ++i) {
    if (i) out += ' ';
    out += to_string(actions[i]);
  }
  return out;
}

SimResult simulate(ScheduleKind kind, int stages, int microbatches, int chunks, double fwd_cost,
                   double bwd_cost) {
  check_buildable(kind, stages, microbatches, chunks);
  std::vector<std::vector<Action>> lists;
  lists.reserve(stages);
  for (int s = 0; s < stages; ++s)
    lists.push_back(make_schedule(kind, stages, s, microbatches, chunks));
  return simulate_actions(lists, chunks, fwd_cost, bwd_cost);
}

SimResult simulate_actions(const std::vector<std::vector<Action>>& per_rank, int chunks,
                           double fwd_cost, double bwd_cost) {
  const int stages = static_cast<int>(per_rank.size());
  TANDEM_CHECK(stages >= 1, "simulate_actions needs at least one rank (got {})", stages);
  TANDEM_CHECK(chunks >= 1, "simulate_actions needs chunks >= 1 (got {})", chunks);
  TANDEM_CHECK(std::isfinite(fwd_cost) && std::isfinite(bwd_cost) && fwd_cost >= 0 &&
                   bwd_cost >= 0,
               "costs must be finite and >= 0 (got fwd_cost={}, bwd_cost={})", fwd_cost, bwd_cost);
  const int vstages = stages * chunks;

  // Validate and size: micro-batch count = 1 + largest index seen.
  int microbatches = 0;
  for (int r = 0; r < stages; ++r) {
    std::set<std::pair<int, int>> seen[2];
    for (size_t i = 0; i < per_rank[r].size(); ++i) {
      const Action& a = per_rank[r][i];
      TANDEM_CHECK(a.microbatch >= 0 && a.chunk >= 0 && a.chunk < chunks,
                   "rank {} action #{} {}: microbatch must be >= 0 and chunk in [0, {})", r, i,
                   to_string(a), chunks);
      TANDEM_CHECK(seen[a.phase == Phase::Backward].insert({a.microbatch, a.chunk}).second,
                   "rank {} action #{} {} appears twice", r, i, to_string(a));
      microbatches = std::max(microbatches, a.microbatch + 1);
    }
  }

  // Finish times per (phase, microbatch, virtual stage); negative = not run yet.
  const size_t cells = static_cast<size_t>(microbatches) * vstages;
  std::vector<double> fin[2] = {std::vector<double>(cells, -1.0), std::vector<double>(cells, -1.0)};
  auto cell = [&](int m, int v) { return static_cast<size_t>(m) * vstages + v; };

  // What action `a` on rank r waits for: (phase index, cell) pairs; at most two.
  auto deps = [&](int r, const Action& a, std::pair<int, size_t>* out) {
    const int v = a.chunk * stages + r;
    int n = 0;
    if (a.phase == Phase::Forward) {
      if (v > 0) out[n++] = {0, cell(a.microbatch, v - 1)};
    } else {
      out[n++] = {0, cell(a.microbatch, v)};
      if (v < vstages - 1) out[n++] = {1, cell(a.microbatch, v + 1)};
    }
    return n;
  };

  SimResult res;
  res.busy.assign(stages, 0.0);
  std::vector<size_t> next(stages, 0);
  std::vector<double> clock(stages, 0.0);
  // Sweep the ranks, advancing each as far as its dependencies allow, until nothing moves.
  // Start times are the longest path in the dependency DAG, so the sweep order is irrelevant.
  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < stages; ++r) {
      while (next[r] < per_rank[r].size()) {
        const Action& a = per_rank[r][next[r]];
        std::pair<int, size_t> d[2];
        const int nd = deps(r, a, d);
        double start = clock[r];
        bool ready = true;
        for (int i = 0; i < nd; ++i) {
          const double t = fin[d[i].first][d[i].second];
          if (t < 0) {
            ready = false;
            break;
          }
          start = std::max(start, t);
        }
        if (!ready) break;
        const double cost = a.phase == Phase::Forward ? fwd_cost : bwd_cost;
        clock[r] = start + cost;
        res.busy[r] += cost;
        fin[a.phase == Phase::Backward][cell(a.microbatch, a.chunk * stages + r)] = clock[r];
        res.makespan = std::max(res.makespan, clock[r]);
        ++next[r];
        progress = true;
      }
    }
  }

  for (int r = 0; r < stages; ++r) {
    if (next[r] == per_rank[r].size()) continue;
    res.deadlock = true;
    const Action& a = per_rank[r][next[r]];
    std::pair<int, size_t> d[2];
    const int nd = deps(r, a, d);
    std::string waits;
    for (int i = 0; i < nd; ++i) {
      if (fin[d[i].first][d[i].second] >= 0) continue;
      const int m = static_cast<int>(d[i].second / vstages);
      const StageChunk sc = stage_chunk_of(stages, static_cast<int>(d[i].second % vstages));
      waits += fmt::format("{}{} on rank {}", waits.empty() ? "" : " and ",
                           to_string(Action{m, sc.chunk, d[i].first ? Phase::Backward
                                                                    : Phase::Forward}),
                           sc.stage);
    }
    res.blocked += fmt::format("{}rank {} stuck at action #{} {} waiting for {}",
                               res.blocked.empty() ? "" : "; ", r, next[r], to_string(a), waits);
  }

  double mean_busy = 0.0;
  for (double b : res.busy) mean_busy += b;
  mean_busy /= stages;
  res.bubble_fraction = res.makespan > 0 ? 1.0 - mean_busy / res.makespan : 0.0;
  return res;
}

std::vector<bool> safe_cuts(const std::vector<std::vector<Action>>& per_rank, int chunks) {
  const int stages = static_cast<int>(per_rank.size());
  TANDEM_CHECK(stages >= 1 && chunks >= 1, "safe_cuts needs >= 1 rank and chunk (got {} and {})",
               stages, chunks);
  const size_t n = per_rank[0].size();
  for (int r = 1; r < stages; ++r)
    TANDEM_CHECK(per_rank[r].size() == n, "safe_cuts: rank {} has {} actions, rank 0 has {}", r,
                 per_rank[r].size(), n);
  // Position of every (phase, micro-batch, virtual stage) in its rank's list.
  std::map<std::tuple<int, int, int>, size_t> pos;
  for (int r = 0; r < stages; ++r)
    for (size_t i = 0; i < n; ++i) {
      const Action& a = per_rank[r][i];
      TANDEM_CHECK(a.chunk >= 0 && a.chunk < chunks, "safe_cuts: rank {} action #{} {} has chunk outside [0, {})",
                   r, i, to_string(a), chunks);
      pos[{a.phase == Phase::Backward, a.microbatch, a.chunk * stages + r}] = i;
    }
  const int vstages = stages * chunks;
  // need[i]: one past the latest position (on any rank) that some action at position i waits for.
  std::vector<size_t> need(n, 0);
  auto dep = [&](size_t i, int phase, int m, int v) {
    auto f = pos.find({phase, m, v});
    TANDEM_CHECK(f != pos.end(), "safe_cuts: {} of micro-batch {} on virtual stage {} is in no list",
                 phase ? "backward" : "forward", m, v);
    need[i] = std::max(need[i], f->second + 1);
  };
  for (int r = 0; r < stages; ++r)
    for (size_t i = 0; i < n; ++i) {
      const Action& a = per_rank[r][i];
      const int v = a.chunk * stages + r;
      if (a.phase == Phase::Forward) {
        if (v > 0) dep(i, 0, a.microbatch, v - 1);
      } else if (v < vstages - 1) {
        dep(i, 1, a.microbatch, v + 1);
      }
    }
  std::vector<bool> safe(n + 1, true);
  size_t reach = 0;  // max of need[] over the positions before the cut
  for (size_t k = 1; k <= n; ++k) {
    reach = std::max(reach, need[k - 1]);
    safe[k] = reach <= k;
  }
  return safe;
}

}  // namespace tandem
