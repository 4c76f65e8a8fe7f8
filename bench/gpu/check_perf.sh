# shellcheck shell=bash disable=SC2154  # sourced by check.sh, whose variables it uses
# check_perf.sh — the performance parts of bench/gpu/check.sh (issue 10 §4), sourced by it
# from the kit's scripts/ folder after the correctness parts; it uses check.sh's variables
# (KIT, OUTDIR, HAVE_GPU, ENV_OK, MPIRUN) and helpers (record, bounded, left, first_error).
# Each measurement is a part under its own timeout, started only when the budget still holds
# its minimum (else SKIPPED, "rerun with PARTS=perf"), in this order:
#   perf_train_tandem_<model>  bench/train_bench --device cuda --precision $PRECISION (bf16;
#                              refused by a build without bf16: then fp32, with a note)
#   perf_train_eager           torch_gpu_bench.py --mode train, eager, bf16 and fp32
#   perf_decode_tandem_b<N>    bench/decode_bench --device cuda --only decode, each batch
#   perf_decode_torch          torch_gpu_bench.py --mode decode, fp32 and bf16, each batch
#   comm_overlap               HOOK(gpu-comm): bin/comm_overlap_bench when the kit has it
#   perf_train_compile         torch_gpu_bench.py --mode train --compile $TORCH_COMPILE, bf16,
#                              last, in whatever is left of the budget (it skips a model
#                              visibly when less than MIN_COMPILE_S is left)
# Every measurement appends a JSON line to OUTDIR/perf.jsonl (scripts/perf_report.py and
# torch_gpu_bench.py write them); the tables go to OUTDIR/perf_summary.txt and the screen.
# PERF_REHEARSAL=cpu on a machine without a GPU runs every part on the CPU at tiny shapes.

PERF_JSONL=$OUTDIR/perf.jsonl
: > "$PERF_JSONL"
PEAK_TFLOPS=${PEAK_TFLOPS:-790}      # H200 dense bf16, measured (8192^3 bf16 product)
PRECISION=${PRECISION:-bf16}         # Tandem's training precision asked for
TORCH_COMPILE=${TORCH_COMPILE:-regional}
MIN_COMPILE_S=${MIN_COMPILE_S:-40}
PERF_ON=1 PERF_WHY="" PERF_NOTE="" PERF_DEVICE=""
if [ $ENV_OK = 0 ]; then PERF_ON=0 PERF_WHY="environment check failed"
elif [ $HAVE_GPU = 1 ]; then PERF_DEVICE=cuda
elif [ "${PERF_REHEARSAL:-}" = cpu ]; then PERF_DEVICE=cpu PERF_NOTE="cpu rehearsal, tiny shapes: "
else PERF_ON=0 PERF_WHY="no GPU"
fi
PY=$(command -v python3 || true)
if [ $PERF_ON = 1 ] && [ -z "$PY" ]; then PERF_ON=0 PERF_WHY="no python3 on PATH"; fi

if [ "$PERF_DEVICE" = cpu ]; then
  # The same code paths at sizes a CPU runs in seconds; not a measurement.
  TRAIN_MODELS="tiny-a:2:64:2:2 tiny-b:3:96:3:2" SEQ=32 VOCAB=500 WARMUP=1 TIMED=2
  DECODE_MODEL="tiny-a:2:64:2" DECODE_BATCHES="1 3" DECODE_PROMPT=8 DECODE_NEW=8 DECODE_RUNS=2
  T_TRAIN_TANDEM=40 T_TRAIN_EAGER=90 T_DECODE_TANDEM=30 T_DECODE_TORCH=90 T_COMPILE=60
  THREADS=2
else
  # GPT-2 124M and 350M at seq 1024 (vocab 50257, padded to 50304 on both sides), batches of
  # 16 and 8 sequences; decode of 128 new tokens after a 128-token prompt with 124M.
  TRAIN_MODELS=${TRAIN_MODELS:-"gpt2-124M:12:768:12:16 gpt2-350M:24:1024:16:8"}
  SEQ=${SEQ:-1024} VOCAB=${VOCAB:-50257} WARMUP=${WARMUP:-2} TIMED=${TIMED:-5}
  DECODE_MODEL=${DECODE_MODEL:-gpt2-124M:12:768:12} DECODE_BATCHES=${DECODE_BATCHES:-"1 16 64"}
  DECODE_PROMPT=${DECODE_PROMPT:-128} DECODE_NEW=${DECODE_NEW:-128} DECODE_RUNS=${DECODE_RUNS:-3}
  T_TRAIN_TANDEM=45 T_TRAIN_EAGER=60 T_DECODE_TANDEM=30 T_DECODE_TORCH=60 T_COMPILE=180
  THREADS=$(nproc)
fi
TORCH_OK=""   # decided on first use: python3 imports torch (and sees CUDA on a GPU machine)

# perf_ready PART MIN_SECONDS: true when the part may start; else records it SKIPPED.
perf_ready() {
  if [ $PERF_ON = 0 ]; then record "$1" SKIPPED 0 "$PERF_WHY"; return 1; fi
  local l; l=$(left)
  if [ "$l" -lt "$2" ]; then
    record "$1" SKIPPED 0 "budget: ${l}s of ${BUDGET_S}s left, the part starts with ${2}s (rerun with PARTS=perf)"
    return 1
  fi
}
torch_ready() {  # torch_ready PART: python3 has torch (and CUDA when on the GPU)
  if [ -z "$TORCH_OK" ]; then
    local probe='import torch; print(torch.__version__)'
    [ "$PERF_DEVICE" = cuda ] && probe='import torch; assert torch.cuda.is_available(), "torch.cuda.is_available() is False"; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'
    if TORCH_INFO=$(timeout 60 "$PY" -c "$probe" 2>&1 | tail -1); then TORCH_OK=1; else TORCH_OK=0; fi
    echo "python3: $PY; torch: $TORCH_INFO" >> "$OUTDIR/env.log"
  fi
  [ "$TORCH_OK" = 1 ] && return 0
  record "$1" SKIPPED 0 "python3 cannot run PyTorch here: $TORCH_INFO"
  return 1
}
brief() {  # one line on the records of PART in perf.jsonl
  "$PY" "$KIT/scripts/perf_report.py" brief "$PERF_JSONL" --part "$1" 2>&1 | tail -1 | cut -c1-300
}
# perf_status PART: the part's status from RC, its log, and whether it wrote records.
perf_status() {
  local part=$1
  if [ $RC = 124 ]; then record "$part" TIMEOUT "$DT" "${PERF_NOTE}did not finish; $(brief "$part")"
  elif [ $RC != 0 ]; then record "$part" FAIL "$DT" "exit $RC: $(first_error "$OUTDIR/$part.log")"
  else
    local b; b=$(brief "$part")
    case "$b" in
      "0 measured, 0 not"*) record "$part" FAIL "$DT" "${PERF_NOTE}no result recorded (log: $part.log)";;
      *", 0 not"*) record "$part" PASS "$DT" "$PERF_NOTE$b";;
      *) record "$part" SKIPPED "$DT" "$PERF_NOTE$b (notes: perf_summary.txt)";;
    esac
  fi
}

# ---------------------------------------------------------------- Tandem: training
for spec in $TRAIN_MODELS; do
  IFS=: read -r name layers dim heads batch <<< "$spec"
  part=perf_train_tandem_$name
  perf_ready "$part" 15 || continue
  args=(--layers "$layers" --dim "$dim" --heads "$heads" --vocab "$VOCAB" --seq "$SEQ"
        --batch "$batch" --warmup "$WARMUP" --steps $((WARMUP + TIMED)) --threads "$THREADS"
        --device "$PERF_DEVICE" --max-seconds $((T_TRAIN_TANDEM - 15)))
  prec=$PRECISION note=""
  bounded "$part" "$T_TRAIN_TANDEM" "$KIT/bin/train_bench" "${args[@]}" --precision "$prec"
  if [ $RC = 3 ] && grep -q '^refused: --precision' "$OUTDIR/$part.log"; then
    note="asked for $prec, which this train_bench refuses ($(grep -m1 '^refused:' "$OUTDIR/$part.log" | cut -c1-120)): ran fp32"
    echo "NOTE: $note" | tee -a "$SUMMARY"
    mv "$OUTDIR/$part.log" "$OUTDIR/$part.refused.log"
    prec=fp32
    bounded "$part" "$T_TRAIN_TANDEM" "$KIT/bin/train_bench" "${args[@]}" --precision "$prec"
  fi
  if [ $RC = 0 ] && ! out=$("$PY" "$KIT/scripts/perf_report.py" tandem-train "$OUTDIR/$part.log" \
        --jsonl "$PERF_JSONL" --model "$name" --part "$part" --precision-asked "$PRECISION" \
        --peak-tflops "$PEAK_TFLOPS" --note "$note" 2>&1); then
    RC=1; echo "perf_report.py: $out" >> "$OUTDIR/$part.log"
  fi
  perf_status "$part"
done

# ---------------------------------------------------------------- PyTorch: training, eager
torch_common=(--device "$PERF_DEVICE" --jsonl "$PERF_JSONL" --seq "$SEQ" --vocab "$VOCAB"
              --peak-tflops "$PEAK_TFLOPS")
if perf_ready perf_train_eager 20 && torch_ready perf_train_eager; then
  secs=$T_TRAIN_EAGER; l=$(left); [ "$l" -lt "$secs" ] && secs=$l
  NOKX=1 bounded perf_train_eager "$secs" "$PY" "$KIT/scripts/torch_gpu_bench.py" --mode train \
    "${torch_common[@]}" --models "$TRAIN_MODELS" --precisions "$PRECISION,fp32" \
    --warmup "$WARMUP" --steps "$TIMED" --deadline-s $((secs - 8)) --part perf_train_eager
  perf_status perf_train_eager
fi

# ---------------------------------------------------------------- Tandem: decode
IFS=: read -r dname dlayers ddim dheads _ <<< "$DECODE_MODEL"
for b in $DECODE_BATCHES; do
  part=perf_decode_tandem_b$b
  perf_ready "$part" 10 || continue
  bounded "$part" "$T_DECODE_TANDEM" "$KIT/bin/decode_bench" --layers "$dlayers" --dim "$ddim" \
    --heads "$dheads" --vocab "$VOCAB" --seq $((DECODE_PROMPT + DECODE_NEW)) \
    --gen-tokens "$DECODE_NEW" --batch "$b" --steps "$DECODE_RUNS" --threads "$THREADS" \
    --only decode --device "$PERF_DEVICE"
  if [ $RC = 0 ] && ! out=$("$PY" "$KIT/scripts/perf_report.py" tandem-decode "$OUTDIR/$part.log" \
        --jsonl "$PERF_JSONL" --model "$dname" --part "$part" 2>&1); then
    RC=1; echo "perf_report.py: $out" >> "$OUTDIR/$part.log"
  fi
  perf_status "$part"
done

# ---------------------------------------------------------------- PyTorch: decode
if perf_ready perf_decode_torch 20 && torch_ready perf_decode_torch; then
  secs=$T_DECODE_TORCH; l=$(left); [ "$l" -lt "$secs" ] && secs=$l
  NOKX=1 bounded perf_decode_torch "$secs" "$PY" "$KIT/scripts/torch_gpu_bench.py" --mode decode \
    "${torch_common[@]}" --models "$DECODE_MODEL" --precisions fp32,bf16 \
    --batches "$DECODE_BATCHES" --prompt "$DECODE_PROMPT" --new-tokens "$DECODE_NEW" \
    --decode-runs "$DECODE_RUNS" --deadline-s $((secs - 8)) --part perf_decode_torch
  perf_status perf_decode_torch
fi

# ---------------------------------------------------------------- HOOK(gpu-comm): comm_overlap
# The fused NCCL send/recv and comm-stream overlap benchmark of branch gpu-comm runs when
# build_kit.sh packed its binary (bin/comm_overlap_bench, built when the target exists), under
# orterun with COMM_NP ranks (default 1) and COMM_ARGS; exit 0: PASS, its last output line is
# the part's detail.
if [ ! -x "$KIT/bin/comm_overlap_bench" ]; then
  record comm_overlap SKIPPED 0 "hook: this kit has no bin/comm_overlap_bench (branch gpu-comm)"
elif [ "$PERF_DEVICE" != cuda ]; then
  record comm_overlap SKIPPED 0 "${PERF_WHY:-cpu rehearsal}: needs a GPU"
elif perf_ready comm_overlap 20; then
  # shellcheck disable=SC2086
  bounded comm_overlap "${COMM_S:-45}" "${MPIRUN[@]}" -np "${COMM_NP:-1}" "$KIT/bin/comm_overlap_bench" ${COMM_ARGS:-}
  last=$(grep -v '^\$ ' "$OUTDIR/comm_overlap.log" | tail -1 | cut -c1-200)
  case $RC in
    0) record comm_overlap PASS "$DT" "$last";;
    124) record comm_overlap TIMEOUT "$DT" "$last";;
    *) record comm_overlap FAIL "$DT" "exit $RC: $last";;
  esac
fi

# ---------------------------------------------------------------- PyTorch: training, torch.compile
if perf_ready perf_train_compile $((MIN_COMPILE_S + 10)) && torch_ready perf_train_compile; then
  secs=$T_COMPILE; l=$(left); [ "$l" -lt "$secs" ] && secs=$l
  NOKX=1 bounded perf_train_compile "$secs" "$PY" "$KIT/scripts/torch_gpu_bench.py" --mode train \
    "${torch_common[@]}" --models "$TRAIN_MODELS" --precisions "$PRECISION" \
    --compile "$TORCH_COMPILE" --min-compile-s "$MIN_COMPILE_S" \
    --warmup "$WARMUP" --steps "$TIMED" --deadline-s $((secs - 8)) --part perf_train_compile
  perf_status perf_train_compile
fi

# ---------------------------------------------------------------- tables
if [ -s "$PERF_JSONL" ] && [ -n "$PY" ]; then
  { [ -n "$PERF_NOTE" ] && echo "*** ${PERF_NOTE%: } (not a measurement) ***"
    "$PY" "$KIT/scripts/perf_report.py" summary "$PERF_JSONL" --peak-tflops "$PEAK_TFLOPS"; } \
    > "$OUTDIR/perf_summary.txt" 2>&1
  cat "$OUTDIR/perf_summary.txt"
fi
