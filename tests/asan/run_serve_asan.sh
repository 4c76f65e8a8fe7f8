#!/usr/bin/env bash
# The serve tests under AddressSanitizer + LeakSanitizer (ctest label `asan`): configures a
# separate build (BUILD/asan, -DTANDEM_SANITIZE=address, -O1 -g1, no CUDA), builds the tandem binary,
# the serve unit tests and the e2e clients, then runs test_serve and the serving API
# end-to-end tests (API, a 500-request soak and the hostile clients, both with a 4 MB
# quarantine so that their resident-memory checks hold, the four layouts) against that build. Any sanitizer report fails the test
# (halt_on_error; a leak makes the process exit 86).
#   tests/asan/run_serve_asan.sh BUILD SRC
set -euo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
ASAN_BUILD=$BUILD/asan
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
[ -f "$ASAN_BUILD/CMakeCache.txt" ] && gen=()
# -O1 -g1 (line tables): what ASan's documentation recommends for usable reports, and half the
# compile time of -O2 -g (this build is most of the test's time on a fresh clone).
cmake -S "$SRC" -B "$ASAN_BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DTANDEM_SANITIZE=address -DTANDEM_CUDA=OFF > "$ASAN_BUILD.configure.log" 2>&1 \
  || { tail -30 "$ASAN_BUILD.configure.log"; exit 1; }
cmake --build "$ASAN_BUILD" -j "$(nproc)" --target tandem test_serve serve_check serve_hostile > "$ASAN_BUILD.build.log" 2>&1 \
  || { tail -30 "$ASAN_BUILD.build.log"; exit 1; }
# fast_unwind_on_malloc=0: exact stacks through libraries built without frame pointers.
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=86:fast_unwind_on_malloc=0
export LSAN_OPTIONS=suppressions=$SRC/tests/asan/lsan.supp:print_suppressions=0
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$ASAN_BUILD/tests/test_serve" --gtest_color=no
bash "$SRC/tests/e2e/serve_api_test.sh" "$ASAN_BUILD" "$SRC"
# The soak checks that the leader's RSS stays flat; ASan's quarantine (256 MB by default) holds
# freed memory and would grow RSS by design, so the soak runs with a 4 MB quarantine.
SOAK_REQUESTS=500 ASAN_OPTIONS=$ASAN_OPTIONS:quarantine_size_mb=4 bash "$SRC/tests/e2e/serve_soak_test.sh" "$ASAN_BUILD" "$SRC"
ASAN_OPTIONS=$ASAN_OPTIONS:quarantine_size_mb=4 bash "$SRC/tests/e2e/serve_hostile_test.sh" "$ASAN_BUILD" "$SRC"
bash "$SRC/tests/e2e/serve_layouts_test.sh" "$ASAN_BUILD" "$SRC"
echo "asan: serve unit tests and the serving e2e tests (API, 500-request soak, hostile clients, layouts) ran clean under ASan + LSan"
