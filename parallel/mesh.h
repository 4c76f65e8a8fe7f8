// Mesh: the world's ranks laid out on a dp x tp x pp grid, with one Communicator per Group.
//
// Contract:
//   Mesh(world, dp, tp, pp, order, device, timeout_s, backend, device_comm) is collective
//   over `world`.
//   Before any collective, every rank validates the layout identically and throws ConfigError
//   naming the keys: sizes < 1, an `order` that is not a permutation of "dp", "tp", "pp" joined
//   by '-', or dp * tp * pp != the world size.
//   order lists the dimensions fastest-varying first: "tp-dp-pp" puts tensor-parallel peers on
//   consecutive ranks (rank = tp + TP * (dp + DP * pp)), so they share a node.
//   Groups (each made by MPI_Comm_split, ranks ordered by their coordinate on the group's axis):
//     tp()    same (dp, pp), tp = 0..TP-1      dp()  same (tp, pp), dp = 0..DP-1
//     pp()    same (dp, tp), pp = 0..PP-1      world()  every rank, in world order
//     embedding()  {pp 0, pp PP-1} with this rank's (dp, tp): sums the tied embedding gradient
//                  between the first and last stage; nullptr when PP == 1 or on a middle stage.
//   Each group's Communicator follows group_comm() (parallel/device_comm.h): MPI for a CPU
//   backend; for a CUDA backend NCCL, or the staged communicator (host copies + MPI,
//   parallel/staged_communicator.h) when `device_comm` says staged, or says auto and two ranks
//   share a GPU. CUDA and staged meshes need `backend` (and a CUDA build for CUDA). On CUDA the
//   choice is made first, collectively (resolve_device_comm), so all ranks agree on it.
//   Groups of size 1 are ordinary communicators, so callers never special-case them. Group
//   names ("tp[dp1,pp0]") appear in watchdog errors.
//   Mesh(world, parallel, backend): the same from ParallelOptions (dp, tp, pp, order,
//   timeout_s, device_comm) and the backend's kind.
#pragma once

#include <mpi.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/device_comm.h"
#include "parallel/parallel_options.h"

namespace tandem {

class Backend;

enum class Axis { DP = 0, TP = 1, PP = 2 };
const char* axis_name(Axis a);

class Mesh {
 public:
  Mesh(MPI_Comm world, int dp, int tp, int pp, const std::string& order, DeviceKind device,
       double timeout_s, Backend* backend = nullptr, DeviceComm device_comm = DeviceComm::Auto);
  Mesh(MPI_Comm world, const ParallelOptions& parallel, Backend& backend);
  ~Mesh();
  Mesh(const Mesh&) = delete;
  Mesh& operator=(const Mesh&) = delete;

  int world_rank() const { return world_rank_; }
  int world_size() const { return dp_size() * tp_size() * pp_size(); }
  int dp_size() const { return size_[0]; }
  int tp_size() const { return size_[1]; }
  int pp_size() const { return size_[2]; }
  int size(Axis a) const { return size_[static_cast<int>(a)]; }
  int dp_rank() const { return coord_[0]; }
  int tp_rank() const { return coord_[1]; }
  int pp_rank() const { return coord_[2]; }
  int coord(Axis a) const { return coord_[static_cast<int>(a)]; }
  bool first_stage() const { return pp_rank() == 0; }
  bool last_stage() const { return pp_rank() == pp_size() - 1; }
  const std::string& order() const { return order_str_; }
  // The kind of communicator every group of this mesh uses.
  GroupComm group_comm() const { return group_comm_; }

  // World rank of the given coordinates (each checked against its size).
  int rank_of(int dp, int tp, int pp) const;
  // World ranks of this rank's group along `a`, in group-rank order.
  std::vector<int> members(Axis a) const;

  Communicator& tp() { return *tp_; }
  Communicator& dp() { return *dp_; }
  Communicator& pp() { return *pp_; }
  Communicator& world() { return *world_; }
  // The MPI communicator the mesh was built on (for MPI-IO, e.g. parallel HDF5 checkpoints).
  MPI_Comm world_comm() const { return world_comm_; }
  // The groups' watchdog (parallel.timeout_s; <= 0: none), for other blocking work (I/O).
  double timeout_s() const { return timeout_s_; }
  Communicator& group(Axis a);
  Communicator* embedding() { return embedding_.get(); }
  // A new communicator over this rank's group along `a` (same members and ranks, same kind:
  // NCCL on a CUDA mesh), so a second user of the group (the serving engine beside training)
  // has its own message space. Collective over the whole world.
  std::unique_ptr<Communicator> duplicate(Axis a, const std::string& name);

  // "dp 2 x tp 2 x pp 1 (order tp-dp-pp): rank 3 = dp 1, tp 1, pp 0"
  std::string describe() const;

  // Parses "tp-dp-pp" into axes, fastest first; throws ConfigError naming parallel.order.
  static std::array<Axis, 3> parse_order(const std::string& order);
  // The layout check the constructor runs first (exposed for config validation and tests).
  static void validate(int dp, int tp, int pp, const std::string& order, int world_size);

 private:
  std::unique_ptr<Communicator> split(MPI_Comm world, int color, int key, const std::string& name);

  std::array<int, 3> size_{1, 1, 1};   // indexed by Axis
  std::array<int, 3> coord_{0, 0, 0};  // indexed by Axis
  std::array<int, 3> stride_{1, 1, 1};
  std::array<Axis, 3> order_{Axis::TP, Axis::DP, Axis::PP};
  std::string order_str_;
  int world_rank_ = 0;
  MPI_Comm world_comm_;
  DeviceKind device_;
  double timeout_s_;
  Backend* backend_;
  GroupComm group_comm_ = GroupComm::Mpi;
  std::unique_ptr<Communicator> world_, tp_, dp_, pp_, embedding_;
};

}  // namespace tandem
