// Tests for kernels/embedding.h on the CPU backend: forward lookup against a naive loop
// (whole table and a row_offset shard with ids outside it, overwrite and accumulate), and the
// table gradient by central finite differences with repeated ids, plus an exact check that
// the scatter-add does not depend on the thread count.
#include "kernels/embedding.h"

#include <gtest/gtest.h>

#include <vector>

#include "runtime/core/backend.h"
#include "tests/kernels/gradcheck.h"

namespace tandem::kernels {
namespace {

using testing::random_tensor;

Tensor make_ids(Backend& be, const std::vector<int32_t>& ids) {
  Tensor t = be.empty({static_cast<int64_t>(ids.size())}, DType::I32);
  for (size_t i = 0; i < ids.size(); ++i) t.i32()[i] = ids[i];
  return t;
}

// Logical table of 10 rows; the shard holds rows [4, 8). ids repeat and fall on both sides.
const std::vector<int32_t> kIds = {5, 0, 7, 5, 9, 4, 5, 3, 7, 8, 6, 5};
constexpr int64_t kOffset = 4, kRows = 4, kC = 20;

TEST(Embedding, ForwardShardMatchesNaive) {
  auto be = make_cpu_backend(2);
  Tensor ids = make_ids(*be, kIds);
  const int64_t N = ids.numel();
  Tensor table = random_tensor(*be, {kRows, kC}, 1);
  for (bool accumulate : {false, true}) {
    Tensor out = random_tensor(*be, {N, kC}, 2);
    std::vector<double> ref(N * kC);
    for (int64_t n = 0; n < N; ++n) {
      const int64_t row = kIds[n] - kOffset;
      const bool held = row >= 0 && row < kRows;
      for (int64_t c = 0; c < kC; ++c) {
        const double t = held ? table.f32()[row * kC + c] : 0.0;
        ref[n * kC + c] = accumulate ? out.f32()[n * kC + c] + t : t;
      }
    }
    embedding_forward(*be, out, ids, table, kOffset, accumulate);
    TANDEM_EXPECT_CLOSE(out.f32(), ref.data(), N * kC, 1e-7, 1e-7,
                        accumulate ? "accumulate" : "overwrite");
  }
}

// L = sum(out * R) with out = emb(ids) (+ a random base, to exercise accumulate). L is linear
// in the table, so eps = 1e-2 central differences are exact up to fp32 rounding of L;
// tolerance atol 1e-5 + rtol 1e-5. Rows not referenced must get exactly zero gradient.
TEST(Embedding, BackwardGradcheckRepeatedIdsAndShard) {
  auto be = make_cpu_backend(2);
  Tensor ids = make_ids(*be, kIds);
  const int64_t N = ids.numel();
  for (auto [offset, rows] : {std::pair<int64_t, int64_t>{0, 10}, {kOffset, kRows}}) {
    Tensor table = random_tensor(*be, {rows, kC}, 3);
    Tensor R = random_tensor(*be, {N, kC}, 4), base = random_tensor(*be, {N, kC}, 5);
    Tensor out = be->empty({N, kC});
    auto loss = [&] {
      be->copy(out, base);
      embedding_forward(*be, out, ids, table, offset, /*accumulate=*/true);
      return testing::dot(out.f32(), R.f32(), out.numel());
    };
    // dtable is a view with two guard rows on each side: ids outside the shard must not
    // write next to it.
    Tensor guarded = be->zeros({rows + 4, kC});
    Tensor dtable = guarded.rows(2, 2 + rows);
    embedding_backward(*be, dtable, R, ids, offset);
    for (int64_t g : {int64_t{0}, int64_t{1}, rows + 2, rows + 3})
      for (int64_t c = 0; c < kC; ++c)
        ASSERT_EQ(guarded.f32()[g * kC + c], 0.0f) << "write outside the shard, guard row " << g;
    testing::GradCheckOptions opt;
    opt.eps = 1e-2f;
    opt.atol = 1e-5;
    opt.rtol = 1e-5;
    testing::expect_gradient(offset ? "embedding shard dtable" : "embedding dtable", table.f32(),
                             table.numel(), dtable.f32(), loss, opt);
    if (offset == kOffset) {
      // Logical row 4 is referenced once (id 4 at n = 5); here the gradient is exactly dout.
      for (int64_t c = 0; c < kC; ++c) EXPECT_EQ(dtable.f32()[0 * kC + c], R.f32()[5 * kC + c]);
    }
  }
}

TEST(Embedding, BackwardAccumulatesAndIsThreadIndependent) {
  // Large enough for the multi-threaded path: 2 threads split the columns.
  const int64_t V = 50, C = 768, N = 512;
  std::vector<int32_t> idv(N);
  for (int64_t n = 0; n < N; ++n) idv[n] = static_cast<int32_t>((n * 7 + n / 3) % 60) - 5;
  std::vector<float> results[2];
  for (int threads : {1, 2}) {
    auto be = make_cpu_backend(threads);
    Tensor ids = make_ids(*be, idv);
    Tensor dout = random_tensor(*be, {N, C}, 6);
    Tensor dtable = random_tensor(*be, {V, C}, 7);
    std::vector<double> ref(dtable.f32(), dtable.f32() + V * C);
    for (int64_t n = 0; n < N; ++n)
      if (idv[n] >= 0 && idv[n] < V)
        for (int64_t c = 0; c < C; ++c) ref[idv[n] * C + c] += dout.f32()[n * C + c];
    embedding_backward(*be, dtable, dout, ids, 0);
    TANDEM_EXPECT_CLOSE(dtable.f32(), ref.data(), V * C, 1e-6, 1e-6,
                        ::testing::Message() << "threads " << threads);
    results[threads - 1] = testing::to_vector(dtable);
  }
  EXPECT_EQ(results[0], results[1]) << "embedding_backward depends on the thread count";
}

}  // namespace
}  // namespace tandem::kernels
