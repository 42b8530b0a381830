#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_29_early_herd: a reconnect herd is not cut down by the early quota.

When an edge comes back, or takes over a dead neighbour's devices, many connections arrive at once and
each sends its hello at once. A worker adopts a whole batch of them before it reads any, so with more
than --early-max in the batch the quota used to close the oldest as "no hello yet" although its hello
was already waiting in the socket: err{timeout}, and the device reconnected into the same storm (the
100k-device bench saw 30,000 such closes in a 10 s ramp). Now the oldest is read first and closed only
if it still has no whole hello.

Here: one worker accepting for itself (--accept reuseport: one accept batch, adopted before any read),
--early-max 16 (its minimum), the edge stopped (SIGSTOP) while 40 devices connect and send their hellos,
then resumed: every device is welcomed and acked, and sluice_edge_early_evicted_total stays 0. Without the
read first, 24 of the 40 are closed. Then the quota still works: 40 sockets that send only part of a
hello, the edge stopped the same way, are cut down to 16."""
import os
import signal
import socket
import time

from edgetest import main
from proc import check, wait_for
from wire import DATA, Closed

PORT = 21580  # edge_NN: 21000 + 20 * NN (edge.cmake)
HERD = 40
QUOTA = 16


def scenario(e):
    pid = e.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        devs = []
        for i in range(HERD):
            d = e.dev(dev="herd-%d" % i)
            d.hello()
            devs.append(d)
    finally:
        os.kill(pid, signal.SIGCONT)
    welcomed = 0
    for d in devs:
        try:
            m = d.recv()
        except (Closed, socket.timeout) as x:
            m = {"error": repr(x)}
        welcomed += m.get("t") == "welcome"
    evicted = e.metric("sluice_edge_early_evicted_total")
    check(welcomed == HERD and evicted == 0,
          "welcomed %d of %d, %d closed by the early quota" % (welcomed, HERD, evicted))
    for i, d in enumerate(devs):
        d.data(1, i)
    for i, d in enumerate(devs):
        rows = e.pers.wait(DATA, d.dev, pred=lambda x: x[5] == 1)
        e.pers.ack(rows[-1:])
        check(d.expect("ack")["seq"] == 1, "ack")
        d.close()

    # The quota itself: 40 sockets with part of a hello, adopted in one batch: 16 stay, 24 are closed.
    os.kill(pid, signal.SIGSTOP)
    try:
        socks = []
        for i in range(HERD):
            s = socket.create_connection(("127.0.0.1", e.port), timeout=5)
            s.sendall(bytes.fromhex("000003e878"))  # a 1,000-byte hello announced, one byte of it
            socks.append(s)
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: e.metric("sluice_edge_early_evicted_total") >= HERD - QUOTA, "partial hellos cut to the quota")
    time.sleep(0.3)
    check(e.metric("sluice_edge_early_evicted_total") == HERD - QUOTA,
          "closed %d of the partial hellos, expected %d" % (e.metric("sluice_edge_early_evicted_total"), HERD - QUOTA))
    for s in socks:
        s.close()


if __name__ == "__main__":
    main(scenario, PORT, ["--workers", "1", "--accept", "reuseport", "--early-max", str(QUOTA)])
