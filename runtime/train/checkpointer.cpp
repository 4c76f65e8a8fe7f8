// Layout-independent training checkpoints over parallel HDF5 (contract in the header).
#include "runtime/train/checkpointer.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <filesystem>

#include "ckpt/checkpoint_dir.h"
#include "ckpt/tensor_file.h"
#include "parallel/agreement.h"
#include "parallel/mpi_communicator.h"
#include "runtime/model/param_catalogue.h"
#include "runtime/train/checkpoint_plan.h"

namespace tandem {

namespace {

using ckpt::CheckpointError;
using ckpt::Piece;
using ckpt::Segment;
using Clock = std::chrono::steady_clock;

std::vector<Piece> rebased(std::vector<Piece> ps, int64_t origin) {
  for (Piece& p : ps) p.local_offset -= origin;
  return ps;
}

// Host access to a tensor: its own memory on the CPU, else a host copy (kept in `keep`).
float* host_of(Backend& be, Tensor& t, std::vector<Tensor>& keep, bool copy_in) {
  if (t.is_cpu()) return t.f32();
  keep.push_back(be.host_empty({t.numel()}));
  if (copy_in) be.copy(keep.back(), t);
  return keep.back().f32();
}

const char* const* const kStates = kCheckpointStates;

std::string model_line(const ModelOptions& m) {
  return fmt::format("layers={} dim={} heads={} vocab={} seq_len={}", m.layers, m.dim, m.heads, m.vocab, m.seq_len);
}

// Fault injection for the kill-during-save test: TANDEM_FAULT_SAVE_PAUSE=STEP:SECONDS makes
// every rank sleep for SECONDS in the middle of the save of step STEP (after the weights,
// before the optimizer state), so a test can kill a rank while the file is half written.
void fault_pause(int64_t step) {
  const char* env = std::getenv("TANDEM_FAULT_SAVE_PAUSE");
  long long at = -1;
  double secs = 0;
  if (env && std::sscanf(env, "%lld:%lf", &at, &secs) == 2 && at == step) {
    spdlog::warn("TANDEM_FAULT_SAVE_PAUSE: pausing {} s inside the save of step {}", secs, step);
    std::this_thread::sleep_for(std::chrono::duration<double>(secs));
  }
}

bool fault_no_reserve() {
  const char* env = std::getenv("TANDEM_FAULT_NO_RESERVE");
  return env && std::string(env) == "1";
}

// The bytes of tensor data and the datasets of a file holding the model and `states` states.
std::pair<int64_t, int> file_extent(const std::vector<CatalogueEntry>& cat, int states) {
  int64_t numel = 0;
  for (const CatalogueEntry& e : cat) numel += ckpt::dims_numel(e.shape);
  return {numel * 4 * (1 + states), static_cast<int>(cat.size()) * (1 + states)};
}

// Throws the first failure of any rank (every rank the same message).
void agree(Communicator& comm, const std::string& mine) {
  const GroupFailure f = first_failure(comm, mine);
  if (f.failed()) throw CheckpointError(f.describe(comm.size()));
}

}  // namespace

std::vector<ckpt::HostTensor> read_model_tensors(const std::string& file, ModelOptions* model) {
  ckpt::TensorFileReader r(MPI_COMM_SELF, file);
  *model = read_checkpoint_header(r).model;
  std::vector<ckpt::HostTensor> out;
  for (const CatalogueEntry& e : param_catalogue(*model)) {
    ckpt::HostTensor t{e.name, e.shape, std::vector<float>(static_cast<size_t>(ckpt::dims_numel(e.shape)))};
    const Piece all = ckpt::whole_tensor(e.shape);
    r.read_tensor("model/" + e.path, e.shape, {Segment{t.data.data(), {all}, {all}}});
    out.push_back(std::move(t));
  }
  r.verify();
  return out;
}

std::string write_model_checkpoint(const std::string& dir, const ModelOptions& m,
                                   const std::vector<ckpt::HostTensor>& tensors, const CheckpointMeta& meta) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw CheckpointError(fmt::format("cannot create checkpoint directory {}: {}", dir, ec.message()));
  const auto cat = param_catalogue(m);
  TANDEM_CHECK(tensors.size() == cat.size(), "{} tensors for a model of {} parameters", tensors.size(), cat.size());
  ckpt::remove_stale_temporaries(dir);
  {
    ckpt::TensorFileWriter w(MPI_COMM_SELF, ckpt::temp_path(dir, meta.step));
    const auto [bytes, datasets] = file_extent(cat, 0);
    w.reserve(bytes, datasets);
    write_checkpoint_attrs(w, m, meta, false, false);
    for (size_t i = 0; i < cat.size(); ++i) {
      const ckpt::HostTensor& t = tensors[i];
      TANDEM_CHECK(t.name == cat[i].name && t.shape == cat[i].shape, "tensor {} {} where the model has {} {}", t.name,
                   ckpt::dims_str(t.shape), cat[i].name, ckpt::dims_str(cat[i].shape));
      w.write_tensor("model/" + cat[i].path, t.shape,
                     {Segment{const_cast<float*>(t.data.data()), {ckpt::whole_tensor(t.shape)}, {}}});
    }
    w.close();
  }
  return ckpt::publish(dir, meta.step, 0);
}

Checkpointer::Checkpointer(Backend& be, Mesh& mesh, const ModelOptions& model, int zero,
                           std::vector<CheckpointChunk> chunks)
    : be_(be), mesh_(mesh), model_(model), zero_(zero), chunks_(std::move(chunks)),
      comm_(make_mpi_communicator(mesh.world_comm(), "checkpoint", mesh.timeout_s())) {}

Checkpointer::~Checkpointer() = default;

CheckpointIoStats Checkpointer::save(const std::string& dir, const CheckpointMeta& meta, int keep_last) {
  const auto t0 = Clock::now();
  MPI_Comm comm = mesh_.world_comm();
  std::string mkdir_error;
  if (mesh_.world_rank() == 0) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) mkdir_error = fmt::format("cannot create checkpoint directory {} (train.checkpoint.dir): {}", dir, ec.message());
    else ckpt::remove_stale_temporaries(dir);  // a save that died must not keep the disk full
  }
  agree(*comm_, mkdir_error);
  const int dpr = mesh_.dp_rank(), dps = mesh_.dp_size();
  std::vector<Tensor> keep;
  const size_t nc = chunks_.size();
  std::vector<float*> vals(nc);
  std::vector<std::array<float*, 3>> state(nc);
  std::vector<std::vector<OwnedRange>> pw(nc), sw(nc);
  const bool has_master = chunks_.front().opt->has_master();
  for (size_t c = 0; c < nc; ++c) {
    ParamStore& st = chunks_[c].model->params();
    AdamWOptimizer& opt = *chunks_[c].opt;
    vals[c] = host_of(be_, st.values(), keep, true);
    state[c] = {host_of(be_, opt.m(), keep, true), host_of(be_, opt.v(), keep, true),
                has_master ? host_of(be_, opt.master(), keep, true) : nullptr};
    pw[c] = owned_param_writes(st, dpr, dps);
    sw[c] = owned_state_writes(st, opt.state_views(), zero_, dpr, dps);
  }
  const auto cat = param_catalogue(model_);
  const std::string tmp = ckpt::temp_path(dir, meta.step);
  ckpt::TensorFileWriter w(comm, tmp, mesh_.timeout_s());
  if (!fault_no_reserve()) {
    const auto [bytes, datasets] = file_extent(cat, has_master ? 3 : 2);
    w.reserve(bytes, datasets);
  }
  write_checkpoint_attrs(w, model_, meta, true, has_master);
  for (const CatalogueEntry& e : cat) {
    std::vector<Segment> segs;
    for (size_t c = 0; c < nc; ++c) {
      ParamStore& st = chunks_[c].model->params();
      for (const OwnedRange& o : pw[c]) {
        const Param& p = st.at(o.param);
        if (p.spec.name == e.name) segs.push_back({vals[c] + p.offset, ParamStore::pieces(p, o.begin, o.end), {}});
      }
    }
    w.write_tensor("model/" + e.path, e.shape, segs);
  }
  fault_pause(meta.step);
  for (int s = 0; s < (has_master ? 3 : 2); ++s) {
    for (const CatalogueEntry& e : cat) {
      std::vector<Segment> segs;
      for (size_t c = 0; c < nc; ++c) {
        ParamStore& st = chunks_[c].model->params();
        for (const OwnedRange& o : sw[c]) {
          const Param& p = st.at(o.param);
          if (p.spec.name == e.name)
            segs.push_back({state[c][s] + o.packed, rebased(ParamStore::pieces(p, o.begin, o.end), o.begin), {}});
        }
      }
      w.write_tensor(fmt::format("optimizer/{}/{}", kStates[s], e.path), e.shape, segs);
    }
  }
  CheckpointIoStats out;
  out.bytes = w.close();
  out.step = meta.step;
  std::string publish_error;
  if (mesh_.world_rank() == 0) {
    try {
      out.path = ckpt::publish(dir, meta.step, keep_last);
    } catch (const std::exception& e) {
      publish_error = e.what();
    }
  }
  agree(*comm_, publish_error);
  if (out.path.empty()) out.path = ckpt::final_path(dir, meta.step);
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return out;
}

CheckpointIoStats Checkpointer::load(const std::string& file) {
  const auto t0 = Clock::now();
  MPI_Comm comm = mesh_.world_comm();
  ckpt::TensorFileReader r(comm, file, mesh_.timeout_s());
  const auto cat = param_catalogue(model_);

  // 1. Check everything before any state changes (identically on every rank).
  const CheckpointHeader head = read_checkpoint_header(r);
  // Chunks without an optimizer (serving) read the weights only.
  const bool want_opt = chunks_.front().opt != nullptr;
  const bool has_opt = want_opt && head.has_optimizer_state;
  std::vector<std::string> problems;
  const std::pair<const char*, int> dims[] = {{"layers", head.model.layers}, {"dim", head.model.dim},
                                              {"heads", head.model.heads},   {"vocab", head.model.vocab},
                                              {"seq_len", head.model.seq_len}};
  const int want[] = {model_.layers, model_.dim, model_.heads, model_.vocab, model_.seq_len};
  for (size_t k = 0; k < 5; ++k)
    if (dims[k].second != want[k])
      problems.push_back(fmt::format("model.{}: the checkpoint has {}, the config {}", dims[k].first, dims[k].second, want[k]));
  for (std::string& p : dataset_problems(r, model_, has_opt)) problems.push_back(std::move(p));
  if (!problems.empty()) {
    const size_t shown = std::min<size_t>(problems.size(), 8);
    std::vector<std::string> head_lines(problems.begin(), problems.begin() + shown);
    throw CheckpointError(fmt::format(
        "checkpoint {} does not match the config (model: {}): {}{}", file, model_line(model_), fmt::join(head_lines, "; "),
        problems.size() > shown ? fmt::format("; and {} more", problems.size() - shown) : ""));
  }
  bool file_master = has_opt && head.has_master_weights;
  for (const CatalogueEntry& e : cat)
    file_master = file_master && r.has("optimizer/master/" + e.path);

  // 2. Read this rank's hyperslabs into host buffers.
  const int dpr = mesh_.dp_rank(), dps = mesh_.dp_size();
  const size_t nc = chunks_.size();
  const bool run_master = want_opt && chunks_.front().opt->has_master();
  std::vector<Tensor> keep;
  std::vector<float*> vals(nc);
  std::vector<std::array<float*, 3>> state(nc);
  std::vector<std::vector<OwnedRange>> pw(nc), sw(nc);
  std::vector<std::vector<AdamWOptimizer::StateView>> views(nc);
  for (size_t c = 0; c < nc; ++c) {
    ParamStore& st = chunks_[c].model->params();
    vals[c] = host_of(be_, st.values(), keep, true);  // copy in: padding rows keep their values
    pw[c] = owned_param_writes(st, dpr, dps);
    if (!want_opt) continue;
    AdamWOptimizer& opt = *chunks_[c].opt;
    state[c] = {host_of(be_, opt.m(), keep, false), host_of(be_, opt.v(), keep, false),
                run_master ? host_of(be_, opt.master(), keep, false) : nullptr};
    views[c] = opt.state_views();
    sw[c] = owned_state_writes(st, views[c], zero_, dpr, dps);
  }
  for (const CatalogueEntry& e : cat) {
    std::vector<Segment> segs;
    for (size_t c = 0; c < nc; ++c) {
      ParamStore& st = chunks_[c].model->params();
      Param* p = st.find(e.name);
      if (!p) continue;
      Segment seg{vals[c] + p->offset, ParamStore::pieces(*p), {}};
      for (const OwnedRange& o : pw[c])
        if (&st.at(o.param) == p)
          for (Piece& q : ParamStore::pieces(*p, o.begin, o.end)) seg.vouch.push_back(q);
      segs.push_back(std::move(seg));
    }
    r.read_tensor("model/" + e.path, e.shape, segs);
  }
  const int nstates = has_opt ? (file_master && run_master ? 3 : 2) : 0;
  for (int s = 0; s < nstates; ++s) {
    for (const CatalogueEntry& e : cat) {
      std::vector<Segment> segs;
      for (size_t c = 0; c < nc; ++c) {
        ParamStore& st = chunks_[c].model->params();
        for (const auto& v : views[c]) {
          const Param& p = st.at(v.param);
          if (p.spec.name != e.name) continue;
          Segment seg{state[c][s] + v.packed, rebased(ParamStore::pieces(p, v.begin, v.end), v.begin), {}};
          for (const OwnedRange& o : sw[c])
            if (o.param == v.param && o.begin >= v.begin && o.end <= v.end)
              for (Piece& q : rebased(ParamStore::pieces(p, o.begin, o.end), v.begin)) seg.vouch.push_back(q);
          segs.push_back(std::move(seg));
        }
      }
      r.read_tensor(fmt::format("optimizer/{}/{}", kStates[s], e.path), e.shape, segs);
    }
  }
  r.verify();

  // 3. Install: device copies, optimizer state, master weights.
  size_t k = 0;
  for (size_t c = 0; c < nc; ++c) {
    ParamStore& st = chunks_[c].model->params();
    if (!st.values().is_cpu()) be_.copy(st.values(), keep[k++]);
    if (!want_opt) continue;
    AdamWOptimizer& opt = *chunks_[c].opt;
    Tensor* dev[3] = {&opt.m(), &opt.v(), run_master ? &opt.master() : nullptr};
    for (int s = 0; s < 3; ++s) {
      if (!dev[s] || dev[s]->is_cpu()) continue;
      Tensor& h = keep[k++];
      if (s < nstates) be_.copy(*dev[s], h);
    }
    if (!has_opt) {
      be_.zero(opt.m());
      be_.zero(opt.v());
    }
    if (run_master && nstates < 3) opt.reset_master_from_values();
  }
  CheckpointIoStats out;
  out.path = file;
  out.step = head.step;
  out.bytes = r.bytes_read();
  out.had_optimizer_state = has_opt;
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return out;
}

}  // namespace tandem
