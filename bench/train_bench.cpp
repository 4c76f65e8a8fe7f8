// train_bench: Tandem's training step on random tokens, shaped like the PyTorch peers
// (bench/peers/torch_gpt_bench.py --mode train on the CPU, bench/gpu/torch_gpu_bench.py on
// a GPU), for a same-run speed/memory comparison.
//
// usage: train_bench [--layers 12] [--dim 768] [--heads 12] [--vocab 50257] [--seq 64]
//                    [--batch 4] [--steps 10] [--warmup 2] [--threads 2]
//                    [--recompute none|selective|full] [--microbatches 1]
//                    [--device cpu|cuda] [--precision fp32|bf16] [--max-seconds 0]
// Prints one line per step and, last, a machine-readable line:
//   tokens_per_s=... step_ms=... peak_alloc_mib=... peak_rss_mib=... activation_peak_mib=...
//   params=... device=... precision=... timed_steps=...
// tokens/s is the median over the steps after --warmup warm-up steps (as the peers compute
// it). --max-seconds S > 0 ends the run early once S seconds have passed since the first
// step and at least one timed step has run (timed_steps says how many did). A step's time
// runs from zeroing the gradients to the end of the optimizer step, with the backend
// synchronised, so on a GPU it is the device's time too. The tokens of a step are drawn on
// the host before its clock starts and copied to the device inside it. The optimizer is
// AdamW (lr 1e-4, betas .9/.999, no weight decay, no clipping) like the peers'.
// peak_alloc_mib is the backend allocator's peak (device memory on cuda).
// --precision bf16 trains as `train.precision: bf16` does: bf16 GEMM operands with fp32
// accumulation, fp32 master weights, a bf16 copy refreshed after each optimizer step (on the CPU
// backend the reference path, no faster than fp32). An unknown precision is refused (exit 3,
// "refused: --precision ..."); bench/gpu/check.sh then runs fp32 and says so.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_device.h"
#include "runtime/core/backend.h"
#include "runtime/model/gpt.h"
#include "runtime/train/adamw_optimizer.h"

using namespace tandem;

namespace {

struct Args {
  ModelOptions m;
  int batch = 4, steps = 10, warmup = 2, threads = 2, micro = 1;
  double max_seconds = 0;
  Recompute rc = Recompute::None;
  std::string device = "cpu", precision = "fp32";
};

// Returns false (after printing why) on an unknown option or a missing value.
bool parse(int argc, char** argv, Args& a) {
  a.m.layers = 12, a.m.dim = 768, a.m.heads = 12, a.m.vocab = 50257, a.m.seq_len = 64;
  for (int i = 1; i < argc; i += 2) {
    const std::string k = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "train_bench: option %s needs a value\n", k.c_str());
      return false;
    }
    const std::string s = argv[i + 1];
    const int v = std::atoi(s.c_str());
    if (k == "--layers") a.m.layers = v;
    else if (k == "--dim") a.m.dim = v;
    else if (k == "--heads") a.m.heads = v;
    else if (k == "--vocab") a.m.vocab = v;
    else if (k == "--seq") a.m.seq_len = v;
    else if (k == "--batch") a.batch = v;
    else if (k == "--steps") a.steps = v;
    else if (k == "--warmup") a.warmup = v;
    else if (k == "--threads") a.threads = v;
    else if (k == "--microbatches") a.micro = v;
    else if (k == "--max-seconds") a.max_seconds = std::atof(s.c_str());
    else if (k == "--device") a.device = s;
    else if (k == "--precision") a.precision = s;
    else if (k == "--recompute")
      a.rc = s == "full" ? Recompute::Full : s == "selective" ? Recompute::Selective : Recompute::None;
    else {
      std::fprintf(stderr, "train_bench: unknown option %s\n", k.c_str());
      return false;
    }
  }
  if (a.batch < 1 || a.micro < 1 || a.batch % a.micro != 0 || a.warmup < 0 ||
      a.steps <= a.warmup || a.m.heads < 1 || a.m.dim % a.m.heads != 0) {
    std::fprintf(stderr, "train_bench: need batch >= 1 divisible by microbatches (%d, %d), "
                         "steps > warmup >= 0 (%d, %d), dim divisible by heads (%d, %d)\n",
                 a.batch, a.micro, a.steps, a.warmup, a.m.dim, a.m.heads);
    return false;
  }
  return true;
}

int run(const Args& a) {
  const ModelOptions& m = a.m;
  auto be = bench::make_bench_backend(a.device, a.threads);
  auto tp = make_self_communicator("tp");
  Precision precision = Precision::F32;
  parse_precision(a.precision, &precision);  // checked by bench::precision_supported
  Gpt model(*be, m, StageLayout{}, *tp, a.rc, 1, true, precision);
  model.init(0);
  ParamStore& ps = model.params();
  AdamWConfig ac;
  ac.beta1 = 0.9f, ac.beta2 = 0.999f, ac.eps = 1e-8f, ac.weight_decay = 0.0f;
  AdamWOptimizer opt(ps, param_ranges(ps, 0, ps.numel()), ac);
  std::printf("tandem train_bench device=%s precision=%s threads=%d params=%.2fM layers=%d "
              "dim=%d heads=%d vocab=%d (padded %d) seq=%d batch=%d microbatches=%d "
              "recompute=%s\n",
              be->name().c_str(), a.precision.c_str(), a.threads, ps.numel() / 1e6, m.layers,
              m.dim, m.heads, m.vocab, m.padded_vocab(), m.seq_len, a.batch, a.micro,
              recompute_name(a.rc));
  std::fflush(stdout);
  std::mt19937_64 rng(1);
  const int64_t T = m.seq_len, per = a.batch / a.micro, ntok = static_cast<int64_t>(a.batch) * T;
  std::vector<int32_t> x(ntok), y(ntok);
  std::vector<double> rates, times;
  size_t act_peak = 0;
  be->synchronize();
  const size_t base = be->allocator().stats().current;
  const auto t_first = std::chrono::steady_clock::now();
  for (int step = 0; step < a.steps; ++step) {
    for (int64_t i = 0; i < ntok; ++i) x[i] = rng() % m.vocab, y[i] = rng() % m.vocab;
    be->allocator().reset_peak();
    auto t0 = std::chrono::steady_clock::now();
    ps.zero_grads();
    double loss = 0;
    for (int mb = 0; mb < a.micro; ++mb) {
      auto st = model.forward(per, T, x.data() + mb * per * T, nullptr, y.data() + mb * per * T,
                              true, 1.0f / static_cast<float>(ntok));
      loss += st->loss_sum;
      model.backward(*st, nullptr);
    }
    opt.step(1e-4f, step + 1, 1.0f);
    ps.refresh_bf16();  // mixed precision: the GEMMs' copy of the new weights (no-op in fp32)
    be->synchronize();
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    size_t peak = be->allocator().stats().peak;
    act_peak = std::max(act_peak, peak > base ? peak - base : 0);
    const bool warm = step < a.warmup;
    if (!warm) rates.push_back(ntok / dt), times.push_back(dt);
    std::printf("step %d: loss %.4f time %.1f ms tok/s %.1f%s\n", step, loss / ntok, dt * 1e3,
                ntok / dt, warm ? " (warm-up)" : "");
    std::fflush(stdout);
    const double spent =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_first).count();
    if (a.max_seconds > 0 && !rates.empty() && spent > a.max_seconds && step + 1 < a.steps) {
      std::printf("stopped after %zu timed steps: %.1f s spent, --max-seconds %.1f\n",
                  rates.size(), spent, a.max_seconds);
      break;
    }
  }
  std::sort(rates.begin(), rates.end());
  std::sort(times.begin(), times.end());
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  std::printf("tokens_per_s=%.1f step_ms=%.2f peak_alloc_mib=%.1f peak_rss_mib=%.1f "
              "activation_peak_mib=%.1f params=%lld device=%s precision=%s timed_steps=%zu\n",
              rates[rates.size() / 2], times[times.size() / 2] * 1e3,
              be->allocator().stats().peak / 1048576.0, ru.ru_maxrss / 1024.0,
              act_peak / 1048576.0, static_cast<long long>(ps.numel()), a.device.c_str(),
              a.precision.c_str(), rates.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parse(argc, argv, a)) return 2;
  if (!bench::precision_supported(a.precision)) {
    std::printf("refused: --precision %s: this build trains in fp32 or bf16\n", a.precision.c_str());
    return bench::kRefusedExit;
  }
  try {
    return run(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_bench: %s\n", e.what());
    return 1;
  }
}
