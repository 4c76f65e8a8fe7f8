// decode_bench: Tandem's inference path (Gpt::forward_cached over a paged KV cache,
// head_logits, greedy TokenSampler) on random tokens and random weights, on the CPU or a GPU,
// shaped like the PyTorch peers (bench/peers/torch_gpt_bench.py --mode infer on the CPU,
// bench/gpu/torch_gpu_bench.py --mode decode on a GPU), for a same-run comparison, next to
// the machine's weight-read bound for decode.
//
// usage: decode_bench [--layers 12] [--dim 768] [--heads 12] [--vocab 50257] [--seq 64]
//                     [--batch 4] [--gen-tokens 32] [--steps 5] [--threads 2] [--seed 0]
//                     [--only all|prefill|decode]   (decode: skip the prefill measurement,
//                                                     e.g. under perf)
//                     [--device cpu|cuda]
// Measures
//   prefill:   forward_cached of `batch` prompts of `seq` random tokens (fresh KV cache each
//              repeat, made outside the timed region), then head_logits of each prompt's last
//              token; tokens/s = batch*seq / time, median over --steps repeats after 2
//              warm-ups. Also "prefill_all_logits": the same with the logits of every
//              position, which is the work the peer's prefill does (its forward computes the
//              tied head over all batch*seq rows).
//   decode_kv: greedy decode with the KV cache, as the peer: prefill of p0 = seq - gen_tokens
//              prompt tokens (their last token's logits give the first new token), then
//              gen_tokens - 1 steps of one token per sequence; gen_tokens new tokens per
//              sequence in all, prefill included in the time; tokens/s = batch*gen / time,
//              median of --steps runs after one warm-up run. The cache is reserved once (a
//              serving engine reserves it at start-up) and overwritten by every run.
//   read_gbps: memory read bandwidth (bench/roofline.h read_gbps: sum of a 512 MiB fp32
//              array with all threads, best of 5); on cuda the device-to-device copy
//              bandwidth of 1 GiB, bytes read and written counted (bench/bench_device.h).
//   bound:     every fp32 weight read once per decode step (parameters() * 4 bytes; the tied
//              embedding is stored once and read once per step by the head), at read_gbps:
//              bound tokens/s = batch / (weight_bytes / bandwidth). The prefill of p0 tokens
//              is not in the bound (a few steps' worth of time), so the bound is optimistic.
//              Also printed: the compute bound of a step, 2 * batch * parameters FLOP at the
//              FMA peak (bench/roofline.h peak_gflops), which at batch 16 on 2 cores exceeds
//              the read time, and steady-state decode (batch / mean step time, no prefill).
//              On cuda no compute bound is measured: the roofline bound is the read bound.
// It also times the phases of the decode steps (forward_cached = embedding + blocks + final
// LayerNorm, head_logits, sampler) and prints each next to its own weight-read time.
// Final machine-readable line:
//   prefill_tokens_per_s=... prefill_all_logits_tokens_per_s=... decode_kv_tokens_per_s=...
//   read_gbps=... weight_bytes=... bound_decode_tokens_per_s=... decode_pct_of_bound=...
// Run it with OMP_NUM_THREADS = --threads (bench/run_decode_bench.sh does).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_device.h"
#include "bench/roofline.h"
#include "runtime/core/backend.h"
#include "runtime/model/gpt.h"
#include "runtime/model/kv_cache.h"
#include "runtime/model/token_sampler.h"

using namespace tandem;

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Time spent in each phase of the decode steps (seconds, summed over the steps counted).
struct Phases {
  double forward = 0, head = 0, sample = 0;
  int64_t steps = 0;
};

}  // namespace

int run(int argc, char** argv) {
  ModelOptions m;
  m.layers = 12, m.dim = 768, m.heads = 12, m.vocab = 50257, m.seq_len = 64;
  int batch = 4, gen = 32, steps = 5, threads = 2;
  uint64_t seed = 0;
  std::string only = "all", device = "cpu";
  for (int i = 1; i < argc; i += 2) {
    const std::string k = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "decode_bench: option %s needs a value\n", k.c_str());
      return 2;
    }
    const int v = std::atoi(argv[i + 1]);
    if (k == "--layers") m.layers = v;
    else if (k == "--dim") m.dim = v;
    else if (k == "--heads") m.heads = v;
    else if (k == "--vocab") m.vocab = v;
    else if (k == "--seq") m.seq_len = v;
    else if (k == "--batch") batch = v;
    else if (k == "--gen-tokens") gen = v;
    else if (k == "--steps") steps = v;
    else if (k == "--threads") threads = v;
    else if (k == "--seed") seed = std::strtoull(argv[i + 1], nullptr, 10);
    else if (k == "--only") only = argv[i + 1];
    else if (k == "--device") device = argv[i + 1];
    else {
      std::fprintf(stderr, "decode_bench: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  const int seq = m.seq_len;
  if (batch < 1 || gen < 1 || gen >= seq || steps < 1 ||
      (only != "all" && only != "prefill" && only != "decode")) {
    std::fprintf(stderr, "decode_bench: need batch >= 1, 1 <= gen-tokens < seq, steps >= 1, "
                         "--only all|prefill|decode\n");
    return 2;
  }
  const int p0 = seq - gen;  // the peer's prompt length for decode (final context = seq)

  auto be = bench::make_bench_backend(device, threads);
  const bool on_gpu = be->kind() != DeviceKind::CPU;
  auto tp = make_self_communicator("tp");
  Gpt model(*be, m, StageLayout{}, *tp, Recompute::None);
  model.init(seed);
  TokenSampler sampler(*be, *tp, model.vocab_begin(), model.local_vocab(), m.vocab);
  const int64_t params = model.params().numel();
  const double weight_bytes = 4.0 * static_cast<double>(params);
  const double head_bytes = 4.0 * static_cast<double>(model.local_vocab()) * m.dim;
  std::printf("tandem decode_bench device=%s threads=%d params=%.2fM layers=%d dim=%d heads=%d "
              "vocab=%d (padded %d) seq=%d batch=%d gen_tokens=%d steps=%d seed=%llu\n",
              be->name().c_str(), threads, params / 1e6, m.layers, m.dim, m.heads, m.vocab,
              m.padded_vocab(), seq, batch, gen, steps, static_cast<unsigned long long>(seed));

  // Random prompts, seeded.
  std::mt19937_64 rng(seed + 1);
  std::vector<std::vector<int32_t>> prompt(batch, std::vector<int32_t>(seq));
  for (auto& p : prompt)
    for (auto& t : p) t = static_cast<int32_t>(rng() % static_cast<uint64_t>(m.vocab));

  // KV blocks: each sequence owns ceil(seq / block_tokens) blocks of the pool.
  const int32_t bt = 16;
  const int32_t per_seq = (seq + bt - 1) / bt;
  std::vector<std::vector<int32_t>> blocks(batch);
  for (int s = 0; s < batch; ++s)
    for (int32_t b = 0; b < per_seq; ++b) blocks[s].push_back(s * per_seq + b);
  const int64_t num_blocks = static_cast<int64_t>(batch) * per_seq;
  const std::vector<SamplingParams> greedy(batch);  // temperature 0

  // ---- prefill: all seq tokens of every prompt in one forward_cached step.
  auto prefill_rates = [&](bool all_logits, const char* label) {
    std::vector<double> rates;
    const int64_t ntok = static_cast<int64_t>(batch) * seq;
    for (int rep = 0; rep < steps + 2; ++rep) {
      auto cache = model.make_kv_cache(num_blocks, bt);
      InferBatch b;
      for (int s = 0; s < batch; ++s) b.add_sequence(prompt[s], 0, blocks[s], bt, true);
      if (all_logits) {
        b.logit_rows.resize(static_cast<size_t>(ntok));
        for (int64_t r = 0; r < ntok; ++r) b.logit_rows[r] = static_cast<int32_t>(r);
      }
      const auto t0 = Clock::now();
      Tensor h = model.forward_cached(b, nullptr, *cache);
      Tensor logits = model.head_logits(h);
      be->synchronize();
      const double dt = bench::seconds_since(t0);
      const bool warm = rep < 2;
      if (!warm) rates.push_back(ntok / dt);
      std::printf("%s %d: %.1f ms tok/s %.1f%s\n", label, rep, dt * 1e3, ntok / dt,
                  warm ? " (warm-up)" : "");
      std::fflush(stdout);
    }
    return median(rates);
  };
  const bool do_prefill = only != "decode", do_decode = only != "prefill";
  const double prefill = do_prefill ? prefill_rates(false, "prefill") : 0.0;
  const double prefill_all = do_prefill ? prefill_rates(true, "prefill_all_logits") : 0.0;

  // ---- KV-cached greedy decode (prefill of p0 tokens included in the time).
  auto cache = model.make_kv_cache(num_blocks, bt);
  Phases ph;
  double prefill_ms_sum = 0;
  std::vector<int32_t> first_run;
  auto decode_run = [&](bool count) {
    std::vector<std::vector<int32_t>> out(batch);
    const auto t0 = Clock::now();
    // Prefill of the prompt: logits of each sequence's last prompt token.
    InferBatch b;
    for (int s = 0; s < batch; ++s)
      b.add_sequence(std::vector<int32_t>(prompt[s].begin(), prompt[s].begin() + p0), 0,
                     blocks[s], bt, true);
    Tensor h = model.forward_cached(b, nullptr, *cache);
    Tensor logits = model.head_logits(h);
    std::vector<int32_t> next = sampler.sample(logits, greedy);
    if (count) prefill_ms_sum += bench::seconds_since(t0) * 1e3;
    for (int s = 0; s < batch; ++s) out[s].push_back(next[s]);
    for (int i = 0; i < gen - 1; ++i) {
      InferBatch d;
      for (int s = 0; s < batch; ++s) d.add_sequence({next[s]}, p0 + i, blocks[s], bt, true);
      const auto a = Clock::now();
      Tensor hd = model.forward_cached(d, nullptr, *cache);
      if (on_gpu) be->synchronize();  // so that the phases below are the device's times
      const auto b1 = Clock::now();
      Tensor ld = model.head_logits(hd);
      be->synchronize();
      const auto c = Clock::now();
      next = sampler.sample(ld, greedy);
      const auto e = Clock::now();
      if (count) {
        ph.forward += std::chrono::duration<double>(b1 - a).count();
        ph.head += std::chrono::duration<double>(c - b1).count();
        ph.sample += std::chrono::duration<double>(e - c).count();
        ++ph.steps;
      }
      for (int s = 0; s < batch; ++s) out[s].push_back(next[s]);
    }
    const double dt = bench::seconds_since(t0);
    return std::make_pair(dt, out);
  };
  std::vector<double> kv_rates;
  bool same = true;
  std::vector<std::vector<int32_t>> warm_out;
  if (do_decode) {
    const auto warm = decode_run(false);
    warm_out = warm.second;
    std::printf("decode_kv warm-up: %.1f ms\n", warm.first * 1e3);
  }
  for (int r = 0; r < (do_decode ? steps : 0); ++r) {
    auto [dt, out] = decode_run(true);
    same = same && out == warm_out;
    kv_rates.push_back(static_cast<double>(batch) * gen / dt);
    std::printf("decode_kv %d: %d new tokens x batch %d from prompt %d in %.1f ms (%.2f ms/token "
                "step) tok/s %.2f\n",
                r, gen, batch, p0, dt * 1e3, dt / gen * 1e3, batch * gen / dt);
    std::fflush(stdout);
  }
  const double decode_kv = median(kv_rates);

  // ---- the weight-read bound.
  const double bw = on_gpu ? bench::device_copy_gbps(*be) : bench::read_gbps(threads);
  const double step_s = weight_bytes / (bw * 1e9);
  const double bound = batch / step_s;
  const double peak = on_gpu ? 0.0 : bench::peak_gflops(threads);
  const double flop_s = on_gpu ? 0.0 : 2.0 * batch * static_cast<double>(params) / (peak * 1e9);
  const double roof = batch / std::max(step_s, flop_s);
  const double n = static_cast<double>(std::max<int64_t>(ph.steps, 1));
  const double fwd_ms = ph.forward / n * 1e3, head_ms = ph.head / n * 1e3,
               sample_ms = ph.sample / n * 1e3;
  const double blocks_bytes = weight_bytes - head_bytes;  // embedding rows read: negligible
  if (on_gpu)
    std::printf("device memory bandwidth (copy of 1 GiB, read + write, best of 5): %.1f GB/s\n", bw);
  else
    std::printf("memory read bandwidth (sum of 512 MiB, %d threads, best of 5): %.1f GB/s\n",
                threads, bw);
  std::printf("weights: %.1f MB (%.1f MB tied embedding/head); one read per step: %.2f ms -> "
              "bound %.1f tok/s at batch %d\n",
              weight_bytes / 1e6, head_bytes / 1e6, step_s * 1e3, bound, batch);
  if (on_gpu)
    std::printf("compute: %.1f GFLOP per step; no compute peak measured on cuda: roofline bound "
                "= read bound %.1f tok/s\n",
                2.0 * batch * params / 1e9, roof);
  else
    std::printf("compute: %.1f GFLOP per step at the FMA peak %.1f GFLOP/s: %.2f ms -> roofline "
                "bound max(read, compute) %.1f tok/s\n",
                2.0 * batch * params / 1e9, peak, flop_s * 1e3, roof);
  std::printf("decode step phases (mean of %lld steps; weight-read time at %.1f GB/s in brackets):\n",
              static_cast<long long>(ph.steps), bw);
  std::printf("  forward_cached (embed + %d blocks + lnf) %8.3f ms  [%7.3f ms]\n", m.layers,
              fwd_ms, blocks_bytes / (bw * 1e6));
  std::printf("  head_logits (%d x %d x %lld)           %8.3f ms  [%7.3f ms]\n", batch, m.dim,
              static_cast<long long>(model.local_vocab()), head_ms, head_bytes / (bw * 1e6));
  std::printf("  sampler (greedy argmax)                  %8.3f ms\n", sample_ms);
  std::printf("  step total                               %8.3f ms  [%7.3f ms]  prompt prefill "
              "(%d x %d tokens) %.2f ms\n",
              fwd_ms + head_ms + sample_ms, step_s * 1e3, batch, p0,
              prefill_ms_sum / std::max(steps, 1));
  const double steady = batch / ((fwd_ms + head_ms + sample_ms) / 1e3);
  std::printf("decode_kv: every run yields the same tokens: %s\n", same ? "true" : "false");
  std::printf("decode_kv %.2f tok/s = %.1f%% of the weight-read bound %.1f tok/s (%.1f%% of the "
              "roofline bound %.1f); steady-state steps alone %.1f tok/s = %.1f%% of the read "
              "bound\n",
              decode_kv, 100.0 * decode_kv / bound, bound, 100.0 * decode_kv / roof, roof, steady,
              100.0 * steady / bound);
  std::printf("prefill_tokens_per_s=%.1f prefill_all_logits_tokens_per_s=%.1f "
              "decode_kv_tokens_per_s=%.2f read_gbps=%.2f weight_bytes=%.0f "
              "bound_decode_tokens_per_s=%.2f decode_pct_of_bound=%.1f "
              "steady_decode_tokens_per_s=%.2f roofline_decode_tokens_per_s=%.2f\n",
              prefill, prefill_all, decode_kv, bw, weight_bytes, bound, 100.0 * decode_kv / bound,
              steady, roof);
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "decode_bench: %s\n", e.what());
    return 1;
  }
}
