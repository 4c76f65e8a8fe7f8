#!/usr/bin/env bash
# tandem run, serve.mode dedicated: the job's last serve.ranks ranks serve, fed the trainers'
# weights every serve.sync_every steps, resharded over MPI between the two layouts:
#   - mpirun -np 4: 2 trainers (dp 2) + 2 servers (one tp 2 replica), sync_every 2;
#   - mpirun -np 4: 2 trainers (pp 2) + 2 servers (two 1-rank replicas behind the router),
#     sync_every 1.
# Staleness bound: a version is taken at once, but flipped in only when the replies running on
# the current weights finish (one version per reply). When no sync is skipped (checked: the
# servers took version v before the trainers posted v + sync_every), the servers serve v or
# newer until the trainers post v + 2 sync_every: within 2 x sync_every versions however
# loaded the machine (sync_every + 1 on an idle one, where a drain spans at most one step).
# For each: a client asks the same greedy prompt round after round until the run ends: every
# reply of one weights version is the same, the versions never go back and advance, and the
# servers' staleness (stats) stays within the bound below (serve_check live); the servers' own
# count agrees; training steps advance while serving and the per-step losses equal those of
# `tandem train` on the trainers' layout alone, bitwise. Then a killed serving rank ends the
# job (no hang). Sized by work: the small serving model (4 x 64, seq 64), 30 steps of batch 16
# (steps long enough beside serving for the servers to take every sync on 2 shared cores).
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"
need_data
[ -x "$SERVE_CHECK" ] || fail "$SERVE_CHECK not built"

STEPS=30
RUN=(configs/quickstart.yaml "${SERVE_MODEL[@]}" --set train.steps=$STEPS --set train.batch=16
     --set train.eval_every=15 --set train.eval_batches=2 --set sample.count=0 --set train.threads=1
     --set train.warmup=5 --set train.lr=3e-3)
PROMPT="464,1,2,3,4,5,6"

losses() {  # losses FILE -> one "step loss" line per step, exactly as written
  python3 - "$1" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(r["step"], repr(r["loss"]))
PY
}

start_run() {  # start_run NAME NP overrides... -> JOB, ADDR
  local name=$1 np=$2; shift 2
  rm -f "$WORK/$name.port"
  timeout --signal=KILL 300 mpirun -np "$np" --oversubscribe "$TANDEM" run "${RUN[@]}" "$@" \
    --set serve.mode=dedicated --set serve.listen=127.0.0.1:0 --port-file "$WORK/$name.port" \
    > "$WORK/$name-run.log" 2>&1 &
  JOB=$!
  for _ in $(seq 1 600); do
    [ -s "$WORK/$name.port" ] && break
    kill -0 $JOB 2>/dev/null || { tail -20 "$WORK/$name-run.log"; fail "$name: tandem run exited during start-up"; }
    sleep 0.1
  done
  [ -s "$WORK/$name.port" ] || { tail -20 "$WORK/$name-run.log"; fail "$name: no port file after 60 s"; }
  ADDR=127.0.0.1:$(sed -n 1p "$WORK/$name.port")
}

for spec in "dp2-tp2|2|1|1|2|1|2" "pp2-dp2|1|1|2|1|1|1"; do
  IFS='|' read -r name dp tp pp stp spp every <<< "$spec"
  train_np=$((dp * tp * pp))
  lay=(--set parallel.dp="$dp" --set parallel.tp="$tp" --set parallel.pp="$pp")
  mpi 300 "$train_np" "$TANDEM" train "${RUN[@]}" "${lay[@]}" --metrics-out "$WORK/$name-train.jsonl" \
    > "$WORK/$name-train.log" 2>&1 || { tail -20 "$WORK/$name-train.log"; fail "$name: tandem train failed"; }

  start_run "$name" 4 "${lay[@]}" --set serve.ranks=2 --set serve.tp="$stp" --set serve.pp="$spp" \
    --set serve.sync_every="$every" --metrics-out "$WORK/$name-run.jsonl"
  # A new version is flipped in once the replies running on the current one finish (one
  # version per reply); with no sync skipped, never more than 2 x sync_every behind.
  bound=$((2 * every))
  timeout 300 "$SERVE_CHECK" "$ADDR" live "$PROMPT" 8 3 "$bound" > "$WORK/$name-live.txt" 2>&1
  live_rc=$?
  rc=0; wait $JOB || rc=$?
  cat "$WORK/$name-live.txt"
  [ $rc = 0 ] || { tail -20 "$WORK/$name-run.log"; fail "$name: tandem run exited with status $rc"; }
  [ $live_rc = 0 ] || { tail -20 "$WORK/$name-run.log"; fail "$name: the live client's checks failed"; }
  grep -h "^dedicated serving" "$WORK/$name-run.log"
  srv=$(grep -h "^dedicated serving (server replica 0)" "$WORK/$name-run.log")
  [ -n "$srv" ] || fail "$name: no server summary"
  received=$(echo "$srv" | sed -E 's/.*: ([0-9]+) weight versions received.*/\1/')
  worst=$(echo "$srv" | sed -E 's/.*staleness max ([0-9]+),.*/\1/')
  final=$(echo "$srv" | sed -E 's/.*weights version ([0-9]+) at the end.*/\1/')
  [ "$received" -ge 3 ] || fail "$name: the servers received $received weight versions"
  skipped=$(grep -h "^dedicated serving (trainers)" "$WORK/$name-run.log" | sed -E 's/.*; ([0-9]+) skipped.*/\1/')
  [ "$skipped" = 0 ] || fail "$name: the trainers skipped $skipped syncs (the servers had not taken the last)"
  [ "$worst" -le "$bound" ] || fail "$name: the servers fell $worst versions behind (serve.sync_every $every)"
  [ "$final" = "$STEPS" ] || fail "$name: the servers ended on version $final, not the last step $STEPS"
  losses "$WORK/$name-train.jsonl" > "$WORK/$name-train.loss"
  losses "$WORK/$name-run.jsonl" > "$WORK/$name-run.loss"
  [ "$(wc -l < "$WORK/$name-run.loss")" = $STEPS ] || fail "$name: tandem run logged $(wc -l < "$WORK/$name-run.loss") steps, not $STEPS"
  cmp -s "$WORK/$name-train.loss" "$WORK/$name-run.loss" || {
    diff "$WORK/$name-train.loss" "$WORK/$name-run.loss" | head -6; fail "$name: losses with dedicated servers differ from tandem train"; }
  pass "$name: $received weight versions served (staleness at most $worst, sync_every $every), last = step $final; $STEPS losses bitwise equal to tandem train"
done

# A killed serving rank ends the whole job.
start_run kill 4 --set parallel.dp=2 --set serve.ranks=2 --set serve.tp=2 --set train.steps=100000
timeout 60 "$SERVE_CHECK" "$ADDR" greedy "$PROMPT" 4 > /dev/null \
  || { tail -20 "$WORK/kill-run.log"; fail "kill: the server did not answer before the kill"; }
launcher=$(pgrep -P "$JOB"); ranks=$(pgrep -P "$launcher" | sort -n)
[ "$(echo "$ranks" | wc -l)" -eq 4 ] || fail "kill: expected 4 rank processes, found: $ranks"
leader=$(sed -n 3p "$WORK/kill.port")  # the first serving rank (it wrote the port file)
t0=$(date +%s); kill -KILL "$leader"
rc=0; wait $JOB || rc=$?
elapsed=$(( $(date +%s) - t0 ))
[ $rc -ne 0 ] || fail "kill: the job exited 0 after a serving rank was killed"
[ $elapsed -le 30 ] || fail "kill: the job took ${elapsed}s (> 30 s) to end after SIGKILL"
pass "SIGKILL of the serving leader ended the whole job in ${elapsed}s (exit $rc)"
