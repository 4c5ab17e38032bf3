#!/usr/bin/env python3
"""The seed's Pipe experiment (shared/seed/multiprocessing-notes.txt), kept as the seed
wrote it: a daemon reader Process gets both ends, closes its input end and recv()s until
'DONE'; the parent closes its output end, times writer() + close + join().

Changes from the seed, none inside the timed region: counts and repetitions come from
the command line, the clock is time.perf_counter(), and each measurement is printed as
one JSON line on stdout for the Rust harness (benches/peers) to read.
"""
import argparse
import json
import time
from multiprocessing import Pipe, Process


def reader_proc(pipe):
    ## Read from the pipe; this will be spawned as a separate Process
    p_output, p_input = pipe
    p_input.close()    # We are only reading
    while True:
        msg = p_output.recv()    # Read from the output pipe and do nothing
        if msg == 'DONE':
            break


def writer(count, p_input):
    for ii in range(0, count):
        p_input.send(ii)             # Write 'count' numbers into the input pipe
    p_input.send('DONE')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="10000,100000,1000000")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    for count in [int(c) for c in args.counts.split(",")]:
        for run in range(args.runs):
            # Pipes are unidirectional with two endpoints:  p_input ------> p_output
            p_output, p_input = Pipe()  # writer() writes to p_input from _this_ process
            reader_p = Process(target=reader_proc, args=((p_output, p_input),))
            reader_p.daemon = True
            reader_p.start()     # Launch the reader process

            p_output.close()       # We no longer need this part of the Pipe()
            _start = time.perf_counter()
            writer(count, p_input)  # Send a lot of stuff to reader_proc()
            p_input.close()
            reader_p.join()
            took = time.perf_counter() - _start
            print(json.dumps({"transport": "python-mp-pipe", "count": count,
                              "run": run, "seconds": took}), flush=True)


if __name__ == '__main__':
    main()
