// safetensors: host tensors <-> the Hugging Face safetensors file format.
//
// Format: u64 little-endian header length N, N bytes of JSON header
//   {"__metadata__": {"key": "value", ...},
//    "<name>": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...}
// (offsets relative to the byte after the header), then the raw little-endian data.
// Contract: write_safetensors writes F32 tensors in the order given, packed without gaps,
// pads the header with spaces to a multiple of 8 bytes, writes PATH.tmp and renames it, so a
// reader never sees a half file; names must be unique and non-empty and data.size() must equal
// the product of the shape (an empty shape is a scalar, one element). read_safetensors returns
// the tensors in header order, converting F32, F16 and BF16 to float; any other dtype throws
// naming the tensor and dtype. It checks the file size, that the header fits in the file,
// parses as a JSON object and names dtype/shape/data_offsets for each tensor, that offsets lie
// inside the data and match shape * dtype size, and that the tensors neither overlap nor leave
// holes. Every error throws tandem::Error naming the file and the value found.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tandem::ckpt {

struct HostTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Number of elements of `shape` (1 for an empty shape); throws on a negative dim or overflow.
int64_t shape_numel(const std::vector<int64_t>& shape);
// "[2, 3]" for messages.
std::string shape_str(const std::vector<int64_t>& shape);

void write_safetensors(const std::string& path, const std::vector<HostTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

std::vector<HostTensor> read_safetensors(const std::string& path,
                                         std::map<std::string, std::string>* metadata = nullptr);

}  // namespace tandem::ckpt
