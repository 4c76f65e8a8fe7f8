// CPU reference for kernels/kv_attention.h: paged KV-cache write and attention of the new
// tokens over the cache (decode and prefill chunks), fp32.
//
// Contract: see kernels/kv_attention.h. The metadata (slots, block_table, q_start, ctx_len)
// is host memory here, so it is validated once, serially, before any work starts (an error
// names the sequence and the values): 0 = q_start[0] <= ... <= q_start[S] = N,
// n_s <= ctx_len[s] <= max_blocks * block_tokens, every block a sequence uses in
// [0, num_blocks), every slot < num_blocks * block_tokens. D <= kMaxD (stack buffers).
//
// Implementation: one work item = (sequence, head, chunk of kQChunk new tokens), OpenMP
// dynamic schedule over the items (decode: S * H items). Inside an item, micro-tiles of kQT
// queries (then single queries for the rest) walk the cache positions 0 .. last query's
// position in groups of kLanes keys:
//   scores:  for each key row of the group (its head slice loaded once for all queries of the
//            tile) a vector of partial products q . k, then one "transpose-sum" turns kLanes
//            such vectors into one vector of kLanes scores (log2(kLanes) shuffle+add levels,
//            instead of a horizontal sum per key);
//   softmax: online, per group: new max, rescale of the accumulators only when it grows,
//            one vexp for the group's kLanes probabilities; keys past a query's position
//            (causal) get -inf, so probability 0;
//   values:  o += p_j * v_j for the group's rows, the v row loaded once for the tile.
// The head dim is a template (DV vectors, tail lanes masked), so the accumulators stay in
// registers. Sums run in a fixed order: results do not depend on the thread count.
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <utility>

#include "kernels/cpu/simd.h"
#include "kernels/kv_attention.h"
#include "runtime/core/error.h"

namespace tandem::kernels::cpu {

namespace {

using simd::kLanes;
using simd::VF;
using simd::VI;

// Head dims up to this (stack buffers; 32 vectors of accumulators at most).
constexpr int64_t kMaxD = 32 * kLanes < 256 ? 32 * kLanes : 256;
constexpr int kQT = 4;            // queries per micro-tile (prefill)
constexpr int64_t kQChunk = 32;   // queries per work item
constexpr int kLog2Lanes = std::countr_zero(static_cast<unsigned>(kLanes));

// ---------------------------------------------------------------- transpose-sum
// pick<B, Hi>(x, y): for each group of 2B lanes g, lanes [0, B) take x's group g half Hi and
// lanes [B, 2B) y's group g half Hi. x + y of the two halves reduces every group by 2.
constexpr int pick_index(int B, bool hi, int i) {
  const int g = i / (2 * B), r = i % (2 * B), off = hi ? B : 0;
  return r < B ? g * 2 * B + r + off : kLanes + g * 2 * B + (r - B) + off;
}
template <int B, bool Hi, size_t... I>
inline VF pick(VF x, VF y, std::index_sequence<I...>) {
  return __builtin_shufflevector(x, y, pick_index(B, Hi, static_cast<int>(I))...);
}
template <int B>
inline VF combine(VF x, VF y) {
  using Seq = std::make_index_sequence<kLanes>;
  return pick<B, false>(x, y, Seq{}) + pick<B, true>(x, y, Seq{});
}
template <int B>
inline void reduce_level(VF* v) {
  constexpr int n = 2 * B;  // vectors entering this level (kLanes at the first)
#pragma GCC unroll 16
  for (int i = 0; i < n / 2; ++i) v[i] = combine<B>(v[2 * i], v[2 * i + 1]);
  if constexpr (B > 1) reduce_level<B / 2>(v);
}
// Lane L of the result of the reduction holds the full sum of input slot bitrev(L).
constexpr int bitrev(int x) {
  int r = 0;
  for (int b = 0; b < kLog2Lanes; ++b) r |= ((x >> b) & 1) << (kLog2Lanes - 1 - b);
  return r;
}
struct BitRev {
  int slot[kLanes];
  constexpr BitRev() : slot() {
    for (int i = 0; i < kLanes; ++i) slot[i] = bitrev(i);
  }
};
constexpr BitRev kSlot;

// acc[kSlot.slot[t]] holds the partial products of key t: returns the vector of the kLanes
// key sums (lane t = key t). Destroys acc.
inline VF transpose_sum(VF* acc) {
  reduce_level<kLanes / 2>(acc);
  return acc[0];
}

inline VI lane_iota() {
  VI v;
  for (int i = 0; i < kLanes; ++i) v[i] = i;
  return v;
}

// ---------------------------------------------------------------- one (sequence, head)

struct HeadView {
  const float* k;         // k_cache + h*D
  const float* v;         // v_cache + h*D
  const int32_t* blocks;  // block_table row of the sequence
  int64_t bt, HD, D;
  int64_t row(int64_t pos) const { return (blocks[pos / bt] * bt + pos % bt) * HD; }
};

// x[0..DV) <- row[0..D), lanes past D zero.
template <int DV>
inline void load_head(VF* x, const float* row, int64_t D) {
#pragma GCC unroll 16
  for (int d = 0; d < DV; ++d) x[d] = simd::load_n(row + d * kLanes, D - d * kLanes, 0.0f);
}

inline void prefetch_head(const float* row, int64_t D) {
  for (int64_t d = 0; d < D; d += 64 / sizeof(float)) __builtin_prefetch(row + d, 0, 3);
}

// Queries of NQ consecutive new tokens at positions p0 .. p0+NQ-1 (q rows qrow[i], output
// rows orow[i]) against cache positions 0 .. p0+NQ-1.
template <int DV, int NQ>
void attend_tile(const HeadView& hv, int64_t p0, const float* const* qrow, float* const* orow,
                 float scale) {
  const int64_t D = hv.D;
  VF q[NQ][DV], o[NQ][DV], lsum[NQ];
  float m[NQ];
  for (int i = 0; i < NQ; ++i) {
    load_head<DV>(q[i], qrow[i], D);
#pragma GCC unroll 16
    for (int d = 0; d < DV; ++d) {
      q[i][d] *= scale;
      o[i][d] = VF{};
    }
    lsum[i] = VF{};
    m[i] = -__builtin_inff();
  }
  const VI iota = lane_iota();
  const int64_t kend = p0 + NQ;  // keys [0, kend)
  for (int64_t j0 = 0; j0 < kend; j0 += kLanes) {
    const int cnt = static_cast<int>(std::min<int64_t>(kLanes, kend - j0));
    int64_t off[kLanes];
    for (int t = 0; t < cnt; ++t) off[t] = hv.row(j0 + t);
    // The rows are scattered (one head's D floats of each H*D row, blocks anywhere): prefetch
    // this group's value rows and the next group's key rows, the hardware will not.
    for (int t = 0; t < cnt; ++t) prefetch_head(hv.v + off[t], D);
    for (int64_t jn = j0 + kLanes; jn < std::min(kend, j0 + 2 * kLanes); ++jn)
      prefetch_head(hv.k + hv.row(jn), D);
    VF acc[NQ][kLanes];
    for (int t = 0; t < cnt; ++t) {
      VF kv[DV];
      load_head<DV>(kv, hv.k + off[t], D);
#pragma GCC unroll 4
      for (int i = 0; i < NQ; ++i) {
        VF a = q[i][0] * kv[0];
#pragma GCC unroll 16
        for (int d = 1; d < DV; ++d) a += q[i][d] * kv[d];
        acc[i][kSlot.slot[t]] = a;
      }
    }
    for (int t = cnt; t < kLanes; ++t)
      for (int i = 0; i < NQ; ++i) acc[i][kSlot.slot[t]] = VF{};
    float p[NQ][kLanes];
    for (int i = 0; i < NQ; ++i) {
      VF s = transpose_sum(acc[i]);
      const VI pos = iota + static_cast<int32_t>(j0);  // key positions of the lanes
      s = pos > static_cast<int32_t>(p0 + i) ? simd::splat(-__builtin_inff()) : s;
      const float mt = simd::hmax(s);
      if (mt > m[i]) {  // the running max grows: rescale what was accumulated
        const float corr = std::exp(m[i] - mt);
        const VF c = simd::splat(corr);
#pragma GCC unroll 16
        for (int d = 0; d < DV; ++d) o[i][d] *= c;
        lsum[i] *= c;
        m[i] = mt;
      }
      const VF e = simd::vexp(s - m[i]);
      lsum[i] += e;
      simd::store(p[i], e);
    }
    for (int t = 0; t < cnt; ++t) {
      VF vv[DV];
      load_head<DV>(vv, hv.v + off[t], D);
#pragma GCC unroll 4
      for (int i = 0; i < NQ; ++i) {
        const VF pv = simd::splat(p[i][t]);
#pragma GCC unroll 16
        for (int d = 0; d < DV; ++d) o[i][d] += pv * vv[d];
      }
    }
  }
  for (int i = 0; i < NQ; ++i) {
    const VF inv = simd::splat(1.0f / simd::hsum(lsum[i]));
#pragma GCC unroll 16
    for (int d = 0; d < DV; ++d)
      simd::store_n(orow[i] + d * kLanes, inv * o[i][d], D - d * kLanes);
  }
}

// New tokens [j_begin, j_end) of one sequence (0-based among its n new tokens) for one head.
template <int DV>
void attend_chunk(const HeadView& hv, const float* qkv, float* out, int64_t row0, int64_t first_pos,
                  int64_t j_begin, int64_t j_end, int64_t C3, int64_t h, float scale) {
  const float* qr[kQT];
  float* orr[kQT];
  int64_t j = j_begin;
  auto rows = [&](int64_t jj, int n) {
    for (int i = 0; i < n; ++i) {
      qr[i] = qkv + (row0 + jj + i) * C3 + h * hv.D;
      orr[i] = out + (row0 + jj + i) * hv.HD + h * hv.D;
    }
  };
  for (; j + kQT <= j_end; j += kQT) {
    rows(j, kQT);
    attend_tile<DV, kQT>(hv, first_pos + j, qr, orr, scale);
  }
  for (; j < j_end; ++j) {
    rows(j, 1);
    attend_tile<DV, 1>(hv, first_pos + j, qr, orr, scale);
  }
}

using ChunkFn = void (*)(const HeadView&, const float*, float*, int64_t, int64_t, int64_t,
                         int64_t, int64_t, int64_t, float);

// The instantiation for D: DV = the smallest power of two with DV * kLanes >= D.
ChunkFn chunk_fn(int64_t D) {
  const int64_t nv = (D + kLanes - 1) / kLanes;
  if (nv <= 1) return attend_chunk<1>;
  if (nv <= 2) return attend_chunk<2>;
  if (nv <= 4) return attend_chunk<4>;
  if (nv <= 8) return attend_chunk<8>;
  if (nv <= 16) return attend_chunk<16>;
  return attend_chunk<32>;
}

void check_shape_args(const char* what, const KvAttentionShape& sh) {
  TANDEM_CHECK(sh.N >= 0 && sh.S >= 0 && sh.H > 0 && sh.D > 0 && sh.D <= kMaxD &&
                   sh.block_tokens > 0 && sh.max_blocks >= 0 && sh.num_blocks >= 0,
               "{}: N {} S {} H {} D {} (<= {}) block_tokens {} max_blocks {} num_blocks {}",
               what, sh.N, sh.S, sh.H, sh.D, kMaxD, sh.block_tokens, sh.max_blocks,
               sh.num_blocks);
}

// Serial validation of the step's metadata (see the contract at the top).
void check_metadata(const int32_t* block_table, const int32_t* q_start, const int32_t* ctx_len,
                    const KvAttentionShape& sh) {
  TANDEM_CHECK(sh.S == 0 || q_start[0] == 0, "kv_attention: q_start[0] = {}, must be 0",
               q_start[0]);
  TANDEM_CHECK(q_start[sh.S] == sh.N, "kv_attention: q_start[S={}] = {}, must be N = {}", sh.S,
               q_start[sh.S], sh.N);
  const int64_t cap = sh.max_blocks * sh.block_tokens;
  for (int64_t s = 0; s < sh.S; ++s) {
    const int64_t n = int64_t{q_start[s + 1]} - q_start[s], ctx = ctx_len[s];
    TANDEM_CHECK(n >= 0 && n <= ctx && ctx <= cap,
                 "kv_attention sequence {}: {} new tokens (q_start {}..{}), ctx_len {}, "
                 "capacity {} (max_blocks {} x block_tokens {})",
                 s, n, q_start[s], q_start[s + 1], ctx, cap, sh.max_blocks, sh.block_tokens);
    if (n == 0) continue;
    const int32_t* row = block_table + s * sh.max_blocks;
    for (int64_t b = 0; b < (ctx + sh.block_tokens - 1) / sh.block_tokens; ++b)
      TANDEM_CHECK(row[b] >= 0 && row[b] < sh.num_blocks,
                   "kv_attention sequence {}: block_table[{}][{}] = {} outside [0, {})", s, s, b,
                   row[b], sh.num_blocks);
  }
}

}  // namespace

void kv_cache_write(float* k_cache, float* v_cache, const float* qkv, const int32_t* slots,
                    const KvAttentionShape& sh) {
  check_shape_args("kv_cache_write", sh);
  const int64_t HD = sh.H * sh.D, C3 = 3 * HD, nslots = sh.num_blocks * sh.block_tokens;
  for (int64_t i = 0; i < sh.N; ++i)
    TANDEM_CHECK(slots[i] < nslots, "kv_cache_write: slots[{}] = {} >= num_blocks {} x "
                 "block_tokens {}", i, slots[i], sh.num_blocks, sh.block_tokens);
  const size_t bytes = static_cast<size_t>(HD) * sizeof(float);
#pragma omp parallel for schedule(static) if (sh.N * HD >= (1 << 16))
  for (int64_t i = 0; i < sh.N; ++i) {
    if (slots[i] < 0) continue;
    const int64_t dst = int64_t{slots[i]} * HD;
    std::memcpy(k_cache + dst, qkv + i * C3 + HD, bytes);
    std::memcpy(v_cache + dst, qkv + i * C3 + 2 * HD, bytes);
  }
}

void kv_attention_forward(float* out, const float* qkv, const float* k_cache,
                          const float* v_cache, const int32_t* block_table,
                          const int32_t* q_start, const int32_t* ctx_len,
                          const KvAttentionShape& sh) {
  check_shape_args("kv_attention_forward", sh);
  check_metadata(block_table, q_start, ctx_len, sh);
  if (sh.N == 0) return;
  const int64_t H = sh.H, D = sh.D, HD = H * D, C3 = 3 * HD;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  int64_t chunks = 0;  // work items per (sequence, head): the most any sequence needs
  double work = 0;     // query-key pairs, to keep small steps on one thread
  for (int64_t s = 0; s < sh.S; ++s) {
    const int64_t n = q_start[s + 1] - q_start[s];
    chunks = std::max(chunks, (n + kQChunk - 1) / kQChunk);
    work += static_cast<double>(n) * ctx_len[s];
  }
  const ChunkFn fn = chunk_fn(D);
  const int64_t items = sh.S * H * chunks;
#pragma omp parallel for schedule(dynamic, 1) if (work * HD >= (1 << 16))
  for (int64_t it = 0; it < items; ++it) {
    const int64_t c = it % chunks, sh_ = it / chunks, s = sh_ / H, h = sh_ % H;
    const int64_t row0 = q_start[s], n = q_start[s + 1] - row0;
    const int64_t j_begin = c * kQChunk, j_end = std::min(n, j_begin + kQChunk);
    if (j_begin >= j_end) continue;
    const HeadView hv{k_cache + h * D, v_cache + h * D, block_table + s * sh.max_blocks,
                      sh.block_tokens, HD, D};
    fn(hv, qkv, out, row0, ctx_len[s] - n, j_begin, j_end, C3, h, scale);
  }
}

}  // namespace tandem::kernels::cpu
