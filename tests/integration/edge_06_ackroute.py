#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_06_ackroute: an ack reaches only its own connection; stale acks (old generation,
wrong device, other incarnation, a reused slot) are dropped and counted."""
from edgetest import main
from proc import wait_for
from wire import ACK, DATA, DISCONNECT

PORT = 21120  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(e):
    a = e.dev(); a.login("ar-a")
    b = e.dev(); b.login("ar-b")
    a.send({"t": "data", "seq": 7, "body": "a"})
    b.send({"t": "data", "seq": 8, "body": "b"})
    ea = e.pers.wait(DATA, "ar-a")[0]
    eb = e.pers.wait(DATA, "ar-b")[0]
    # the ack for b reaches b only
    e.pers.reply([[ACK, eb[1], eb[2], "ar-b", eb[4], 8]], eb)
    m = b.recv(); assert m == {"t": "ack", "seq": 8}, m
    # stale acks: old generation, wrong device, other incarnation -> dropped
    stale0 = e.metric("sluice_edge_stale_replies_total")
    e.pers.reply([[ACK, ea[1], ea[2] + 1, "ar-a", ea[4], 7], [ACK, ea[1], ea[2], "ar-b", ea[4], 7]], ea)
    e.pers.reply([[ACK, ea[1], ea[2], "ar-a", ea[4], 7]], ea, incarnation=(ea[14] + 1) % (1 << 64))
    wait_for(lambda: e.metric("sluice_edge_stale_replies_total") >= stale0 + 2, "stale acks counted")
    wait_for(lambda: e.metric("sluice_edge_stale_batches_total") >= 1, "stale batch counted")
    a.send({"t": "ping"})
    m = a.recv(); assert m["t"] == "pong", "a stale ack was delivered: %r" % m
    # a reused slot: a closes, a new connection may take the slot; the old id must not reach it
    a.close()
    e.pers.wait(DISCONNECT, "ar-a")
    c = e.dev(); c.login("ar-a")
    e.pers.reply([[ACK, ea[1], ea[2], "ar-a", ea[4], 7]], ea)
    c.send({"t": "ping"})
    m = c.recv(); assert m["t"] == "pong", "ack of the old session reached the new one: %r" % m


if __name__ == "__main__":
    main(scenario, PORT, [])
