// The training step loop over a (dp x tp x pp) mesh.
#include "runtime/train/trainer.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "ckpt/checkpoint_dir.h"
#include "ckpt/tensor_file.h"
#include "kernels/elementwise.h"
#include "parallel/pipeline_schedule.h"
#include "runtime/data/bpe_tokenizer.h"
#include "runtime/data/data_loader.h"
#include "runtime/train/adamw_optimizer.h"
#include "runtime/train/checkpointer.h"
#include "runtime/train/grad_sync.h"
#include "runtime/train/lr_schedule.h"
#include "runtime/train/metrics.h"
#include "runtime/train/pipeline_executor.h"

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

std::string mib(double bytes) { return fmt::format("{:.1f} MiB", bytes / 1048576.0); }

// Reduces a few host scalars over a group (through a tensor on the backend's device, so the
// same code serves MPI and NCCL groups).
std::vector<float> allreduce_host(Backend& be, Communicator& comm, std::vector<float> v,
                                  ReduceOp op = ReduceOp::Sum) {
  if (comm.size() == 1) return v;
  const int64_t n = static_cast<int64_t>(v.size());
  Tensor host = Tensor::wrap(v.data(), DeviceKind::CPU, {n}, DType::F32);
  Tensor dev = be.empty({n});
  be.copy(dev, host);
  comm.all_reduce(dev, op);
  be.copy(host, dev);
  return v;
}

}  // namespace

struct Trainer::Impl {
  Backend& be;
  TrainerOptions o;
  Mesh& mesh;
  int rank;
  std::unique_ptr<DataLoader> train_data, val_data;
  std::unique_ptr<ModelReplica> replica;
  std::vector<Gpt*> chunks;  // replica's chunks
  std::vector<std::unique_ptr<GradSync>> syncs;
  std::vector<std::unique_ptr<AdamWOptimizer>> opts;
  std::unique_ptr<PipelineExecutor> exec;
  std::unique_ptr<Checkpointer> ckpt;
  std::vector<Action> train_actions, eval_actions;
  MetricsWriter metrics;
  int64_t per_dp = 0, per_micro = 0;  // sequences per dp rank / per micro-batch
  SafePointHandler* safe_points = nullptr;
  bool in_safe_point = false;
  double safe_point_s = 0.0;  // seconds inside the handler since the last step record
  int current_step = 0;
  // This rank's transfer plans (parallel/pipeline_transfers.h): [0] without serving windows,
  // [1] with a window at every safe cut (used when a safe point handler is set).
  TransferPlan train_plan[2], eval_plan[2];
  bool begun = false;
  int last_step = 0;
  TrainResult res;
  std::vector<double> rates;
  Clock::time_point t_start;
  double train_seconds = 0.0;

  Impl(Backend& b, const TrainerOptions& opts, Mesh& m)
      : be(b), o(opts), mesh(m), rank(m.world_rank()),
        metrics(m.world_rank() == 0 ? opts.metrics_out : std::string()) {}

  double save(int step) {
    const CheckpointOptions& co = o.train.checkpoint;
    CheckpointMeta meta;
    meta.step = step;
    meta.seed = o.train.seed;
    meta.config_yaml = o.config_yaml;
    meta.layout = mesh.describe();
    const CheckpointIoStats ss = ckpt->save(co.dir, meta, co.keep_last);
    if (rank == 0) {
      std::printf("checkpoint: step %d -> %s (%s in %.2f s, %.2f GB/s)\n", step, ss.path.c_str(),
                  mib(static_cast<double>(ss.bytes)).c_str(), ss.seconds, static_cast<double>(ss.bytes) / 1e9 / std::max(ss.seconds, 1e-9));
      std::fflush(stdout);
    }
    return ss.seconds;
  }

  // A safe point (runtime/train/safe_point.h): every rank of the replica calls it at the same
  // place; never re-entered (the handler's own work runs no training code).
  void safe_point(SafePointKind kind) {
    if (!safe_points || in_safe_point) return;
    in_safe_point = true;
    const auto t0 = Clock::now();
    try {
      safe_points->at_safe_point({kind, current_step, replica->weights_version()});
    } catch (...) {
      in_safe_point = false;
      throw;
    }
    safe_point_s += seconds_since(t0);
    in_safe_point = false;
  }

  // The chunk holding this rank's copy of the tied embedding, if any.
  Param* tied_embedding() {
    if (mesh.pp_size() == 1) return nullptr;
    if (mesh.first_stage()) return chunks.front()->params().find("wte");
    if (mesh.last_stage()) return chunks.back()->params().find("wte");
    return nullptr;
  }

  // The tied embedding's two copies (the embedding's in virtual stage 0, the head's in the
  // last) end each backward with the sum of both gradients: over the embedding group when
  // they sit on different pipeline ranks; on this rank when pp = 1 and the interleaved
  // schedule put both chunks here.
  void sum_tied_embedding_grads() {
    if (Param* wte = tied_embedding()) {
      mesh.embedding()->all_reduce(wte->grad);
    } else if (mesh.pp_size() == 1 && chunks.size() > 1) {
      Param* first = chunks.front()->params().find("wte");
      Param* last = chunks.back()->params().find("wte");
      TANDEM_CHECK(first && last, "pp = 1 with {} chunks: the first and last chunks must hold wte",
                   chunks.size());
      kernels::add_inplace(be, first->grad, last->grad);
      be.copy(last->grad, first->grad);
    }
  }

  PipelineRunStats run_batch(const DataLoader& data, int64_t index, bool train) {
    const int64_t T = o.model.seq_len;
    const int64_t first = mesh.dp_rank() * per_dp;
    auto load = [&](int mb, int32_t* in, int32_t* tg) {
      data.batch(index, first + mb * per_micro, per_micro, in, tg);
    };
    std::vector<std::function<void(int64_t)>> hooks;
    for (auto& s : syncs) {
      GradSync* sync = s.get();
      hooks.push_back([sync](int64_t off) { sync->grads_final_from(off); });
    }
    const float scale = 1.0f / static_cast<float>(static_cast<int64_t>(o.train.batch) * T);
    const int windows = safe_points ? 1 : 0;
    std::function<void(size_t)> at_window;
    if (windows) at_window = [this](size_t) { safe_point(SafePointKind::BetweenActions); };
    return exec->run(train ? train_actions : eval_actions, train ? train_plan[windows] : eval_plan[windows],
                     o.parallel.microbatches, per_micro, T, load, train, scale,
                     train ? hooks : decltype(hooks){}, at_window);
  }

  // Mean token loss of a global batch: last stages hold the sums; dp ranks hold slices.
  double global_loss(const PipelineRunStats& st) {
    std::vector<float> v = {static_cast<float>(st.loss_sum), static_cast<float>(st.loss_tokens)};
    v = allreduce_host(be, mesh.pp(), v);
    v = allreduce_host(be, mesh.dp(), v);
    return static_cast<double>(v[0]) / std::max(1.0, static_cast<double>(v[1]));
  }

  double validate() {
    const int64_t avail = val_data->windows() / o.train.batch;
    const int64_t n = std::min<int64_t>(o.train.eval_batches, std::max<int64_t>(avail, 1));
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += global_loss(run_batch(*val_data, i, false));
    return sum / static_cast<double>(n);
  }

  void sample() {
    const SampleOptions& s = o.sample;
    if (s.count <= 0) return;
    if (mesh.pp_size() > 1) {
      spdlog::info("samples skipped: sampling needs the whole model on each rank (parallel.pp=1)");
      return;
    }
    Gpt& model = *chunks.front();
    BpeTokenizer tok = BpeTokenizer::load(o.data.tokenizer);
    std::vector<int32_t> prompt = tok.encode(s.prompt);
    if (prompt.empty()) prompt.push_back(tok.eot_id());
    const bool tty = isatty(fileno(stdout));  // bold continuation on a terminal
    for (int i = 0; i < s.count; ++i) {
      std::mt19937_64 rng(o.train.seed * 1000003ull + static_cast<uint64_t>(i));
      std::vector<int32_t> ctx = prompt;
      for (int t = 0; t < s.tokens; ++t) {
        std::vector<float> logits = model.next_token_logits(ctx);
        const int32_t next = pick(logits, rng);
        if (next == tok.eot_id()) break;  // the document ended
        ctx.push_back(next);
      }
      if (rank == 0) {
        std::vector<int32_t> gen(ctx.begin() + static_cast<int64_t>(prompt.size()), ctx.end());
        std::printf("sample %d: %s%s%s%s\n", i + 1, s.prompt.c_str(), tty ? "\033[1m" : "",
                    tok.decode(gen).c_str(), tty ? "\033[0m" : "");
      }
    }
    std::fflush(stdout);
  }

  // Temperature + top-k sampling; temperature 0 is greedy. The same draw on every rank.
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
    for (int64_t i = 0; i < k; ++i)
      if ((u -= p[i]) <= 0) return idx[i];
    return idx[k - 1];
  }
};

Trainer::Trainer(Backend& be, const TrainerOptions& opts, Mesh& mesh)
    : impl_(std::make_unique<Impl>(be, opts, mesh)) {
  Impl& I = *impl_;
  const TrainerOptions& o = I.o;
  const ParallelOptions& p = o.parallel;
  TANDEM_CHECK(o.train.batch % (mesh.dp_size() * p.microbatches) == 0,
               "train.batch={} is not divisible by parallel.dp={} * parallel.microbatches={}",
               o.train.batch, mesh.dp_size(), p.microbatches);
  I.per_dp = o.train.batch / mesh.dp_size();
  I.per_micro = I.per_dp / p.microbatches;
  I.train_data = std::make_unique<DataLoader>(o.data.train, o.model.seq_len, o.train.batch,
                                              o.train.seed, true);
  I.val_data = std::make_unique<DataLoader>(o.data.val, o.model.seq_len, o.train.batch,
                                            o.train.seed, false);

  const ScheduleKind kind = parse_schedule(p.schedule);
  const int nchunks = kind == ScheduleKind::Interleaved ? p.chunks : 1;
  check_schedule(kind, mesh.pp_size(), p.microbatches, nchunks);
  const int64_t bucket = static_cast<int64_t>(p.bucket_mb) * 1048576 / 4;
  AdamWConfig ac;
  ac.beta1 = o.train.beta1;
  ac.beta2 = o.train.beta2;
  ac.eps = o.train.eps;
  ac.weight_decay = o.train.weight_decay;
  ac.offload = p.offload;
  Precision precision = Precision::F32;
  TANDEM_CHECK(parse_precision(o.train.precision, &precision),
               "train.precision must be fp32 or bf16, got '{}'", o.train.precision);
  I.replica = std::make_unique<ModelReplica>(be, mesh, o.model, p, nchunks, false, precision);
  if (!o.resume) I.replica->init(o.train.seed);  // a resumed run loads every stored element
  I.chunks = I.replica->chunk_ptrs();
  for (Gpt* model : I.chunks) {
    auto sync = std::make_unique<GradSync>(model->params(), mesh.dp(), p.zero, bucket);
    I.opts.push_back(std::make_unique<AdamWOptimizer>(model->params(), sync->owned(), ac));
    I.syncs.push_back(std::move(sync));
  }
  I.exec = std::make_unique<PipelineExecutor>(I.chunks, mesh.pp(), mesh.pp_size(), mesh.pp_rank());
  I.train_actions = make_schedule(kind, mesh.pp_size(), mesh.pp_rank(), p.microbatches, nchunks);
  I.eval_actions = PipelineExecutor::forward_only(p.microbatches, nchunks);
  {  // Transfer plans over every pp rank's list; safe points between actions at the cuts every
     // pp rank reaches without waiting on another.
    std::vector<std::vector<Action>> train_lists, eval_lists;
    for (int s = 0; s < mesh.pp_size(); ++s) {
      train_lists.push_back(make_schedule(kind, mesh.pp_size(), s, p.microbatches, nchunks));
      eval_lists.push_back(I.eval_actions);
    }
    const int r = mesh.pp_rank();
    I.train_plan[0] = plan_transfers(train_lists, nchunks)[r];
    I.train_plan[1] = plan_transfers(train_lists, nchunks, safe_cuts(train_lists, nchunks))[r];
    I.eval_plan[0] = plan_transfers(eval_lists, nchunks)[r];
    I.eval_plan[1] = plan_transfers(eval_lists, nchunks, safe_cuts(eval_lists, nchunks))[r];
  }
  if (mesh.pp_size() == 1) {  // inside forward and backward too: every tp rank is at the same place
    Impl* impl = &I;
    for (Gpt* model : I.chunks)
      model->set_boundary_hook([impl](Gpt::Boundary b) {
        impl->safe_point(b == Gpt::Boundary::ForwardBlock    ? SafePointKind::InForward
                         : b == Gpt::Boundary::BackwardBlock ? SafePointKind::InBackward
                                                             : SafePointKind::InHead);
      });
  }
  std::vector<CheckpointChunk> cc;
  for (size_t c = 0; c < I.chunks.size(); ++c) cc.push_back({I.chunks[c], I.opts[c].get()});
  I.ckpt = std::make_unique<Checkpointer>(be, mesh, o.model, p.zero, std::move(cc));
}

Trainer::~Trainer() = default;

void Trainer::begin() {
  Impl& I = *impl_;
  TANDEM_CHECK(!I.begun, "Trainer::begin() called twice");
  I.begun = true;
  const TrainerOptions& o = I.o;
  Mesh& mesh = I.mesh;
  const ParallelOptions& p = o.parallel;
  const int64_t T = o.model.seq_len;
  const int64_t step_tokens = static_cast<int64_t>(o.train.batch) * T;
  // Every rank reports what it holds: parameters, gradients, optimizer state, activations.
  int64_t nparams = 0, opt_bytes = 0, act_bytes = 0, layers = 0;
  for (size_t c = 0; c < I.chunks.size(); ++c) {
    nparams += I.chunks[c]->params().numel();
    opt_bytes += I.opts[c]->state_bytes();
    act_bytes += I.chunks[c]->activation_bytes(I.per_micro, T);
    layers += I.chunks[c]->num_local_layers();
  }
  const int in_flight = max_in_flight(I.train_actions);
  const bool bf16 = I.chunks.front()->precision() == Precision::BF16;
  spdlog::info("layout: {} | schedule {} with {} micro-batch(es) of {} sequence(s) per dp rank | "
               "recompute {} | zero {} | offload {} | precision {}",
               mesh.describe(), p.schedule, p.microbatches, I.per_micro, recompute_name(p.recompute),
               p.zero, p.offload ? "on" : "off", o.train.precision);
  if (bf16 && I.be.kind() == DeviceKind::CPU && I.rank == 0)
    spdlog::info("precision bf16 on the CPU backend: the reference path (bf16-rounded GEMM operands, "
                 "fp32 accumulation; no speed-up over fp32)");
  const std::string bf16_copy = bf16 ? fmt::format(" (+ bf16 copy {})", mib(nparams * 2.0)) : "";
  std::printf("[rank %d] memory: %lld parameters in %lld layers | params %s%s | grads %s | optimizer "
              "state %s%s | activations ~%s (%d micro-batch(es) in flight x %s)\n",
              I.rank, static_cast<long long>(nparams), static_cast<long long>(layers),
              mib(nparams * 4.0).c_str(), bf16_copy.c_str(), mib(nparams * 4.0).c_str(), mib(opt_bytes).c_str(),
              p.offload ? " on the host" : "", mib(static_cast<double>(act_bytes) * in_flight).c_str(),
              in_flight, mib(act_bytes).c_str());
  std::fflush(stdout);
  spdlog::info("model: layers={} dim={} heads={} vocab={} (padded {}) seq_len={}", o.model.layers,
               o.model.dim, o.model.heads, o.model.vocab, o.model.padded_vocab(), o.model.seq_len);
  spdlog::info("data: {} train tokens ({} windows), {} val tokens; {} tokens per step",
               I.train_data->tokens(), I.train_data->windows(), I.val_data->tokens(), step_tokens);

  TrainResult& res = I.res;
  res.val_loss = std::nan("");
  const CheckpointOptions& co = o.train.checkpoint;
  if (o.resume) {
    TANDEM_CHECK(!co.dir.empty(), "--resume needs train.checkpoint.dir");
    auto file = ckpt::latest_checkpoint(co.dir);
    if (!file)
      throw ckpt::CheckpointError(fmt::format("--resume: no checkpoint in {} (train.checkpoint.dir; no {}/latest)",
                                              co.dir, co.dir));
    const CheckpointIoStats ls = I.ckpt->load(*file);
    I.replica->refresh_bf16();
    res.first_step = static_cast<int>(ls.step) + 1;
    if (I.rank == 0) {
      std::printf("resumed from %s at step %lld%s (%s read by rank 0 in %.2f s)\n", file->c_str(),
                  static_cast<long long>(ls.step), ls.had_optimizer_state ? "" : ", fresh optimizer state",
                  mib(static_cast<double>(ls.bytes)).c_str(), ls.seconds);
      std::fflush(stdout);
    }
  }
  I.last_step = o.train.stop_after > 0 ? o.train.stop_after : o.train.steps;

  if (res.first_step > I.last_step && I.rank == 0)
    std::printf("nothing to train: the checkpoint is at step %d and the run ends at step %d\n", res.first_step - 1,
                I.last_step);
  I.replica->set_weights_version(res.first_step - 1);
  I.t_start = Clock::now();
}

int Trainer::first_step() const { return impl_->res.first_step; }
int Trainer::last_step() const { return impl_->last_step; }
ModelReplica& Trainer::replica() { return *impl_->replica; }
void Trainer::set_safe_point_handler(SafePointHandler* h) { impl_->safe_points = h; }

StepReport Trainer::step(int step) {
  Impl& I = *impl_;
  TANDEM_CHECK(I.begun, "Trainer::step({}) before begin()", step);
  const TrainerOptions& o = I.o;
  Mesh& mesh = I.mesh;
  const ParallelOptions& p = o.parallel;
  const int64_t T = o.model.seq_len;
  const int64_t step_tokens = static_cast<int64_t>(o.train.batch) * T;
  const LrSchedule sched{o.train.lr, o.train.warmup, o.train.steps, o.train.min_lr_ratio};
  const CheckpointOptions& co = o.train.checkpoint;
  TrainResult& res = I.res;
  const int last_step = I.last_step;
  Communicator* groups[] = {&mesh.tp(), &mesh.dp(), &mesh.pp(), mesh.embedding()};
  const auto t0 = Clock::now();
  for (Communicator* g : groups)
    if (g) g->reset_stats();
  for (size_t c = 0; c < I.chunks.size(); ++c) {
    I.chunks[c]->params().zero_grads();
    I.syncs[c]->begin_step();
  }
  I.current_step = step;
  const PipelineRunStats st = I.run_batch(*I.train_data, step - 1, true);
  I.sum_tied_embedding_grads();
  for (auto& s : I.syncs) s->finish();
  double sq = 0.0;
  for (auto& opt : I.opts) sq += opt->local_grad_sq();
  std::vector<float> sqv = {static_cast<float>(sq)};
  sqv = allreduce_host(I.be, mesh.tp(), sqv);
  sqv = allreduce_host(I.be, mesh.pp(), sqv);
  if (p.zero == 1) sqv = allreduce_host(I.be, mesh.dp(), sqv);
  const double norm = std::sqrt(static_cast<double>(sqv[0]));
  float clip = 1.0f;
  if (o.train.grad_clip > 0 && norm > o.train.grad_clip)
    clip = static_cast<float>(o.train.grad_clip / (norm + 1e-6));
  const float lr = sched.at(step);
  for (auto& opt : I.opts) opt->step(lr, step, clip);
  for (auto& s : I.syncs) s->gather_params();
  I.replica->refresh_bf16();  // mixed precision: the GEMMs' copy of the new fp32 weights
  I.replica->set_weights_version(step);  // weights changed: every later safe point sees `step`
  const double loss = I.global_loss(st);
  I.be.synchronize();
  const double dt = seconds_since(t0);
  I.train_seconds += dt;
  const double rate = static_cast<double>(step_tokens) / dt;
  if (step > res.first_step || last_step == res.first_step) I.rates.push_back(rate);
  TANDEM_CHECK(std::isfinite(loss), "training loss became {} at step {}", loss, step);

  // Bytes this rank handed to each group this step; pipeline idle fraction across stages.
  std::vector<float> comm = {static_cast<float>(mesh.tp().stats().bytes),
                             static_cast<float>(mesh.dp().stats().bytes),
                             static_cast<float>(mesh.pp().stats().bytes),
                             static_cast<float>(mesh.embedding() ? mesh.embedding()->stats().bytes : 0)};
  const double busy = st.total_s > 0 ? st.compute_s / st.total_s : 1.0;
  std::vector<float> stage_busy = allreduce_host(I.be, mesh.pp(), {static_cast<float>(busy)});
  const double bubble = 1.0 - stage_busy[0] / mesh.pp_size();
  const size_t my_peak = I.be.allocator().stats().peak;
  const double peak = allreduce_host(I.be, mesh.world(), {static_cast<float>(my_peak)}, ReduceOp::Max)[0];

  double val = std::nan("");
  const bool eval_now = (o.train.eval_every > 0 && step % o.train.eval_every == 0) ||
                        step == last_step;
  if (eval_now) val = res.val_loss = I.validate();
  const double elapsed = seconds_since(I.t_start);
  const double eta = I.train_seconds / (step - res.first_step + 1) * (last_step - step);
  if (I.rank == 0) {
    std::string v = std::isfinite(val) ? fmt::format(" | val {:.4f}", val) : "";
    std::printf("step %5d/%d | loss %.4f%s | lr %.2e | norm %.3f | %.0f tok/s | elapsed %s | eta %s | peak %s\n",
                step, o.train.steps, loss, v.c_str(), lr, norm, rate, hms(elapsed).c_str(),
                hms(eta).c_str(), mib(peak).c_str());
    std::fflush(stdout);
  }
  std::vector<std::pair<std::string, MetricValue>> rec = {
      {"step", int64_t{step}},       {"loss", loss},
      {"lr", double{lr}},            {"tokens_per_s", rate},
      {"grad_norm", norm},           {"elapsed_s", elapsed},
      {"step_s", dt},                {"peak_bytes", static_cast<int64_t>(peak)},
      {"comm_bytes_tp", double{comm[0]}}, {"comm_bytes_dp", double{comm[1]}},
      {"comm_bytes_pp", double{comm[2]}}, {"comm_bytes_embedding", double{comm[3]}},
      {"pipeline_bubble", bubble}};
  if (I.safe_points) {  // time in the handler (serving windows) since the previous record
    rec.emplace_back("safe_point_s", I.safe_point_s);
    I.safe_point_s = 0.0;
  }
  if (std::isfinite(val)) rec.emplace_back("val_loss", val);
  if (!co.dir.empty() && ((co.every > 0 && step % co.every == 0) || step == last_step)) {
    rec.emplace_back("checkpoint_s", I.save(step));
  }
  I.metrics.write(rec);
  res.loss = loss;
  res.steps = step;
  I.safe_point(SafePointKind::BetweenSteps);
  StepReport rep;
  rep.step = step;
  rep.loss = loss;
  rep.grad_norm = norm;
  rep.val_loss = val;
  rep.seconds = dt;
  return rep;
}

TrainResult Trainer::finish() {
  Impl& I = *impl_;
  TrainResult& res = I.res;
  std::vector<double>& rates = I.rates;
  if (!rates.empty()) {
    std::sort(rates.begin(), rates.end());
    res.tokens_per_s = rates[rates.size() / 2];
  }
  res.peak_bytes = I.be.allocator().stats().peak;
  if (I.rank == 0) {
    std::printf("final: step=%d loss=%.4f val_loss=%.4f tokens_per_s=%.1f\n", res.steps, res.loss,
                res.val_loss, res.tokens_per_s);
    std::fflush(stdout);
  }
  I.sample();
  return res;
}

TrainResult Trainer::run() {
  begin();
  for (int s = first_step(); s <= last_step(); ++s) step(s);
  return finish();
}

}  // namespace tandem
