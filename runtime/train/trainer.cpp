// The training step loop.
#include "runtime/train/trainer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include <unistd.h>

#include "runtime/data/bpe_tokenizer.h"
#include "runtime/data/data_loader.h"
#include "runtime/train/adamw_optimizer.h"
#include "runtime/train/lr_schedule.h"
#include "runtime/train/metrics.h"

namespace tandem {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string hms(double s) {
  if (!std::isfinite(s) || s < 0) s = 0;
  auto t = static_cast<int64_t>(s + 0.5);
  return fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
}

std::string mib(size_t bytes) { return fmt::format("{:.1f} MiB", bytes / 1048576.0); }

}  // namespace

struct Trainer::Impl {
  Backend& be;
  TrainerOptions o;
  Communicator& tp;
  std::unique_ptr<DataLoader> train_data, val_data;
  std::unique_ptr<AdamWOptimizer> opt;
  MetricsWriter metrics;
  int64_t per_micro = 0;  // sequences per micro-batch

  Impl(Backend& b, const TrainerOptions& opts, Communicator& t)
      : be(b), o(opts), tp(t), metrics(opts.rank == 0 ? opts.metrics_out : std::string()) {}

  // Forward (and backward when training) of one global batch; returns the mean token loss.
  double run_batch(Gpt& model, const DataLoader& data, int64_t index, bool train) {
    const int64_t T = o.model.seq_len;
    const int64_t micro = o.parallel.microbatches;
    const float scale = 1.0f / static_cast<float>(o.train.batch * T);
    std::vector<int32_t> inputs(per_micro * T), targets(per_micro * T);
    double loss_sum = 0.0;
    int64_t loss_tokens = 0;
    for (int64_t mb = 0; mb < micro; ++mb) {
      data.batch(index, mb * per_micro, per_micro, inputs.data(), targets.data());
      auto st = model.forward(per_micro, T, inputs.data(), nullptr, targets.data(), train, scale);
      loss_sum += st->loss_sum;
      loss_tokens += st->loss_tokens;
      if (train) model.backward(*st, nullptr);
    }
    return loss_sum / static_cast<double>(std::max<int64_t>(loss_tokens, 1));
  }

  double validate(Gpt& model) {
    const int64_t avail = val_data->windows() / o.train.batch;
    const int64_t n = std::min<int64_t>(o.train.eval_batches, std::max<int64_t>(avail, 1));
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += run_batch(model, *val_data, i, false);
    return sum / static_cast<double>(n);
  }

  void sample(Gpt& model) {
    const SampleOptions& s = o.sample;
    if (s.count <= 0) return;
    BpeTokenizer tok = BpeTokenizer::load(o.data.tokenizer);
    std::vector<int32_t> prompt = tok.encode(s.prompt);
    if (prompt.empty()) prompt.push_back(tok.eot_id());
    for (int i = 0; i < s.count; ++i) {
      std::mt19937_64 rng(o.train.seed * 1000003ull + static_cast<uint64_t>(i));
      std::vector<int32_t> ctx = prompt;
      for (int t = 0; t < s.tokens; ++t) {
        std::vector<float> logits = model.next_token_logits(ctx);
        ctx.push_back(pick(logits, rng));
      }
      if (o.rank == 0) {
        std::vector<int32_t> gen(ctx.begin() + static_cast<int64_t>(prompt.size()), ctx.end());
        std::string text = tok.decode(gen);
        const bool tty = isatty(fileno(stdout));  // bold continuation on a terminal
        std::printf("sample %d: %s%s%s%s\n", i + 1, s.prompt.c_str(), tty ? "\033[1m" : "",
                    text.c_str(), tty ? "\033[0m" : "");
      }
    }
    std::fflush(stdout);
  }

  // Temperature + top-k sampling; temperature 0 is greedy. Same draw on every rank.
  int32_t pick(std::vector<float>& logits, std::mt19937_64& rng) const {
    const SampleOptions& s = o.sample;
    const int64_t V = static_cast<int64_t>(logits.size());
    if (s.temperature <= 0.0f)
      return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    std::vector<int32_t> idx(V);
    for (int64_t i = 0; i < V; ++i) idx[i] = static_cast<int32_t>(i);
    const int64_t k = s.top_k > 0 ? std::min<int64_t>(s.top_k, V) : V;
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    const double mx = logits[idx[0]];
    std::vector<double> p(k);
    double z = 0.0;
    for (int64_t i = 0; i < k; ++i) z += p[i] = std::exp((logits[idx[i]] - mx) / s.temperature);
    double u = std::uniform_real_distribution<double>(0.0, z)(rng);
    for (int64_t i = 0; i < k; ++i) {
      if ((u -= p[i]) <= 0) return idx[i];
    }
    return idx[k - 1];
  }
};

Trainer::Trainer(Backend& be, const TrainerOptions& opts, Communicator& tp)
    : impl_(std::make_unique<Impl>(be, opts, tp)) {
  const TrainerOptions& o = impl_->o;
  TANDEM_CHECK(o.train.batch % o.parallel.microbatches == 0,
               "train.batch={} is not divisible by parallel.microbatches={}", o.train.batch,
               o.parallel.microbatches);
  impl_->per_micro = o.train.batch / o.parallel.microbatches;
  impl_->train_data = std::make_unique<DataLoader>(o.data.train, o.model.seq_len, o.train.batch,
                                                   o.train.seed, true);
  impl_->val_data = std::make_unique<DataLoader>(o.data.val, o.model.seq_len, o.train.batch,
                                                 o.train.seed, false);
  model_ = std::make_unique<Gpt>(be, o.model, StageLayout{}, tp, o.parallel.recompute);
  model_->init(o.train.seed);
  AdamWConfig ac;
  ac.beta1 = o.train.beta1;
  ac.beta2 = o.train.beta2;
  ac.eps = o.train.eps;
  ac.weight_decay = o.train.weight_decay;
  ac.offload = o.parallel.offload;
  ParamStore& ps = model_->params();
  impl_->opt = std::make_unique<AdamWOptimizer>(ps, param_ranges(ps, 0, ps.numel()), ac);
}

Trainer::~Trainer() = default;

TrainResult Trainer::run() {
  Impl& I = *impl_;
  const TrainerOptions& o = I.o;
  Gpt& model = *model_;
  ParamStore& ps = model.params();
  const int64_t T = o.model.seq_len;
  const int64_t step_tokens = static_cast<int64_t>(o.train.batch) * T;
  LrSchedule sched{o.train.lr, o.train.warmup, o.train.steps, o.train.min_lr_ratio};

  spdlog::info("model: {} parameters on this rank ({}), layers={} dim={} heads={} vocab={} (padded {}) seq_len={}",
               ps.numel(), mib(ps.numel() * 4), o.model.layers, o.model.dim, o.model.heads,
               o.model.vocab, o.model.padded_vocab(), o.model.seq_len);
  spdlog::info("memory: params {} | grads {} | optimizer state {}{} | activations ~{} per micro-batch ({} recompute)",
               mib(ps.numel() * 4), mib(ps.numel() * 4), mib(I.opt->state_bytes()),
               o.parallel.offload ? " (host)" : "", mib(model.activation_bytes(I.per_micro, T)),
               recompute_name(o.parallel.recompute));
  spdlog::info("data: {} train tokens ({} windows), {} val tokens; {} tokens per step",
               I.train_data->tokens(), I.train_data->windows(), I.val_data->tokens(), step_tokens);

  TrainResult res;
  res.val_loss = std::nan("");
  std::vector<double> rates;
  const auto t_start = Clock::now();
  double train_seconds = 0.0;
  for (int step = 1; step <= o.train.steps; ++step) {
    const auto t0 = Clock::now();
    ps.zero_grads();
    const double loss = I.run_batch(model, *I.train_data, step - 1, true);
    double sq = I.opt->local_grad_sq();
    const double norm = std::sqrt(sq);
    float clip = 1.0f;
    if (o.train.grad_clip > 0 && norm > o.train.grad_clip)
      clip = static_cast<float>(o.train.grad_clip / (norm + 1e-6));
    const float lr = sched.at(step);
    I.opt->step(lr, step, clip);
    I.be.synchronize();
    const double dt = seconds_since(t0);
    train_seconds += dt;
    const double rate = static_cast<double>(step_tokens) / dt;
    if (step > 1 || o.train.steps == 1) rates.push_back(rate);
    TANDEM_CHECK(std::isfinite(loss), "training loss became {} at step {}", loss, step);

    double val = std::nan("");
    const bool eval_now = (o.train.eval_every > 0 && step % o.train.eval_every == 0) ||
                          step == o.train.steps;
    if (eval_now) val = res.val_loss = I.validate(model);
    const size_t peak = I.be.allocator().stats().peak;
    const double elapsed = seconds_since(t_start);
    const double eta = train_seconds / step * (o.train.steps - step);
    if (o.rank == 0) {
      std::string v = std::isfinite(val) ? fmt::format(" | val {:.4f}", val) : "";
      std::printf("step %5d/%d | loss %.4f%s | lr %.2e | norm %.3f | %.0f tok/s | elapsed %s | eta %s | peak %s\n",
                  step, o.train.steps, loss, v.c_str(), lr, norm, rate, hms(elapsed).c_str(),
                  hms(eta).c_str(), mib(peak).c_str());
      std::fflush(stdout);
    }
    std::vector<std::pair<std::string, MetricValue>> rec = {
        {"step", int64_t{step}}, {"loss", loss}, {"lr", double{lr}}, {"tokens_per_s", rate},
        {"grad_norm", norm}, {"elapsed_s", elapsed}, {"peak_bytes", static_cast<int64_t>(peak)}};
    if (std::isfinite(val)) rec.emplace_back("val_loss", val);
    I.metrics.write(rec);
    res.loss = loss;
    res.steps = step;
  }
  if (!rates.empty()) {
    std::sort(rates.begin(), rates.end());
    res.tokens_per_s = rates[rates.size() / 2];
  }
  res.peak_bytes = I.be.allocator().stats().peak;
  if (o.rank == 0) {
    std::printf("final: step=%d loss=%.4f val_loss=%.4f tokens_per_s=%.1f\n", res.steps, res.loss,
                res.val_loss, res.tokens_per_s);
    std::fflush(stdout);
  }
  I.sample(model);
  return res;
}

}  // namespace tandem
