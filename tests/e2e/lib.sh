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

# --- serving helpers (tests/e2e/serve_*_test.sh) ---
# (two micro-batches, so that the pp = 2 layouts of the serving tests have one per stage)
SERVE_MODEL=(--set model.layers=4 --set model.dim=64 --set model.heads=4 --set model.seq_len=64
             --set parallel.microbatches=2)
SERVE_CHECK=$BUILD/tests/serve_check

# Trains the small serving model for 30 steps on one rank and checkpoints it into $1; extra
# arguments override (e.g. one step at lr 1e-9: weights at their random initialisation, whose
# greedy continuations vary more than a briefly trained model's "the the the").
make_serve_checkpoint() {  # make_serve_checkpoint DIR [overrides...]
  local dir=$1; shift
  mpi 300 1 "$TANDEM" train configs/quickstart.yaml "${SERVE_MODEL[@]}" --set train.steps=30 \
    --set train.batch=4 --set train.eval_every=0 --set sample.count=0 --set train.threads=1 \
    --set train.checkpoint.dir="$dir" "$@" > "$WORK/train-ckpt.log" 2>&1 \
    || { tail -20 "$WORK/train-ckpt.log"; fail "training the serving checkpoint failed"; }
}

# Starts `tandem serve` under mpirun (hard timeout) in the background; sets SERVER_PID and
# SERVER_ADDR (127.0.0.1:PORT, an ephemeral port read from --port-file).
start_server() {  # start_server NAME NP SECONDS CKPT overrides...
  local name=$1 np=$2 secs=$3 ckpt=$4; shift 4
  rm -f "$WORK/$name.port"
  timeout --signal=KILL "$secs" mpirun -np "$np" --oversubscribe "$TANDEM" serve configs/quickstart.yaml \
    "${SERVE_MODEL[@]}" --set train.threads=1 --set serve.listen=127.0.0.1:0 --checkpoint "$ckpt" \
    --port-file "$WORK/$name.port" "$@" > "$WORK/$name.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 600); do
    [ -s "$WORK/$name.port" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/$name.log"; fail "$name: server exited during start-up"; }
    sleep 0.1
  done
  [ -s "$WORK/$name.port" ] || { tail -20 "$WORK/$name.log"; fail "$name: no port file after 60 s"; }
  SERVER_ADDR=127.0.0.1:$(sed -n 1p "$WORK/$name.port")
  METRICS_PORT=$(sed -n 2p "$WORK/$name.port")
  LEADER_PID=$(sed -n 3p "$WORK/$name.port")
}

# SIGTERM to the leader (world rank 0), which stops every rank; the job must end with status 0.
stop_server() {  # stop_server NAME
  kill -TERM "$LEADER_PID" 2>/dev/null
  local rc=0
  wait "$SERVER_PID" || rc=$?
  [ $rc = 0 ] || { tail -20 "$WORK/$1.log"; fail "$1: server exited with status $rc after SIGTERM"; }
  grep -q "serve: stopped" "$WORK/$1.log" || { tail -20 "$WORK/$1.log"; fail "$1: no clean stop line"; }
}
