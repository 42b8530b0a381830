#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_25_old_notifier: mixed versions, this edge beside a notifier of the previous version.

The previous notifier is emulated by edgetest's Python peer: it binds PULL + ROUTER, reads
entries as version 1 did (positions past 13 skipped: the reader at b8cf4d8 skips them, see
test_envelope's test_reader_tolerance, which that version already passed), and never answers
the edge's heartbeats (kind 10 did not exist). The edge never learns an id for it, so it is the
fallback and gets everything: connects, data (nothing shed), disconnects; its heartbeat entries
read as before (seq = connections open) with `to` appended; its commands reach the device and
the answer comes back to it; the edge's /readyz names the notifier up."""
import msgpack

from edgetest import TO, cmd, main
from wire import CONNECT, DATA, DISCONNECT, HEARTBEAT, RES

PORT = 21500  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(e):
    d = e.dev()
    d.login("old-ntf-1")
    conn = e.noti.wait(CONNECT, "old-ntf-1")[0]
    for seq in range(1, 21):
        d.data(seq, {"n": seq})
    e.pers.ack(e.pers.wait(DATA, "old-ntf-1", count=20))
    d.acks(range(1, 21))
    got = e.noti.wait(DATA, "old-ntf-1", count=20)
    assert sorted(x[5] for x in got) == list(range(1, 21)), got
    assert e.metric("sluice_edge_notifier_shed_total") == 0
    # heartbeats as the old reader sees them: the 13 positions it knows, unchanged
    hbs = e.noti.wait(HEARTBEAT, pred=lambda x: x[5] == 1)
    assert hbs[0][7] > 0 and hbs[0][3] == "", hbs[0]
    # (edgetest keeps the 13 positions, then reply and inc, then the appended ones: `to` at TO)
    ep = "tcp://127.0.0.1:%d" % (PORT + 3)
    assert any(ent[TO] == ep for h, ent in e.noti.entries if ent[0] == HEARTBEAT), "no `to` in heartbeats"
    # the command of the old notifier, and the answer back to it
    e.noti.reply([cmd(conn, "o1", msgpack.packb({"op": "x"}))], conn)
    m = d.recv()
    assert m["t"] == "cmd" and m["id"] == "o1", m
    d.send({"t": "res", "id": "o1", "ok": True})
    res = e.noti.wait(RES, "old-ntf-1")[0]
    assert res[10] == "o1" and res[11] is True, res
    st, body = e.http("/readyz")
    assert st == 200 and "notifier=up" in body, (st, body)
    d.close()
    e.noti.wait(DISCONNECT, "old-ntf-1")
    assert "members=- fallback=%s" % ep in e.proc.output(), "not the fallback"


if __name__ == "__main__":
    main(scenario, PORT, [])
