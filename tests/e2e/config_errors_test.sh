#!/usr/bin/env bash
# A malformed config fails on every rank, before any collective, with a message naming the key
# (and its line), a non-zero exit, and no hang (1 rank and 2 ranks under mpirun).
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"

cat > "$WORK/bad.yaml" <<'YAML'
model:
  layers: 2
  dim: 64
  heads: 4
train:
  steps: 3
  lr: fast
YAML
out=$(timeout 60 "$TANDEM" train "$WORK/bad.yaml" 2>&1); rc=$?
[ $rc -eq 2 ] || fail "bad lr: exit $rc, want 2: $out"
echo "$out" | grep -q "bad.yaml:7: train.lr" || fail "bad lr: message does not name key+line: $out"
pass "wrong type names train.lr at line 7"

cat > "$WORK/typo.yaml" <<'YAML'
model:
  layer: 2
YAML
out=$(timeout 60 "$TANDEM" train "$WORK/typo.yaml" 2>&1); rc=$?
[ $rc -eq 2 ] || fail "unknown key: exit $rc"
echo "$out" | grep -q "typo.yaml:2: unknown key 'model.layer'" || fail "unknown key message: $out"
pass "unknown key named with its line"

out=$(timeout 60 "$TANDEM" train configs/quickstart.yaml --set model.heads=3 2>&1); rc=$?
[ $rc -eq 2 ] || fail "dim % heads: exit $rc"
echo "$out" | grep -q "model.heads" || fail "dim % heads message: $out"
pass "--set override checked: $(echo "$out" | grep -o 'model.heads.*' | head -1)"

# Two ranks: both reject the config, both exit, the job ends non-zero well within the timeout.
start=$(date +%s)
out=$(mpi 60 2 "$TANDEM" train "$WORK/bad.yaml" 2>&1); rc=$?
[ $rc -ne 0 ] || fail "2 ranks: bad config exited 0"
[ $rc -ne 137 ] || fail "2 ranks: bad config hung until the timeout"
n=$(echo "$out" | grep -c "config error: .*train.lr")
[ "$n" -eq 2 ] || fail "2 ranks: expected the error from both ranks, got $n: $out"
pass "2 ranks fail fast ($(( $(date +%s) - start )) s) with the key named on each rank"

# A layout that does not match the world size is refused on every rank.
out=$(mpi 60 2 "$TANDEM" train configs/quickstart.yaml 2>&1); rc=$?
[ $rc -ne 0 ] && [ $rc -ne 137 ] || fail "world-size mismatch: exit $rc"
echo "$out" | grep -q "parallel.dp \* parallel.tp \* parallel.pp = 1 \* 1 \* 1 = 1 but the job has 2 ranks" \
  || fail "world-size mismatch message: $out"
pass "dp*tp*pp != world size refused"
