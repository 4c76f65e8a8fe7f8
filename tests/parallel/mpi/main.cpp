// main() of test_parallel_mpi (and of test_runtime_mpi, test_serve_mpi): GoogleTest under mpirun. Every rank runs every test; rank 0
// prints the usual report, other ranks print only their failures (prefixed "[rank r]"), and
// the exit status is non-zero on every rank when any rank failed (allreduced), so mpirun and
// CTest see one verdict.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <cstring>

namespace {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                 r.line_number(), r.summary());
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed())
      std::fprintf(stderr, "[rank %d] [  FAILED  ] %s.%s\n", rank_, info.test_suite_name(), info.name());
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(rank));
  } else {
    const char* slash = argc > 0 ? std::strrchr(argv[0], '/') : nullptr;
    std::printf("%s: %d rank(s)\n", slash ? slash + 1 : argc > 0 ? argv[0] : "test", size);
  }
  const int local = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any = 0;
  MPI_Allreduce(&local, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && any && !local) std::printf("[rank 0] all tests passed here, but another rank failed\n");
  MPI_Finalize();
  return any;
}
