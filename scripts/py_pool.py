"""Python's Pool(5).map(x*x) over 10^6 ints: the counterpart of
`cargo run --release --example pool_map`. Usage:
    python3 scripts/py_pool.py [ITEMS] [RUNS]
Prints the pool start-up and, per map, the time from the call to the returned list,
per start method: the median and the best of RUNS.
"""
import multiprocessing as mp
import sys
import time


def square(x):
    return x * x


if __name__ == "__main__":
    items = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    print(f"python {sys.version.split()[0]} Pool(5).map(x*x) over {items} ints, {runs} runs per start method")
    expect = sum(x * x for x in range(items)) % (1 << 64)
    for method in ("fork", "spawn"):
        ctx = mp.get_context(method)
        t = time.perf_counter()
        with ctx.Pool(5) as pool:
            startup = time.perf_counter() - t
            pool.map(square, range(items))  # warm-up
            times = []
            for _ in range(runs):
                data = list(range(items))
                t = time.perf_counter()
                out = pool.map(square, data)
                times.append(time.perf_counter() - t)
                assert sum(out) % (1 << 64) == expect
        times.sort()
        med = times[len(times) // 2]
        print(f"{method:<6} start-up {startup * 1e3:8.1f} ms   map median {med * 1e3:8.1f} ms "
              f"({med * 1e9 / items:.1f} ns/item)   best {times[0] * 1e3:8.1f} ms")
