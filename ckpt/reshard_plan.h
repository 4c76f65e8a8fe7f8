// Reshard plan: which elements of which tensors one rank of a layout sends to one rank of
// another layout, computed from the checkpoint's name -> hyperslab map (ckpt/shard_map.h), so
// weights move between any two parallel layouts of one model without a file.
//
// Contract. Every rank describes what it holds as Runs: a tensor (by name hash), a range of
// the stored tensor's row-major flat indices [begin, begin + len), and where that range lies
// in the rank's memory (a buffer index, e.g. the model chunk, and an element offset). The
// functions here are pure (no I/O, no MPI): every rank can compute the same plan from the
// same gathered descriptions.
//  - slab_runs() turns a Piece into Runs (selection order = local order; adjacent runs merge).
//  - own_disjoint() makes the senders' holdings disjoint: an element held by several senders
//    (a tensor replicated over tp, the tied embedding on two pipeline stages) is sent by one
//    of them only (the holder of the run that starts first; on a tie the first sender in list
//    order), so a receiver gets each element once.
//  - segments() intersects one sender's and one receiver's Runs (both sorted by (name,
//    begin), as the functions here return them) into Segments in that order: the order the
//    elements travel in one message between the two.
//  - segments_numel() against runs_numel() tells whether a receiver's elements are all
//    reached, so a layout mismatch (different model, a tensor no sender holds) is caught
//    before the first transfer.
#pragma once

#include <cstdint>
#include <vector>

#include "ckpt/shard_map.h"

namespace tandem::ckpt {

struct Run {
  uint64_t name = 0;   // tensor identity (a hash of its name; the same on every layout)
  int64_t begin = 0;   // first stored flat index
  int64_t len = 0;
  int32_t buffer = 0;  // the holder's buffer (e.g. model chunk) ...
  int64_t offset = 0;  // ... and the element offset of `begin` in it
};

struct Segment {
  int32_t src_buffer = 0;
  int64_t src_offset = 0;
  int32_t dst_buffer = 0;
  int64_t dst_offset = 0;
  int64_t len = 0;
};

// The Runs of one piece of a tensor whose stored shape is `stored`, held at
// (buffer, base_offset + piece.local_offset) onward.
std::vector<Run> slab_runs(const Piece& piece, const Dims& stored, uint64_t name, int32_t buffer,
                           int64_t base_offset);

// Sorts runs by (name, begin) and checks they do not overlap (throws naming the tensor hash).
void sort_runs(std::vector<Run>& runs);

// senders[i]: sender i's runs. Returns them trimmed so that no element is held twice, each
// list sorted by (name, begin).
std::vector<std::vector<Run>> own_disjoint(const std::vector<std::vector<Run>>& senders);

// The elements both hold, in (name, begin) order; both lists sorted by (name, begin).
std::vector<Segment> segments(const std::vector<Run>& sender, const std::vector<Run>& receiver);

int64_t segments_numel(const std::vector<Segment>& segs);
int64_t runs_numel(const std::vector<Run>& runs);

}  // namespace tandem::ckpt
