"""Python's Pool(5).map(x*x) over 10^6 ints, and imap / imap_unordered (chunksize 1,
the default) over fewer: the counterpart of `cargo run --release --example pool_map`.
Usage:
    python3 scripts/py_pool.py [ITEMS] [RUNS] [IMAP_ITEMS] [fork|spawn|both]
(defaults 1000000, 5, 100000, fork). Per start method: the pool start-up and, per call,
the time from the call to the last result: the median and the best of RUNS, and the
median time per item. The pool is started outside the timing and the input is a prebuilt
list (a fresh copy per run, made before the clock starts).
"""
import multiprocessing as mp
import sys
import time


def square(x):
    return x * x


def time_runs(runs, data, f):
    expect = sum(x * x for x in data) % (1 << 64)
    times = []
    for _ in range(runs):
        d = list(data)
        t = time.perf_counter()
        s = f(d)
        times.append(time.perf_counter() - t)
        assert s % (1 << 64) == expect
    times.sort()
    return times[len(times) // 2], times[0]


def report(what, method, items, med_best):
    med, best = med_best
    print(f"{method:<6} {what:<15} {items:>8} items  median {med * 1e3:8.2f}ms "
          f"({med * 1e9 / items:7.1f} ns/item)   best {best * 1e3:8.2f}ms")


if __name__ == "__main__":
    a = sys.argv[1:]
    items = int(a[0]) if len(a) > 0 else 1_000_000
    runs = int(a[1]) if len(a) > 1 else 5
    imap_items = int(a[2]) if len(a) > 2 else 100_000
    which = a[3] if len(a) > 3 else "fork"
    methods = ["fork", "spawn"] if which == "both" else [which]
    print(f"python {sys.version.split()[0]} Pool(5): map(x*x) over {items} ints, "
          f"imap/imap_unordered over {imap_items}, {runs} runs each")
    data = list(range(items))
    imap_data = list(range(imap_items))
    for method in methods:
        ctx = mp.get_context(method)
        t = time.perf_counter()
        with ctx.Pool(5) as pool:
            print(f"{method:<6} start-up {(time.perf_counter() - t) * 1e3:.1f}ms")
            pool.map(square, data)  # warm-up
            report("map", method, items, time_runs(runs, data, lambda d: sum(pool.map(square, d))))
            report("imap", method, imap_items,
                   time_runs(runs, imap_data, lambda d: sum(pool.imap(square, d))))
            report("imap_unordered", method, imap_items,
                   time_runs(runs, imap_data, lambda d: sum(pool.imap_unordered(square, d))))
