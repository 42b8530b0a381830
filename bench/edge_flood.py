#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_flood: issue 11's reproduced case as figures, not a pass/fail test.

One edge (2 workers, default limits, the release build), a Python peer that
plays persister and notifier (tests/integration/edgetest.py). A device is
connected and acked first. Then, for each flood: N sockets from 250 source
addresses each send a few bytes before any hello and stay open; while they
are held, a new device connects, says hello, sends one message and gets its
ack (welcome + ack, the figure the issue bounds at 100 ms), and the device
connected before the flood gets one more ack (round trip). Floods:

  frame64k  1,100 and 5,000 sockets announcing a 64 KiB first frame and
            sending one byte of it (the case that stalled the edge before)
  hello1k   5,000 sockets announcing a 1,000-byte hello (within --hello-max)
            and sending one byte of it: they are early connections the edge
            must hold or evict

Each flood is run --rounds times with a fresh edge; the script prints every
round and the median and worst, with the load average (a loaded box shows in
it). The edge_18_early_flood test asserts the same with a loose bound.

usage: edge_flood.py [--bin DIR] [--rounds 5] [--port 21860]
(run inside `unshare -n -- sh -c 'ip link set lo up && ...'`: fixed loopback ports)"""
import argparse
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import edgetest  # noqa: E402
from edge_18_early_flood import flood, round_trip  # noqa: E402  (the test's own flood and round trip)

FLOODS = [("frame64k", 1100, "0001000078"), ("frame64k", 5000, "0001000078"), ("hello1k", 5000, "000003e878")]


def one(binary, port, work, n, head):
    e = edgetest.Edge(binary, port, os.path.join(work, "edge.log"))
    try:
        old = e.dev()
        old.login("old-dev")
        round_trip(e, old, 1)
        socks = flood(n, bytes.fromhex(head), port)
        time.sleep(0.5)  # let the edge take them all in
        t0 = time.monotonic()
        d = e.dev()
        d.login("new-dev")
        round_trip(e, d, 1)
        newcomer = time.monotonic() - t0
        old_rt = round_trip(e, old, 2)
        for s in socks:
            s.close()
        return newcomer * 1000, old_rt * 1000
    finally:
        e.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "release", "bin"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--port", type=int, default=21860)  # 21800-21999: the benchmarks' (edge.cmake)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    binary = os.path.join(a.bin, "sluice-edge")
    work = "/tmp/edge_flood-%d" % os.getpid()
    os.makedirs(work, exist_ok=True)
    print("edge_flood: %s, %d rounds per flood, load average %.1f" % (binary, a.rounds, os.getloadavg()[0]))
    for kind, n, head in FLOODS:
        nc, ol = [], []
        for r in range(a.rounds):
            x, y = one(binary, a.port, work, n, head)
            nc.append(x)
            ol.append(y)
            print("  %-8s n=%-5d round %d: new device welcome+ack %7.1f ms, connected device ack %6.1f ms"
                  % (kind, n, r + 1, x, y), flush=True)
        print("result %s n=%d: welcome+ack median %.1f ms worst %.1f ms; connected ack median %.1f ms worst %.1f ms "
              "(target 100 ms) load %.1f" % (kind, n, statistics.median(nc), max(nc), statistics.median(ol), max(ol),
                                             os.getloadavg()[0]), flush=True)


if __name__ == "__main__":
    main()
