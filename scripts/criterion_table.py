#!/usr/bin/env python3
"""Collects criterion's results (target/criterion/**/new/{benchmark,estimates}.json) into
bench-results/criterion.md and criterion.csv, plus sizes.csv (throughput vs message size,
for plot.py). Adds the ratios DESIGN.md's targets are stated in, from the same run.

  scripts/criterion_table.py [CRITERION_DIR] [OUT_DIR]
"""
import csv
import json
import os
import sys


def load(root):
    out = []
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            b = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            e = json.load(f)
        out.append({
            "id": b["full_id"],
            "group": b["group_id"],
            "function": b.get("function_id") or "",
            "value": b.get("value_str") or "",
            "throughput": b.get("throughput") or {},
            "median_ns": e["median"]["point_estimate"],
            "lo_ns": e["median"]["confidence_interval"]["lower_bound"],
            "hi_ns": e["median"]["confidence_interval"]["upper_bound"],
        })
    return sorted(out, key=lambda r: r["id"])


def fmt_ns(ns):
    if ns < 1e3:
        return f"{ns:.1f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} µs"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def rate(r):
    t = r["throughput"]
    per_s = 1e9 / r["median_ns"]
    if "Bytes" in t:
        return f"{t['Bytes'] * per_s / 2**30:.2f} GiB/s, {per_s / 1e6:.2f} M msg/s"
    if "Elements" in t:
        return f"{t['Elements'] * per_s / 1e6:.1f} M msg/s"
    return f"{per_s:.0f} /s"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
    out = sys.argv[2] if len(sys.argv) > 2 else "bench-results"
    rows = load(root)
    if not rows:
        print(f"criterion_table.py: no results under {root}", file=sys.stderr)
        return
    os.makedirs(out, exist_ok=True)
    by = {r["id"]: r for r in rows}
    md = ["| benchmark | median per iteration (95% CI) | throughput |", "|---|---|---|"]
    for r in rows:
        md.append(f"| {r['id']} | {fmt_ns(r['median_ns'])} ({fmt_ns(r['lo_ns'])} – {fmt_ns(r['hi_ns'])}) | {rate(r)} |")
    md.append("")
    md.append("Ratios in the same run (DESIGN.md targets):")
    md.append("")
    for size in ["8B", "64B", "1KiB", "64KiB", "1MiB"]:
        a, b = by.get(f"bytes/shmproc_pipe/{size}"), by.get(f"bytes/os_pipe/{size}")
        if a and b:
            tgt = " (target ≥ 2×)" if size == "1MiB" else ""
            md.append(f"- {size} messages: shmproc pipe bandwidth = {b['median_ns'] / a['median_ns']:.2f}× OS pipe{tgt}")
    s, p = by.get("pingpong/shmproc_duplex_blocking"), by.get("pingpong/os_pipe_blocking")
    if s and p:
        md.append(f"- blocking ping-pong: shmproc round trip = {s['median_ns'] / p['median_ns']:.2f} of the OS pipe's (target ≤ 0.5)")
    sp = by.get("pingpong/shmproc_duplex_spin")
    if sp:
        md.append(f"- spinning ping-pong: {fmt_ns(sp['median_ns'])} per round trip (target ≤ 1 µs)")
    sa = by.get("msgs/shmproc_send_all_u64_x1024")
    if sa:
        md.append(f"- send_all of u64: {1024e9 / sa['median_ns'] / 1e6:.0f} M msg/s (target ≥ 1000 M msg/s)")
    with open(os.path.join(out, "criterion.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    with open(os.path.join(out, "criterion.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "median_ns", "ci_lo_ns", "ci_hi_ns", "throughput"])
        for r in rows:
            w.writerow([r["id"], f"{r['median_ns']:.3f}", f"{r['lo_ns']:.3f}", f"{r['hi_ns']:.3f}", json.dumps(r["throughput"])])
    with open(os.path.join(out, "sizes.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["transport", "size_bytes", "bytes_per_s"])
        for r in rows:
            if r["group"] == "bytes" and "Bytes" in r["throughput"]:
                w.writerow([r["function"], r["throughput"]["Bytes"], r["throughput"]["Bytes"] * 1e9 / r["median_ns"]])
    print("\n".join(md))


if __name__ == "__main__":
    main()
