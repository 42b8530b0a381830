#!/usr/bin/python3
"""edge_stuck.py - what happens to new devices while one edge worker is stuck
(benchmark, not a test; docs/performance.md, "edge: accepting").

Starts `edge_bench --mode peer` (instant persister) and a 2-worker sluice-edge
with --accept MODE, freezes the worker thread named edge-w1 with ptrace
(only that thread stops; needs root or CAP_SYS_PTRACE), connects --devices
devices one every --interval-ms, each sending its hello at once, and counts
how many were welcomed while the worker stayed frozen. Then it thaws the
worker and reports how long the late ones had waited.

usage: edge_stuck.py BIN_DIR [--accept handoff|reuseport] [--port 21980]
                     [--devices 40] [--interval-ms 50] [--settle-s 1]
"""
import argparse
import os
import select
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../tests/integration"))
import proc  # noqa: E402
import wire  # noqa: E402

SECRET = "bench-fleet-secret"
def hello(dev):
    return wire.encode({"t": "hello", "v": 1, "dev": dev, "tok": wire.token(dev, SECRET)})


def poll_welcomes(socks, pending, t_conn, waited, timeout):
    """Read whatever arrived; a socket with bytes has its welcome (one frame)."""
    r, _, _ = select.select([socks[i] for i in pending], [], [], timeout)
    now = time.monotonic()
    for s in r:
        i = socks.index(s)
        if s.recv(4096):
            waited[i] = now - t_conn[i]
            pending.discard(i)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--accept", default="handoff")
    ap.add_argument("--port", type=int, default=21980)
    ap.add_argument("--devices", type=int, default=40)
    ap.add_argument("--interval-ms", type=float, default=50)
    ap.add_argument("--settle-s", type=float, default=1)
    a = ap.parse_args()
    P = a.port
    peer = proc.Proc("peer", [a.bin + "/edge_bench", "--mode", "peer", "--port", str(P)], None)
    edge = proc.Proc("edge", [a.bin + "/sluice-edge", "--listen", "127.0.0.1:%d" % P, "--workers", "2",
                              "--accept", a.accept, "--log-level", "warn", "--allow-cidrs", "127.0.0.0/8",
                              "--persister-push", "tcp://127.0.0.1:%d" % (P + 1),
                              "--persister-router", "tcp://127.0.0.1:%d" % (P + 2),
                              "--notifier-push", "tcp://127.0.0.1:%d" % (P + 3),
                              "--notifier-router", "tcp://127.0.0.1:%d" % (P + 4),
                              "--metrics", "127.0.0.1:%d" % (P + 9)], None,
                     env={"SLUICE_FLEET_SECRET": SECRET}, http="127.0.0.1:%d" % (P + 9), ready=proc.http_ok())
    try:
        peer.start(wait=False)
        edge.start(timeout=20)
        socks, t_conn, waited = [], [], {}
        pending = set()
        with proc.frozen_thread(edge.pid, "edge-w1"):
            t0 = time.monotonic()
            for i in range(a.devices):
                s = socket.create_connection(("127.0.0.1", P))
                t_conn.append(time.monotonic())
                s.sendall(hello("stuck-%d" % i))
                socks.append(s)
                pending.add(i)
                due = t0 + (i + 1) * a.interval_ms / 1000
                while time.monotonic() < due:
                    poll_welcomes(socks, pending, t_conn, waited, max(0.0, due - time.monotonic()))
            settle = time.monotonic() + a.settle_s
            while pending and time.monotonic() < settle:
                poll_welcomes(socks, pending, t_conn, waited, 0.05)
            frozen_ok = a.devices - len(pending)
            late = sorted(pending)
            t_thaw = time.monotonic()
        end = time.monotonic() + 20
        while pending and time.monotonic() < end:
            poll_welcomes(socks, pending, t_conn, waited, 0.05)
        split = " ".join(l.split("{")[1].replace('"}', "=").replace('worker="', "w").replace(" ", "")
                         for l in edge.http("/metrics")[1].splitlines()
                         if l.startswith("sluice_edge_worker_connections_open{"))
        print("accept=%s: %d of %d devices welcomed while worker 1 was frozen (%.1f s); the other %d waited "
              "%s s (connect -> welcome, after the thaw: %s); per worker now: %s"
              % (a.accept, frozen_ok, a.devices, t_thaw - t_conn[0], len(late),
                 "%.2f-%.2f" % (min(waited[i] for i in late), max(waited[i] for i in late)) if late else "-",
                 "all welcomed" if not pending else "%d never" % len(pending), split))
        for s in socks:
            s.close()
    finally:
        for p in (edge, peer):
            p.stop()


if __name__ == "__main__":
    main()
