#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_14_reuseport: --accept reuseport: connections spread over both workers' listeners and
both workers' bus sockets carry data and acks."""
from edgetest import main
from proc import wait_for
from wire import DATA

PORT = 21280  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(e):
    # --accept reuseport (not the default): each worker accepts on its own
    # listener and the kernel hashes connections over them. 40 connections
    # from random ports all on one worker: probability 2^-39.
    devs = []
    for i in range(40):
        d = e.dev(); d.login("rp-%d" % i); devs.append(d)
    per = [e.metric('sluice_edge_worker_connections_open{worker="%d"}' % w) for w in (0, 1)]
    assert sum(per) == 40 and min(per) >= 1, per
    assert e.metric("sluice_edge_connections_open") == 40
    for i, d in enumerate(devs):
        d.send({"t": "data", "seq": 100 + i, "body": i})
    got = e.pers.wait(DATA, count=40)
    by_worker = {}
    for x in got:
        by_worker.setdefault(x[13], []).append(x)
    assert len(by_worker) == 2, list(by_worker)  # both workers' bus sockets carried data
    for ents in by_worker.values():
        e.pers.ack(ents)
    for i, d in enumerate(devs):
        m = d.recv()
        assert m == {"t": "ack", "seq": 100 + i}, (i, m)
    devs[0].close()
    wait_for(lambda: e.metric("sluice_edge_connections_open") == 39, "close counted")


if __name__ == "__main__":
    main(scenario, PORT, ["--accept", "reuseport"])
