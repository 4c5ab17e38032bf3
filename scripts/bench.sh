#!/usr/bin/env bash
# Regenerates every benchmark table and plot under bench-results/:
#   1. the seed's experiment across shmproc and its peers, plus the codec comparison
#      (benches/peers, release): experiment-table.md, experiment-*.csv, codecs*.
#   2. the criterion suite of the root crate (benches/*.rs): throughput by message size
#      and vs OS pipe, ping-pong latency (median/p99 from an HDR histogram), process
#      start-up, codec: criterion.md, criterion.csv, sizes.csv, latency.csv.
#   3. plots (scripts/plot.py, matplotlib; installed with pip if missing).
#
#   scripts/bench.sh                                  # 10^4,10^5,10^6 messages, 5 runs per cell
#   RUNS=3 COUNTS=10000,100000 scripts/bench.sh
#   COUNTS=10000,100000,1000000,10000000 PYTHON_MAX=1000000 scripts/bench.sh
#   SKIP_CRITERION=1 scripts/bench.sh                 # only the experiment + codecs
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
SKIP_CRITERION=${SKIP_CRITERION:-}

cargo build --release -p shmproc-peers $FEATURES
mkdir -p "$OUT"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|L1d|L2|L3|Hypervisor)' || true
  echo "kernel: $(uname -r)"
  echo "rustc: $(rustc --version)"
  echo "python3: $(python3 --version 2>&1 || echo absent)"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "command: RUNS=$RUNS COUNTS=$COUNTS PYTHON_MAX=$PYTHON_MAX CODEC_RUNS=$CODEC_RUNS FEATURES='$FEATURES' scripts/bench.sh"
} > "$OUT/machine.txt"

# 1. The seed's experiment and the codec comparison.
cargo run --release -q -p shmproc-peers $FEATURES -- all \
  --counts "$COUNTS" --runs "$RUNS" --python-max "$PYTHON_MAX" \
  --codec-runs "$CODEC_RUNS" --out "$OUT" | tee "$OUT/run.txt"
echo "load average after the experiment: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"

# 2. The criterion suite (latency.csv is appended to by the latency bench: start afresh).
if [ -z "$SKIP_CRITERION" ]; then
  rm -f "$OUT/latency.csv"
  SHMPROC_BENCH_OUT="$PWD/$OUT" cargo bench -p shmproc \
    --bench throughput --bench latency --bench startup --bench codec 2>&1 | tee "$OUT/criterion-run.txt"
  if command -v python3 >/dev/null; then
    python3 scripts/criterion_table.py target/criterion "$OUT"
  fi
  echo "load average after criterion: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
fi

# 3. Plots.
if command -v python3 >/dev/null; then
  python3 scripts/plot.py "$OUT" || echo "plot.py failed (matplotlib missing and pip unavailable?): tables only" >&2
else
  echo "python3 absent: no plots" >&2
fi
