// Agreement on success: every rank of a group learns whether any rank failed, and why.
//
// Contract: first_failure(comm, my_error) is collective over `comm`, a host-tensor (MPI or
// self) communicator, and watched like every operation of it (parallel.timeout_s: a rank that
// never arrives ends in TimeoutError). Each rank passes its own error ("" = it succeeded). Every
// rank gets the same answer: the failure of the lowest failing rank (its rank, its message, how
// many ranks failed), or failed() == false when every rank succeeded. Use it before any step
// that only makes sense when all succeeded (a collective close, a publish), so that the error
// path stays collective: every rank takes the same branch and throws the same message.
// describe() leaves out the rank when every rank failed (they all saw the same thing).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace tandem {

struct GroupFailure {
  int rank = -1;        // lowest failing rank of the group; -1: nobody failed
  int ranks_failed = 0;
  std::string message;  // that rank's error
  bool failed() const { return rank >= 0; }
  // "MESSAGE" (one rank), "rank R: MESSAGE (and N other rank(s))" in a larger group.
  std::string describe(int group_size) const;
};

GroupFailure first_failure(Communicator& comm, const std::string& my_error);

// Element-wise sum mod 2^64 over the group, the same on every rank (every rank passes as many
// values). Exact: the raw words are all-gathered and added on each rank. Watched like first_failure.
std::vector<uint64_t> sum_across(Communicator& comm, const std::vector<uint64_t>& mine);

}  // namespace tandem
