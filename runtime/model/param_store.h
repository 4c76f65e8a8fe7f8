// ParamStore: this rank's parameters (and their gradients) in one flat buffer each.
//
// Contract: every parameter has a logical name and full shape that do not depend on the
// parallel layout (checkpoints and golden tests address parameters by these). A parameter
// may be sharded over tensor-parallel ranks: its logical tensor is viewed as `view` (same
// elements, e.g. qkv [3C, C] viewed as [3, C, C]) and split evenly along `shard_dim` of that
// view; this rank holds part `shard_index` of `shard_parts`. Values and gradients of all local
// parameters are contiguous in registration order, so the optimizer, gradient clipping and
// data-parallel buckets work on flat ranges. Initialisation is a pure function of
// (seed, name, logical element index), so every layout starts from identical weights.
// Mixed precision (finalize with with_bf16): a third flat buffer holds a bf16 copy of the
// values (Param::value_bf16, same offsets), which the bf16 GEMMs read. The fp32 values stay the
// master weights: the optimizer, checkpoints, ZeRO, serving and weight sync use only them.
// Whoever writes values() must call refresh_bf16() before the next forward (init() does; the
// trainer does after each optimizer step and after a checkpoint load).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ckpt/shard_map.h"
#include "runtime/core/backend.h"

namespace tandem {

enum class ParamInit { Normal, Zeros, Ones };

struct ParamSpec {
  std::string name;
  Shape logical;        // full logical shape (PyTorch layout: Linear weight is [out, in])
  Shape stored;         // shape in checkpoints: logical without padding rows; empty = logical
  Shape view;           // logical viewed for sharding; empty = same as logical
  int shard_dim = -1;   // dimension of `view` split over tensor-parallel ranks; -1 = replicated
  int shard_parts = 1;
  int shard_index = 0;
  Shape compute;        // local shape used by kernels; empty = local view flattened like logical
  bool decay = false;   // AdamW weight decay applies (2-d weights, embeddings)
  ParamInit init = ParamInit::Zeros;
  float init_std = 0.0f;
  // True on exactly one rank of each set of ranks that hold identical copies of this
  // parameter's gradient (replicas across tp, the tied-embedding copy), so norms count once.
  bool norm_owner = true;
};

inline const Shape& stored_shape(const ParamSpec& s) { return s.stored.empty() ? s.logical : s.stored; }

struct Param {
  ParamSpec spec;
  Shape local_view;   // `view` with the shard dimension divided
  int64_t offset = 0;  // element offset in the flat buffers
  int64_t numel = 0;
  Tensor value;       // compute shape
  Tensor grad;        // compute shape
  Tensor value_bf16;  // compute shape; defined only with the bf16 copy
};

class ParamStore {
 public:
  explicit ParamStore(Backend& be) : be_(be) {}
  // Registers a parameter; call before finalize(). Returns its index.
  int add(ParamSpec spec);
  // Allocates the flat value/grad buffers (grads zeroed) and binds every Param's tensors.
  // The buffers are padded with zeros to a multiple of `pad_multiple` elements (so data-parallel
  // buckets split evenly); padding belongs to no parameter. with_grads = false (inference:
  // serving replicas): no gradient buffer; grads() and every Param's grad stay undefined.
  // with_bf16: also a bf16 copy of the values (mixed precision), filled by refresh_bf16().
  void finalize(int64_t pad_multiple = 1, bool with_grads = true, bool with_bf16 = false);
  bool finalized() const { return values_.defined(); }

  void init(uint64_t seed);  // layout-independent initialisation of every parameter
  void zero_grads();
  bool has_bf16() const { return values_bf16_.defined(); }
  // values_bf16 := values rounded to bf16 (one kernel over the flat buffer; no-op without it).
  void refresh_bf16();

  Param& at(int i) { return params_[i]; }
  const Param& at(int i) const { return params_[i]; }
  Param* find(const std::string& name);
  Param& get(const std::string& name);  // throws naming the parameter when absent
  const std::vector<Param>& all() const { return params_; }
  int64_t numel() const { return total_; }             // elements held by parameters
  int64_t padded_numel() const { return values_.numel(); }  // flat buffer size (>= numel())
  Tensor& values() { return values_; }
  Tensor& grads() { return grads_; }
  Tensor& values_bf16() { return values_bf16_; }
  Backend& backend() { return be_; }

  // Where this rank's part of p lies in the stored tensor (ckpt/shard_map.h): the rule, and
  // the pieces of its local elements [begin, end) (default: all of them).
  static ckpt::ShardRule shard_rule(const ParamSpec& s);
  static std::vector<ckpt::Piece> pieces(const Param& p, int64_t begin = 0, int64_t end = -1);

  // Logical flat index of local element `j` of parameter `p` (row-major over `view`).
  static int64_t logical_index(const Param& p, int64_t j);
  // Copies a full logical tensor (host, row-major) into this rank's shard of parameter p.
  void load_logical(Param& p, const float* logical_host);
  // Copies this rank's shard of p into the matching places of a full logical host buffer.
  void store_logical(const Param& p, const Tensor& src, float* logical_host) const;

 private:
  Backend& be_;
  std::vector<Param> params_;
  int64_t total_ = 0;
  Tensor values_, grads_, values_bf16_;
};

// Deterministic N(0, 1) sample for (seed, stream, index): a counter-based generator, so any
// rank can produce any element of a logical tensor without generating the others.
float counter_normal(uint64_t seed, uint64_t stream, uint64_t index);
uint64_t hash_name(const std::string& name);

}  // namespace tandem
