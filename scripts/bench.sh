#!/usr/bin/env bash
# Regenerates the benchmark results: builds shmproc-peers in release, runs the seed's
# experiment across every transport and the codec comparison, writes raw and summary
# CSVs plus the Markdown tables under bench-results/, and plots them (scripts/plot.py).
#
#   scripts/bench.sh                       # 10^4,10^5,10^6 messages, 5 runs per cell
#   RUNS=3 COUNTS=10000,100000 scripts/bench.sh
#   COUNTS=10000,100000,1000000,10000000 PYTHON_MAX=1000000 scripts/bench.sh
#   FEATURES=--features=shmproc-peers/shmproc-api scripts/bench.sh   # shmproc rows (once on main)
#
# BENCHMARKS.md quotes the tables from bench-results/*.md.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
COUNTS=${COUNTS:-10000,100000,1000000}
PYTHON_MAX=${PYTHON_MAX:-1000000}
CODEC_RUNS=${CODEC_RUNS:-5}
OUT=${OUT:-bench-results}
FEATURES=${FEATURES:-}

cargo build --release -p shmproc-peers $FEATURES
mkdir -p "$OUT"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|L1d|L2|L3|Hypervisor)' || true
  echo "kernel: $(uname -r)"
  echo "rustc: $(rustc --version)"
  echo "python3: $(python3 --version 2>&1 || echo absent)"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "command: RUNS=$RUNS COUNTS=$COUNTS PYTHON_MAX=$PYTHON_MAX CODEC_RUNS=$CODEC_RUNS FEATURES='$FEATURES' scripts/bench.sh"
} > "$OUT/machine.txt"

cargo run --release -q -p shmproc-peers $FEATURES -- all \
  --counts "$COUNTS" --runs "$RUNS" --python-max "$PYTHON_MAX" \
  --codec-runs "$CODEC_RUNS" --out "$OUT" | tee "$OUT/run.txt"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"

if command -v python3 >/dev/null; then
  python3 scripts/plot.py "$OUT"
else
  echo "python3 absent: no plots" >&2
fi
