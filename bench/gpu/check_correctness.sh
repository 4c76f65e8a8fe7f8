# shellcheck shell=bash disable=SC2154  # sourced by check.sh, whose variables it uses
# check_correctness.sh — the correctness parts of bench/gpu/check.sh (issue 10 §1), sourced by
# it from the kit's scripts/ folder after the env part: it uses check.sh's variables (KIT,
# OUTDIR, HAVE_GPU, ENV_OK, MPIRUN, STEPS, TOL_*) and helpers (record, bounded, kx,
# first_error). Parts: parity, mpi_nccl, model_cpu, model_cuda, bf16_track (hook), the four
# layouts, and the same layouts with parallel.device_comm=staged (hook).
# ---------------------------------------------------------------- gtest parts
gtest_counts() {  # passed/skipped/failed counts from a gtest log (rank 0's report)
  local log=$1
  P=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  S=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  F=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  P=${P:-0} S=${S:-0} F=${F:-0}
}
gtest_status() {  # gtest_status PART: from RC and the counts; a GPU part whose tests all skip on a GPU machine fails
  local part=$1 gpu_needed=$2
  gtest_counts "$OUTDIR/$part.log"
  local d="$P passed, $S skipped, $F failed"
  if [ $RC = 124 ]; then record "$part" TIMEOUT "$DT" "$d (timed out)"
  elif [ $RC != 0 ] || [ "$F" != 0 ]; then record "$part" FAIL "$DT" "$d, exit $RC: $(grep -m3 -E '^\[  FAILED  \]|rror' "$OUTDIR/$part.log" | tr '\n' ' ' | cut -c1-200)"
  elif [ "$P" = 0 ] && [ "$S" = 0 ]; then record "$part" FAIL "$DT" "no test ran"
  elif [ "$S" != 0 ] && [ $HAVE_GPU = 0 ]; then record "$part" SKIPPED "$DT" "$d (no GPU)"
  elif [ "$S" != 0 ] && [ "$gpu_needed" = all ] && [ "$P" = 0 ]; then record "$part" FAIL "$DT" "$d: every test skipped on a machine with a GPU (CUDA sees no device: libcuda? env.log)"
  else record "$part" PASS "$DT" "$d"
  fi
}

if [ $ENV_OK = 1 ]; then
  bounded parity 150 "$KIT/bin/test_kernels" --gtest_filter='CudaParity*' --gtest_color=no
  gtest_status parity all

  bounded mpi_nccl 90 bash -c "${MPIRUN[*]} -np 1 '$KIT/bin/test_parallel_mpi' --gtest_color=no && echo '--- np 2 ---' && ${MPIRUN[*]} -np 2 '$KIT/bin/test_parallel_mpi' --gtest_color=no --gtest_filter='-NcclCommunicatorN.*'"
  # the np 1 report carries the NCCL verdict; np 2 must just pass (MPI only)
  if [ $RC = 0 ]; then
    sed -n '1,/^--- np 2 ---$/p' "$OUTDIR/mpi_nccl.log" > "$OUTDIR/mpi_nccl.np1"
    gtest_counts "$OUTDIR/mpi_nccl.np1"; rm -f "$OUTDIR/mpi_nccl.np1"
    nccl_skips=$(grep -c '^\[  SKIPPED \] NcclCommunicatorN' "$OUTDIR/mpi_nccl.log")
    if [ $HAVE_GPU = 0 ] && [ "$nccl_skips" != 0 ]; then record mpi_nccl SKIPPED "$DT" "MPI parts pass at np 1 and 2; $nccl_skips NCCL tests skipped (no GPU)"
    elif [ "$nccl_skips" != 0 ] && [ "$(grep -c '^\[       OK \] NcclCommunicatorN' "$OUTDIR/mpi_nccl.log")" = 0 ]; then record mpi_nccl FAIL "$DT" "every NCCL test skipped on a GPU machine"
    else record mpi_nccl PASS "$DT" "np 1: $P passed, $S skipped (NCCL on 1 rank included); np 2 (MPI) passed"
    fi
  else
    gtest_status mpi_nccl some
  fi
else
  record parity SKIPPED 0 "environment check failed (env.log)"
  record mpi_nccl SKIPPED 0 "environment check failed (env.log)"
fi

# ---------------------------------------------------------------- model level
COMMON=(--set "train.steps=$STEPS" --set train.eval_batches=1 --set sample.count=0)
train() {  # train PART SECONDS NP overrides...
  local part=$1 secs=$2 np=$3; shift 3
  bounded "$part" "$secs" "${MPIRUN[@]}" -np "$np" "$KIT/bin/tandem" train configs/quickstart.yaml \
    "${COMMON[@]}" "$@" --metrics-out "$OUTDIR/$part.jsonl"
}
# compare BASE RUN TOL_LOSS TOL_GNORM: per-step relative differences, a table into OUTDIR/RUN.cmp
compare() {
  local base=$OUTDIR/$1.jsonl run=$OUTDIR/$2.jsonl
  [ -s "$base" ] && [ -s "$run" ] || { CMP="missing metrics"; return 1; }
  CMP=$(awk -v tl="$3" -v tg="$4" -v steps=$STEPS -v out="$OUTDIR/$2.cmp" -v bn="$1" -v rn="$2" '
    function num(line, key,   m) {
      if (match(line, "\"" key "\": *[-+0-9.eE]+")) { m = substr(line, RSTART, RLENGTH); sub(/^[^:]*:/, "", m); return m + 0 }
      return "none"
    }
    function rel(a, b) { d = a - b; if (d < 0) d = -d; if (b < 0) b = -b; return b > 0 ? d / b : d }
    FNR == 1 { file++ }
    { s = num($0, "step"); if (s == "none") next; l = num($0, "loss"); g = num($0, "grad_norm"); v = num($0, "val_loss")
      if (file == 1) { bl[s] = l; bg[s] = g; if (v != "none") bv = v } else { rl[s] = l; rg[s] = g; if (v != "none") rv = v } }
    END {
      printf "%4s %14s %14s %10s %12s %12s %10s\n", "step", bn " loss", rn " loss", "rel", bn " gnorm", rn " gnorm", "rel" > out
      n = 0; wl = 0; wg = 0; bad = 0
      for (s = 1; s <= steps; s++) {
        if (!(s in bl) || !(s in rl)) { bad = 1; continue }
        n++; a = rel(rl[s], bl[s]); b = rel(rg[s], bg[s])
        if (a > wl) wl = a; if (b > wg) wg = b
        printf "%4d %14.8f %14.8f %10.2e %12.6f %12.6f %10.2e\n", s, bl[s], rl[s], a, bg[s], rg[s], b > out
      }
      wv = (bv != "" && rv != "") ? rel(rv, bv) : -1
      if (wv >= 0) printf "val  %14.8f %14.8f %10.2e\n", bv, rv, wv > out
      ok = (n == steps && !bad && wl <= tl && wg <= tg && (wv < 0 || wv <= tl))
      vs = (wv >= 0) ? sprintf("%.2e", wv) : "n/a"
      printf("%s: %d/%d steps, max rel diff loss %.2e (tol %g), grad_norm %.2e (tol %g), val %s", (ok ? "ok" : "DIFFERS"), n, steps, wl, tl, wg, tg, vs)
      exit (ok ? 0 : 1)
    }' "$base" "$run")
}

if [ $ENV_OK = 1 ]; then
  train model_cpu 120 1 --set train.device=cpu
  if [ $RC = 124 ]; then record model_cpu TIMEOUT "$DT" "10 cpu steps did not finish"
  elif [ $RC != 0 ] || [ ! -s "$OUTDIR/model_cpu.jsonl" ]; then record model_cpu FAIL "$DT" "exit $RC: $(first_error "$OUTDIR/model_cpu.log")"
  else record model_cpu PASS "$DT" "$(wc -l < "$OUTDIR/model_cpu.jsonl") steps; loss $(awk 'match($0, /"loss": *[-+0-9.eE]+/) { v = substr($0, RSTART, RLENGTH); sub(/.*: */, "", v); printf "%s%.4f", (n++ ? " " : ""), v }' "$OUTDIR/model_cpu.jsonl")"
  fi
else
  record model_cpu SKIPPED 0 "environment check failed (env.log)"
fi

CUDA_BASE_OK=0
if [ $HAVE_GPU = 0 ] || [ $ENV_OK = 0 ]; then
  record model_cuda SKIPPED 0 "$([ $HAVE_GPU = 0 ] && echo 'no GPU' || echo 'environment check failed')"
else
  train model_cuda 90 1 --set train.device=cuda
  if [ $RC = 124 ]; then record model_cuda TIMEOUT "$DT" "10 cuda steps did not finish"
  elif [ $RC != 0 ] || [ ! -s "$OUTDIR/model_cuda.jsonl" ]; then record model_cuda FAIL "$DT" "exit $RC: $(first_error "$OUTDIR/model_cuda.log")"
  else
    CUDA_BASE_OK=1
    grep -qi 'cuda' "$OUTDIR/model_cuda.log" || echo "warning: the log does not name cuda" >> "$OUTDIR/model_cuda.log"
    if [ -s "$OUTDIR/model_cpu.jsonl" ]; then
      if compare model_cpu model_cuda "$TOL_MODEL" "$TOL_GNORM"; then record model_cuda PASS "$DT" "vs cpu: $CMP"
      else record model_cuda FAIL "$DT" "vs cpu: $CMP (table: model_cuda.cmp)"; fi
    else
      record model_cuda FAIL "$DT" "ran, but no cpu run to compare with"
    fi
  fi
fi

# ---------------------------------------------------------------- HOOK(gpu-bf16): bf16_track
# The 100-step bf16 track of branch gpu-bf16 runs when the kit holds scripts/bf16_track.sh
# (build_kit.sh packs bench/gpu/bf16_track.sh). Its contract (see its header): run from the
# kit's folder as `bf16_track.sh KIT OUTDIR/bf16_track` with LAUNCH (the orterun command line,
# one rank) and TIMEOUT (seconds per run; two runs) in its environment, within BF16_TRACK_S
# seconds; exit 0: PASS, 77: SKIPPED, anything else: FAIL; its last line is the result.
BF16_TRACK=$KIT/scripts/bf16_track.sh
if [ ! -f "$BF16_TRACK" ]; then
  record bf16_track SKIPPED 0 "hook: this kit has no scripts/bf16_track.sh (branch gpu-bf16)"
elif [ $HAVE_GPU = 0 ] || [ $ENV_OK = 0 ]; then
  record bf16_track SKIPPED 0 "$([ $HAVE_GPU = 0 ] && echo 'no GPU' || echo 'environment check failed')"
else
  mkdir -p "$OUTDIR/bf16_track"
  bounded bf16_track "${BF16_TRACK_S:-150}" env LAUNCH="${MPIRUN[*]} -np 1" TIMEOUT=70 \
    bash "$BF16_TRACK" "$KIT" "$OUTDIR/bf16_track"
  last=$(grep -v '^\$ ' "$OUTDIR/bf16_track.log" | tail -1 | cut -c1-200)
  case $RC in
    0) record bf16_track PASS "$DT" "$last";;
    77) record bf16_track SKIPPED "$DT" "$last";;
    124) record bf16_track TIMEOUT "$DT" "$last";;
    *) record bf16_track FAIL "$DT" "exit $RC: $last";;
  esac
fi

# ---------------------------------------------------------------- layouts (NCCL)
LAYOUTS=(
  "layout_dp2 2 --set parallel.dp=2"
  "layout_tp2 2 --set parallel.tp=2"
  "layout_pp2 2 --set parallel.pp=2 --set parallel.microbatches=2"
  "layout_dp2tp2pp2 8 --set parallel.dp=2 --set parallel.tp=2 --set parallel.pp=2 --set parallel.microbatches=2"
)
# run_layouts PREFIX overrides...: each layout as part PREFIX<name minus "layout_">, compared
# with the 1-rank cuda run.
run_layouts() {
  local prefix=$1; shift
  local spec name np rest part why
  for spec in "${LAYOUTS[@]}"; do
    read -r name np rest <<< "$spec"
    part=$prefix${name#layout_}
    if [ $HAVE_GPU = 0 ] || [ $ENV_OK = 0 ]; then record "$part" SKIPPED 0 "$([ $HAVE_GPU = 0 ] && echo 'no GPU' || echo 'environment check failed')"; continue; fi
    # shellcheck disable=SC2086
    train "$part" 60 "$np" --set train.device=cuda $rest "$@"
    if [ $RC = 124 ]; then record "$part" TIMEOUT "$DT" "$np ranks did not finish"
    elif [ $RC != 0 ]; then
      why=$(grep -m1 -o -E "ranks [0-9]+ and [0-9]+ of the group would share one GPU[^;]*|ranks run on this node but only [0-9]+ CUDA devices|Duplicate GPU detected.*" "$OUTDIR/$part.log")
      if [ -n "$why" ]; then record "$part" REFUSED "$DT" "$np ranks on $NGPU GPU(s): $why"
      else record "$part" FAIL "$DT" "exit $RC: $(first_error "$OUTDIR/$part.log")"; fi
    elif [ $CUDA_BASE_OK = 0 ]; then record "$part" FAIL "$DT" "ran, but the 1-rank cuda run to compare with failed"
    elif compare model_cuda "$part" "$TOL_LAYOUT" "$TOL_LAYOUT"; then record "$part" PASS "$DT" "vs 1-rank cuda: $CMP"
    else record "$part" FAIL "$DT" "vs 1-rank cuda: $CMP (table: $part.cmp)"
    fi
  done
}
# NCCL itself (parallel.device_comm=nccl where the binary knows the key; its default, auto,
# would stage through the host on a one-GPU machine): REFUSED when ranks share a GPU.
if grep -qaF 'parallel.device_comm' "$KIT/bin/tandem"; then
  run_layouts layout_ --set parallel.device_comm=nccl
else
  run_layouts layout_
fi

# ---------------------------------------------------------------- HOOK(gpu-mem): staged layouts
# The four layouts again on this machine's GPUs through the host-staged device communicator
# of branch gpu-mem (parallel.device_comm=staged: several ranks may share one GPU), against
# the same 1-rank cuda run. Runs when bin/tandem knows the key (its config schema holds the
# string), else one SKIPPED line.
if grep -qaF 'parallel.device_comm' "$KIT/bin/tandem"; then
  run_layouts staged_ --set parallel.device_comm=staged
else
  record layouts_staged SKIPPED 0 "hook: bin/tandem has no parallel.device_comm (branch gpu-mem)"
fi

