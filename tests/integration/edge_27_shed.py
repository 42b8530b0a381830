#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_27_shed: POST /admin/shed on the metrics listener sheds devices down
to a target. Without the bearer token of --admin-token-file, or with a wrong
one, it is refused (401) and nothing is closed. With it, target=10 of 30
authenticated devices: exactly 20 get err{draining} and are closed, the other
10 stay and are still acked, sluice_edge_shed_connections_total says 20, and
the log has one begin and one end line. A second POST with a target above the
count sheds nothing."""
import os
import socket
import time

from edgetest import DEADLINE, Edge, admin_post as post, admin_token_file, main
from proc import TestFailure, check, wait_for
from wire import DATA, Closed

PORT = 21540  # edge_NN: 21000 + 20 * NN (edge.cmake)
TOKEN = "shed-it-admin-token-0123456789"
N, TARGET = 30, 10


def scenario(binary, port, d):
    tok = admin_token_file(d, TOKEN)
    log = os.path.join(d, "edge.log")
    e = Edge(binary, port, log, ["--admin-token-file", tok])
    try:
        ds = [e.dev() for _ in range(N)]
        for i, dv in enumerate(ds):
            dv.login("shed-%02d" % i)
        wait_for(lambda: e.metric("sluice_edge_connections_open") == N, "%d open" % N, DEADLINE)

        q = "/admin/shed?target=%d&rate=50" % TARGET
        st, _ = post(e, q)
        check(st == 401, "no token: %s" % st)
        st, _ = post(e, q, "wrong-token")
        check(st == 401, "wrong token: %s" % st)
        st, _ = post(e, q, TOKEN[:-1])
        check(st == 401, "a prefix of the token: %s" % st)
        st, _ = post(e, "/admin/shed?target=-1", TOKEN)
        check(st == 400, "bad target: %s" % st)
        check(e.http("/admin/shed")[0] == 404, "GET is not an admin request")
        time.sleep(0.5)  # several worker ticks: a refused request must have started nothing
        check(e.metric("sluice_edge_connections_open") == N, "refused requests shed nothing")

        st, body = post(e, q, TOKEN)
        check(st == 200, "shed: %s %r" % (st, body))
        check(body["open"] == N and body["target"] == TARGET and body["shedding"] is True, "reply %r" % body)
        wait_for(lambda: e.metric("sluice_edge_shed_connections_total") == N - TARGET, "20 shed", DEADLINE)
        wait_for(lambda: e.metric("sluice_edge_connections_open") == TARGET, "10 left", DEADLINE)
        wait_for(lambda: "event=shed_end" in open(log).read(), "end logged", DEADLINE)
        time.sleep(0.5)  # and it stopped there: no one more on a later tick
        check(e.metric("sluice_edge_connections_open") == TARGET, "stopped at the target")
        check(e.metric("sluice_edge_shed_connections_total") == N - TARGET, "no more shed")

        shed, kept = [], []
        for dv in ds:
            try:
                m = dv.recv(0.2)
            except socket.timeout:
                kept.append(dv)
                continue
            except Closed:
                raise TestFailure("%s closed without an err" % dv.dev)
            check(m.get("t") == "err" and m.get("code") == "draining", "%s got %r" % (dv.dev, m))
            dv.expect_closed()
            shed.append(dv)
        check(len(shed) == N - TARGET and len(kept) == TARGET, "%d shed, %d kept" % (len(shed), len(kept)))
        for dv in kept:
            dv.data(1, 7)
            got = e.pers.wait(DATA, dv.dev, pred=lambda x: x[5] == 1)
            e.pers.ack(got[-1:])
            check(dv.expect("ack")["seq"] == 1, "%s acked" % dv.dev)

        st, body = post(e, "/admin/shed?target=%d" % (TARGET + 5), TOKEN)
        check(st == 200 and body["open"] == TARGET and body["shedding"] is False, "no-op: %s %r" % (st, body))
        time.sleep(0.5)
        check(e.metric("sluice_edge_connections_open") == TARGET, "a target above the count sheds nothing")
        text = open(log).read()
        check(text.count("event=shed_begin") == 1 and text.count("event=shed_end") == 1, "one begin, one end")
    finally:
        check(e.stop() == 0, "edge exit")


if __name__ == "__main__":
    main(scenario, PORT, None)
