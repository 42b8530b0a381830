#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_churn: what one bad connection costs the edge, in CPU microseconds.

One edge (2 workers, --log-level info, default limits), a Python peer that
plays persister and notifier (tests/integration/edgetest.py). For each kind
of bad client, N connections one after the other from 250 source addresses
outside the allow list (127.1.x.y, so the per-address limits judge them):

  churn     connect and close, no byte sent (a port scanner, a NAT that
            times out, a reconnect loop)
  huge      a header announcing 4 GiB, then close: err{frame}
  garbage   100 random bytes, then close: err{frame} or err{decode}
  badtoken  a hello with a wrong token, read the err, close: err{auth}

The edge's CPU time (user + system, /proc/PID/stat, the kernel's TCP work for
its side of each loopback connection included) over the kind's N connections,
divided by N, is the figure; the script prints every round and the median.
The loopback peer's half of the TCP work lands partly on the edge too (a
loopback send runs the receiver's path in the sender's context), so these
are upper bounds for an edge with real networks on both sides.

usage: edge_churn.py [--bin DIR] [--n 20000] [--rounds 3] [--port 21880]
(run inside `unshare -n -- sh -c 'ip link set lo up && ...'`: fixed loopback ports)"""
import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import edge_abuse  # noqa: E402  (bench/, beside this file)
import edgetest  # noqa: E402
import wire  # noqa: E402

KINDS = ("churn", "huge", "garbage", "badtoken")
HELLO = wire.encode({"t": "hello", "v": 1, "dev": "liar", "tok": "0" * 64})


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def hit(port, kind, i):
    try:
        s = edge_abuse.conn(port, "127.1.%d.%d" % (1 + i // 250 % 250, 1 + i % 250))  # the soak's own connect
    except OSError:
        return  # refused: the edge's choice, still a connection it handled
    try:
        if kind == "huge":
            s.sendall(b"\xff\xff\xff\xff")
        elif kind == "garbage":
            s.sendall(os.urandom(100))
        elif kind == "badtoken":
            s.sendall(HELLO)
            s.recv(256)
    except OSError:
        pass  # refused, reset: the edge's choice, still a connection it handled
    finally:
        s.close()


def one(binary, port, work, kind, n):
    e = edgetest.Edge(binary, port, os.path.join(work, "edge.log"),
                      extra=["--log-level", "info", "--allow-cidrs", "127.0.0.0/16"])
    try:
        pid = e.proc.pid
        time.sleep(0.5)
        t0, w0 = cpu_ticks(pid), time.monotonic()
        for i in range(n):
            hit(port, kind, i)
        time.sleep(1)  # the last closes
        t1, w1 = cpu_ticks(pid), time.monotonic()
        return (t1 - t0) / os.sysconf("SC_CLK_TCK") / n * 1e6, n / (w1 - w0 - 1)
    finally:
        e.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "release", "bin"))
    ap.add_argument("--n", type=int, default=20000, help="connections per kind and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--port", type=int, default=21880)
    ap.add_argument("--kinds", default=",".join(KINDS))
    a = ap.parse_args()
    binary = os.path.join(a.bin, "sluice-edge")
    print("edge_churn: %s, %d connections per kind and round, load %.1f" % (binary, a.n, os.getloadavg()[0]),
          flush=True)
    with tempfile.TemporaryDirectory(prefix="sl-churn-") as work:
        for kind in a.kinds.split(","):
            us = []
            for r in range(a.rounds):
                u, rate = one(binary, a.port, work, kind, a.n)
                us.append(u)
                print("  %-8s round %d: %5.1f us of edge CPU per connection (%.0f connections/s, load %.1f)"
                      % (kind, r + 1, u, rate, os.getloadavg()[0]), flush=True)
            print("%-8s median %.1f us per connection" % (kind, statistics.median(us)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
