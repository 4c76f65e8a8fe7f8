// Micro-benchmark of the CPU reference kernels at GPT-2-small shapes (N tokens, C = 768,
// 12 heads of 64, vocab 50257 padded to 50304): median wall time per call and GFLOP/s
// (or GB/s for memory-bound kernels), median and best of the repetitions, and each kernel's
// bound on this machine at the vector width of the build (bench/roofline.h): the time its
// FLOPs, its bytes (at the bandwidth of its working set) or its vector instructions need at
// the measured peak, whichever is longest, and the best time as a percentage of that bound.
// A kernel far below its bound is a regression (or a kernel that does not vectorize).
//
// Usage: kernel_bench [threads=2] [tokens=256] [reps=20] [all|decode]
//   `decode` runs only the decode section (last in `all`): a memory read-bandwidth probe (sum
//   of a 512 MiB fp32 array, all threads, best of 5), the skinny linear layer
//   (cpu::linear_forward_skinny) at M = 1, 4, 16 rows for every GPT-2-small shape including
//   the 768 x 50304 head, next to OpenBLAS sgemm on the same problem (time and effective
//   weight-read GB/s = out*in*4 bytes / time, and that as % of the read probe), and paged
//   KV-cache attention decode (1 new token per sequence, H 12, D 64, block 16) for 1/4/16
//   sequences at contexts 64 and 512 (GB/s: the K and V rows read once).
// Run it with OPENBLAS_THREAD_TIMEOUT=4 (or similar): the pthread OpenBLAS otherwise keeps its
// worker threads spinning for ~0.1 s after every GEMM, and the OpenMP kernels that follow then
// wait whole scheduler slices for a core (times quantized at ~4 ms).
// Flop counts: linear 2*N*in*out (backward: dW and dx, twice that); causal attention
// forward 2*T^2*D per head (QK^T and PV over the lower triangle), backward 4*T^2*D (+ the
// recomputed QK^T when probs are not saved). Bytes for memory-bound kernels count one read
// of each input and one write of each output. Multiplies and FMAs per element (for the exp-heavy
// kernels) are counted from the source: kExpOps for one vexp plus the arithmetic around it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/gelu.h"
#include "kernels/kv_attention.h"
#include "kernels/layernorm.h"
#include "kernels/matmul.h"
#include "bench/roofline.h"
#include "runtime/core/backend.h"

namespace {

using tandem::Backend;
using tandem::Tensor;
namespace k = tandem::kernels;

Tensor rand(Backend& be, tandem::Shape s, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = be.empty(std::move(s));
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> d(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = d(rng);
  return t;
}

// Median and best of `reps` timed calls. On a shared machine the best is the better estimate
// of the kernel's own speed; both are printed.
struct Timing {
  double median, best;
};
Timing time_ms(int reps, const std::function<void()>& fn) {
  fn();  // warm-up (page faults, thread pools)
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front()};
}

// What a kernel call must do: useful FLOPs, bytes moved (one read of each input, one write of
// each output), the working set those bytes stream from, and the multiplies and FMAs that are
// neither (the exp polynomial, scaling), each counted once per lane.
struct Work {
  double flops = 0, bytes = 0, footprint = 0, lane_ops = 0;
};

// Multiplies and FMAs of one simd::vexp: range reduction 3, polynomial 5, result 3. (Its
// clamps, selects and integer steps run on other pipes and are not counted.)
constexpr double kExpOps = 11;

struct Machine {
  int threads;
  double gflops;  // FMA peak at this vector width
  // FLOPs and other FMA-pipe lane ops share the FMA slots, so their times add.
  double bound_ms(const Work& w) const {
    const double compute = w.flops / (gflops * 1e6) + w.lane_ops / (gflops / 2 * 1e6);
    const double memory =
        w.bytes > 0 ? w.bytes / (tandem::bench::stream_gbps(threads, w.footprint) * 1e6) : 0;
    return std::max(compute, memory);
  }
};

void report(const Machine& mc, const char* name, Timing t, const Work& w) {
  const bool by_flops = w.flops > 0;
  const double amount = by_flops ? w.flops : w.bytes;
  const double bound = mc.bound_ms(w);
  std::printf("%-34s %9.3f ms (best %9.3f) %8.1f %s (best %8.1f)  bound %8.3f ms  %5.1f%%\n", name,
              t.median, t.best, amount / (t.median * 1e6), by_flops ? "GFLOP/s" : "GB/s   ",
              amount / (t.best * 1e6), bound, 100.0 * bound / t.best);
}

void decode_section(Backend& be, int threads, int reps) {
  const int64_t C = 768, H = 12, D = 64, Vp = 50304;
  const double bw = tandem::bench::read_gbps(threads);
  std::printf("\ndecode: memory read bandwidth (sum of 512 MiB, %d threads, best of 5): %.1f GB/s\n",
              threads, bw);
  std::printf("%-34s %22s %9s %6s | %22s %9s | %s\n", "skinny linear (M rows)", "ms (best)",
              "W GB/s", "%read", "OpenBLAS ms (best)", "W GB/s", "speedup");
  for (int64_t M : {1, 4, 16}) {
    for (auto [in, out, name] : {std::tuple<int64_t, int64_t, const char*>{C, 3 * C, "qkv"},
                                 {C, C, "proj"},
                                 {C, 4 * C, "fc"},
                                 {4 * C, C, "fc_proj"},
                                 {C, Vp, "head"}}) {
      Tensor x = rand(be, {M, in}), W = rand(be, {out, in}), y = be.empty({M, out});
      const Timing ts = time_ms(reps, [&] {
        k::cpu::linear_forward_skinny(y.f32(), x.f32(), W.f32(), nullptr, M, in, out);
      });
      const Timing tb = time_ms(reps, [&] {
        k::cpu::sgemm(false, true, M, out, in, 1.0f, x.f32(), in, W.f32(), in, 0.0f, y.f32(),
                      out);
      });
      const double gb = 4.0 * in * out / 1e6;  // GB/s = bytes / (ms * 1e6)
      char label[64];
      std::snprintf(label, sizeof label, "M=%-2lld %s [%lldx%lld]", static_cast<long long>(M),
                    name, static_cast<long long>(in), static_cast<long long>(out));
      std::printf("%-34s %9.3f (%9.3f) %9.1f %5.0f%% | %9.3f (%9.3f) %9.1f | %5.2fx\n", label,
                  ts.median, ts.best, gb / ts.best, 100.0 * gb / ts.best / bw, tb.median, tb.best,
                  gb / tb.best, tb.best / ts.best);
    }
  }
  // Paged KV-cache decode: S sequences, each with ctx cached tokens (its new one included).
  const int64_t bt = 16;
  for (int64_t ctx : {64, 512}) {
    for (int64_t S : {1, 4, 16}) {
      const int64_t per_seq = (ctx + bt - 1) / bt, nb = S * per_seq;
      Tensor kc = rand(be, {nb, bt, H * D}), vc = rand(be, {nb, bt, H * D});
      Tensor qkv = rand(be, {S, 3 * H * D}), out = be.empty({S, H * D});
      Tensor table = be.empty({S, per_seq}, tandem::DType::I32);
      Tensor q_start = be.empty({S + 1}, tandem::DType::I32);
      Tensor ctx_len = be.empty({S}, tandem::DType::I32);
      std::vector<int32_t> order(nb);  // blocks of all sequences interleaved, as a pool hands
      std::iota(order.begin(), order.end(), 0);  // them out under concurrent decoding
      for (int64_t s = 0; s < S; ++s) {
        for (int64_t b = 0; b < per_seq; ++b) table.i32()[s * per_seq + b] = order[b * S + s];
        ctx_len.i32()[s] = static_cast<int32_t>(ctx);
      }
      for (int64_t s = 0; s <= S; ++s) q_start.i32()[s] = static_cast<int32_t>(s);
      const Timing t = time_ms(reps, [&] {
        k::kv_attention_forward(be, out, qkv, kc, vc, table, q_start, ctx_len, H);
      });
      const double bytes = 2.0 * S * ctx * H * D * 4;
      std::printf("kv_attention decode S=%-2lld ctx=%-4lld  %9.3f ms (best %9.3f) %8.1f GB/s (K,V "
                  "read once; best)\n",
                  static_cast<long long>(S), static_cast<long long>(ctx), t.median, t.best,
                  bytes / (t.best * 1e6));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int64_t N = argc > 2 ? std::atoll(argv[2]) : 256;
  const int reps = argc > 3 ? std::atoi(argv[3]) : 20;
  const std::string sections = argc > 4 ? argv[4] : "all";
  const int64_t C = 768, H = 12, D = 64, V = 50257, Vp = 50304;
  auto be = tandem::make_cpu_backend(threads);
  if (!std::getenv("OPENBLAS_THREAD_TIMEOUT"))
    std::printf(
        "note: OPENBLAS_THREAD_TIMEOUT unset; OpenBLAS spinning may slow the OpenMP kernels\n");
  std::printf("CPU kernels, %d threads, N = %lld tokens, C = %lld, %d-lane fp32 vectors\n",
              threads, static_cast<long long>(N), static_cast<long long>(C),
              tandem::bench::kLanes);
  if (sections == "decode") {
    decode_section(*be, threads, reps);
    return 0;
  }
  const Machine mc{threads, tandem::bench::peak_gflops(threads)};
  std::printf("machine: FMA peak %.1f GFLOP/s; copy %.1f GB/s at 1 MiB, %.1f GB/s at 256 MiB\n",
              mc.gflops, tandem::bench::stream_gbps(threads, 1 << 20),
              tandem::bench::stream_gbps(threads, 256.0 * (1 << 20)));

  // Linear layers of a block: qkv (C -> 3C), fc (C -> 4C), fc-proj (4C -> C).
  for (auto [in, out, name] : {std::tuple<int64_t, int64_t, const char*>{C, 3 * C, "qkv"},
                               {C, 4 * C, "fc"},
                               {4 * C, C, "fc_proj"}}) {
    Tensor x = rand(*be, {N, in}), W = rand(*be, {out, in}), b = rand(*be, {out});
    Tensor y = be->empty({N, out}), dx = be->empty({N, in}), dW = be->zeros({out, in});
    Tensor db = be->zeros({out});
    char label[64];
    std::snprintf(label, sizeof label, "linear fwd %s [%lldx%lld]", name,
                  static_cast<long long>(in), static_cast<long long>(out));
    const double fp = 4.0 * (N * in + in * out + N * out);
    report(mc, label, time_ms(reps, [&] { k::linear_forward(*be, y, x, W, &b); }),
           {2.0 * N * in * out, 0, fp, 0});
    std::snprintf(label, sizeof label, "linear bwd %s", name);
    report(mc, label, time_ms(reps, [&] { k::linear_backward(*be, &dx, dW, &db, y, x, W); }),
           {4.0 * N * in * out, 0, 2 * fp, 0});
  }

  // Attention: B = 1, T = N; and B = 1, T = 1024.
  for (int64_t T : {N, int64_t{1024}}) {
    Tensor qkv = rand(*be, {1, T, 3 * H * D}), dout = rand(*be, {1, T, H * D});
    Tensor out = be->empty({1, T, H * D}), lse = be->empty({1, H, T});
    Tensor probs = be->empty({1, H, T, T}), dqkv = be->empty({1, T, 3 * H * D});
    const double f = 2.0 * H * T * T * D;
    // softmax over the causal half of the scores: scale, exp, normalise
    const double soft = H * T * (T + 1) / 2.0 * (kExpOps + 2);
    char label[64];
    std::snprintf(label, sizeof label, "attention fwd T=%lld", static_cast<long long>(T));
    report(mc, label, time_ms(reps, [&] { k::attention_forward(*be, out, lse, nullptr, qkv, H); }),
           {f, 0, 0, soft});
    std::snprintf(label, sizeof label, "attention fwd+probs T=%lld", static_cast<long long>(T));
    report(mc, label, time_ms(reps, [&] { k::attention_forward(*be, out, lse, &probs, qkv, H); }),
           {f, 0, 0, soft});
    std::snprintf(label, sizeof label, "attention bwd (probs) T=%lld", static_cast<long long>(T));
    report(mc, label,
           time_ms(reps, [&] { k::attention_backward(*be, dqkv, dout, qkv, out, lse, &probs, H); }),
           {2 * f, 0, 0, H * T * (T + 1) / 2.0 * 2});
    std::snprintf(label, sizeof label, "attention bwd (recompute) T=%lld",
                  static_cast<long long>(T));
    report(mc, label,
           time_ms(reps, [&] { k::attention_backward(*be, dqkv, dout, qkv, out, lse, nullptr, H); }),
           {2.5 * f, 0, 0, H * T * (T + 1) / 2.0 * (kExpOps + 3)});
  }

  {  // LayerNorm and GELU
    Tensor x = rand(*be, {N, C}), w = rand(*be, {C}), b = rand(*be, {C});
    Tensor y = be->empty({N, C}), mean = be->empty({N}), rstd = be->empty({N});
    Tensor dx = be->zeros({N, C}), dw = be->zeros({C}), dbias = be->zeros({C});
    // multiplies and FMAs per element: forward 3, backward 6
    report(mc, "layernorm fwd",
           time_ms(reps, [&] { k::layernorm_forward(*be, y, mean, rstd, x, w, b); }),
           {0, 8.0 * N * C, 8.0 * N * C, 3.0 * N * C});
    report(mc, "layernorm bwd",
           time_ms(reps, [&] { k::layernorm_backward(*be, dx, dw, dbias, y, x, w, mean, rstd); }),
           {0, 16.0 * N * C, 16.0 * N * C, 6.0 * N * C});
    Tensor h = rand(*be, {N, 4 * C}), g = be->empty({N, 4 * C});
    // multiplies and FMAs per element: forward exp + 5, backward exp + 15 (divides not counted)
    const double e = 4.0 * N * C;
    report(mc, "gelu fwd [N x 4C]", time_ms(reps, [&] { k::gelu_forward(*be, g, h); }),
           {0, 8.0 * e, 8.0 * e, e * (kExpOps + 5)});
    report(mc, "gelu bwd [N x 4C]", time_ms(reps, [&] { k::gelu_backward(*be, g, h, g); }),
           {0, 12.0 * e, 12.0 * e, e * (kExpOps + 15)});
  }

  {  // Token embedding: 8N rows gathered from (and gradients scattered into) the padded table
     // (8N, not N: at N rows the call takes ~10 us and its time is mostly noise)
    const int64_t Ne = 8 * N;
    Tensor table = rand(*be, {Vp, C}), dtable = be->zeros({Vp, C});
    Tensor ids = be->empty({Ne}, tandem::DType::I32);
    for (int64_t n = 0; n < Ne; ++n) ids.i32()[n] = static_cast<int32_t>((n * 7919) % V);
    Tensor x = be->empty({Ne, C}), dx = rand(*be, {Ne, C});
    report(mc, "embedding fwd [8N x 768]",
           time_ms(reps, [&] { k::embedding_forward(*be, x, ids, table, 0, false); }),
           {0, 8.0 * Ne * C, 8.0 * Ne * C, 0});
    report(mc, "embedding bwd [8N x 768]",
           time_ms(reps, [&] { k::embedding_backward(*be, dtable, dx, ids, 0); }),
           {0, 12.0 * Ne * C, 12.0 * Ne * C, 0});
  }

  {  // Cross-entropy over the padded GPT-2 vocabulary
    Tensor logits = rand(*be, {N, Vp}, -5.0f, 5.0f);
    Tensor targets = be->empty({N}, tandem::DType::I32);
    for (int64_t n = 0; n < N; ++n) targets.i32()[n] = static_cast<int32_t>((n * 7919) % V);
    Tensor losses = be->empty({N}), rowmax = be->empty({N}), sumexp = be->empty({N});
    Tensor dlogits = be->empty({N, Vp});
    // forward: an exp per element (max and sum are adds); backward: exp + 1
    const double e = static_cast<double>(N) * Vp;
    report(mc, "xent fwd [N x 50304]",
           time_ms(reps,
                   [&] { k::softmax_xent_forward(*be, losses, rowmax, sumexp, logits, targets, V); }),
           {0, 8.0 * e, 4.0 * e, e * kExpOps});
    report(mc, "xent bwd [N x 50304]",
           time_ms(reps,
                   [&] {
                     k::xent_backward(*be, dlogits, logits, rowmax, sumexp, targets, 0, V, 1.0f / N);
                   }),
           {0, 8.0 * e, 8.0 * e, e * (kExpOps + 1)});
  }

  {  // AdamW over 16M parameters
    const int64_t P = 16 << 20;
    Tensor p = rand(*be, {P}), g = rand(*be, {P}), m = be->zeros({P}), v = be->zeros({P});
    k::AdamWHyper hp;
    hp.weight_decay = 0.1f;
    // 4 reads, 3 writes per parameter; 10 multiplies and FMAs (sqrt and divide not counted)
    report(mc, "adamw 16M params",
           time_ms(std::max(3, reps / 4), [&] { k::adamw_step(*be, p, g, m, v, hp); }),
           {0, 28.0 * P, 28.0 * P, 10.0 * P});
  }
  decode_section(*be, threads, reps);
  return 0;
}
