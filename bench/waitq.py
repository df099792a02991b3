#!/usr/bin/python3
"""waitq.py - wait until a spool is drained or a Maildir holds N messages.

  waitq.py [--after FILE] empty TIMEOUT DIR...   every DIR (recursively) holds no file
  waitq.py [--after FILE] count TIMEOUT DIR N    DIR (flat, e.g. Maildir/new) holds >= N files

Prints the time.time() at which the condition first held (same clock as
`date +%s.%N`) and exits 0; on timeout prints what is left and exits 1.
Polls every 5 ms from one process. With --after FIFO, checking starts only
once a writer opens FIFO (the caller starts us before the load so that our
start-up does not count, and opens the FIFO when the load generator has
finished). Until then we sleep in open(2): no polling while the load runs,
which would take CPU from the MTA being measured.
"""
import os
import signal
import sys
import time


def files_under(d):
    n = 0
    try:
        with os.scandir(d) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    n += files_under(e.path)
                else:
                    n += 1
    except FileNotFoundError:
        pass
    return n


def count_flat(d):
    try:
        with os.scandir(d) as it:
            return sum(1 for _ in it)
    except FileNotFoundError:
        return 0


def main():
    args = sys.argv[1:]
    gate = None
    if args[:1] == ["--after"]:
        gate, args = args[1], args[2:]
    sys.argv = [sys.argv[0]] + args
    mode, timeout = sys.argv[1], float(sys.argv[2])
    deadline = time.time() + timeout
    if gate:
        # blocks (no CPU) until the caller opens the FIFO for writing; the
        # alarm (default action: exit) ends us if the caller never does
        signal.alarm(int(timeout) + 600)
        with open(gate, "rb") as f:
            f.read(1)
        signal.alarm(0)
        deadline = time.time() + timeout
    if mode == "empty":
        dirs = sys.argv[3:]
        check = lambda: sum(files_under(d) for d in dirs)
        done = lambda left: left == 0
    elif mode == "count":
        d, want = sys.argv[3], int(sys.argv[4])
        check = lambda: want - count_flat(d)
        done = lambda left: left <= 0
    else:
        sys.exit("usage: waitq.py empty|count TIMEOUT ...")
    while True:
        left = check()
        t = time.time()
        if done(left):
            print("%.6f" % t)
            return 0
        if t > deadline:
            print("timeout: %d left" % left)
            return 1
        time.sleep(0.005)


if __name__ == "__main__":
    sys.exit(main())
