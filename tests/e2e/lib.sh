# Shared helpers for the end-to-end tests (sourced, not run: it has no test of its own).
# Usage in a test: source "$(dirname "$0")/lib.sh" "$@"  -> BUILD, SRC, TANDEM, WORK set.
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
TANDEM=$BUILD/tandem
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-e2e.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$SRC"

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

need_data() {
  if [ ! -f "$SRC/data/brown/train_000.bin" ] || [ ! -f "$SRC/data/gpt2/encoder.json" ]; then
    echo "SKIP: data/ not prepared (run ./launch/setup)"; exit 77
  fi
}

# mpirun with a hard timeout so a deadlock fails the test instead of hanging CI.
mpi() {  # mpi SECONDS NP args...
  local secs=$1 np=$2; shift 2
  timeout --signal=KILL "$secs" mpirun -np "$np" --oversubscribe "$@"
}

# Reads key from the last JSON line of a metrics file that has it.
metric() {  # metric FILE KEY
  python3 - "$1" "$2" <<'PY'
import json, sys
val = None
for line in open(sys.argv[1]):
    rec = json.loads(line)
    if sys.argv[2] in rec and rec[sys.argv[2]] is not None:
        val = rec[sys.argv[2]]
print(val)
PY
}
