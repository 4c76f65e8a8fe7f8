#!/usr/bin/env bash
# The acceptance test of parallel training: every layout computes the same model as one rank.
# 10 steps of configs/quickstart.yaml on world sizes 1, 2, 4 and 8 (oversubscribed), with
# recompute none/selective/full, zero 0/1, offload on/off and gpipe/1f1b/interleaved mixed
# across layouts (one of them the interleaved schedule's two chunks on one rank, whose two
# copies of the tied embedding sum on that rank), and three layouts moving their tensors
# through the staged communicator (parallel.device_comm=staged: host copies + MPI, the path
# ranks sharing a GPU take); the
# per-step training loss and gradient norm must match the 1-rank run
# within a relative tolerance of 1e-5 (fp32; the differences come only from summation order),
# and the final validation loss too. Every run is under a hard timeout, so a deadlock fails the test.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"
need_data

TOL=1e-5
common=(--set train.steps=10 --set train.eval_batches=1 --set sample.count=0 --set train.threads=1)
run() {  # run NAME NP overrides...
  local name=$1 np=$2; shift 2
  local t0=$(date +%s)
  if ! mpi 900 "$np" "$TANDEM" train configs/quickstart.yaml "${common[@]}" "$@" \
       --metrics-out "$WORK/$name.jsonl" > "$WORK/$name.log" 2>&1; then
    tail -20 "$WORK/$name.log"; fail "$name ($np ranks) exited non-zero"
  fi
  grep -q "layout: " "$WORK/$name.log" || fail "$name did not report its layout"
  echo "ran $name on $np rank(s) in $(( $(date +%s) - t0 )) s"
}

run base 1
layouts=(
  "dp2 2 --set parallel.dp=2 --set parallel.zero=1 --set parallel.device_comm=staged"
  "tp2 2 --set parallel.tp=2 --set parallel.recompute=selective --set parallel.offload=true"
  "pp2 2 --set parallel.pp=2 --set parallel.microbatches=2 --set parallel.recompute=full --set parallel.device_comm=staged"
  "pp4 4 --set parallel.pp=4 --set parallel.microbatches=4 --set parallel.schedule=gpipe --set parallel.recompute=selective"
  "dp2tp2 4 --set parallel.dp=2 --set parallel.tp=2 --set parallel.zero=1 --set parallel.offload=true --set parallel.recompute=full"
  "dp2pp2 4 --set parallel.dp=2 --set parallel.pp=2 --set parallel.microbatches=2"
  "tp2pp2 4 --set parallel.tp=2 --set parallel.pp=2 --set parallel.microbatches=2 --set parallel.recompute=selective --set parallel.order=pp-tp-dp"
  "dp2tp2pp2 8 --set parallel.dp=2 --set parallel.tp=2 --set parallel.pp=2 --set parallel.microbatches=2 --set parallel.zero=1 --set parallel.recompute=full --set parallel.offload=true --set parallel.device_comm=staged"
  "pp2x2 2 --set parallel.pp=2 --set parallel.schedule=interleaved --set parallel.chunks=2 --set parallel.microbatches=2"
  "pp1x2 1 --set parallel.schedule=interleaved --set parallel.chunks=2"
)
for spec in "${layouts[@]}"; do
  read -r name np rest <<< "$spec"
  # shellcheck disable=SC2086
  run "$name" "$np" $rest
done

python3 - "$WORK" "$TOL" "${layouts[@]%% *}" <<'PY' || fail "losses differ from the 1-rank run"
import json, sys
work, tol, names = sys.argv[1], float(sys.argv[2]), [s.split()[0] for s in sys.argv[3:]]
def losses(name):
    recs = [json.loads(l) for l in open(f"{work}/{name}.jsonl")]
    return [r["loss"] for r in recs], recs[-1].get("val_loss"), [r["grad_norm"] for r in recs]
base, base_val, base_norm = losses("base")
assert len(base) == 10, base
ok = True
for n in names:
    got, val, norm = losses(n)
    worst = max(abs(a - b) / abs(b) for a, b in zip(got, base))
    nworst = max(abs(a - b) / abs(b) for a, b in zip(norm, base_norm))
    vrel = abs(val - base_val) / abs(base_val)
    good = len(got) == 10 and len(norm) == 10 and worst <= tol and nworst <= tol and vrel <= tol
    ok &= good
    print(f"{n:10s} max rel diff {worst:.2e} over 10 steps, grad_norm {nworst:.2e}, val {vrel:.2e}  {'ok' if good else 'FAIL'}")
print("1-rank losses:", " ".join(f"{x:.6f}" for x in base))
sys.exit(0 if ok else 1)
PY
pass "all layouts match the 1-rank run within $TOL"
