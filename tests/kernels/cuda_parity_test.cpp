// CUDA parity: every CUDA kernel entry point against the CPU reference, on the same inputs,
// through the tensor-level API (kernels/<family>.h), plus the CUDA backend's copy, zero and
// allocator statistics.
//
// Contract: each test builds a CPU backend and a CUDA backend, feeds identical random inputs
// to both, copies the CUDA results back and compares element by element:
//   |cuda - cpu| <= atol + rtol * |cpu|   (or bit-equal, which also covers +-inf)
// Tolerances (fp32 on both sides; only summation order and exp/tanh ulps differ):
//   copies, adds, scales, bias add, embedding forward, row max, target logit:  exact
//   gelu, adamw, layernorm, cross-entropy, attention:  atol 1e-7..5e-5, rtol 1e-5..1e-4
//                                                      (stated at each check)
//   reductions of length K (matmul, linear, bias/LN parameter grads): atol 2e-6 K, rtol 1e-5
//   sumexp over a 50k-column vocabulary: rtol 1e-4;  sum_squares (double both sides): rel 1e-9
// Where no GPU is visible every test calls GTEST_SKIP() << "no CUDA device" (reported as
// skipped, never a silent pass). The file compiles with CUDA OFF too (then every test skips).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/gelu.h"
#include "kernels/layernorm.h"
#include "kernels/matmul.h"
#include "runtime/core/backend.h"
#include "tests/kernels/cuda_parity_fixture.h"
#ifdef TANDEM_HAVE_CUDA
#include "runtime/core/cuda/cuda_context.h"
#endif

namespace tandem::kernels {
namespace {

class CudaParity : public CudaParityFixture {
 protected:

  Backend& cpu() { return *cpu_; }
  Backend& gpu() { return *gpu_; }

  Tensor rand(Shape s, float lo = -1.f, float hi = 1.f) {
    Tensor t = cpu_->empty(std::move(s));
    std::uniform_real_distribution<float> d(lo, hi);
    for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = d(rng_);
    return t;
  }
  Tensor ids(int64_t n, int lo, int hi) {  // int32 in [lo, hi]
    Tensor t = cpu_->empty({n}, DType::I32);
    std::uniform_int_distribution<int> d(lo, hi);
    for (int64_t i = 0; i < n; ++i) t.i32()[i] = d(rng_);
    return t;
  }
  Tensor clone_cpu(const Tensor& h) {
    Tensor c = cpu_->empty(h.shape(), h.dtype());
    cpu_->copy(c, h);
    return c;
  }

  void expect_equal(const Tensor& ref, const Tensor& dev, const std::string& what) {
    expect_close(ref, dev, 0.0, 0.0, what);
  }

  std::mt19937 rng_{20240611};
};

// ------------------------------------------------------------------ backend

TEST_F(CudaParity, BackendCopyZeroAndContext) {
  EXPECT_NE(gpu().name().find("cuda"), std::string::npos) << gpu().name();
  ASSERT_NE(gpu().cuda(), nullptr);
#ifdef TANDEM_HAVE_CUDA
  const CudaContext& ctx = *gpu().cuda();
  EXPECT_NE(ctx.stream, nullptr);
  EXPECT_NE(ctx.cublas, nullptr);
  EXPECT_NE(ctx.cublaslt, nullptr);
  EXPECT_NE(ctx.workspace, nullptr);
  EXPECT_GT(ctx.workspace_bytes, 0u);
  EXPECT_GT(ctx.sm_count, 0);
#endif
  // H2D -> D2D -> D2H round trip is exact; views (rows) copy their own elements only.
  Tensor h = rand({37, 11});
  Tensor d = to_gpu(h);
  Tensor d2 = gpu().empty({37, 11});
  gpu().copy(d2, d);
  expect_equal(h, d2, "H2D/D2D/D2H round trip");
  Tensor part = gpu().empty({5, 11});
  gpu().copy(part, d.rows(10, 15));
  expect_equal(h.rows(10, 15), part, "copy of a row view");
  // int32 survives the trip bit for bit.
  Tensor hi = ids(100, -5, 1 << 30);
  Tensor back = to_cpu(to_gpu(hi));
  EXPECT_EQ(std::memcmp(hi.raw(), back.raw(), hi.nbytes()), 0);
  // zero() on a device tensor and on a row view of one.
  Tensor z = to_gpu(h);
  Tensor zv = z.rows(3, 7);
  gpu().zero(zv);
  Tensor ref = clone_cpu(h);
  std::memset(ref.rows(3, 7).raw(), 0, ref.rows(3, 7).nbytes());
  expect_equal(ref, z, "zero of rows 3..7");
  gpu().zero(z);
  Tensor zeros = cpu().zeros({37, 11});
  expect_equal(zeros, z, "zero of the whole tensor");
  // Pinned host memory from host_allocator() works as a copy source and destination.
  Tensor pinned = gpu().host_empty({37, 11});
  EXPECT_TRUE(pinned.is_cpu());
  cpu().copy(pinned, h);
  Tensor from_pinned = to_gpu(pinned);
  Tensor pinned_back = gpu().host_empty({37, 11});
  gpu().copy(pinned_back, from_pinned);
  EXPECT_EQ(std::memcmp(pinned_back.raw(), h.raw(), h.nbytes()), 0);
  gpu().synchronize();
}

TEST_F(CudaParity, AllocatorStats) {
  Allocator& a = gpu().allocator();
  a.release_cache();
  const MemoryStats s0 = a.stats();
  const size_t kBytes = size_t{1} << 20;
  {
    Tensor t = gpu().empty({1024, 256});  // 1 MiB: a multiple of the cache's rounding
    const MemoryStats s1 = a.stats();
    EXPECT_EQ(s1.current, s0.current + kBytes);
    EXPECT_GE(s1.peak, s1.current);
    EXPECT_GE(s1.reserved, s1.current);
  }
  const MemoryStats s2 = a.stats();
  EXPECT_EQ(s2.current, s0.current);
  EXPECT_GE(s2.reserved, s0.reserved + kBytes) << "freed block should stay cached";
  {
    Tensor again = gpu().empty({1024, 256});  // served from the cache: nothing new reserved
    EXPECT_EQ(a.stats().reserved, s2.reserved);
    EXPECT_EQ(a.stats().current, s0.current + kBytes);
  }
  a.release_cache();
  EXPECT_EQ(a.stats().reserved, a.stats().current);
  a.reset_peak();
  EXPECT_EQ(a.stats().peak, a.stats().current);

  Allocator& h = gpu().host_allocator();
  const size_t h0 = h.stats().current;
  {
    Tensor p = gpu().host_empty({256});
    EXPECT_EQ(h.stats().current, h0 + 1024u);
  }
  EXPECT_EQ(h.stats().current, h0);
}

// Kernel scratch comes from the backend's counting allocator: attention backward's Delta
// (B*T*H floats) is the only allocation of the op, so it shows as exactly that much peak.
TEST_F(CudaParity, KernelScratchIsCounted) {
  const int64_t B = 2, T = 96, H = 3, D = 16;
  Tensor qkv = to_gpu(rand({B, T, 3 * H * D})), dout = to_gpu(rand({B, T, H * D}));
  Tensor out = gpu().empty({B, T, H * D}), lse = gpu().empty({B, H, T});
  attention_forward(gpu(), out, lse, nullptr, qkv, H);
  Tensor dqkv = gpu().empty({B, T, 3 * H * D});
  Allocator& a = gpu().allocator();
  gpu().synchronize();
  a.reset_peak();
  const size_t before = a.stats().current;
  attention_backward(gpu(), dqkv, dout, qkv, out, lse, nullptr, H);
  gpu().synchronize();
  EXPECT_EQ(a.stats().current, before) << "the scratch was returned";
  EXPECT_EQ(a.stats().peak - before, static_cast<size_t>(B * T * H) * sizeof(float));
  // Many ops' scratch reuses one cached block: nothing new is reserved by a second call.
  const size_t reserved = a.stats().reserved;
  attention_backward(gpu(), dqkv, dout, qkv, out, lse, nullptr, H);
  EXPECT_EQ(a.stats().reserved, reserved);
}

// ------------------------------------------------------------------ matmul / linear

TEST_F(CudaParity, Matmul) {
  struct Case {
    int64_t M, N, K;
  };
  for (Case c : {Case{67, 45, 129}, Case{1, 7, 3}, Case{256, 384, 512}}) {
    for (int ta = 0; ta < 2; ++ta) {
      for (int tb = 0; tb < 2; ++tb) {
        Tensor A = ta ? rand({c.K, c.M}) : rand({c.M, c.K});
        Tensor B = tb ? rand({c.N, c.K}) : rand({c.K, c.N});
        Tensor C0 = rand({c.M, c.N});
        Tensor Cc = clone_cpu(C0), Cg = to_gpu(C0), Ag = to_gpu(A), Bg = to_gpu(B);
        matmul(cpu(), Cc, A, ta, B, tb, 0.75f, 0.5f);
        matmul(gpu(), Cg, Ag, ta, Bg, tb, 0.75f, 0.5f);
        expect_close(Cc, Cg, 2e-6 * c.K, 1e-5,
                     "matmul M" + std::to_string(c.M) + " N" + std::to_string(c.N) + " K" +
                         std::to_string(c.K) + " ta" + std::to_string(ta) + " tb" +
                         std::to_string(tb));
        // beta = 0 overwrites (NaN in C must not leak through).
        Tensor Cn = gpu().empty({c.M, c.N});
        Tensor nan_fill = cpu().empty({c.M, c.N});
        for (int64_t i = 0; i < nan_fill.numel(); ++i) nan_fill.f32()[i] = NAN;
        gpu().copy(Cn, nan_fill);
        Tensor Cz = cpu().empty({c.M, c.N});
        matmul(cpu(), Cz, A, ta, B, tb);
        matmul(gpu(), Cn, Ag, ta, Bg, tb);
        expect_close(Cz, Cn, 2e-6 * c.K, 1e-5, "matmul beta=0");
      }
    }
  }
}

TEST_F(CudaParity, LinearForwardBackward) {
  const int64_t N = 96, in = 200, out = 72;
  Tensor x = rand({N, in}), W = rand({out, in}, -0.2f, 0.2f), b = rand({out});
  Tensor xg = to_gpu(x), Wg = to_gpu(W), bg = to_gpu(b);
  for (bool with_bias : {false, true}) {
    Tensor yc = cpu().empty({N, out}), yg = gpu().empty({N, out});
    linear_forward(cpu(), yc, x, W, with_bias ? &b : nullptr);
    linear_forward(gpu(), yg, xg, Wg, with_bias ? &bg : nullptr);
    expect_close(yc, yg, 2e-6 * in, 1e-5, with_bias ? "linear_forward +b" : "linear_forward");
  }
  Tensor dy = rand({N, out});
  Tensor dyg = to_gpu(dy);
  for (bool acc : {false, true}) {
    Tensor dx0 = rand({N, in}), dW0 = rand({out, in}), db0 = rand({out});
    Tensor dxc = clone_cpu(dx0), dWc = clone_cpu(dW0), dbc = clone_cpu(db0);
    Tensor dxg = to_gpu(dx0), dWg = to_gpu(dW0), dbg = to_gpu(db0);
    linear_backward(cpu(), &dxc, dWc, &dbc, dy, x, W, acc);
    linear_backward(gpu(), &dxg, dWg, &dbg, dyg, xg, Wg, acc);
    const std::string tag = acc ? " (accumulate dx)" : "";
    expect_close(dxc, dxg, 2e-6 * out, 1e-5, "linear_backward dx" + tag);
    expect_close(dWc, dWg, 2e-6 * N, 1e-5, "linear_backward dW (+=)" + tag);
    expect_close(dbc, dbg, 2e-6 * N, 1e-5, "linear_backward db (+=)" + tag);
  }
}

TEST_F(CudaParity, BiasAddAndGradient) {
  for (int64_t C : {64, 75}) {  // vectorised and scalar paths
    const int64_t N = 300;
    Tensor y = rand({N, C}), b = rand({C}), db0 = rand({C});
    Tensor yc = clone_cpu(y), yg = to_gpu(y), bg = to_gpu(b);
    add_bias(cpu(), yc, b);
    add_bias(gpu(), yg, bg);
    expect_equal(yc, yg, "add_bias C" + std::to_string(C));
    Tensor dbc = clone_cpu(db0), dbg = to_gpu(db0), yg2 = to_gpu(y);
    bias_backward(cpu(), dbc, y);
    bias_backward(gpu(), dbg, yg2);
    expect_close(dbc, dbg, 2e-6 * N, 1e-5, "bias_backward C" + std::to_string(C));
  }
}

// ------------------------------------------------------------------ embedding

TEST_F(CudaParity, Embedding) {
  const int64_t N = 500, C = 96, R = 64, V = 128;
  for (int64_t row_offset : {int64_t{0}, int64_t{40}}) {
    Tensor id = ids(N, row_offset == 0 ? 0 : -3, row_offset == 0 ? int(R - 1) : int(V - 1));
    Tensor table = rand({R, C}), out0 = rand({N, C});
    Tensor idg = to_gpu(id), tg = to_gpu(table);
    for (bool acc : {false, true}) {
      Tensor oc = clone_cpu(out0), og = to_gpu(out0);
      embedding_forward(cpu(), oc, id, table, row_offset, acc);
      embedding_forward(gpu(), og, idg, tg, row_offset, acc);
      expect_equal(oc, og, "embedding_forward offset " + std::to_string(row_offset) +
                               (acc ? " accumulate" : ""));
    }
    Tensor dout = rand({N, C}), dt0 = rand({R, C});
    Tensor dtc = clone_cpu(dt0), dtg = to_gpu(dt0), doutg = to_gpu(dout);
    embedding_backward(cpu(), dtc, dout, id, row_offset);
    embedding_backward(gpu(), dtg, doutg, idg, row_offset);
    // Repeated ids: atomic adds in any order; ~N/R terms per row.
    expect_close(dtc, dtg, 1e-5, 1e-5, "embedding_backward offset " + std::to_string(row_offset));
  }
}

// ------------------------------------------------------------------ layernorm

TEST_F(CudaParity, LayerNorm) {
  for (int64_t C : {int64_t{48}, int64_t{768}, int64_t{1001}}) {
    const int64_t N = 130;
    Tensor x = rand({2, N / 2, C}, -2.f, 3.f), w = rand({C}, 0.5f, 1.5f), b = rand({C});
    Tensor xg = to_gpu(x), wg = to_gpu(w), bg = to_gpu(b);
    Tensor oc = cpu().empty({2, N / 2, C}), mc = cpu().empty({N}), rc = cpu().empty({N});
    Tensor og = gpu().empty({2, N / 2, C}), mg = gpu().empty({N}), rg = gpu().empty({N});
    layernorm_forward(cpu(), oc, mc, rc, x, w, b);
    layernorm_forward(gpu(), og, mg, rg, xg, wg, bg);
    const std::string tag = " C" + std::to_string(C);
    expect_close(oc, og, 1e-5, 1e-5, "layernorm out" + tag);
    expect_close(mc, mg, 1e-6, 1e-5, "layernorm mean" + tag);
    expect_close(rc, rg, 1e-6, 1e-5, "layernorm rstd" + tag);
    Tensor dout = rand({2, N / 2, C}), din0 = rand({2, N / 2, C}), dw0 = rand({C}), db0 = rand({C});
    Tensor dic = clone_cpu(din0), dwc = clone_cpu(dw0), dbc = clone_cpu(db0);
    Tensor dig = to_gpu(din0), dwg = to_gpu(dw0), dbg = to_gpu(db0), doutg = to_gpu(dout);
    layernorm_backward(cpu(), dic, dwc, dbc, dout, x, w, mc, rc);
    layernorm_backward(gpu(), dig, dwg, dbg, doutg, xg, wg, mg, rg);
    expect_close(dic, dig, 2e-5, 1e-5, "layernorm din (+=)" + tag);
    expect_close(dwc, dwg, 2e-6 * N, 1e-5, "layernorm dweight (+=)" + tag);
    expect_close(dbc, dbg, 2e-6 * N, 1e-5, "layernorm dbias (+=)" + tag);
  }
}

// ------------------------------------------------------------------ gelu

TEST_F(CudaParity, Gelu) {
  const int64_t n = 100003;
  Tensor x = rand({n}, -6.f, 6.f), dy = rand({n});
  Tensor xg = to_gpu(x), dyg = to_gpu(dy);
  Tensor oc = cpu().empty({n}), og = gpu().empty({n});
  gelu_forward(cpu(), oc, x);
  gelu_forward(gpu(), og, xg);
  expect_close(oc, og, 1e-6, 1e-5, "gelu_forward");
  Tensor dc = cpu().empty({n}), dg = gpu().empty({n});
  gelu_backward(cpu(), dc, x, dy);
  gelu_backward(gpu(), dg, xg, dyg);
  expect_close(dc, dg, 1e-6, 1e-5, "gelu_backward");
  // Aliasing: out == in (forward) and din == dout (backward).
  Tensor inplace = to_gpu(x);
  gelu_forward(gpu(), inplace, inplace);
  expect_close(oc, inplace, 1e-6, 1e-5, "gelu_forward in place");
  Tensor dinplace = to_gpu(dy);
  gelu_backward(gpu(), dinplace, xg, dinplace);
  expect_close(dc, dinplace, 1e-6, 1e-5, "gelu_backward in place");
}

// ------------------------------------------------------------------ attention

struct AttnCase {
  int64_t B, T, H, D;
};

TEST_F(CudaParity, Attention) {
  for (AttnCase c : {AttnCase{1, 5, 2, 8}, AttnCase{2, 70, 3, 16}, AttnCase{1, 130, 2, 64},
                     AttnCase{1, 65, 2, 36}, AttnCase{1, 66, 1, 128}, AttnCase{2, 256, 4, 64}}) {
    const std::string tag = " B" + std::to_string(c.B) + " T" + std::to_string(c.T) + " H" +
                            std::to_string(c.H) + " D" + std::to_string(c.D);
    const int64_t HD = c.H * c.D;
    Tensor qkv = rand({c.B, c.T, 3 * HD}, -2.f, 2.f), dout = rand({c.B, c.T, HD});
    Tensor qkvg = to_gpu(qkv), doutg = to_gpu(dout);
    for (bool with_probs : {true, false}) {
      const std::string t2 = tag + (with_probs ? " (probs saved)" : " (recompute)");
      Tensor oc = cpu().empty({c.B, c.T, HD}), lc = cpu().empty({c.B, c.H, c.T});
      Tensor og = gpu().empty({c.B, c.T, HD}), lg = gpu().empty({c.B, c.H, c.T});
      Tensor pc, pg;
      if (with_probs) {
        pc = cpu().empty({c.B, c.H, c.T, c.T});
        pg = gpu().empty({c.B, c.H, c.T, c.T});
      }
      attention_forward(cpu(), oc, lc, with_probs ? &pc : nullptr, qkv, c.H);
      attention_forward(gpu(), og, lg, with_probs ? &pg : nullptr, qkvg, c.H);
      expect_close(oc, og, 1e-5, 1e-4, "attention out" + t2);
      expect_close(lc, lg, 1e-5, 1e-5, "attention lse" + t2);
      if (with_probs) expect_close(pc, pg, 1e-6, 1e-4, "attention probs" + t2);
      // Backward from the same saved tensors (the CPU ones, copied) on both sides.
      Tensor ocg = to_gpu(oc), lcg = to_gpu(lc);
      Tensor pcg;
      if (with_probs) pcg = to_gpu(pc);
      Tensor dc = rand({c.B, c.T, 3 * HD}), dg = to_gpu(dc);  // garbage: must be overwritten
      attention_backward(cpu(), dc, dout, qkv, oc, lc, with_probs ? &pc : nullptr, c.H);
      attention_backward(gpu(), dg, doutg, qkvg, ocg, lcg, with_probs ? &pcg : nullptr, c.H);
      expect_close(dc, dg, 5e-5, 1e-4, "attention dqkv" + t2);
    }
  }
}

// ------------------------------------------------------------------ cross-entropy

TEST_F(CudaParity, CrossEntropyStages) {
  struct Case {
    int64_t Vl, col_begin, vocab;  // shard [col_begin, col_begin + Vl) of a padded vocab
  };
  const int64_t N = 33;
  for (Case c : {Case{520, 0, 500}, Case{300, 200, 450}, Case{100, 500, 450}, Case{4096, 0, 4096}}) {
    const std::string tag = " Vl" + std::to_string(c.Vl) + " begin" + std::to_string(c.col_begin) +
                            " vocab" + std::to_string(c.vocab);
    Tensor logits = rand({N, c.Vl}, -6.f, 6.f);
    Tensor tg = ids(N, -2, int(c.vocab - 1));
    tg.i32()[0] = -1;  // an ignored row
    tg.i32()[1] = int(std::min(c.col_begin + 3, c.vocab - 1));
    Tensor lgg = to_gpu(logits), tgg = to_gpu(tg);
    Tensor mc = cpu().empty({N}), mg = gpu().empty({N});
    xent_row_max(cpu(), mc, logits, c.col_begin, c.vocab);
    xent_row_max(gpu(), mg, lgg, c.col_begin, c.vocab);
    expect_equal(mc, mg, "xent_row_max" + tag);
    Tensor mcg = to_gpu(mc);
    Tensor sc = cpu().empty({N}), sg = gpu().empty({N});
    xent_row_sumexp(cpu(), sc, logits, mc, c.col_begin, c.vocab);
    xent_row_sumexp(gpu(), sg, lgg, mcg, c.col_begin, c.vocab);
    expect_close(sc, sg, 1e-6, 3e-5, "xent_row_sumexp" + tag);
    Tensor tc = cpu().empty({N}), tgl = gpu().empty({N});
    xent_target_logit(cpu(), tc, logits, tg, c.col_begin);
    xent_target_logit(gpu(), tgl, lgg, tgg, c.col_begin);
    expect_equal(tc, tgl, "xent_target_logit" + tag);
    if (c.col_begin >= c.vocab) continue;  // no real column here: sumexp is 0, no loss/grad
    Tensor scg = to_gpu(sc), tcg = to_gpu(tc);
    Tensor lc = cpu().empty({N}), lgs = gpu().empty({N});
    xent_losses(cpu(), lc, mc, sc, tc, tg);
    xent_losses(gpu(), lgs, mcg, scg, tcg, tgg);
    expect_close(lc, lgs, 1e-5, 1e-5, "xent_losses" + tag);
    Tensor dc = cpu().empty({N, c.Vl}), dg = gpu().empty({N, c.Vl});
    xent_backward(cpu(), dc, logits, mc, sc, tg, c.col_begin, c.vocab, 0.125f);
    xent_backward(gpu(), dg, lgg, mcg, scg, tgg, c.col_begin, c.vocab, 0.125f);
    expect_close(dc, dg, 1e-7, 1e-5, "xent_backward" + tag);
    Tensor alias = to_gpu(logits);  // dlogits aliases logits
    xent_backward(gpu(), alias, alias, mcg, scg, tgg, c.col_begin, c.vocab, 0.125f);
    expect_close(dc, alias, 1e-7, 1e-5, "xent_backward in place" + tag);
  }
}

TEST_F(CudaParity, SoftmaxXentForwardLargeVocab) {
  const int64_t N = 64, V = 50304, vocab = 50257;
  Tensor logits = rand({N, V}, -8.f, 8.f);
  Tensor tg = ids(N, -1, int(vocab - 1));
  Tensor lgg = to_gpu(logits), tgg = to_gpu(tg);
  Tensor lc = cpu().empty({N}), mc = cpu().empty({N}), sc = cpu().empty({N});
  Tensor lg = gpu().empty({N}), mg = gpu().empty({N}), sg = gpu().empty({N});
  softmax_xent_forward(cpu(), lc, mc, sc, logits, tg, vocab);
  softmax_xent_forward(gpu(), lg, mg, sg, lgg, tgg, vocab);
  expect_equal(mc, mg, "softmax_xent_forward rowmax");
  expect_close(sc, sg, 1e-5, 1e-4, "softmax_xent_forward sumexp");  // 50k-term fp32 sums
  expect_close(lc, lg, 1e-4, 1e-5, "softmax_xent_forward losses");
}

// ------------------------------------------------------------------ elementwise

TEST_F(CudaParity, Elementwise) {
  for (int64_t n : {int64_t{1}, int64_t{1003}, int64_t{1 << 20}}) {
    const std::string tag = " n" + std::to_string(n);
    Tensor a = rand({n}), b = rand({n});
    Tensor ag = to_gpu(a), bg = to_gpu(b);
    Tensor oc = cpu().empty({n}), og = gpu().empty({n});
    add(cpu(), oc, a, b);
    add(gpu(), og, ag, bg);
    expect_equal(oc, og, "add" + tag);
    Tensor ac = clone_cpu(a), ai = to_gpu(a);
    add_inplace(cpu(), ac, b);
    add_inplace(gpu(), ai, bg);
    expect_equal(ac, ai, "add_inplace" + tag);
    scale_inplace(cpu(), ac, -0.37f);
    scale_inplace(gpu(), ai, -0.37f);
    expect_equal(ac, ai, "scale_inplace" + tag);
    const double sc = sum_squares(cpu(), a), sg = sum_squares(gpu(), ag);
    EXPECT_NEAR(sg, sc, 1e-9 * sc) << "sum_squares" << tag;
  }
  // An odd offset view (not 16-byte aligned) takes the scalar path.
  Tensor a = rand({1001}), b = rand({1001});
  Tensor ag = to_gpu(a), bg = to_gpu(b);
  Tensor av = ag.flat_range(1, {1000}), bv = bg.flat_range(1, {1000});
  Tensor cv = a.flat_range(1, {1000}), dv = b.flat_range(1, {1000});
  Tensor oc = cpu().empty({1000}), og = gpu().empty({1000});
  add(cpu(), oc, cv, dv);
  add(gpu(), og, av, bv);
  expect_equal(oc, og, "add on unaligned views");
}

// ------------------------------------------------------------------ adamw

TEST_F(CudaParity, AdamW) {
  const int64_t n = 10007;
  Tensor p = rand({n}), m = cpu().zeros({n}), v = cpu().zeros({n});
  Tensor pg = to_gpu(p), mg = to_gpu(m), vg = to_gpu(v);
  AdamWHyper h;
  h.lr = 3e-3f;
  h.weight_decay = 0.1f;
  for (int64_t step = 1; step <= 5; ++step) {
    h.step = step;
    h.grad_scale = step == 3 ? 0.5f : 1.0f;
    Tensor g = rand({n});
    Tensor gg = to_gpu(g);
    adamw_step(cpu(), p, g, m, v, h);
    adamw_step(gpu(), pg, gg, mg, vg, h);
  }
  expect_close(p, pg, 1e-6, 1e-5, "adamw param after 5 steps");
  expect_close(m, mg, 1e-7, 1e-5, "adamw m after 5 steps");
  expect_close(v, vg, 1e-8, 1e-5, "adamw v after 5 steps");
}

}  // namespace
}  // namespace tandem::kernels
