// TensorFile: one HDF5 file of named float32 tensors, written and read collectively by the
// ranks of an MPI communicator with parallel HDF5 (MPI-IO); on one rank it is the same file.
//
// Contract.
// - Every rank of `comm` constructs the writer/reader and calls create/reserve/write_tensor/
//   attr/close (writer) or open/read_tensor/verify (reader) with the same names, shapes and
//   values, in the same order (HDF5 metadata operations are collective). The tensor data a
//   rank passes is its own: Segments of a local buffer with the Pieces (ckpt/shard_map.h) they
//   fill; a rank may pass none. Data moves with independent MPI-IO, so a rank touches only its
//   hyperslabs.
// - Each dataset holds the full tensor at its stored shape, little-endian float32, contiguous,
//   under its path ("model/blocks/3/attn/qkv/weight"; groups are created as needed).
// - Checksums: each dataset gets a uint64 attribute "checksum" = the sum (mod 2^64) over its
//   elements of splitmix64((flat_index << 32) ^ float_bits) (docs/checkpoints.md shows it in
//   numpy). Ranks add up the elements of the pieces they write; close() sums the parts. On
//   read, the caller marks which pieces this rank vouches for (together the ranks must cover
//   each element once); verify() sums and compares, naming each bad dataset.
//   text_checksum() is the same sum over a byte string read as little-endian uint32 words
//   (zero-padded to a multiple of 4): the checksum of the root attributes is built on it.
// - Faults stay collective. Every exchange between the ranks goes through a watched
//   communicator over `comm` (parallel/agreement.h; timeout_s = parallel.timeout_s), and
//   every HDF5 call runs under an I/O watchdog (parallel/io_watchdog.h) that ends the job
//   with a message when a call does not return within timeout_s (<= 0: neither watchdog).
//   An I/O failure of one rank (creating the file, reserving its space, writing a dataset or
//   an attribute, flushing, closing; reading a dataset) does not throw where it happens: the
//   rank records its first failure, skips its later data transfers and keeps making the same
//   HDF5 calls as the others. The next agreement (after creating, reserve(), close(); on
//   opening, verify()) tells every rank of the lowest failing rank's error, and every rank
//   throws the same CheckpointError: "checkpoint FILE: [rank R: ]WHAT: OS ERROR (HDF5: ...)".
//   A writer that fails frees the space (rank 0 truncates and removes the file) before it
//   closes, so the close's own metadata writes find room; the file does not remain.
// - reserve(): rank 0 preallocates (fallocate) the file's data bytes plus room for the
//   metadata of `datasets` datasets before any is written, so a full disk or quota fails
//   there, at once, with the OS's own error; a file system that cannot preallocate skips it
//   (the failure then comes from the write that hits it). close() trims what was not used.
// - Mistakes of the caller (write after close, a shape the dataset does not have, a missing
//   dataset) throw at once, identically on every rank.
// - Destroyed without close() (an exception on this rank): with one rank the file is closed
//   and removed; with several the handle is abandoned and the file removed, because a
//   collective close would wait for ranks that are elsewhere (the job is expected to end:
//   launch/ aborts it). A reader destroyed while an exception unwinds does the same.
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
uint64_t word_hash(int64_t index, uint32_t word);  // element_hash's form for a raw 32-bit word
// Checksum share of the elements of `pieces` (offsets into `data`) in a tensor of `shape`.
uint64_t pieces_checksum(const float* data, const std::vector<Piece>& pieces, const Dims& shape);
uint64_t text_checksum(const std::string& bytes);

class TensorFileWriter {
 public:
  TensorFileWriter(MPI_Comm comm, const std::string& path, double timeout_s = 0);  // creates (truncates)
  ~TensorFileWriter();
  void reserve(int64_t data_bytes, int datasets);
  void write_tensor(const std::string& name, const Dims& shape, const std::vector<Segment>& segs);
  void attr(const std::string& name, int64_t value);
  void attr_uint64(const std::string& name, uint64_t value);
  void attr(const std::string& name, const std::string& value);
  // Agrees, sums the checksums, writes them, flushes and closes. Returns the bytes of tensor data.
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

// A root attribute as stored: an integer of any width and signedness (read at full width:
// `value` when it fits int64, else `too_wide`) or a string; `kind` "int", "string" or HDF5's class.
struct AttrValue {
  std::string kind;
  int64_t value = 0;
  bool too_wide = false;
  std::string text;
};

class TensorFileReader {
 public:
  TensorFileReader(MPI_Comm comm, const std::string& path, double timeout_s = 0);
  ~TensorFileReader();
  const std::string& path() const;
  bool has(const std::string& name) const;
  DatasetInfo info(const std::string& name) const;  // throws naming a missing dataset
  std::vector<std::string> datasets() const;        // every dataset path, sorted
  std::optional<AttrValue> attr(const std::string& name) const;  // nullopt: no such root attribute
  // Integer root attribute; throws naming it when it is not an integer or does not fit int64.
  std::optional<int64_t> attr_int(const std::string& name) const;
  std::optional<std::string> attr_string(const std::string& name) const;
  std::optional<uint64_t> attr_uint64(const std::string& name) const;  // an unsigned 64-bit attribute
  // Reads this rank's pieces. The dataset must exist with `shape` (callers check first for a
  // friendlier message; this throws too).
  void read_tensor(const std::string& name, const Dims& shape, const std::vector<Segment>& segs);
  // Collective: every rank calls after the same read_tensor calls. Throws the first read
  // failure of any rank, or names each dataset whose checksum disagrees with its attribute
  // (or lacks one).
  void verify();
  int64_t bytes_read() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::ckpt
