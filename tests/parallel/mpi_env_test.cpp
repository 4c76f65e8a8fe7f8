// single_node_mpi_settings: which Open MPI settings a rank makes before MPI_Init so that a
// job on one node opens no network listener of Open MPI's own, read from fake environments
// (a singleton, mpirun on one node and on two, srun on one node and on two, a user's choice).
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "parallel/mpi_env.h"

namespace tandem {
namespace {

using Settings = std::vector<std::pair<std::string, std::string>>;

Settings settings_for(const std::map<std::string, std::string>& env) {
  return single_node_mpi_settings([&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(SingleNodeMpiSettings, ASingletonLoadsNoTcpTransportAndStartsNoDaemon) {
  EXPECT_EQ(settings_for({}), (Settings{{"OMPI_MCA_btl", "self,vader"}, {"OMPI_MCA_ess_singleton_isolated", "1"}}));
}

TEST(SingleNodeMpiSettings, MpirunOnOneNodeLoadsNoTcpTransport) {
  EXPECT_EQ(settings_for({{"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}}),
            (Settings{{"OMPI_MCA_btl", "self,vader"}}));
}

TEST(SingleNodeMpiSettings, AJobAcrossNodesIsLeftAlone) {
  EXPECT_TRUE(settings_for({{"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}}).empty());
  EXPECT_TRUE(settings_for({{"SLURM_STEP_ID", "0"}, {"PMIX_RANK", "1"}, {"SLURM_STEP_NUM_NODES", "2"}}).empty());
  // srun without a node count: the layout is unknown, so nothing changes.
  EXPECT_TRUE(settings_for({{"PMIX_RANK", "0"}}).empty());
}

TEST(SingleNodeMpiSettings, SrunOnOneNodeLoadsNoTcpTransport) {
  EXPECT_EQ(settings_for({{"SLURM_STEP_ID", "0"}, {"PMIX_RANK", "0"}, {"SLURM_STEP_NUM_NODES", "1"}}),
            (Settings{{"OMPI_MCA_btl", "self,vader"}}));
}

TEST(SingleNodeMpiSettings, TheUsersOwnChoiceStays) {
  EXPECT_EQ(settings_for({{"OMPI_MCA_btl", "self,tcp"}}), (Settings{{"OMPI_MCA_ess_singleton_isolated", "1"}}));
  EXPECT_TRUE(settings_for({{"OMPI_MCA_btl", "tcp,self"}, {"OMPI_MCA_ess_singleton_isolated", "0"}}).empty());
}

}  // namespace
}  // namespace tandem
