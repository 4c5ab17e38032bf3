#!/usr/bin/env python3
"""Python's multiprocessing.Queue with P producer and P consumer processes, for
P = 1, 2, 4: the counterpart of `cargo run --release --example queue_throughput`.

    python3 scripts/py_queue_procs.py [ITEMS]     # default 200,000 items, best of 3
"""
import multiprocessing as mp
import sys
import time


def producer(q, start, n, go):
    go.wait()
    for i in range(start, start + n):
        q.put(i)


def consumer(q, done):
    got = 0
    while True:
        x = q.get()
        if x is None:
            break
        got += 1
    done.put(got)


def run(items, p):
    q = mp.Queue()
    done = mp.Queue()
    go = mp.Event()
    per = items // p
    prods = [mp.Process(target=producer, args=(q, k * per, per, go)) for k in range(p)]
    cons = [mp.Process(target=consumer, args=(q, done)) for _ in range(p)]
    for x in prods + cons:
        x.start()
    time.sleep(0.2)  # start-up excluded
    t = time.perf_counter()
    go.set()
    for x in prods:
        x.join()
    for _ in cons:
        q.put(None)
    total = sum(done.get() for _ in cons)
    for x in cons:
        x.join()
    dt = time.perf_counter() - t
    assert total == per * p, (total, per * p)
    return per * p / dt


def main():
    items = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    print(f"python {sys.version.split()[0]} multiprocessing.Queue, {items} ints, best of 3")
    for p in (1, 2, 4):
        best = max(run(items, p) for _ in range(3))
        print(f"{p} -> {p}: {best / 1e6:8.3f} M items/s")


if __name__ == "__main__":
    main()
