// Agreement on success (contract in agreement.h).
#include "parallel/agreement.h"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace tandem {

std::string GroupFailure::describe(int group_size) const {
  if (!failed()) return "";
  if (group_size <= 1 || ranks_failed == group_size) return message;
  std::string out = fmt::format("rank {}: {}", rank, message);
  if (ranks_failed > 1) out += fmt::format(" (and {} other rank(s))", ranks_failed - 1);
  return out;
}

GroupFailure first_failure(Communicator& comm, const std::string& my_error) {
  GroupFailure out;
  const int n = comm.size(), me = comm.rank();
  const bool failed = !my_error.empty();
  if (n == 1) {
    if (failed) out = {0, 1, my_error};
    return out;
  }
  // [0]: size - (lowest failing rank), by MAX; [1]: failing ranks, by a second (SUM) reduction.
  std::vector<int32_t> lowest = {failed ? n - me : 0}, count = {failed ? 1 : 0};
  Tensor tl = Tensor::wrap(lowest.data(), DeviceKind::CPU, {1}, DType::I32);
  Tensor tc = Tensor::wrap(count.data(), DeviceKind::CPU, {1}, DType::I32);
  comm.all_reduce(tl, ReduceOp::Max);
  if (lowest[0] == 0) return out;
  comm.all_reduce(tc, ReduceOp::Sum);
  out.rank = n - lowest[0];
  out.ranks_failed = count[0];
  // The message of that rank: its length, then its bytes packed into int32 words.
  std::vector<int32_t> len = {me == out.rank ? static_cast<int32_t>(my_error.size()) : 0};
  Tensor tlen = Tensor::wrap(len.data(), DeviceKind::CPU, {1}, DType::I32);
  comm.broadcast(tlen, out.rank);
  std::vector<int32_t> words(static_cast<size_t>(std::max(1, (len[0] + 3) / 4)), 0);
  if (me == out.rank) std::memcpy(words.data(), my_error.data(), my_error.size());
  Tensor tw = Tensor::wrap(words.data(), DeviceKind::CPU, {static_cast<int64_t>(words.size())}, DType::I32);
  comm.broadcast(tw, out.rank);
  out.message.assign(reinterpret_cast<const char*>(words.data()), static_cast<size_t>(len[0]));
  return out;
}

std::vector<uint64_t> sum_across(Communicator& comm, const std::vector<uint64_t>& mine) {
  if (comm.size() == 1 || mine.empty()) return mine;
  const int64_t words = static_cast<int64_t>(mine.size()) * 2;
  std::vector<int32_t> all(static_cast<size_t>(words * comm.size()));
  Tensor in = Tensor::wrap(const_cast<uint64_t*>(mine.data()), DeviceKind::CPU, {words}, DType::I32);
  Tensor out = Tensor::wrap(all.data(), DeviceKind::CPU, {words * comm.size()}, DType::I32);
  comm.all_gather(out, in);
  std::vector<uint64_t> total(mine.size(), 0);
  for (int r = 0; r < comm.size(); ++r)
    for (size_t i = 0; i < mine.size(); ++i) {
      uint64_t v = 0;
      std::memcpy(&v, all.data() + static_cast<size_t>(r) * words + 2 * i, sizeof v);
      total[i] += v;
    }
  return total;
}

}  // namespace tandem
