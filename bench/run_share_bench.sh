#!/usr/bin/env bash
# Serving while training on one fleet (docs/performance.md, "Sharing the fleet"): windows
# mode, between-steps-only windows and a dedicated serving rank, at realtime request rates
# 0.5, 1, 2 and 4 per second beside a batch stream of 1 per second, on the quickstart model
# and this machine's cores. Installs the plot's package (launch/setup --bench), then runs
# bench/share_bench.py, which prints each point as it goes and the table at the end, and
# writes results.jsonl and share_bench.png into OUT.
#   bench/run_share_bench.sh [BUILD_DIR] [OUT]      (extra options: ARGS="--load-s 60 ...")
# About 16 minutes on 2 cores. Run it on a quiet machine: every figure is a ratio to training
# alone, measured before and after the sweep in the same run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build}
OUT=${2:-$(mktemp -d "${TMPDIR:-/tmp}/tandem-share-bench.XXXXXX")}
"$ROOT/launch/setup" --bench --no-data > /dev/null
# shellcheck disable=SC2086
/usr/bin/python3 "$ROOT/bench/share_bench.py" "$BUILD" "$OUT" ${ARGS:-}
echo "results: $OUT"
