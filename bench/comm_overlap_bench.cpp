// comm_overlap_bench: does data-parallel gradient reduction overlap the backward? A
// data-parallel-like step: a backward of `layers` layers, each one GEMM on the compute stream
// that accumulates its weight gradient (dW += X^T dY, [dim, dim]), over a flat gradient buffer
// cut into buckets from its end as GradSync cuts it (GradSync::bucket_bounds); each bucket is
// all-reduced (SUM) over the world with the device's communicator (NCCL on cuda, MPI on cpu).
//
// usage: mpirun -np N comm_overlap_bench [--device cuda|cpu] [--layers 24] [--dim 4096]
//        [--rows 4096] [--bucket-mb 64] [--steps 10] [--threads 2]
// Modes, each timed per step (median of --steps after 2 warm-ups, max over ranks):
//   compute   the backward alone;
//   comm      the buckets' all-reduces alone;
//   serial    the backward, then every bucket launched and waited for;
//   overlap   each bucket launched as soon as the layers it covers are done (as the trainer's
//             GradSync does during the last micro-batch's backward), all waited for at the end.
// Bound: serial ~ compute + comm; overlap >= max(compute, comm). hidden_pct = (serial -
// overlap) / min(compute, comm) is the share of the smaller part that the overlap hid (100%:
// perfect; nan when one part is under 5% of the other). With NCCL the reductions run on the communicator's own stream, ordered against the
// compute stream by events, so they can run while later GEMMs are queued.
// On one GPU (-np 1) the NCCL communicator is real but has one rank: its all-reduce moves no
// data, so `comm` is launch and event cost and overlap ~ compute shows that launching buckets
// mid-backward does not stall the compute stream; the overlap itself needs >= 2 GPUs, where
// the all-reduce moves every byte over NVLink/PCIe.
// The GPU kit runs it with no arguments (bench/gpu: the comm_overlap part, -np 1); defaults
// take a few seconds on an H200 (1.5 GiB of gradients, ~3 TFLOP per step).
// Final machine-readable line:
//   ranks=... device=... compute_ms=... comm_ms=... serial_ms=... overlap_ms=... hidden_pct=...
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/matmul.h"
#include "parallel/device_binding.h"
#include "parallel/mpi_communicator.h"
#include "parallel/mpi_env.h"
#include "runtime/core/backend.h"
#include "runtime/train/grad_sync.h"
#ifdef TANDEM_HAVE_CUDA
#include "parallel/cuda/nccl_communicator.h"
#endif

using namespace tandem;

namespace {

struct Options {
  std::string device = "cuda";
  int layers = 24, steps = 10, threads = 2;
  int64_t dim = 4096, rows = 4096, bucket_mb = 64;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

class Step {
 public:
  Step(Backend& be, Communicator& dp, const Options& o) : be_(be), dp_(dp), o_(o) {
    const int64_t per = o.dim * o.dim;
    grads_ = be.zeros({o.layers * per});
    x_ = be.zeros({o.rows, o.dim});
    dy_ = be.zeros({o.rows, o.dim});
    buckets_ = GradSync::bucket_bounds(o.layers * per, 1, o.bucket_mb * 1048576 / 4);
  }

  // One step; `reduce` 0: none, 1: after the backward, 2: overlapped; `backward` false: skip it.
  void run(int reduce, bool backward) {
    std::vector<std::unique_ptr<Request>> reqs;
    size_t next = 0;  // buckets_[0] is the last range of the buffer, final first
    auto launch_from = [&](int64_t offset) {
      for (; next < buckets_.size() && buckets_[next].first >= offset; ++next) {
        Tensor b = grads_.flat_range(buckets_[next].first, {buckets_[next].second - buckets_[next].first});
        reqs.push_back(dp_.iall_reduce(b, ReduceOp::Sum));
      }
      for (auto& r : reqs)
        if (r) r->test();  // drive progress (MPI), as GradSync::poll does
    };
    const int64_t per = o_.dim * o_.dim;
    for (int l = o_.layers - 1; l >= 0 && backward; --l) {
      Tensor g = grads_.flat_range(l * per, {o_.dim, o_.dim});
      kernels::matmul(be_, g, x_, true, dy_, false, 1.0f, 1.0f);
      if (reduce == 2) launch_from(l * per);
    }
    if (reduce != 0) launch_from(0);
    for (auto& r : reqs) r->wait();
    be_.synchronize();
  }

  int buckets() const { return static_cast<int>(buckets_.size()); }

 private:
  Backend& be_;
  Communicator& dp_;
  Options o_;
  Tensor grads_, x_, dy_;
  std::vector<std::pair<int64_t, int64_t>> buckets_;
};

}  // namespace

int main(int argc, char** argv) {
  MpiEnv env(&argc, &argv);
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--device") o.device = v;
    else if (k == "--layers") o.layers = std::atoi(v.c_str());
    else if (k == "--dim") o.dim = std::atoll(v.c_str());
    else if (k == "--rows") o.rows = std::atoll(v.c_str());
    else if (k == "--bucket-mb") o.bucket_mb = std::atoll(v.c_str());
    else if (k == "--steps") o.steps = std::atoi(v.c_str());
    else if (k == "--threads") o.threads = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "comm_overlap_bench: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  try {
    BackendOptions bo;
    bo.device = o.device;
    bo.threads = o.threads;
    if (o.device == "cuda")
      bo.device_index = local_device_for(env.local_rank(), env.local_size(), cuda_device_count());
    auto be = make_backend(bo);
    std::unique_ptr<Communicator> dp;
#ifdef TANDEM_HAVE_CUDA
    if (be->kind() == DeviceKind::CUDA) dp = make_nccl_communicator(MPI_COMM_WORLD, "dp", 300.0, *be->cuda());
#endif
    if (!dp) dp = make_mpi_communicator(MPI_COMM_WORLD, "dp", 300.0);
    Step step(*be, *dp, o);
    auto host = make_mpi_communicator(MPI_COMM_WORLD, "timing", 300.0);
    auto time_mode = [&](int reduce, bool backward) {
      std::vector<double> t;
      for (int i = 0; i < o.steps + 2; ++i) {
        host->barrier();
        const auto t0 = std::chrono::steady_clock::now();
        step.run(reduce, backward);
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (i >= 2) t.push_back(ms);
      }
      Tensor m = be->host_empty({1});
      m.f32()[0] = static_cast<float>(median(t));
      host->all_reduce(m, ReduceOp::Max);
      return static_cast<double>(m.f32()[0]);
    };
    const double compute = time_mode(0, true), comm = time_mode(1, false);
    const double serial = time_mode(1, true), overlap = time_mode(2, true);
    // With one part negligible (one rank: the all-reduce moves nothing) there is nothing to hide.
    const bool measurable = std::min(compute, comm) >= 0.05 * std::max(compute, comm);
    const double hidden = measurable ? 100.0 * (serial - overlap) / std::min(compute, comm) : std::nan("");
    if (env.rank() == 0) {
      const double gib = static_cast<double>(o.layers) * o.dim * o.dim * 4 / (1 << 30);
      std::printf("comm_overlap_bench: %d rank(s) on %s, %d layers of [%lld x %lld] GEMM-backward, "
                  "%.2f GiB of gradients in %d bucket(s) of <= %lld MiB\n",
                  env.world_size(), be->name().c_str(), o.layers, static_cast<long long>(o.rows),
                  static_cast<long long>(o.dim), gib, step.buckets(), static_cast<long long>(o.bucket_mb));
      std::printf("  compute %.2f ms | comm %.2f ms | serial %.2f ms (bound: compute + comm = %.2f) | "
                  "overlap %.2f ms (bound: max = %.2f) | hidden %.0f%% of the smaller part%s\n",
                  compute, comm, serial, compute + comm, overlap, std::max(compute, comm), hidden,
                  measurable ? "" : " (n/a: one part is under 5% of the other)");
      std::printf("ranks=%d device=%s compute_ms=%.3f comm_ms=%.3f serial_ms=%.3f overlap_ms=%.3f "
                  "hidden_pct=%.1f\n",
                  env.world_size(), o.device.c_str(), compute, comm, serial, overlap, hidden);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "comm_overlap_bench: rank %d failed: %s\n", env.rank(), e.what());
    MpiEnv::abort(3);
  }
  return 0;
}
