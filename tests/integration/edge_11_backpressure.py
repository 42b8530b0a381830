#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_11_backpressure: a persister that does not pull makes the edge stop reading (paused,
counted), and every message is acked once it pulls again; with no notifier its
copies are shed."""
import threading

from edgetest import main
from proc import wait_for
from wire import CONNECT, DATA

PORT = 21220  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(e):
    d = e.dev(); d.login("bp-1")
    e.pers.wait(CONNECT, "bp-1")
    pauses0 = e.metric("sluice_edge_backpressure_pauses_total")
    N = 4000
    body = b"b" * 2000
    def writer():
        for i in range(N):
            d.send({"t": "data", "seq": i + 1, "body": body})
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    # the peer does not pull: the edge must pause reading
    wait_for(lambda: e.metric("sluice_edge_backpressure_pauses_total") > pauses0, "a backpressure pause", 60)
    assert e.metric("sluice_edge_acks_total") == 0
    # now pull and ack everything
    seen = {}
    acked = set()
    def pump():
        e.pers.poll(20)
        new = [x for h, x in e.pers.entries if x[0] == DATA and x[5] not in seen]
        for x in new:
            seen[x[5]] = x
        if new:
            e.pers.ack(new)
        return len(seen) == N
    wait_for(pump, "all %d data entries at the persister" % N, 120)
    t.join(30)
    while len(acked) < N:
        m = d.recv()
        assert m is not None and m["t"] == "ack", m
        acked.add(m["seq"])
    assert acked == set(range(1, N + 1))
    assert e.metric("sluice_edge_notifier_shed_total") > 0  # no notifier bound: data copies shed, ingest went on
    wait_for(lambda: e.metric("sluice_edge_backpressure_paused_seconds_total") > 0, "paused time counted")


if __name__ == "__main__":
    main(scenario, PORT, ["--zmq-hwm", "2", "--workers", "1", "--drain-timeout-ms", "3000"], notifier=False, rcvhwm=2)
