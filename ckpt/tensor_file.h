// TensorFile: one HDF5 file of named float32 tensors, written and read collectively by the
// ranks of an MPI communicator with parallel HDF5 (MPI-IO); on one rank it is the same file.
//
// Contract.
// - Every rank of `comm` constructs the writer/reader and calls create/write_tensor/attr/
//   close (writer) or open/verify (reader) with the same names, shapes and values, in the
//   same order (HDF5 metadata operations are collective). The tensor data a rank passes is
//   its own: Segments of a local buffer with the Pieces (ckpt/shard_map.h) they fill; a rank
//   may pass none. Data moves with independent MPI-IO, so a rank touches only its hyperslabs.
// - Each dataset holds the full tensor at its stored shape, little-endian float32, contiguous,
//   under its path ("model/blocks/3/attn/qkv/weight"; groups are created as needed).
// - Checksums: each dataset gets a uint64 attribute "checksum" = the sum (mod 2^64) over its
//   elements of splitmix64((flat_index << 32) ^ float_bits) (docs/checkpoints.md shows it in
//   numpy). Ranks add up the elements of the pieces they write; close() all-reduces the sums.
//   On read, the caller marks which pieces this rank vouches for (together the ranks must
//   cover each element once); verify() all-reduces and compares, naming each bad dataset.
// - Errors throw ckpt::CheckpointError naming the file, the dataset and HDF5's own message;
//   an unreadable (truncated, corrupt) file fails in the reader's constructor.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/shard_map.h"
#include "runtime/core/error.h"

namespace tandem::ckpt {

class CheckpointError : public Error {
 public:
  explicit CheckpointError(const std::string& what) : Error(what) {}
};

// A run of a rank's local buffer and the pieces (offsets relative to `data`) it fills.
struct Segment {
  float* data = nullptr;
  std::vector<Piece> pieces;  // what this rank writes (writer) or reads (reader)
  std::vector<Piece> vouch;   // reader: the subset of `pieces` this rank's checksum share covers
};

uint64_t element_hash(int64_t flat_index, float value);
// Checksum share of the elements of `pieces` (offsets into `data`) in a tensor of `shape`.
uint64_t pieces_checksum(const float* data, const std::vector<Piece>& pieces, const Dims& shape);

class TensorFileWriter {
 public:
  TensorFileWriter(MPI_Comm comm, const std::string& path);  // creates (truncates) the file
  ~TensorFileWriter();                                        // closes without checksums if open
  void write_tensor(const std::string& name, const Dims& shape, const std::vector<Segment>& segs);
  void attr(const std::string& name, int64_t value);
  void attr(const std::string& name, const std::string& value);
  // All-reduces checksums, writes them, flushes and closes. Returns the bytes of tensor data.
  int64_t close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct DatasetInfo {
  Dims shape;
  std::string dtype;  // "float32" or HDF5's class name for anything else
  std::optional<uint64_t> checksum;
};

class TensorFileReader {
 public:
  TensorFileReader(MPI_Comm comm, const std::string& path);
  ~TensorFileReader();
  const std::string& path() const;
  bool has(const std::string& name) const;
  DatasetInfo info(const std::string& name) const;  // throws naming a missing dataset
  std::vector<std::string> datasets() const;        // every dataset path, sorted
  std::optional<int64_t> attr_int(const std::string& name) const;
  std::optional<std::string> attr_string(const std::string& name) const;
  // Reads this rank's pieces. The dataset must exist with `shape` (callers check first for a
  // friendlier message; this throws too).
  void read_tensor(const std::string& name, const Dims& shape, const std::vector<Segment>& segs);
  // Collective: every rank calls after the same read_tensor calls. Throws naming each
  // dataset whose checksum disagrees with its attribute (or lacks one).
  void verify();
  int64_t bytes_read() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::ckpt
