// train_bench: Tandem's training step on random tokens, shaped like the PyTorch peer
// (../shared/peers/torch_gpt_bench.py --mode train), for a same-run speed/memory comparison.
//
// usage: train_bench [--layers 12] [--dim 768] [--heads 12] [--vocab 50257] [--seq 64]
//                    [--batch 4] [--steps 10] [--threads 2] [--recompute none|selective|full]
//                    [--microbatches 1]
// Prints one line per step and, last, a machine-readable line:
//   tokens_per_s=... peak_alloc_mib=... peak_rss_mib=... activation_peak_mib=...
// tokens/s is the median over steps after 2 warm-up steps (as the peer computes it); the
// optimizer is AdamW (lr 1e-4, betas .9/.999, no weight decay, no clipping) like the peer's.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "runtime/core/backend.h"
#include "runtime/model/gpt.h"
#include "runtime/train/adamw_optimizer.h"

using namespace tandem;

int main(int argc, char** argv) {
  ModelOptions m;
  m.layers = 12, m.dim = 768, m.heads = 12, m.vocab = 50257, m.seq_len = 64;
  int batch = 4, steps = 10, threads = 2, micro = 1;
  Recompute rc = Recompute::None;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    int v = std::atoi(argv[i + 1]);
    if (k == "--layers") m.layers = v;
    else if (k == "--dim") m.dim = v;
    else if (k == "--heads") m.heads = v;
    else if (k == "--vocab") m.vocab = v;
    else if (k == "--seq") m.seq_len = v;
    else if (k == "--batch") batch = v;
    else if (k == "--steps") steps = v;
    else if (k == "--threads") threads = v;
    else if (k == "--microbatches") micro = v;
    else if (k == "--recompute") {
      std::string r = argv[i + 1];
      rc = r == "full" ? Recompute::Full : r == "selective" ? Recompute::Selective : Recompute::None;
    } else {
      std::fprintf(stderr, "train_bench: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  auto be = make_cpu_backend(threads);
  auto tp = make_self_communicator("tp");
  Gpt model(*be, m, StageLayout{}, *tp, rc);
  model.init(0);
  ParamStore& ps = model.params();
  AdamWConfig ac;
  ac.beta1 = 0.9f, ac.beta2 = 0.999f, ac.eps = 1e-8f, ac.weight_decay = 0.0f;
  AdamWOptimizer opt(ps, param_ranges(ps, 0, ps.numel()), ac);
  std::printf("tandem train_bench threads=%d params=%.2fM layers=%d dim=%d heads=%d vocab=%d seq=%d batch=%d recompute=%s\n",
              threads, ps.numel() / 1e6, m.layers, m.dim, m.heads, m.vocab, m.seq_len, batch,
              recompute_name(rc));
  std::mt19937_64 rng(1);
  const int64_t T = m.seq_len, per = batch / micro, ntok = static_cast<int64_t>(batch) * T;
  std::vector<int32_t> x(ntok), y(ntok);
  std::vector<double> rates;
  size_t act_peak = 0;
  const size_t base = be->allocator().stats().current;
  for (int step = 0; step < steps; ++step) {
    for (int64_t i = 0; i < ntok; ++i) x[i] = rng() % m.vocab, y[i] = rng() % m.vocab;
    be->allocator().reset_peak();
    auto t0 = std::chrono::steady_clock::now();
    ps.zero_grads();
    double loss = 0;
    for (int mb = 0; mb < micro; ++mb) {
      auto st = model.forward(per, T, x.data() + mb * per * T, nullptr, y.data() + mb * per * T, true,
                              1.0f / static_cast<float>(ntok));
      loss += st->loss_sum;
      model.backward(*st, nullptr);
    }
    opt.step(1e-4f, step + 1, 1.0f);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    size_t peak = be->allocator().stats().peak;
    act_peak = std::max(act_peak, peak > base ? peak - base : 0);
    if (step >= 2) rates.push_back(ntok / dt);
    std::printf("step %d: loss %.4f time %.1f ms tok/s %.1f%s\n", step, loss / ntok, dt * 1e3,
                ntok / dt, step < 2 ? " (warm-up)" : "");
    std::fflush(stdout);
  }
  std::sort(rates.begin(), rates.end());
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  std::printf("tokens_per_s=%.1f peak_alloc_mib=%.1f peak_rss_mib=%.1f activation_peak_mib=%.1f\n",
              rates.empty() ? 0.0 : rates[rates.size() / 2],
              be->allocator().stats().peak / 1048576.0, ru.ru_maxrss / 1024.0, act_peak / 1048576.0);
  return 0;
}
