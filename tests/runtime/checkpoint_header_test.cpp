// Checkpoint root attributes (runtime/train/checkpoint_header.h): a file as written reads back;
// attributes changed after the save (as with h5py) are refused naming what disagrees: a step
// changed alone, all four step attributes changed together (only the checksum sees it), a step
// beyond 32 bits (never a wrap), an unknown format version, a mistyped or too wide attribute.
// Format version 1 files (no attrs_checksum) still read.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "runtime/train/checkpoint_header.h"
#include "tests/parallel/mpi/mpi_test_util.h"
#include "tests/support/temp_dir.h"

namespace tandem {
namespace {


const auto* const kFinalize = ::testing::AddGlobalTestEnvironment(new tandem::testing::MpiFinalizeEnvironment);

// Rewrites root attribute `name` of `path` with h5py's types (int64, float64, uint64), or deletes it.
template <class T>
void set_attr(const std::string& path, const char* name, T value, hid_t type) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  if (H5Aexists(f, name) > 0) H5Adelete(f, name);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, type == H5T_STD_I64LE ? H5T_NATIVE_INT64 : type == H5T_STD_U64LE ? H5T_NATIVE_UINT64 : H5T_NATIVE_DOUBLE,
           &value);
  H5Aclose(a);
  H5Sclose(space);
  H5Fclose(f);
}
void set_int(const std::string& p, const char* n, int64_t v) { set_attr(p, n, v, H5T_STD_I64LE); }
void delete_attr(const std::string& path, const char* name) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  H5Adelete(f, name);
  H5Fclose(f);
}

class CheckpointHeaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tandem::testing::ensure_mpi();
    path = tmp.file("step_00000200.h5");
    model.layers = 2;
    model.dim = 64;
    model.heads = 4;
    model.vocab = 300;
    model.seq_len = 32;
    CheckpointMeta meta;
    meta.step = 200;
    meta.seed = 1234;
    meta.config_yaml = "model:\n  dim: 64\n";
    meta.layout = "dp 1 x tp 2 x pp 1";
    ckpt::TensorFileWriter w(MPI_COMM_SELF, path);
    write_checkpoint_attrs(w, model, meta, true, false);
    w.close();
  }
  // The message read_checkpoint_header throws ("" when it accepts the file).
  std::string refusal() {
    try {
      ckpt::TensorFileReader r(MPI_COMM_SELF, path);
      read_checkpoint_header(r);
      return "";
    } catch (const ckpt::CheckpointError& e) {
      return e.what();
    }
  }
  tandem::testing::TempDir tmp{"tandem_header"};
  std::string path;
  ModelOptions model;
};

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST_F(CheckpointHeaderTest, AsWrittenItReadsBack) {
  ckpt::TensorFileReader r(MPI_COMM_SELF, path);
  const CheckpointHeader h = read_checkpoint_header(r);
  EXPECT_EQ(h.format_version, 2);
  EXPECT_EQ(h.step, 200);
  EXPECT_EQ(h.weights_version, 200);
  EXPECT_EQ(h.adam_step, 200);
  EXPECT_EQ(h.seed, 1234);
  EXPECT_TRUE(h.has_optimizer_state);
  EXPECT_EQ(h.model.dim, 64);
  EXPECT_EQ(h.layout, "dp 1 x tp 2 x pp 1");
}

TEST_F(CheckpointHeaderTest, AStepChangedAloneIsRefused) {
  set_int(path, "step", 150);
  const std::string m = refusal();
  EXPECT_TRUE(has(m, "weights_version is 200 but step is 150")) << m;
  EXPECT_TRUE(has(m, "data_position is 200 but step is 150")) << m;
  EXPECT_TRUE(has(m, "fail their checksum")) << m;
}

TEST_F(CheckpointHeaderTest, AllStepAttributesChangedTogetherFailTheChecksum) {
  for (const char* k : {"step", "weights_version", "data_position", "adam_step"}) set_int(path, k, 150);
  const std::string m = refusal();
  EXPECT_TRUE(has(m, "the root attributes fail their checksum")) << m;
  EXPECT_FALSE(has(m, "but step is")) << m;
}

TEST_F(CheckpointHeaderTest, AStepBeyond32BitsIsRefusedNeverWrapped) {
  set_int(path, "format_version", 1);  // an old file: no checksum, the range check alone
  delete_attr(path, "attrs_checksum");
  const int64_t huge = (int64_t{1} << 32) + 150;
  for (const char* k : {"step", "weights_version", "data_position", "adam_step"}) set_int(path, k, huge);
  const std::string m = refusal();
  EXPECT_TRUE(has(m, "step 4294967446 is outside [0, 2147483646]")) << m;
}

TEST_F(CheckpointHeaderTest, FormatVersionOneStillReads) {
  set_int(path, "format_version", 1);
  delete_attr(path, "attrs_checksum");
  EXPECT_EQ(refusal(), "");
  set_int(path, "step", 150);  // but its attributes are still cross-checked
  EXPECT_TRUE(has(refusal(), "weights_version is 200 but step is 150"));
}

TEST_F(CheckpointHeaderTest, UnknownFormatVersionMistypedAndTooWideAttributesAreRefused) {
  set_int(path, "format_version", 99);
  EXPECT_TRUE(has(refusal(), "format version 99 is unknown")) << refusal();
  set_int(path, "format_version", 2);
  set_attr(path, "step", 200.0, H5T_IEEE_F64LE);
  EXPECT_TRUE(has(refusal(), "attribute step is a float, not an integer")) << refusal();
  set_int(path, "step", 200);
  set_attr(path, "model_dim", ~uint64_t{0}, H5T_STD_U64LE);
  EXPECT_TRUE(has(refusal(), "model_dim = 18446744073709551615 does not fit")) << refusal();
  set_int(path, "model_dim", (int64_t{1} << 32) + 64);
  EXPECT_TRUE(has(refusal(), "model_dim is 4294967360, outside [1, 2147483647]")) << refusal();
}

}  // namespace
}  // namespace tandem
