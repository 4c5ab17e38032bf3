"""Python's process start-up: Process(target=f).start(); join(), per start method.

The counterpart of `cargo run --release --example startup`. Usage:
    python3 scripts/py_startup.py [ITERATIONS]
"""
import multiprocessing as mp
import statistics
import sys
import time


def noop():
    pass


def measure(method, iters):
    ctx = mp.get_context(method)
    for _ in range(3):  # warm-up
        p = ctx.Process(target=noop)
        p.start()
        p.join()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        times.append(time.perf_counter() - t)
        assert p.exitcode == 0
    times.sort()
    pick = lambda q: times[round((len(times) - 1) * q)]
    return statistics.median(times), pick(0.1), pick(0.9)


if __name__ == "__main__":
    iters = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    print(f"python {sys.version.split()[0]} process start-up: start() + join() of a no-op, {iters} runs each")
    for method in ("fork", "spawn", "forkserver"):
        med, p10, p90 = measure(method, iters)
        print(f"{method:<10} median {med * 1e3:8.3f} ms   p10 {p10 * 1e3:8.3f} ms   p90 {p90 * 1e3:8.3f} ms")
