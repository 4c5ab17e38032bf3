#!/usr/bin/env python3
"""Plots the benchmark results in a results directory (default bench-results/) as PNGs.

  experiment-summary.csv -> experiment-throughput.png  (msgs/s per transport, per count)
  codecs.csv             -> codecs.png                 (encode+decode ns per payload)
  sizes.csv              -> sizes.png                  (throughput vs message size; when present)
  latency.csv            -> latency.png                (round-trip median/p99/p99.9; when present)

Installs matplotlib with pip when it is missing.
"""
import csv
import os
import subprocess
import sys


def need_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plot.py: installing matplotlib with pip", file=sys.stderr)
        try:
            subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "matplotlib"])
        except (subprocess.CalledProcessError, OSError) as e:
            print(f"plot.py: could not install matplotlib ({e}); no plots, the tables are "
                  "complete without them (try: apt-get install python3-matplotlib)", file=sys.stderr)
            sys.exit(0)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def count_name(c):
    c = int(c)
    p = 0
    while c >= 10 and c % 10 == 0:
        c //= 10
        p += 1
    return f"10^{p}" if c == 1 and p else str(c)


def experiment(plt, d):
    path = os.path.join(d, "experiment-summary.csv")
    if not os.path.exists(path):
        return None
    rows = [r for r in read(path) if r["msgs_per_s"]]
    if not rows:
        return None
    labels = []
    for r in rows:
        if r["label"] not in labels:
            labels.append(r["label"])
    counts = sorted({int(r["count"]) for r in rows})
    by = {(r["label"], int(r["count"])): float(r["msgs_per_s"]) for r in rows}
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(labels) * len(counts) ** 0.5 + 2.5))
    h = 0.8 / len(counts)
    for k, c in enumerate(counts):
        ys = [i + k * h for i in range(len(labels))]
        xs = [by.get((lab, c), 0) for lab in labels]
        ax.barh(ys, xs, height=h, label=f"{count_name(c)} messages")
    ax.set_yticks([i + h * (len(counts) - 1) / 2 for i in range(len(labels))])
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("messages per second (log scale; median of runs)")
    ax.set_title("The seed's pipe experiment: writer -> reader process, 8-byte integers then DONE")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = os.path.join(d, "experiment-throughput.png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def codecs(plt, d):
    path = os.path.join(d, "codecs.csv")
    if not os.path.exists(path):
        return None
    rows = read(path)
    codecs_ = []
    payloads = []
    for r in rows:
        if r["codec"] not in codecs_:
            codecs_.append(r["codec"])
        if r["payload"] not in payloads:
            payloads.append(r["payload"])
    by = {(r["codec"], r["payload"]): float(r["encode_ns"]) + float(r["decode_ns"]) for r in rows}
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(payloads) * len(codecs_) ** 0.5 + 2.5))
    h = 0.8 / len(codecs_)
    for k, c in enumerate(codecs_):
        ys = [i + k * h for i in range(len(payloads))]
        ax.barh(ys, [by.get((c, p), 0) for p in payloads], height=h, label=c)
    ax.set_yticks([i + h * (len(codecs_) - 1) / 2 for i in range(len(payloads))])
    ax.set_yticklabels(payloads)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("encode + decode, ns per message (log scale; lower is better)")
    ax.set_title("Codec candidates")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = os.path.join(d, "codecs.png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def sizes(plt, d):
    """sizes.csv: transport,size_bytes,bytes_per_s (one line per point)."""
    path = os.path.join(d, "sizes.csv")
    if not os.path.exists(path):
        return None
    rows = read(path)
    fig, ax = plt.subplots(figsize=(8, 5))
    for t in dict.fromkeys(r["transport"] for r in rows):
        pts = sorted((int(r["size_bytes"]), float(r["bytes_per_s"])) for r in rows if r["transport"] == t)
        ax.plot([p[0] for p in pts], [p[1] / 2**30 for p in pts], marker="o", label=t)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("GiB/s")
    ax.set_title("Throughput vs message size")
    ax.grid(which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = os.path.join(d, "sizes.png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def latency(plt, d):
    """latency.csv: bench,samples,median_ns,p99_ns,p999_ns,max_ns (benches/latency.rs)."""
    path = os.path.join(d, "latency.csv")
    if not os.path.exists(path):
        return None
    rows = read(path)
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [r["bench"] for r in rows]
    qs = [("median_ns", "median"), ("p99_ns", "p99"), ("p999_ns", "p99.9")]
    h = 0.8 / len(qs)
    for k, (col, lab) in enumerate(qs):
        ax.barh([i + k * h for i in range(len(names))], [float(r[col]) for r in rows], height=h, label=lab)
    ax.set_yticks([i + h for i in range(len(names))])
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("round trip (ns, log scale; HDR histogram over all criterion iterations)")
    ax.set_title("Ping-pong round-trip latency between two processes")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = os.path.join(d, "latency.png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "bench-results"
    plt = need_matplotlib()
    for f in (experiment, codecs, sizes, latency):
        out = f(plt, d)
        if out:
            print(f"wrote {out}")


if __name__ == "__main__":
    main()
