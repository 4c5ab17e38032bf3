#!/usr/bin/env bash
# Pool(5).map(x*x) over 10^6 u64 (and imap / imap_unordered over IMAP_ITEMS), shmproc
# against Python, interleaved: ROUNDS rounds, each running the Rust example then the
# Python script (the order alternates from round to round); every run prints the median
# of RUNS calls. Prints the raw lines, then per-round ratios and their median.
#   ROUNDS=3 RUNS=5 ITEMS=1000000 IMAP_ITEMS=20000 scripts/pool_vs_python.sh
# BEFORE=path/to/an/older/pool_map binary adds it to every round (as "before"), for a
# same-run before/after.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3} RUNS=${RUNS:-5} ITEMS=${ITEMS:-1000000} IMAP_ITEMS=${IMAP_ITEMS:-20000}
BEFORE=${BEFORE:-}
cargo build --release --example pool_map >/dev/null 2>&1
out=$(mktemp)
for r in $(seq 1 "$ROUNDS"); do
  rust() { target/release/examples/pool_map "$ITEMS" "$RUNS" "$IMAP_ITEMS" fork | sed "s/^/round $r rust   /"; }
  py() { python3 scripts/py_pool.py "$ITEMS" "$RUNS" "$IMAP_ITEMS" fork | sed "s/^/round $r python /"; }
  before() { [[ -z $BEFORE ]] || "$BEFORE" "$ITEMS" "$RUNS" "$IMAP_ITEMS" fork | sed "s/^/round $r before /"; }
  if (( r % 2 )); then rust; before; py; else py; before; rust; fi
done | tee "$out"
echo
echo "median ns/item per round (shmproc / Python = speed-up):"
python3 - "$out" <<'PY'
import re, statistics, sys
cells = {}
for line in open(sys.argv[1]):
    m = re.match(r"round (\d+) (\w+)\s+fork\s+(\w+)\s+\d+ items\s+median.*\(\s*([\d.]+) ns/item\)", line)
    if m:
        r, who, what, ns = m.groups()
        cells.setdefault(what, {}).setdefault(int(r), {})[who] = float(ns)
for what, rounds in cells.items():
    ratios = [v["python"] / v["rust"] for v in rounds.values() if "python" in v and "rust" in v]
    rust = [v["rust"] for v in rounds.values() if "rust" in v]
    py = [v["python"] for v in rounds.values() if "python" in v]
    print(f"{what:<15} shmproc {statistics.median(rust):9.1f} ns/item   python {statistics.median(py):9.1f} ns/item"
          f"   speed-up per round {', '.join(f'{x:.1f}x' for x in ratios)}   median {statistics.median(ratios):.1f}x")
    before = [v["before"] / v["rust"] for v in rounds.values() if "before" in v and "rust" in v]
    if before:
        b = statistics.median([v["before"] for v in rounds.values() if "before" in v])
        print(f"{'':<15} before  {b:9.1f} ns/item   before / shmproc per round "
              f"{', '.join(f'{x:.1f}x' for x in before)}   median {statistics.median(before):.1f}x")
PY
rm -f "$out"
