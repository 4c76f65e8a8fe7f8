// Flat parameter storage, shard index mapping and layout-independent initialisation.
#include "runtime/model/param_store.h"

#include <cmath>
#include <algorithm>
#include <cstring>

#include "kernels/cast.h"
#include "runtime/core/hash.h"

namespace tandem {

namespace {

Shape effective_view(const ParamSpec& s) { return s.view.empty() ? s.logical : s.view; }

}  // namespace

uint64_t hash_name(const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

float counter_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  uint64_t a = splitmix64(seed ^ splitmix64(stream ^ splitmix64(index)));
  uint64_t b = splitmix64(a);
  double u1 = (static_cast<double>(a >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  double u2 = static_cast<double>(b >> 11) * (1.0 / 9007199254740992.0);
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

int ParamStore::add(ParamSpec spec) {
  TANDEM_CHECK(!finalized(), "parameter {} added after finalize()", spec.name);
  TANDEM_CHECK(find(spec.name) == nullptr, "parameter {} registered twice", spec.name);
  Param p;
  Shape view = effective_view(spec);
  TANDEM_CHECK(shape_numel(view) == shape_numel(spec.logical), "{}: view {} does not match {}",
               spec.name, shape_str(view), shape_str(spec.logical));
  p.local_view = view;
  if (spec.shard_dim >= 0) {
    TANDEM_CHECK(spec.shard_dim < static_cast<int>(view.size()), "{}: shard dim {} of view {}",
                 spec.name, spec.shard_dim, shape_str(view));
    TANDEM_CHECK(view[spec.shard_dim] % spec.shard_parts == 0,
                 "{}: dimension {} of size {} does not split into {} parts", spec.name,
                 spec.shard_dim, view[spec.shard_dim], spec.shard_parts);
    p.local_view[spec.shard_dim] /= spec.shard_parts;
  }
  p.numel = shape_numel(p.local_view);
  if (spec.compute.empty()) {
    spec.compute = spec.logical;
    if (spec.shard_dim >= 0) {
      // Default compute shape: the logical shape with its leading dim scaled to the shard.
      spec.compute[0] = spec.compute[0] / spec.shard_parts;
      TANDEM_CHECK(shape_numel(spec.compute) == p.numel,
                   "{}: give an explicit compute shape for this sharding", spec.name);
    }
  }
  TANDEM_CHECK(shape_numel(spec.compute) == p.numel, "{}: compute shape {} holds {} elements, shard has {}",
               spec.name, shape_str(spec.compute), shape_numel(spec.compute), p.numel);
  p.offset = total_;
  total_ += p.numel;
  p.spec = std::move(spec);
  params_.push_back(std::move(p));
  return static_cast<int>(params_.size()) - 1;
}

void ParamStore::finalize(int64_t pad_multiple, bool with_grads, bool with_bf16) {
  TANDEM_CHECK(!finalized(), "ParamStore finalized twice");
  TANDEM_CHECK(pad_multiple >= 1, "pad_multiple {} < 1", pad_multiple);
  const int64_t padded = (total_ + pad_multiple - 1) / pad_multiple * pad_multiple;
  values_ = be_.zeros({std::max<int64_t>(padded, 1)});
  if (with_grads) grads_ = be_.zeros({std::max<int64_t>(padded, 1)});
  if (with_bf16) values_bf16_ = be_.zeros({std::max<int64_t>(padded, 1)}, DType::BF16);
  for (Param& p : params_) {
    p.value = values_.flat_range(p.offset, p.spec.compute);
    if (with_grads) p.grad = grads_.flat_range(p.offset, p.spec.compute);
    if (with_bf16) p.value_bf16 = values_bf16_.flat_range(p.offset, p.spec.compute);
  }
}

void ParamStore::refresh_bf16() {
  if (values_bf16_.defined()) kernels::cast(be_, values_bf16_, values_);
}

Param* ParamStore::find(const std::string& name) {
  for (Param& p : params_)
    if (p.spec.name == name) return &p;
  return nullptr;
}

Param& ParamStore::get(const std::string& name) {
  Param* p = find(name);
  TANDEM_CHECK(p != nullptr, "no parameter named '{}' on this rank ({} parameters)", name,
               params_.size());
  return *p;
}

ckpt::ShardRule ParamStore::shard_rule(const ParamSpec& s) {
  ckpt::ShardRule r;
  r.logical = s.logical;
  r.view = s.view;
  r.shard_dim = s.shard_dim;
  r.parts = s.shard_parts;
  r.index = s.shard_index;
  return r;
}

std::vector<ckpt::Piece> ParamStore::pieces(const Param& p, int64_t begin, int64_t end) {
  return ckpt::pieces(shard_rule(p.spec), stored_shape(p.spec), begin, end < 0 ? p.numel : end);
}

int64_t ParamStore::logical_index(const Param& p, int64_t j) {
  const Shape& lv = p.local_view;
  const Shape& view = p.spec.view.empty() ? p.spec.logical : p.spec.view;
  const int nd = static_cast<int>(lv.size());
  TANDEM_CHECK(nd <= 8, "{}: view of {} dimensions (at most 8)", p.spec.name, nd);
  int64_t idx = 0, stride = 1, rem = j;
  // Decompose j over the local view (row-major), shift the shard dim, recompose over view.
  int64_t coord[8];
  for (int d = nd - 1; d >= 0; --d) {
    coord[d] = rem % lv[d];
    rem /= lv[d];
  }
  if (p.spec.shard_dim >= 0) coord[p.spec.shard_dim] += p.spec.shard_index * lv[p.spec.shard_dim];
  for (int d = nd - 1; d >= 0; --d) {
    idx += coord[d] * stride;
    stride *= view[d];
  }
  return idx;
}

void ParamStore::init(uint64_t seed) {
  Tensor host = be_.host_empty({values_.numel()});
  float* h = host.f32();
  std::memset(h, 0, sizeof(float) * values_.numel());
  for (const Param& p : params_) {
    float* dst = h + p.offset;
    switch (p.spec.init) {
      case ParamInit::Zeros: std::memset(dst, 0, sizeof(float) * p.numel); break;
      case ParamInit::Ones:
        for (int64_t j = 0; j < p.numel; ++j) dst[j] = 1.0f;
        break;
      case ParamInit::Normal: {
        const uint64_t stream = hash_name(p.spec.name);
        const bool sharded = p.spec.shard_dim >= 0;
#pragma omp parallel for schedule(static)
        for (int64_t j = 0; j < p.numel; ++j) {
          int64_t li = sharded ? logical_index(p, j) : j;
          dst[j] = p.spec.init_std * counter_normal(seed, stream, static_cast<uint64_t>(li));
        }
        break;
      }
    }
  }
  be_.copy(values_, host);
  refresh_bf16();
  zero_grads();
}

void ParamStore::zero_grads() {
  if (grads_.defined()) be_.zero(grads_);
}

void ParamStore::load_logical(Param& p, const float* logical_host) {
  Tensor host = be_.host_empty({p.numel});
  float* h = host.f32();
  for (int64_t j = 0; j < p.numel; ++j) h[j] = logical_host[logical_index(p, j)];
  Tensor dst = values_.flat_range(p.offset, {p.numel});
  be_.copy(dst, host);
}

void ParamStore::store_logical(const Param& p, const Tensor& src, float* logical_host) const {
  Tensor host = const_cast<Backend&>(be_).host_empty({p.numel});
  const_cast<Backend&>(be_).copy(host, src.view({p.numel}));
  const float* h = host.f32();
  for (int64_t j = 0; j < p.numel; ++j) logical_host[logical_index(p, j)] = h[j];
}

}  // namespace tandem
