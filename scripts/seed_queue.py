#!/usr/bin/env python3
"""The seed's experiment with multiprocessing.Queue instead of Pipe: the same shape as
seed_pipe.py (a daemon reader Process get()s until 'DONE'; the parent times put() of
every integer, 'DONE', and join()). The seed shows Queue only in its put/get example;
this applies its Pipe experiment to it. One JSON line per measurement on stdout.
"""
import argparse
import json
import time
from multiprocessing import Process, Queue


def reader_proc(q):
    while True:
        msg = q.get()
        if msg == 'DONE':
            break


def writer(count, q):
    for ii in range(0, count):
        q.put(ii)
    q.put('DONE')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="10000,100000,1000000")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    for count in [int(c) for c in args.counts.split(",")]:
        for run in range(args.runs):
            q = Queue()
            reader_p = Process(target=reader_proc, args=(q,))
            reader_p.daemon = True
            reader_p.start()

            _start = time.perf_counter()
            writer(count, q)
            q.close()
            reader_p.join()
            took = time.perf_counter() - _start
            q.join_thread()
            print(json.dumps({"transport": "python-mp-queue", "count": count,
                              "run": run, "seconds": took}), flush=True)


if __name__ == '__main__':
    main()
