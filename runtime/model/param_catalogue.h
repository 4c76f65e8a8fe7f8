// Parameter catalogue: every logical tensor of the whole model, whatever the parallel layout.
//
// Contract: param_catalogue(opt) is a pure function of the model options. It lists, in the
// order a 1-rank run registers them, each parameter's Tandem name ("h.3.attn.qkv.w"), its path
// in a checkpoint ("blocks/3/attn/qkv/weight"; datasets live under model/ and optimizer/),
// its stored shape (the embedding is [vocab, dim]: the vocabulary padding is not stored) and
// dtype. It is built from the same spec functions that Gpt registers parameters with, so a
// stage of any layout holds only catalogue names, with these logical shapes. Every rank can
// therefore create every dataset of a checkpoint, including those of other pipeline stages.
#pragma once

#include <string>
#include <vector>

#include "runtime/model/model_options.h"
#include "runtime/model/param_store.h"

namespace tandem {

struct CatalogueEntry {
  std::string name;   // Tandem parameter name
  std::string path;   // checkpoint path below model/ (and optimizer/<state>/)
  Shape shape;        // stored (full, unpadded) shape
  Shape logical;      // the shape the model computes with (wte: padded rows)
  std::string dtype = "float32";
};

std::vector<CatalogueEntry> param_catalogue(const ModelOptions& opt);

// "h.3.attn.qkv.w" -> "blocks/3/attn/qkv/weight", "wte" -> "wte/weight", "lnf.b" -> "lnf/bias".
std::string param_path(const std::string& name);

}  // namespace tandem
