// Mesh: layout validation, coordinates from the order string, and the groups' communicators.
//
// Contract: see mesh.h. Strides follow the order string: the first-named axis has stride 1,
// the next stride size(first), the last stride size(first) * size(second).
#include "parallel/mesh.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "parallel/mpi_communicator.h"
#include "parallel/staged_communicator.h"
#include "runtime/core/backend.h"
#include "runtime/core/error.h"
#ifdef TANDEM_HAVE_CUDA
#include "parallel/cuda/nccl_communicator.h"
#include "runtime/core/cuda/cuda_context.h"
#endif

namespace tandem {

const char* axis_name(Axis a) {
  switch (a) {
    case Axis::DP: return "dp";
    case Axis::TP: return "tp";
    case Axis::PP: return "pp";
  }
  return "?";
}

std::array<Axis, 3> Mesh::parse_order(const std::string& order) {
  std::array<Axis, 3> axes{};
  std::array<bool, 3> seen{false, false, false};
  size_t n = 0, pos = 0;
  bool ok = true;
  while (ok) {
    size_t dash = order.find('-', pos);
    std::string part = order.substr(pos, dash == std::string::npos ? std::string::npos : dash - pos);
    int idx = part == "dp" ? 0 : part == "tp" ? 1 : part == "pp" ? 2 : -1;
    if (idx < 0 || n >= 3 || seen[idx]) {
      ok = false;
      break;
    }
    seen[idx] = true;
    axes[n++] = static_cast<Axis>(idx);
    if (dash == std::string::npos) break;
    pos = dash + 1;
  }
  if (!ok || n != 3)
    throw ConfigError(fmt::format(
        "parallel.order = '{}' is not a permutation of dp, tp, pp joined by '-' (fastest-varying "
        "first), e.g. 'tp-dp-pp'",
        order));
  return axes;
}

void Mesh::validate(int dp, int tp, int pp, const std::string& order, int world_size) {
  if (dp < 1 || tp < 1 || pp < 1)
    throw ConfigError(fmt::format(
        "parallel.dp, parallel.tp and parallel.pp must be >= 1, got dp = {}, tp = {}, pp = {}", dp,
        tp, pp));
  parse_order(order);
  const long long product = static_cast<long long>(dp) * tp * pp;
  if (product != world_size)
    throw ConfigError(fmt::format(
        "parallel.dp * parallel.tp * parallel.pp = {} * {} * {} = {} but the job has {} ranks", dp,
        tp, pp, product, world_size));
}

Mesh::Mesh(MPI_Comm world, const ParallelOptions& p, Backend& backend)
    : Mesh(world, p.dp, p.tp, p.pp, p.order, backend.kind(), p.timeout_s, &backend,
           parse_device_comm(p.device_comm)) {}

Mesh::Mesh(MPI_Comm world, int dp, int tp, int pp, const std::string& order, DeviceKind device,
           double timeout_s, Backend* backend, DeviceComm device_comm)
    : order_str_(order), world_comm_(world), device_(device), timeout_s_(timeout_s),
      backend_(backend) {
  int world_size = 0;
  TANDEM_MPI_CHECK(MPI_Comm_size(world, &world_size));
  TANDEM_MPI_CHECK(MPI_Comm_rank(world, &world_rank_));
  validate(dp, tp, pp, order, world_size);  // identical on every rank, before any collective
  TANDEM_CHECK(backend == nullptr || backend->kind() == device,
               "Mesh for {} tensors was given the backend {}", device_name(device),
               backend->name());
  DeviceComm resolved = device_comm;
  if (device == DeviceKind::CUDA) {
#ifdef TANDEM_HAVE_CUDA
    TANDEM_CHECK(backend != nullptr && backend->cuda() != nullptr,
                 "Mesh on CUDA needs the CUDA backend (got none)");
    resolved = resolve_device_comm(world, device_comm, gpu_key(backend->cuda()->device));
#else
    throw Error("Mesh: device cuda requested, but this build has no CUDA (TANDEM_CUDA=OFF)");
#endif
  }
  group_comm_ = group_comm_for(device, resolved);
  TANDEM_CHECK(group_comm_ == GroupComm::Mpi || backend != nullptr,
               "Mesh with {} groups needs the backend (got none)", group_comm_name(group_comm_));
  if (group_comm_ != GroupComm::Mpi)
    spdlog::info("mesh groups move {} tensors with the {} communicator (parallel.device_comm {})",
                 device_name(device), group_comm_name(group_comm_), device_comm_name(device_comm));
  size_ = {dp, tp, pp};
  order_ = parse_order(order);
  int stride = 1;
  for (Axis a : order_) {
    stride_[static_cast<int>(a)] = stride;
    stride *= size_[static_cast<int>(a)];
  }
  for (int i = 0; i < 3; ++i) coord_[i] = (world_rank_ / stride_[i]) % size_[i];

  const int d = dp_rank(), t = tp_rank(), p = pp_rank();
  // The color of a group is the world rank of its member with coordinate 0 on the group's axis;
  // the key is the coordinate, so group rank == coordinate.
  world_ = split(world, 0, world_rank_, "world");
  tp_ = split(world, rank_of(d, 0, p), t, fmt::format("tp[dp{},pp{}]", d, p));
  dp_ = split(world, rank_of(0, t, p), d, fmt::format("dp[tp{},pp{}]", t, p));
  pp_ = split(world, rank_of(d, t, 0), p, fmt::format("pp[dp{},tp{}]", d, t));
  if (pp > 1) {
    const bool end = first_stage() || last_stage();
    embedding_ = split(world, end ? rank_of(d, t, 0) : MPI_UNDEFINED, p,
                       fmt::format("embedding[dp{},tp{}]", d, t));
  }
}

Mesh::~Mesh() = default;

int Mesh::rank_of(int dp, int tp, int pp) const {
  TANDEM_CHECK(dp >= 0 && dp < size_[0] && tp >= 0 && tp < size_[1] && pp >= 0 && pp < size_[2],
               "rank_of(dp {}, tp {}, pp {}) outside the mesh dp {} x tp {} x pp {}", dp, tp, pp,
               size_[0], size_[1], size_[2]);
  return dp * stride_[0] + tp * stride_[1] + pp * stride_[2];
}

std::vector<int> Mesh::members(Axis a) const {
  std::vector<int> out;
  const int ai = static_cast<int>(a);
  for (int i = 0; i < size_[ai]; ++i) {
    std::array<int, 3> c = coord_;
    c[ai] = i;
    out.push_back(rank_of(c[0], c[1], c[2]));
  }
  return out;
}

Communicator& Mesh::group(Axis a) {
  switch (a) {
    case Axis::DP: return dp();
    case Axis::TP: return tp();
    case Axis::PP: return pp();
  }
  return world();
}

std::string Mesh::describe() const {
  return fmt::format("dp {} x tp {} x pp {} (order {}): rank {} = dp {}, tp {}, pp {}", size_[0],
                     size_[1], size_[2], order_str_, world_rank_, coord_[0], coord_[1], coord_[2]);
}

std::unique_ptr<Communicator> Mesh::duplicate(Axis a, const std::string& name) {
  const int color = members(a).front();  // the group's first world rank names it
  return split(world_comm_, color, coord_[static_cast<int>(a)], name);
}

std::unique_ptr<Communicator> Mesh::split(MPI_Comm world, int color, int key,
                                          const std::string& name) {
  MPI_Comm comm = MPI_COMM_NULL;
  TANDEM_MPI_CHECK(MPI_Comm_split(world, color, key, &comm));
  if (comm == MPI_COMM_NULL) return nullptr;
  std::unique_ptr<Communicator> out;
  try {
    switch (group_comm_) {
      case GroupComm::Mpi: out = make_mpi_communicator(comm, name, timeout_s_); break;
      case GroupComm::Staged: out = make_staged_communicator(comm, name, timeout_s_, *backend_); break;
      case GroupComm::Nccl:
#ifdef TANDEM_HAVE_CUDA
        out = make_nccl_communicator(comm, name, timeout_s_, *backend_->cuda());
#endif
        break;
    }
  } catch (...) {
    MPI_Comm_free(&comm);
    throw;
  }
  MPI_Comm_free(&comm);  // the communicator keeps its own duplicate
  return out;
}

}  // namespace tandem
