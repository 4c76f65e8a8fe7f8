// AdamW over owned flat ranges, device-resident or offloaded to the host.
#include "runtime/train/adamw_optimizer.h"

#include <algorithm>

#include "kernels/elementwise.h"

namespace tandem {

std::vector<FlatRange> param_ranges(const ParamStore& store, int64_t begin, int64_t end) {
  std::vector<FlatRange> out;
  for (const Param& p : store.all()) {
    int64_t b = std::max(begin, p.offset), e = std::min(end, p.offset + p.numel);
    if (b >= e) continue;
    if (!out.empty() && out.back().end == b && out.back().decay == p.spec.decay &&
        out.back().norm == p.spec.norm_owner) {
      out.back().end = e;  // merge neighbours with the same treatment
    } else {
      out.push_back({b, e, p.spec.decay, p.spec.norm_owner});
    }
  }
  return out;
}

AdamWOptimizer::AdamWOptimizer(ParamStore& store, std::vector<FlatRange> owned,
                               const AdamWConfig& cfg)
    : store_(store), be_(store.backend()), owned_(std::move(owned)), cfg_(cfg) {
  for (const FlatRange& r : owned_) owned_numel_ += r.end - r.begin;
  if (cfg_.offload) {
    Allocator& host = be_.host_allocator();
    m_ = Tensor::allocate(host, DeviceKind::CPU, {owned_numel_}, DType::F32);
    v_ = Tensor::allocate(host, DeviceKind::CPU, {owned_numel_}, DType::F32);
    master_ = Tensor::allocate(host, DeviceKind::CPU, {owned_numel_}, DType::F32);
    staging_ = Tensor::allocate(host, DeviceKind::CPU, {owned_numel_}, DType::F32);
    std::fill_n(m_.f32(), owned_numel_, 0.0f);
    std::fill_n(v_.f32(), owned_numel_, 0.0f);
    reset_master_from_values();
  } else {
    m_ = be_.zeros({owned_numel_});
    v_ = be_.zeros({owned_numel_});
  }
}

double AdamWOptimizer::local_grad_sq() const {
  double s = 0.0;
  for (const FlatRange& r : owned_)
    if (r.norm) s += kernels::sum_squares(be_, store_.grads().flat_range(r.begin, {r.end - r.begin}));
  return s;
}

void AdamWOptimizer::step(float lr, int64_t t, float grad_scale) {
  kernels::AdamWHyper h;
  h.lr = lr;
  h.beta1 = cfg_.beta1;
  h.beta2 = cfg_.beta2;
  h.eps = cfg_.eps;
  h.step = t;
  h.grad_scale = grad_scale;
  int64_t off = 0;
  for (const FlatRange& r : owned_) {
    const int64_t n = r.end - r.begin;
    h.weight_decay = r.decay ? cfg_.weight_decay : 0.0f;
    Tensor value = store_.values().flat_range(r.begin, {n});
    Tensor grad = store_.grads().flat_range(r.begin, {n});
    Tensor m = m_.flat_range(off, {n}), v = v_.flat_range(off, {n});
    if (cfg_.offload) {
      Tensor master = master_.flat_range(off, {n}), staged = staging_.flat_range(off, {n});
      be_.copy(staged, grad);
      kernels::cpu::adamw_step(master.f32(), staged.f32(), m.f32(), v.f32(), n, h);
      be_.copy(value, master);
    } else {
      kernels::adamw_step(be_, value, grad, m, v, h);
    }
    off += n;
  }
}

void AdamWOptimizer::reset_master_from_values() {
  if (!master_.defined()) return;
  int64_t off = 0;
  for (const FlatRange& r : owned_) {
    Tensor dst = master_.flat_range(off, {r.end - r.begin});
    be_.copy(dst, store_.values().flat_range(r.begin, {r.end - r.begin}));
    off += r.end - r.begin;
  }
}

std::vector<AdamWOptimizer::StateView> AdamWOptimizer::views_of(const ParamStore& store,
                                                                 const std::vector<FlatRange>& owned) {
  std::vector<StateView> out;
  const auto& params = store.all();
  int64_t packed = 0;
  for (const FlatRange& r : owned) {
    for (int i = 0; i < static_cast<int>(params.size()); ++i) {
      const Param& p = params[i];
      const int64_t b = std::max(r.begin, p.offset), e = std::min(r.end, p.offset + p.numel);
      if (b >= e) continue;
      out.push_back({i, b - p.offset, e - p.offset, packed + (b - r.begin)});
    }
    packed += r.end - r.begin;
  }
  return out;
}

int64_t AdamWOptimizer::state_bytes() const {
  return owned_numel_ * 4 * (cfg_.offload ? 4 : 2);
}

}  // namespace tandem
