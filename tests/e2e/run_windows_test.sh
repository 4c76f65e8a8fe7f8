#!/usr/bin/env bash
# tandem run, serve.mode windows: the training ranks answer requests at the trainer's safe
# points, through the real client and server, under layouts (dp, tp, pp) = (1,1,1), (1,2,1)
# (mpirun -np 2, tensor parallel), (2,1,1) (-np 2, two replicas behind the router) and
# (1,1,2) (-np 2, pipeline: windows between pipeline actions only). For each layout:
#   - a client asks the same greedy prompt (realtime twice, batch once) round after round
#     until the run ends: every reply of one weights version is the same, the versions never
#     go back and advance over the run (serve_check live);
#   - training steps advance while serving (every step in the metrics), windows were opened;
#   - the per-step losses equal those of `tandem train` without serving, bitwise (the JSON
#     metrics hold each loss as %.17g), for the same layout.
# Then a killed rank of a serving run ends the job (no hang). Sized by work: the small serving
# model (4 x 64, seq 64), 80 steps of batch 4.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"
need_data
[ -x "$SERVE_CHECK" ] || fail "$SERVE_CHECK not built"

RUN=(configs/quickstart.yaml "${SERVE_MODEL[@]}" --set train.steps=80 --set train.batch=4
     --set train.eval_every=40 --set train.eval_batches=2 --set sample.count=0 --set train.threads=1
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

for spec in "1|1|1" "1|2|1" "2|1|1" "1|1|2"; do
  IFS='|' read -r dp tp pp <<< "$spec"
  np=$((dp * tp * pp)); name=dp${dp}tp${tp}pp${pp}
  lay=(--set parallel.dp="$dp" --set parallel.tp="$tp" --set parallel.pp="$pp")
  mpi 300 "$np" "$TANDEM" train "${RUN[@]}" "${lay[@]}" --metrics-out "$WORK/$name-train.jsonl" \
    > "$WORK/$name-train.log" 2>&1 || { tail -20 "$WORK/$name-train.log"; fail "$name: tandem train failed"; }

  rm -f "$WORK/$name.port"
  timeout --signal=KILL 300 mpirun -np "$np" --oversubscribe "$TANDEM" run "${RUN[@]}" "${lay[@]}" \
    --set serve.mode=windows --set serve.listen=127.0.0.1:0 --port-file "$WORK/$name.port" \
    --metrics-out "$WORK/$name-run.jsonl" > "$WORK/$name-run.log" 2>&1 &
  JOB=$!
  for _ in $(seq 1 600); do
    [ -s "$WORK/$name.port" ] && break
    kill -0 $JOB 2>/dev/null || { tail -20 "$WORK/$name-run.log"; fail "$name: tandem run exited during start-up"; }
    sleep 0.1
  done
  [ -s "$WORK/$name.port" ] || fail "$name: no port file after 60 s"
  addr=127.0.0.1:$(sed -n 1p "$WORK/$name.port")
  timeout 300 "$SERVE_CHECK" "$addr" live "$PROMPT" 8 3 > "$WORK/$name-live.txt" 2>&1
  live_rc=$?
  rc=0; wait $JOB || rc=$?
  cat "$WORK/$name-live.txt"
  [ $rc = 0 ] || { tail -20 "$WORK/$name-run.log"; fail "$name: tandem run exited with status $rc"; }
  [ $live_rc = 0 ] || { tail -20 "$WORK/$name-run.log"; fail "$name: the live client's checks failed"; }
  grep -h "^serving windows" "$WORK/$name-run.log" | head -2
  windows=$(grep -h "^serving windows (replica 0)" "$WORK/$name-run.log" | sed -E 's/.*, ([0-9]+) windows,.*/\1/')
  [ -n "$windows" ] && [ "$windows" -gt 0 ] || fail "$name: no serving window was opened"
  losses "$WORK/$name-train.jsonl" > "$WORK/$name-train.loss"
  losses "$WORK/$name-run.jsonl" > "$WORK/$name-run.loss"
  [ "$(wc -l < "$WORK/$name-run.loss")" = 80 ] || fail "$name: tandem run logged $(wc -l < "$WORK/$name-run.loss") steps, not 80"
  cmp -s "$WORK/$name-train.loss" "$WORK/$name-run.loss" || {
    diff "$WORK/$name-train.loss" "$WORK/$name-run.loss" | head -6; fail "$name: losses under serving differ from tandem train"; }
  pass "$name: served from the live weights, $windows windows; 80 losses bitwise equal to tandem train ($(tail -1 "$WORK/$name-run.loss"))"
done

# A killed rank of a serving run ends the whole job.
rm -f "$WORK/kill.port"
timeout --signal=KILL 300 mpirun -np 2 --oversubscribe "$TANDEM" run "${RUN[@]}" --set train.steps=100000 \
  --set parallel.tp=2 --set serve.mode=windows --set serve.listen=127.0.0.1:0 --port-file "$WORK/kill.port" \
  > "$WORK/kill.log" 2>&1 &
JOB=$!
for _ in $(seq 1 600); do [ -s "$WORK/kill.port" ] && break; sleep 0.1; done
[ -s "$WORK/kill.port" ] || { tail -20 "$WORK/kill.log"; fail "kill: no port file"; }
timeout 60 "$SERVE_CHECK" "127.0.0.1:$(sed -n 1p "$WORK/kill.port")" greedy "$PROMPT" 4 > /dev/null \
  || { tail -20 "$WORK/kill.log"; fail "kill: the server did not answer before the kill"; }
launcher=$(pgrep -P "$JOB"); ranks=$(pgrep -P "$launcher" | sort -n)
[ "$(echo "$ranks" | wc -l)" -eq 2 ] || fail "kill: expected 2 rank processes, found: $ranks"
leader=$(sed -n 3p "$WORK/kill.port")
victim=$(echo "$ranks" | grep -v "^$leader$" | head -1)
t0=$(date +%s); kill -KILL "$victim"
rc=0; wait $JOB || rc=$?
elapsed=$(( $(date +%s) - t0 ))
[ $rc -ne 0 ] || fail "kill: the job exited 0 after a rank was killed"
[ $elapsed -le 30 ] || fail "kill: the job took ${elapsed}s (> 30 s) to end after SIGKILL"
pass "SIGKILL of the non-leader rank of a serving run ended the job in ${elapsed}s (exit $rc)"
