// One-process tests of the Mesh (in test_parallel): layout validation messages, the order
// string, a 1-rank mesh whose groups are all of size one, and device binding. Multi-rank mesh
// tests: tests/parallel/mpi/mesh_mpi_test.cpp.
#include <gtest/gtest.h>

#include "parallel/device_binding.h"
#include "parallel/mesh.h"
#include "tests/parallel/mpi/mpi_test_util.h"

namespace tandem {
namespace {

const auto* const kFinalize =
    ::testing::AddGlobalTestEnvironment(new testing::MpiFinalizeEnvironment);

std::string config_error(int dp, int tp, int pp, const std::string& order, int world) {
  try {
    Mesh::validate(dp, tp, pp, order, world);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(MeshLayout, ProductMismatchNamesTheKeys) {
  EXPECT_EQ(config_error(2, 2, 1, "tp-dp-pp", 8),
            "parallel.dp * parallel.tp * parallel.pp = 2 * 2 * 1 = 4 but the job has 8 ranks");
  EXPECT_EQ(config_error(2, 2, 2, "pp-tp-dp", 8), "");
  EXPECT_NE(config_error(0, 2, 2, "tp-dp-pp", 0).find("parallel.dp, parallel.tp and parallel.pp"),
            std::string::npos);
}

TEST(MeshLayout, OrderMustBeAPermutation) {
  for (const char* bad : {"tp-dp", "tp-dp-pp-dp", "tp-tp-pp", "tp_dp_pp", "", "TP-DP-PP", "tp-dp-"}) {
    EXPECT_NE(config_error(1, 1, 1, bad, 1).find("parallel.order"), std::string::npos) << bad;
  }
  auto axes = Mesh::parse_order("pp-tp-dp");
  EXPECT_EQ(axes[0], Axis::PP);
  EXPECT_EQ(axes[1], Axis::TP);
  EXPECT_EQ(axes[2], Axis::DP);
}

TEST(MeshOneRank, AllGroupsAreSizeOne) {
  testing::ensure_mpi();
  Mesh mesh(MPI_COMM_SELF, 1, 1, 1, "tp-dp-pp", DeviceKind::CPU, 10.0);
  EXPECT_EQ(mesh.describe(), "dp 1 x tp 1 x pp 1 (order tp-dp-pp): rank 0 = dp 0, tp 0, pp 0");
  EXPECT_EQ(mesh.rank_of(0, 0, 0), 0);
  EXPECT_THROW(mesh.rank_of(0, 1, 0), Error);
  for (Communicator* c : {&mesh.tp(), &mesh.dp(), &mesh.pp(), &mesh.world()}) {
    EXPECT_EQ(c->size(), 1) << c->name();
    Tensor t = testing::host_f32({3.f});
    c->all_reduce(t);
    EXPECT_EQ(t.f32()[0], 3.f);
  }
  EXPECT_EQ(mesh.embedding(), nullptr);
  EXPECT_TRUE(mesh.first_stage());
  EXPECT_TRUE(mesh.last_stage());
  try {
    Mesh bad(MPI_COMM_SELF, 2, 2, 1, "tp-dp-pp", DeviceKind::CPU, 10.0);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "parallel.dp * parallel.tp * parallel.pp = 2 * 2 * 1 = 4 but the job has 1 ranks");
  }
}

TEST(DeviceBinding, OneDevicePerLocalRank) {
  EXPECT_EQ(local_device_for(0, 1, 1), 0);
  EXPECT_EQ(local_device_for(3, 8, 8), 3);
  EXPECT_EQ(local_device_for(1, 2, 8), 1);  // spare GPUs stay idle
  EXPECT_EQ(local_device_for(5, 8, 1), 0);  // per-rank visibility (srun --gpus-per-task=1)
  EXPECT_THROW(local_device_for(0, 2, 0), ConfigError);
  EXPECT_THROW(local_device_for(2, 2, 2), Error);
  try {
    local_device_for(5, 8, 4);  // parallel.device_comm nccl: no sharing
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("8 ranks run on this node but only 4 CUDA devices"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("parallel.device_comm: staged"), std::string::npos)
        << e.what();
  }
  // auto or staged: round robin, the ranks on one GPU then move device tensors staged.
  EXPECT_EQ(local_device_for(5, 8, 4, true), 1);
  EXPECT_EQ(local_device_for(6, 8, 4, true), 2);
  EXPECT_EQ(local_device_for(3, 8, 8, true), 3);
  EXPECT_EQ(local_device_for(5, 8, 1, true), 0);
}

TEST(DeviceComm, ParseNamesTheKey) {
  EXPECT_EQ(parse_device_comm("auto"), DeviceComm::Auto);
  EXPECT_EQ(parse_device_comm("nccl"), DeviceComm::Nccl);
  EXPECT_EQ(parse_device_comm("staged"), DeviceComm::Staged);
  try {
    parse_device_comm("gloo");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("parallel.device_comm = 'gloo'"), std::string::npos)
        << e.what();
  }
}

TEST(DeviceComm, FirstSharedGpuAndGroupKinds) {
  EXPECT_FALSE(first_shared_gpu({"a|01", "a|02", "b|01"}).has_value());
  EXPECT_EQ(first_shared_gpu({"a|01", "a|02", "a|03", "a|02", "a|01"}), std::make_pair(1, 3));
  EXPECT_FALSE(first_shared_gpu({}).has_value());
  EXPECT_EQ(group_comm_for(DeviceKind::CPU, DeviceComm::Auto), GroupComm::Mpi);
  EXPECT_EQ(group_comm_for(DeviceKind::CPU, DeviceComm::Nccl), GroupComm::Mpi);
  EXPECT_EQ(group_comm_for(DeviceKind::CPU, DeviceComm::Staged), GroupComm::Staged);
  EXPECT_EQ(group_comm_for(DeviceKind::CUDA, DeviceComm::Nccl), GroupComm::Nccl);
  EXPECT_EQ(group_comm_for(DeviceKind::CUDA, DeviceComm::Staged), GroupComm::Staged);
  EXPECT_THROW(group_comm_for(DeviceKind::CUDA, DeviceComm::Auto), Error);
}

TEST(DeviceComm, OneRankResolvesToNcclUnlessStaged) {
  testing::ensure_mpi();
  EXPECT_EQ(resolve_device_comm(MPI_COMM_SELF, DeviceComm::Auto, "h|0000:01:00.0"), DeviceComm::Nccl);
  EXPECT_EQ(resolve_device_comm(MPI_COMM_SELF, DeviceComm::Nccl, "h|0000:01:00.0"), DeviceComm::Nccl);
  EXPECT_EQ(resolve_device_comm(MPI_COMM_SELF, DeviceComm::Staged, "h|0000:01:00.0"),
            DeviceComm::Staged);
}

}  // namespace
}  // namespace tandem
