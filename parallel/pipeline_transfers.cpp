// Pipeline transfers as data: the synchronous-rounds planner and the rendezvous checker.
// Contract: pipeline_transfers.h.
#include "parallel/pipeline_transfers.h"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "runtime/core/error.h"

namespace tandem {
namespace {

// What a transfer feeds: (backward?, micro-batch, consuming virtual stage).
using Key = std::tuple<bool, int, int>;

Key key_of(const Transfer& t) { return {t.phase == Phase::Backward, t.microbatch, t.vstage}; }

std::string key_name(const Key& k) {
  return fmt::format("{}{}v{}", std::get<0>(k) ? 'B' : 'F', std::get<1>(k), std::get<2>(k));
}

struct Edge {
  Key key;
  int rank;  // the producer (for an input) or the consumer (for an output)
};

// The data action `a` of rank `stage` needs, and the data it produces for another action.
std::optional<Edge> input_of(const Action& a, int stages, int stage, int chunks) {
  const int v = virtual_stage(stages, stage, a.chunk), V = stages * chunks;
  if (a.phase == Phase::Forward) {
    if (v == 0) return std::nullopt;
    return Edge{{false, a.microbatch, v}, stage_chunk_of(stages, v - 1).stage};
  }
  if (v == V - 1) return std::nullopt;
  return Edge{{true, a.microbatch, v}, stage_chunk_of(stages, v + 1).stage};
}

std::optional<Edge> output_of(const Action& a, int stages, int stage, int chunks) {
  const int v = virtual_stage(stages, stage, a.chunk), V = stages * chunks;
  if (a.phase == Phase::Forward) {
    if (v == V - 1) return std::nullopt;
    return Edge{{false, a.microbatch, v + 1}, stage_chunk_of(stages, v + 1).stage};
  }
  if (v == 0) return std::nullopt;
  return Edge{{true, a.microbatch, v - 1}, stage_chunk_of(stages, v - 1).stage};
}

Transfer make_transfer(const Key& k, int peer, bool send) {
  return Transfer{std::get<0>(k) ? Phase::Backward : Phase::Forward, std::get<1>(k), std::get<2>(k),
                  peer, send};
}

void check_lists(const std::vector<std::vector<Action>>& per_rank, int chunks) {
  const int stages = static_cast<int>(per_rank.size());
  TANDEM_CHECK(stages >= 1 && chunks >= 1, "pipeline transfers need >= 1 rank and chunk (got {} and {})",
               stages, chunks);
  for (int r = 0; r < stages; ++r)
    for (size_t i = 0; i < per_rank[r].size(); ++i) {
      const Action& a = per_rank[r][i];
      TANDEM_CHECK(a.microbatch >= 0 && a.chunk >= 0 && a.chunk < chunks,
                   "pipeline transfers: rank {} action #{} {} has a chunk outside [0, {}) or a "
                   "negative micro-batch",
                   r, i, to_string(a), chunks);
    }
}

}  // namespace

std::vector<TransferPlan> plan_transfers(const std::vector<std::vector<Action>>& per_rank,
                                         int chunks, const std::vector<bool>& windows) {
  check_lists(per_rank, chunks);
  const int S = static_cast<int>(per_rank.size());
  std::vector<size_t> cuts;  // window cuts strictly inside the lists, ascending
  if (!windows.empty()) {
    const size_t n = per_rank[0].size();
    for (int r = 1; r < S; ++r)
      TANDEM_CHECK(per_rank[r].size() == n, "pipeline transfers with windows: rank {} has {} "
                   "actions, rank 0 has {}", r, per_rank[r].size(), n);
    TANDEM_CHECK(windows.size() == n + 1, "pipeline transfers: {} window flags for lists of {} "
                 "actions (expected {})", windows.size(), n, n + 1);
    const std::vector<bool> safe = safe_cuts(per_rank, chunks);
    for (size_t k = 1; k < n; ++k) {
      if (!windows[k]) continue;
      TANDEM_CHECK(safe[k], "pipeline transfers: a window at cut {} (after {} actions) is not a "
                   "safe cut: some rank's first {} actions wait for a later action of another",
                   k, k, k);
      cuts.push_back(k);
    }
  }

  std::vector<TransferPlan> plans(S);
  std::vector<size_t> pos(S, 0);
  std::vector<std::set<Key>> have(S);               // inputs present (received or handed over)
  std::vector<std::vector<Transfer>> pending(S);    // this rank's transfers since its last compute
  auto flush = [&](int r) {
    if (pending[r].empty()) return;
    plans[r].push_back({PipelineStep::Kind::Exchange, 0, std::move(pending[r])});
    pending[r].clear();
  };
  size_t next_cut = 0;
  while (true) {
    bool done = true;
    for (int r = 0; r < S; ++r) done = done && pos[r] == per_rank[r].size();
    if (done) break;
    const size_t limit = next_cut < cuts.size() ? cuts[next_cut] : std::numeric_limits<size_t>::max();
    std::vector<std::pair<int, Edge>> produced;  // (producer, output)
    bool progressed = false;
    for (int r = 0; r < S; ++r) {
      if (pos[r] >= per_rank[r].size() || pos[r] >= limit) continue;
      const Action& a = per_rank[r][pos[r]];
      const auto in = input_of(a, S, r, chunks);
      if (in && !have[r].count(in->key)) continue;
      if (in) have[r].erase(in->key);
      flush(r);
      plans[r].push_back({PipelineStep::Kind::Compute, pos[r], {}});
      ++pos[r];
      progressed = true;
      if (const auto out = output_of(a, S, r, chunks)) {
        if (out->rank == r) have[r].insert(out->key);
        else produced.emplace_back(r, *out);
      }
    }
    for (const auto& [from, out] : produced) {  // moved in the round they are made
      pending[from].push_back(make_transfer(out.key, out.rank, true));
      pending[out.rank].push_back(make_transfer(out.key, from, false));
      have[out.rank].insert(out.key);
    }
    if (progressed) continue;
    bool at_cut = limit != std::numeric_limits<size_t>::max();
    for (int r = 0; r < S && at_cut; ++r) at_cut = pos[r] == limit;
    if (at_cut) {
      for (int r = 0; r < S; ++r) {
        flush(r);
        plans[r].push_back({PipelineStep::Kind::Window, limit, {}});
      }
      ++next_cut;
      continue;
    }
    std::string where;
    for (int r = 0; r < S; ++r) {
      if (pos[r] >= per_rank[r].size()) continue;
      const Action& a = per_rank[r][pos[r]];
      const auto in = input_of(a, S, r, chunks);
      where += fmt::format("; rank {} at action #{} {}", r, pos[r], to_string(a));
      if (pos[r] >= limit) where += fmt::format(" (window at cut {})", limit);
      else if (in) where += fmt::format(" waits for {} from rank {}", key_name(in->key), in->rank);
    }
    throw Error(fmt::format("pipeline transfers: the action lists cannot run to the end{}", where));
  }
  for (int r = 0; r < S; ++r) flush(r);
  return plans;
}

std::string check_transfers(const std::vector<std::vector<Action>>& per_rank, int chunks,
                            const std::vector<TransferPlan>& plans) {
  check_lists(per_rank, chunks);
  const int S = static_cast<int>(per_rank.size());
  if (static_cast<int>(plans.size()) != S)
    return fmt::format("{} plans for {} ranks", plans.size(), S);
  // Static checks: each step in range, each transfer once per side, per-pair order.
  std::map<std::pair<int, int>, std::vector<Key>> sent, received;  // (from, to) -> keys in order
  std::set<Key> sent_keys, received_keys;
  for (int r = 0; r < S; ++r) {
    size_t next = 0;
    for (const PipelineStep& s : plans[r]) {
      if (s.kind == PipelineStep::Kind::Compute) {
        if (s.index != next)
          return fmt::format("rank {} computes action #{} where #{} is next", r, s.index, next);
        ++next;
      }
      for (const Transfer& t : s.transfers) {
        if (t.peer < 0 || t.peer >= S || t.peer == r)
          return fmt::format("rank {}: transfer {} with peer {}", r, key_name(key_of(t)), t.peer);
        auto& seen = t.send ? sent_keys : received_keys;
        if (!seen.insert(key_of(t)).second)
          return fmt::format("rank {}: {} {} more than once", r, t.send ? "sends" : "receives",
                             key_name(key_of(t)));
        (t.send ? sent[{r, t.peer}] : received[{t.peer, r}]).push_back(key_of(t));
      }
    }
    if (next != per_rank[r].size())
      return fmt::format("rank {} computes {} of its {} actions", r, next, per_rank[r].size());
  }
  if (sent != received) {
    for (const auto& [pair, keys] : sent)
      if (received[pair] != keys)
        return fmt::format("rank {} sends to rank {} in an order (or set) its receives do not "
                           "match: first send {}, first receive {}",
                           pair.first, pair.second, keys.empty() ? "-" : key_name(keys[0]),
                           received[pair].empty() ? "-" : key_name(received[pair][0]));
    return "some rank receives a transfer that no rank sends";
  }

  // Rendezvous run.
  std::vector<size_t> ip(S, 0);
  std::vector<std::set<Key>> have(S), made(S);
  std::set<std::pair<Key, bool>> posted;  // (transfer, is the send)
  std::vector<bool> entered(S, false);    // the current Exchange has been posted
  while (true) {
    bool progressed = false;
    for (int r = 0; r < S; ++r) {
      while (ip[r] < plans[r].size()) {
        const PipelineStep& s = plans[r][ip[r]];
        if (s.kind == PipelineStep::Kind::Compute) {
          const Action& a = per_rank[r][s.index];
          if (const auto in = input_of(a, S, r, chunks)) {
            if (!have[r].count(in->key))
              return fmt::format("rank {} runs action #{} {} before its input {} arrived", r,
                                 s.index, to_string(a), key_name(in->key));
            have[r].erase(in->key);
          }
          if (const auto out = output_of(a, S, r, chunks)) {
            if (out->rank == r) have[r].insert(out->key);
            else made[r].insert(out->key);
          }
        } else if (s.kind == PipelineStep::Kind::Window) {
          bool all = true;
          for (int q = 0; q < S && all; ++q)
            all = ip[q] < plans[q].size() && plans[q][ip[q]].kind == PipelineStep::Kind::Window &&
                  plans[q][ip[q]].index == s.index;
          if (!all) break;
          for (int q = 0; q < S; ++q) ++ip[q];
          progressed = true;
          continue;
        } else {
          if (!entered[r]) {
            for (const Transfer& t : s.transfers) {
              if (t.send && !made[r].count(key_of(t)))
                return fmt::format("rank {} sends {} before computing it", r, key_name(key_of(t)));
              posted.insert({key_of(t), t.send});
            }
            entered[r] = true;
          }
          bool complete = true;
          for (const Transfer& t : s.transfers) complete = complete && posted.count({key_of(t), !t.send});
          if (!complete) break;
          for (const Transfer& t : s.transfers)
            if (!t.send) have[r].insert(key_of(t));
          entered[r] = false;
        }
        ++ip[r];
        progressed = true;
      }
    }
    if (!progressed) break;
  }
  std::string stuck;
  for (int r = 0; r < S; ++r) {
    if (ip[r] == plans[r].size()) continue;
    const PipelineStep& s = plans[r][ip[r]];
    stuck += fmt::format("; rank {} at step #{}", r, ip[r]);
    if (s.kind == PipelineStep::Kind::Window) {
      stuck += fmt::format(" (window {})", s.index);
      continue;
    }
    for (const Transfer& t : s.transfers)
      if (!posted.count({key_of(t), !t.send}))
        stuck += fmt::format(" waits for rank {} to {} {}", t.peer, t.send ? "receive" : "send",
                             key_name(key_of(t)));
  }
  if (!stuck.empty()) return "deadlock" + stuck;
  return "";
}

std::string to_string(const TransferPlan& plan, const std::vector<Action>& actions) {
  std::string out;
  for (const PipelineStep& s : plan) {
    if (!out.empty()) out += ' ';
    switch (s.kind) {
      case PipelineStep::Kind::Compute:
        out += s.index < actions.size() ? to_string(actions[s.index]) : fmt::format("#{}", s.index);
        break;
      case PipelineStep::Kind::Window: out += fmt::format("|{}|", s.index); break;
      case PipelineStep::Kind::Exchange:
        out += '{';
        for (size_t i = 0; i < s.transfers.size(); ++i) {
          const Transfer& t = s.transfers[i];
          out += fmt::format("{}{}{}@{}", i ? " " : "", t.send ? '>' : '<', key_name(key_of(t)), t.peer);
        }
        out += '}';
        break;
    }
  }
  return out;
}

}  // namespace tandem
