// Shard map: local part of a tensor -> hyperslabs of the stored tensor (contract in the header).
#include "ckpt/shard_map.h"

#include <spdlog/fmt/fmt.h>

#include <algorithm>

#include "runtime/core/error.h"

namespace tandem::ckpt {

namespace {

struct Box {
  Dims lo, hi;  // per view dimension, half-open
  int64_t offset = 0;
  int64_t numel() const {
    int64_t n = 1;
    for (size_t i = 0; i < lo.size(); ++i) n *= hi[i] - lo[i];
    return n;
  }
};

struct Mapper {
  const ShardRule& rule;
  Dims view, lv, stored;
  std::vector<int> group_begin, group_end;  // view dims of each stored/logical dimension
  std::vector<Piece> out;

  Mapper(const ShardRule& r, const Dims& st) : rule(r), stored(st) {
    view = r.view.empty() ? r.logical : r.view;
    TANDEM_CHECK(!r.logical.empty(), "shard map: empty logical shape");
    TANDEM_CHECK(dims_numel(view) == dims_numel(r.logical), "shard map: view {} does not hold the {} elements of {}",
                 dims_str(view), dims_numel(r.logical), dims_str(r.logical));
    TANDEM_CHECK(stored.size() == r.logical.size(), "shard map: stored shape {} and logical shape {} differ in rank",
                 dims_str(stored), dims_str(r.logical));
    for (size_t d = 0; d < stored.size(); ++d)
      TANDEM_CHECK(d == 0 ? stored[0] <= r.logical[0] : stored[d] == r.logical[d],
                   "shard map: stored shape {} may differ from logical {} only by fewer rows", dims_str(stored),
                   dims_str(r.logical));
    size_t v = 0;
    for (size_t d = 0; d < r.logical.size(); ++d) {
      group_begin.push_back(static_cast<int>(v));
      int64_t prod = 1;
      do {
        TANDEM_CHECK(v < view.size(), "shard map: view {} does not refine shape {}", dims_str(view),
                     dims_str(r.logical));
        prod *= view[v++];
      } while (prod < r.logical[d]);
      TANDEM_CHECK(prod == r.logical[d], "shard map: view {} does not refine shape {} at dimension {}",
                   dims_str(view), dims_str(r.logical), d);
      group_end.push_back(static_cast<int>(v));
    }
    TANDEM_CHECK(v == view.size(), "shard map: view {} has dimensions past shape {}", dims_str(view),
                 dims_str(r.logical));
    TANDEM_CHECK(stored[0] == r.logical[0] || group_end[0] == 1,
                 "shard map: rows can be clipped only when dimension 0 is not split in the view ({} of {})",
                 dims_str(view), dims_str(r.logical));
    lv = local_view(r);
  }

  // Decomposes local flat [lo, hi) of the sub-array at dims k.. (prefix fixed) into boxes.
  void decompose(Dims& prefix, size_t k, int64_t lo, int64_t hi, int64_t base) {
    if (lo >= hi) return;
    int64_t inner = 1;
    for (size_t i = k + 1; i < lv.size(); ++i) inner *= lv[i];
    auto box = [&](int64_t a, int64_t b) {  // rows [a, b) of dim k, full below
      Box bx;
      bx.lo = prefix;
      bx.hi = prefix;
      for (auto& h : bx.hi) h += 1;
      bx.lo.push_back(a);
      bx.hi.push_back(b);
      for (size_t i = k + 1; i < lv.size(); ++i) {
        bx.lo.push_back(0);
        bx.hi.push_back(lv[i]);
      }
      bx.offset = base + a * inner;
      emit(bx);
    };
    int64_t a = lo / inner, b = hi / inner;
    const int64_t la = lo % inner, lb = hi % inner;
    if (la == 0 && lb == 0) return box(a, b);
    auto row = [&](int64_t r, int64_t l, int64_t h) {
      prefix.push_back(r);
      decompose(prefix, k + 1, l, h, base + r * inner);
      prefix.pop_back();
    };
    if (a == b) return row(a, la, lb);
    if (la != 0) row(a++, la, inner);
    if (a < b) box(a, b);
    if (lb != 0) row(b, 0, lb);
  }

  void emit(Box bx) {
    if (rule.shard_dim >= 0) {
      const int64_t shift = rule.index * lv[rule.shard_dim];
      bx.lo[rule.shard_dim] += shift;
      bx.hi[rule.shard_dim] += shift;
    }
    if (stored[0] < rule.logical[0]) {  // dim 0 is one view dim (checked): clip its rows
      bx.hi[0] = std::min(bx.hi[0], stored[0]);
      if (bx.lo[0] >= bx.hi[0]) return;
    }
    to_slabs(bx);
  }

  // One regular hyperslab along stored dim d for the box, if the box's part there is regular.
  bool group_slab(const Box& bx, size_t d, Hyperslab& h) const {
    const int g0 = group_begin[d], g1 = group_end[d];
    Dims inner(g1 - g0, 1);
    for (int i = g1 - 2; i >= g0; --i) inner[i - g0] = inner[i - g0 + 1] * view[i + 1];
    int64_t start = 0;
    for (int i = g0; i < g1; ++i) start += bx.lo[i] * inner[i - g0];
    auto len = [&](int i) { return bx.hi[i] - bx.lo[i]; };
    int j = g0;
    while (j < g1 && len(j) == 1) ++j;
    int64_t count = 1, stride = 1, block = 1;
    if (j < g1) {
      int m = j + 1;
      while (m < g1 && len(m) == view[m]) ++m;
      if (m == g1) {
        block = len(j) * inner[j - g0];
      } else {
        for (int i = m + 1; i < g1; ++i)
          if (len(i) != view[i]) return false;
        count = len(j);
        for (int i = j + 1; i < m; ++i) count *= view[i];
        stride = view[m] * inner[m - g0];
        block = len(m) * inner[m - g0];
      }
    }
    h.start.push_back(start);
    h.stride.push_back(count > 1 ? stride : 1);
    h.count.push_back(count);
    h.block.push_back(block);
    return true;
  }

  void to_slabs(const Box& bx) {
    Hyperslab h;
    bool regular = true;
    for (size_t d = 0; d < stored.size() && regular; ++d) regular = group_slab(bx, d, h);
    if (regular) {
      out.push_back(Piece{bx.offset, bx.numel(), std::move(h)});
      return;
    }
    // Split along the outermost ranged dimension; each slice is contiguous locally.
    size_t j = 0;
    while (bx.hi[j] - bx.lo[j] == 1) ++j;
    Box sub = bx;
    int64_t off = bx.offset;
    for (int64_t c = bx.lo[j]; c < bx.hi[j]; ++c) {
      sub.lo[j] = c;
      sub.hi[j] = c + 1;
      sub.offset = off;
      off += sub.numel();
      to_slabs(sub);
    }
  }
};

}  // namespace

int64_t dims_numel(const Dims& d) {
  int64_t n = 1;
  for (int64_t x : d) n *= x;
  return n;
}

std::string dims_str(const Dims& d) { return fmt::format("[{}]", fmt::join(d, ", ")); }

int64_t Hyperslab::numel() const {
  int64_t n = 1;
  for (size_t i = 0; i < count.size(); ++i) n *= count[i] * block[i];
  return n;
}

std::string Hyperslab::str() const {
  return fmt::format("start {} stride {} count {} block {}", dims_str(start), dims_str(stride), dims_str(count),
                     dims_str(block));
}

Dims local_view(const ShardRule& r) {
  Dims lv = r.view.empty() ? r.logical : r.view;
  if (r.shard_dim >= 0) {
    TANDEM_CHECK(r.shard_dim < static_cast<int>(lv.size()), "shard dim {} outside view {}", r.shard_dim, dims_str(lv));
    TANDEM_CHECK(r.parts >= 1 && lv[r.shard_dim] % r.parts == 0, "view {} dimension {} does not split into {} parts",
                 dims_str(lv), r.shard_dim, r.parts);
    TANDEM_CHECK(r.index >= 0 && r.index < r.parts, "part {} of {}", r.index, r.parts);
    lv[r.shard_dim] /= r.parts;
  }
  return lv;
}

int64_t local_numel(const ShardRule& r) { return dims_numel(local_view(r)); }

std::vector<Piece> pieces(const ShardRule& rule, const Dims& stored, int64_t begin, int64_t end) {
  Mapper m(rule, stored);
  const int64_t n = dims_numel(m.lv);
  TANDEM_CHECK(0 <= begin && begin <= end && end <= n, "local range [{}, {}) outside the part's {} elements",
               begin, end, n);
  Dims prefix;
  m.decompose(prefix, 0, begin, end, 0);
  return std::move(m.out);
}

Piece whole_tensor(const Dims& shape) {
  Piece p;
  p.numel = dims_numel(shape);
  p.slab.start.assign(shape.size(), 0);
  p.slab.stride.assign(shape.size(), 1);
  p.slab.count.assign(shape.size(), 1);
  p.slab.block = shape;
  return p;
}

std::vector<int64_t> slab_indices(const Hyperslab& s, const Dims& shape) {
  const size_t nd = shape.size();
  std::vector<std::vector<int64_t>> coords(nd);
  for (size_t d = 0; d < nd; ++d)
    for (int64_t c = 0; c < s.count[d]; ++c)
      for (int64_t b = 0; b < s.block[d]; ++b) coords[d].push_back(s.start[d] + c * s.stride[d] + b);
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(s.numel()));
  std::vector<size_t> it(nd, 0);
  if (s.numel() == 0) return out;
  while (true) {
    int64_t idx = 0;
    for (size_t d = 0; d < nd; ++d) idx = idx * shape[d] + coords[d][it[d]];
    out.push_back(idx);
    size_t d = nd;
    while (d-- > 0) {
      if (++it[d] < coords[d].size()) break;
      it[d] = 0;
      if (d == 0) return out;
    }
  }
}

}  // namespace tandem::ckpt
