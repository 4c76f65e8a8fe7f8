// CUDA bf16 GEMM through cuBLASLt (kernels/matmul.h: cuda::LtGemm, gemm_bf16_lt): bf16 A and B,
// fp32 compute and scale (CUBLAS_COMPUTE_32F, CUDA_R_32F), fp32 or bf16 D, optional fused
// epilogue (BIAS, GELU_AUX_BIAS, DGELU).
//
// Contract: the caller speaks row-major, as cpu::sgemm. cuBLASLt is column-major, and a
// row-major X[R, C] with leading dimension ld is the column-major X^T[C, R] with the same ld, so
// we hand cuBLASLt D^T[N, M] = op(B)^T[N, K] op(A)^T[K, M]: its "A" is our B (transa = transB),
// its "B" our A (transb = transA), m = N, n = M. Per column of D^T (a row of our D) the bias
// vector has m = N entries, which is our bias[n]; the GELU aux matrix is laid out like D^T
// (leading dimension ldaux, which cuBLASLt wants divisible by 8). C is D (beta scales D).
// Alignment: the heuristic is told each matrix's actual alignment (largest power of two
// dividing its address, at most 256) instead of its default 256 bytes, so views at any offset
// get an algorithm valid for them; bias and aux alignment it reads from the pointers.
// Workspace: ctx.workspace (stream-ordered; no other scratch is live during this call).
// The heuristic's choice is cached per configuration in ctx.lt_algo_cache (AlgoKey below).
// Returns false without launching when the heuristic offers no algorithm (or rejects the
// configuration) for a fused epilogue. A plain GEMM (Epilogue::None) cuBLASLt offers nothing
// for ("not supported": an unusual shape or alignment) runs through cublasGemmEx instead, with
// the same types and CUBLAS_COMPUTE_32F (same numerics up to summation order). Any other
// failure throws, with the sizes, types and status in the message.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/bf16.cuh"
#include "kernels/matmul.h"

#include <climits>
#include <cstdint>
#include <memory>
#include <unordered_map>

namespace tandem::kernels::cuda {

namespace {

#define TANDEM_LT_CHECK(call, what)                                                         \
  do {                                                                                      \
    cublasStatus_t tandem_s_ = (call);                                                      \
    if (tandem_s_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                                    \
      ::tandem::detail::throw_check(__FILE__, __LINE__, #call,                              \
                                    fmt::format("cublasLt status {} ({})",                  \
                                                static_cast<int>(tandem_s_), (what)));      \
  } while (0)

struct Desc {
  cublasLtMatmulDesc_t h = nullptr;
  ~Desc() { if (h) (void)cublasLtMatmulDescDestroy(h); }
};
struct Layout {
  cublasLtMatrixLayout_t h = nullptr;
  ~Layout() { if (h) (void)cublasLtMatrixLayoutDestroy(h); }
};
struct Pref {
  cublasLtMatmulPreference_t h = nullptr;
  ~Pref() { if (h) (void)cublasLtMatmulPreferenceDestroy(h); }
};

uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align >>= 1;
  return align;
}

cublasLtEpilogue_t lt_epilogue(Epilogue e) {
  switch (e) {
    case Epilogue::None: return CUBLASLT_EPILOGUE_DEFAULT;
    case Epilogue::Bias: return CUBLASLT_EPILOGUE_BIAS;
    case Epilogue::GeluAuxBias: return CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    case Epilogue::DGelu: return CUBLASLT_EPILOGUE_DGELU;
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

// The heuristic's answer depends only on what is in AlgoKey (sizes, leading dimensions, types,
// epilogue, workspace and the operands' alignments), not on the addresses themselves: it is
// asked once per key and kept for the context's lifetime (a training step repeats a few dozen
// shapes; the query costs tens of microseconds of host time, the descriptors about one).
struct AlgoKey {
  int64_t M, N, K, lda, ldb, ldd, ldaux;
  uint64_t ws;
  uint32_t align_a, align_b, align_d, align_bias, align_aux;
  int epi;
  bool transA, transB, d_bf16;
  bool operator==(const AlgoKey&) const = default;
};
struct AlgoKeyHash {
  size_t operator()(const AlgoKey& k) const {
    size_t h = 1469598103934665603ull;
    auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    for (int64_t v : {k.M, k.N, k.K, k.lda, k.ldb, k.ldd, k.ldaux}) mix(static_cast<uint64_t>(v));
    for (uint32_t v : {k.align_a, k.align_b, k.align_d, k.align_bias, k.align_aux}) mix(v);
    mix(k.ws), mix(static_cast<uint64_t>(k.epi)), mix(k.transA), mix(k.transB), mix(k.d_bf16);
    return h;
  }
};
struct Heuristic {
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
  int found = 0;
  cublasLtMatmulHeuristicResult_t result{};
};
using AlgoCache = std::unordered_map<AlgoKey, Heuristic, AlgoKeyHash>;

// One host thread drives a context at a time (its one stream), so the cache takes no lock.
AlgoCache& algo_cache(CudaContext& ctx) {
  if (!ctx.lt_algo_cache) ctx.lt_algo_cache = std::make_shared<AlgoCache>();
  return *static_cast<AlgoCache*>(ctx.lt_algo_cache.get());
}

std::string describe(const LtGemm& g);

// The plain GEMM through cublasGemmEx (the same column-major mapping as above).
void gemm_bf16_ex(CudaContext& ctx, const LtGemm& g) {
  TANDEM_CHECK(g.M <= INT_MAX && g.N <= INT_MAX && g.K <= INT_MAX && g.lda <= INT_MAX &&
                   g.ldb <= INT_MAX && g.ldd <= INT_MAX,
               "cublasGemmEx: sizes beyond int ({})", describe(g));
  TANDEM_LT_CHECK(cublasGemmEx(ctx.cublas, g.transB ? CUBLAS_OP_T : CUBLAS_OP_N,
                               g.transA ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(g.N),
                               static_cast<int>(g.M), static_cast<int>(g.K), &g.alpha, g.B,
                               CUDA_R_16BF, static_cast<int>(g.ldb), g.A, CUDA_R_16BF,
                               static_cast<int>(g.lda), &g.beta, g.D,
                               g.d_bf16 ? CUDA_R_16BF : CUDA_R_32F, static_cast<int>(g.ldd),
                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                  describe(g));
}

std::string describe(const LtGemm& g) {
  return fmt::format("M={} N={} K={} transA={} transB={} lda={} ldb={} ldd={} D {} alpha={} beta={} "
                     "epilogue {} ldaux={}",
                     g.M, g.N, g.K, g.transA, g.transB, g.lda, g.ldb, g.ldd,
                     g.d_bf16 ? "bf16" : "f32", g.alpha, g.beta, epilogue_name(g.epi), g.ldaux);
}

}  // namespace

bool gemm_bf16_lt(CudaContext& ctx, const LtGemm& g) {
  TANDEM_CHECK(g.M > 0 && g.N > 0 && g.K > 0, "gemm_bf16_lt needs positive sizes: {}", describe(g));
  TANDEM_CHECK(g.lda >= (g.transA ? g.M : g.K) && g.ldb >= (g.transB ? g.K : g.N) && g.ldd >= g.N,
               "gemm_bf16_lt leading dimensions: {}", describe(g));
  const bool has_bias = g.epi == Epilogue::Bias || g.epi == Epilogue::GeluAuxBias;
  const bool has_aux = g.epi == Epilogue::GeluAuxBias || g.epi == Epilogue::DGelu;
  TANDEM_CHECK(has_bias == (g.bias != nullptr) && has_aux == (g.aux != nullptr),
               "gemm_bf16_lt: epilogue and bias/aux pointers disagree: {}", describe(g));
  if (has_aux && (g.ldaux % 8 != 0 || g.ldaux < g.N)) return false;  // cuBLASLt's aux rule

  const cudaDataType_t d_type = g.d_bf16 ? CUDA_R_16BF : CUDA_R_32F;
  Desc desc;
  TANDEM_LT_CHECK(cublasLtMatmulDescCreate(&desc.h, CUBLAS_COMPUTE_32F, CUDA_R_32F), describe(g));
  const cublasOperation_t op_a = g.transB ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt's A is our B
  const cublasOperation_t op_b = g.transA ? CUBLAS_OP_T : CUBLAS_OP_N;
  TANDEM_LT_CHECK(cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a), describe(g));
  TANDEM_LT_CHECK(cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b), describe(g));
  const cublasLtEpilogue_t epi = lt_epilogue(g.epi);
  TANDEM_LT_CHECK(cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi), describe(g));
  if (has_bias)
    TANDEM_LT_CHECK(cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias,
                                                   sizeof g.bias), describe(g));
  if (has_aux) {
    TANDEM_LT_CHECK(cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                                   &g.aux, sizeof g.aux), describe(g));
    const int64_t ldaux = g.ldaux;
    TANDEM_LT_CHECK(cublasLtMatmulDescSetAttribute(desc.h, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ldaux,
                                                   sizeof ldaux), describe(g));
  }

  // Column-major layouts (rows, cols, ld) of cuBLASLt's A (our B), B (our A) and C = D.
  Layout la, lb, ld;
  TANDEM_LT_CHECK(cublasLtMatrixLayoutCreate(&la.h, CUDA_R_16BF, g.transB ? g.K : g.N,
                                             g.transB ? g.N : g.K, g.ldb), describe(g));
  TANDEM_LT_CHECK(cublasLtMatrixLayoutCreate(&lb.h, CUDA_R_16BF, g.transA ? g.M : g.K,
                                             g.transA ? g.K : g.M, g.lda), describe(g));
  TANDEM_LT_CHECK(cublasLtMatrixLayoutCreate(&ld.h, d_type, g.N, g.M, g.ldd), describe(g));

  const uint64_t ws = ctx.workspace ? ctx.workspace_bytes : 0;
  const uint32_t align_a = alignment_of(g.B), align_b = alignment_of(g.A), align_d = alignment_of(g.D);
  const AlgoKey key{g.M, g.N, g.K, g.lda, g.ldb, g.ldd, g.ldaux, ws, align_a, align_b, align_d,
                    g.bias ? alignment_of(g.bias) : 0u, g.aux ? alignment_of(g.aux) : 0u,
                    static_cast<int>(g.epi), g.transA, g.transB, g.d_bf16};
  auto& cache = algo_cache(ctx);
  auto it = cache.find(key);
  if (it == cache.end()) {
    Heuristic h;
    Pref pref;
    TANDEM_LT_CHECK(cublasLtMatmulPreferenceCreate(&pref.h), describe(g));
    TANDEM_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &ws, sizeof ws), describe(g));
    TANDEM_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                         &align_a, sizeof align_a), describe(g));
    TANDEM_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                         &align_b, sizeof align_b), describe(g));
    TANDEM_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                         &align_d, sizeof align_d), describe(g));
    TANDEM_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                         &align_d, sizeof align_d), describe(g));
    h.status = cublasLtMatmulAlgoGetHeuristic(ctx.cublaslt, desc.h, la.h, lb.h, ld.h, ld.h, pref.h, 1,
                                              &h.result, &h.found);
    it = cache.emplace(key, h).first;
  }
  const cublasStatus_t hs = it->second.status;
  const int found = it->second.found;
  const cublasLtMatmulHeuristicResult_t& result = it->second.result;
  if (hs != CUBLAS_STATUS_SUCCESS || found == 0) {
    // A fused epilogue cuBLASLt cannot do (any status) leaves the unfused path to the caller. A
    // plain GEMM it has no algorithm for goes to cublasGemmEx; one it rejects for another reason
    // than "not supported" is a bug worth its status.
    if (g.epi != Epilogue::None) return false;
    TANDEM_CHECK(hs == CUBLAS_STATUS_SUCCESS || hs == CUBLAS_STATUS_NOT_SUPPORTED,
                 "cublasLtMatmulAlgoGetHeuristic status {} ({})", static_cast<int>(hs), describe(g));
    gemm_bf16_ex(ctx, g);
    return true;
  }
  TANDEM_LT_CHECK(cublasLtMatmul(ctx.cublaslt, desc.h, &g.alpha, g.B, la.h, g.A, lb.h, &g.beta, g.D, ld.h,
                                 g.D, ld.h, &result.algo, ctx.workspace, ws, ctx.stream),
                  describe(g));
  return true;
}

}  // namespace tandem::kernels::cuda
