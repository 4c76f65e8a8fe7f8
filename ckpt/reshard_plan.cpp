// Reshard plan: runs, disjoint ownership and sender/receiver segments (contract in the header).
#include "ckpt/reshard_plan.h"

#include <algorithm>
#include <tuple>

#include "runtime/core/error.h"

namespace tandem::ckpt {

namespace {

bool run_less(const Run& a, const Run& b) { return std::tie(a.name, a.begin) < std::tie(b.name, b.begin); }

// Appends [begin, begin + len) at (buffer, offset), merging with the last run when contiguous
// in both the stored tensor and the holder's buffer.
void push_run(std::vector<Run>& out, const Run& r) {
  if (r.len <= 0) return;
  if (!out.empty()) {
    Run& last = out.back();
    if (last.name == r.name && last.buffer == r.buffer && last.begin + last.len == r.begin &&
        last.offset + last.len == r.offset) {
      last.len += r.len;
      return;
    }
  }
  out.push_back(r);
}

}  // namespace

std::vector<Run> slab_runs(const Piece& piece, const Dims& stored, uint64_t name, int32_t buffer,
                           int64_t base_offset) {
  const Hyperslab& s = piece.slab;
  const size_t n = stored.size();
  TANDEM_CHECK(n >= 1 && s.start.size() == n && s.stride.size() == n && s.count.size() == n &&
                   s.block.size() == n,
               "slab_runs: hyperslab {} does not match the stored shape {}", s.str(), dims_str(stored));
  // Row-major strides of the stored tensor and the selected indices of each outer dimension.
  Dims step(n, 1);
  for (size_t d = n - 1; d > 0; --d) step[d - 1] = step[d] * stored[d];
  std::vector<Dims> sel(n);
  for (size_t d = 0; d < n; ++d)
    for (int64_t c = 0; c < s.count[d]; ++c)
      for (int64_t b = 0; b < s.block[d]; ++b) {
        const int64_t i = s.start[d] + c * s.stride[d] + b;
        TANDEM_CHECK(i >= 0 && i < stored[d], "slab_runs: hyperslab {} leaves the stored shape {} at dimension {}",
                     s.str(), dims_str(stored), d);
        sel[d].push_back(i);
      }
  std::vector<Run> out;
  int64_t local = base_offset + piece.local_offset;
  // Odometer over the outer dimensions; the last dimension contributes runs of `block`.
  std::vector<size_t> at(n, 0);
  const int64_t outer_total = [&] {
    int64_t t = 1;
    for (size_t d = 0; d + 1 < n; ++d) t *= static_cast<int64_t>(sel[d].size());
    return t;
  }();
  for (int64_t o = 0; o < outer_total; ++o) {
    int64_t base = 0;
    for (size_t d = 0; d + 1 < n; ++d) base += sel[d][at[d]] * step[d];
    for (int64_t c = 0; c < s.count[n - 1]; ++c) {
      const int64_t first = base + s.start[n - 1] + c * s.stride[n - 1];
      push_run(out, Run{name, first, s.block[n - 1], buffer, local});
      local += s.block[n - 1];
    }
    for (size_t d = n - 1; d-- > 0;) {  // advance the odometer, last outer dimension fastest
      if (++at[d] < sel[d].size()) break;
      at[d] = 0;
    }
  }
  TANDEM_CHECK(local - base_offset - piece.local_offset == piece.numel,
               "slab_runs: hyperslab {} selects {} elements but the piece holds {}", s.str(),
               local - base_offset - piece.local_offset, piece.numel);
  return out;
}

void sort_runs(std::vector<Run>& runs) {
  std::sort(runs.begin(), runs.end(), run_less);
  for (size_t i = 1; i < runs.size(); ++i)
    TANDEM_CHECK(runs[i].name != runs[i - 1].name || runs[i - 1].begin + runs[i - 1].len <= runs[i].begin,
                 "reshard plan: tensor {:#x} is held twice by one rank: [{}, {}) and [{}, {})", runs[i].name,
                 runs[i - 1].begin, runs[i - 1].begin + runs[i - 1].len, runs[i].begin,
                 runs[i].begin + runs[i].len);
}

std::vector<std::vector<Run>> own_disjoint(const std::vector<std::vector<Run>>& senders) {
  struct Tagged {
    Run run;
    size_t sender;
  };
  std::vector<Tagged> all;
  for (size_t i = 0; i < senders.size(); ++i)
    for (const Run& r : senders[i]) all.push_back({r, i});
  std::stable_sort(all.begin(), all.end(), [](const Tagged& a, const Tagged& b) {
    return std::tie(a.run.name, a.run.begin, a.sender) < std::tie(b.run.name, b.run.begin, b.sender);
  });
  std::vector<std::vector<Run>> out(senders.size());
  bool have = false;
  uint64_t name = 0;
  int64_t covered = 0;  // every element of `name` below this is owned
  for (const Tagged& t : all) {
    Run r = t.run;
    if (!have || r.name != name) {
      have = true;
      name = r.name;
      covered = r.begin;
    }
    const int64_t end = r.begin + r.len;
    if (end <= covered) continue;
    if (r.begin < covered) {
      r.offset += covered - r.begin;
      r.len = end - covered;
      r.begin = covered;
    }
    covered = end;
    out[t.sender].push_back(r);
  }
  for (auto& v : out) sort_runs(v);
  return out;
}

std::vector<Segment> segments(const std::vector<Run>& sender, const std::vector<Run>& receiver) {
  std::vector<Segment> out;
  size_t i = 0, j = 0;
  while (i < sender.size() && j < receiver.size()) {
    const Run& a = sender[i];
    const Run& b = receiver[j];
    if (a.name != b.name) {
      (a.name < b.name ? i : j) += 1;
      continue;
    }
    const int64_t lo = std::max(a.begin, b.begin), hi = std::min(a.begin + a.len, b.begin + b.len);
    if (lo < hi) {
      Segment s{a.buffer, a.offset + (lo - a.begin), b.buffer, b.offset + (lo - b.begin), hi - lo};
      if (!out.empty()) {
        Segment& l = out.back();
        if (l.src_buffer == s.src_buffer && l.dst_buffer == s.dst_buffer && l.src_offset + l.len == s.src_offset &&
            l.dst_offset + l.len == s.dst_offset) {
          l.len += s.len;
          s.len = 0;
        }
      }
      if (s.len > 0) out.push_back(s);
    }
    (a.begin + a.len <= b.begin + b.len ? i : j) += 1;
  }
  return out;
}

int64_t segments_numel(const std::vector<Segment>& segs) {
  int64_t n = 0;
  for (const Segment& s : segs) n += s.len;
  return n;
}

int64_t runs_numel(const std::vector<Run>& runs) {
  int64_t n = 0;
  for (const Run& r : runs) n += r.len;
  return n;
}

}  // namespace tandem::ckpt
