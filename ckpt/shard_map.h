// Shard map: where a rank's local part of a tensor lies in the full (stored) tensor, as
// HDF5-ready hyperslabs. The same map serves checkpoints (each rank writes and reads only its
// own hyperslabs of one dataset per tensor) and, later, weight transfers between layouts.
//
// Contract. A tensor is computed with a `logical` shape (it may carry padding rows, e.g. the
// vocabulary padding of an embedding) and stored with a `stored` shape that equals `logical`
// except that dimension 0 may be smaller (rows past it are padding and never stored). A rank
// holds one part of it: `logical` is viewed as `view` (the same elements; every logical
// dimension is the product of consecutive view dimensions, e.g. [3C, C] viewed as [3, C, C]),
// and the view is split evenly into `parts` along `shard_dim`, this rank holding part `index`
// (shard_dim = -1: the whole tensor). The rank's local buffer is its part, row-major over the
// local view. pieces(rule, stored, b, e) returns, for local elements [b, e), a list of Pieces
// in ascending local order: each a contiguous run of the local buffer and the hyperslab
// (start, stride, count, block per stored dimension, HDF5's H5Sselect_hyperslab semantics) it
// occupies in the stored tensor, whose elements in row-major file order are exactly that run.
// Local elements that fall into rows clipped off by `stored` belong to no piece. The map is a
// pure function, with no I/O; errors (a view that does not refine the shape, a range outside
// the part, a clip on a dimension other than 0) throw tandem::Error naming the values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tandem::ckpt {

using Dims = std::vector<int64_t>;

struct Hyperslab {
  Dims start, stride, count, block;
  int64_t numel() const;
  std::string str() const;
};

struct Piece {
  int64_t local_offset = 0;  // first element of the run in the rank's local buffer
  int64_t numel = 0;         // elements in the run (== slab.numel())
  Hyperslab slab;            // its place in the stored tensor
};

struct ShardRule {
  Dims logical;
  Dims view;           // empty: the same as logical
  int shard_dim = -1;  // dimension of the view split over parts; -1: not split
  int parts = 1;
  int index = 0;
};

// The local view of a part (the view with the shard dimension divided) and its element count.
Dims local_view(const ShardRule& rule);
int64_t local_numel(const ShardRule& rule);

// Pieces covering local elements [begin, end) of the part (see the contract above).
std::vector<Piece> pieces(const ShardRule& rule, const Dims& stored, int64_t begin, int64_t end);

// One piece covering a whole tensor of `shape` (local buffer = the tensor, row-major).
Piece whole_tensor(const Dims& shape);

// Row-major flat index in `shape` of every element a hyperslab selects, in selection order
// (for tests and tools; allocates one entry per element).
std::vector<int64_t> slab_indices(const Hyperslab& slab, const Dims& shape);

int64_t dims_numel(const Dims& d);
std::string dims_str(const Dims& d);

}  // namespace tandem::ckpt
