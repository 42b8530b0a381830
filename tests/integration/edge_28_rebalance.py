#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_28_rebalance: deploy/rebalance.py evens out three edges after a restart. 300 devices
(sluice-devsim, --edges A,B,C: the device library starts device i on edge i % 3 and moves to the
next edge of its list when one closes it) send 2 msg/s each; one instant persister
(edge_bench --mode peer) acks for all three edges. Edge C is restarted (SIGTERM: it drains, its
devices move on to A) and comes back empty, and stays so. deploy/rebalance.py then sheds through
the admin endpoint until every edge holds within 10 % of the mean: it exits 0, the counts read
here agree, edge A shed devices (sluice_edge_shed_connections_total), nobody was lost on the way
(the fleet still holds all 300) and devsim, stopped, had every message acked. Without the
rebalance edge C stays at 0 and the test fails."""
import json
import os
import signal
import subprocess
import sys
import time

import proc
from edgetest import DEADLINE, Edge, admin_token_file, main
from proc import check, wait_for

PORT = 21560  # edge_NN: 21000 + 20 * NN (edge.cmake); the peer takes PORT+1..+4, the edges below
EDGES = [PORT + 5, PORT + 6, PORT + 7]  # listen on base, metrics on base + 9: PORT+14..+16
TOKEN = "rebalance-it-admin-token-0123456789"
N = 300
REBALANCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "rebalance.py")


def start_edge(binary, d, i, tok):
    """Edge i (A, B, C) on EDGES[i], with the shared peer as persister and notifier."""
    name = "ABC"[i]
    return Edge(binary, EDGES[i], os.path.join(d, "edge-%s.log" % name), [
        "--edge-id", "rb-" + name, "--admin-token-file", tok, "--log-level", "info",
        "--persister-push", "tcp://127.0.0.1:%d" % (PORT + 1), "--persister-router", "tcp://127.0.0.1:%d" % (PORT + 2),
        "--notifier-push", "tcp://127.0.0.1:%d" % (PORT + 3), "--notifier-router", "tcp://127.0.0.1:%d" % (PORT + 4)],
        persister=False, notifier=False)


def opens(edges):
    return [int(e.metric("sluice_edge_connections_open")) for e in edges]


def scenario(binary, port, d):
    bindir = os.path.dirname(binary)
    tok = admin_token_file(d, TOKEN)
    peer = proc.Proc("peer", [os.path.join(bindir, "edge_bench"), "--mode", "peer", "--port", str(PORT)],
                     os.path.join(d, "peer.log"))
    peer.start(wait=False)
    edges = [start_edge(binary, d, i, tok) for i in range(3)]
    summary = os.path.join(d, "devsim.json")
    devsim = proc.Proc("devsim", [
        os.path.join(bindir, "sluice-devsim"), "--edges", ",".join("127.0.0.1:%d" % p for p in EDGES),
        "--devices", str(N), "--rate", "2", "--ramp", "1000", "--duration", "600", "--prefix", "rb",
        "--json", summary], os.path.join(d, "devsim.log"), env={"SLUICE_FLEET_SECRET": "edge-it-fleet-secret"},
        new_session=True)
    devsim.start(wait=False)
    try:
        wait_for(lambda: opens(edges) == [N // 3] * 3, "100 devices on each edge", DEADLINE)

        check(edges[2].stop() == 0, "edge C exit")
        wait_for(lambda: sum(opens(edges[:2])) == N, "C's devices on A and B", DEADLINE)
        edges[2] = start_edge(binary, d, 2, tok)
        time.sleep(2)  # the restarted edge stays empty: nothing moves devices to it
        before = opens(edges)
        print("after the restart: A=%d B=%d C=%d" % tuple(before), flush=True)
        check(before[2] <= 3 and sum(before) == N, "C came back empty: %r" % before)

        t0 = time.monotonic()
        r = subprocess.run([sys.executable, REBALANCE, "--token-file", tok, "--rate", "200", "--settle", "3",
                            "--wait", "15"] + ["http://127.0.0.1:%d" % (p + 9) for p in EDGES],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        print(r.stdout, end="", flush=True)
        print("rebalance took %.1f s" % (time.monotonic() - t0), flush=True)
        check(r.returncode == 0, "rebalance.py exit %d" % r.returncode)

        after = opens(edges)
        mean = sum(after) / 3
        check(all(abs(c - mean) <= 0.1 * mean for c in after), "every edge within 10 %% of the mean: %r" % after)
        check(sum(after) == N, "every device connected somewhere: %r" % after)
        check(edges[0].metric("sluice_edge_shed_connections_total") > 0, "edge A shed devices")

        devsim.signal(signal.SIGINT)  # the first stop drains: stop sending, wait for the acks
        rc = devsim.wait(timeout=60)
        s = json.load(open(summary))
        print("devsim: sent=%d acked=%d resent=%d reconnects=%d rc=%d" % (
            s["sent"], s["acked"], s["resent"], s["reconnects"], rc), flush=True)
        check(rc == 0 and s["ok"], "devsim: every message acked (rc %d)" % rc)
        check(s["acked"] == s["sent"] > 0, "acked %d of %d" % (s["acked"], s["sent"]))
        check(s["reconnects"] >= N // 3 * 2, "reconnects %d: C's devices, then the shed ones" % s["reconnects"])
    finally:
        if devsim.alive():
            devsim.stop(grace=10)
        for e in edges:
            check(e.stop() == 0, "edge exit")
        peer.stop(grace=10)


if __name__ == "__main__":
    main(scenario, PORT, None)
