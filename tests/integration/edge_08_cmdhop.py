#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_08_cmdhop: a command sent to the worker that does not hold the device is forwarded
to the one that does; with the device gone, each copy gets exactly one answer."""
import time

import msgpack

from edgetest import DEADLINE, cmd, main, worker_of
from proc import wait_for
from wire import CONNECT, DISCONNECT, RES, UNDELIVERABLE

PORT = 21160  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(e):
    """A cmd that reaches the worker not holding the device (the notifier's
    view is stale: the device reconnected and landed on the other worker)
    is forwarded to the holder; a device on no worker still
    gets exactly one answer."""
    conn, d = None, None
    for i in range(64):  # the edge picks the worker: connect until one lands on worker 1
        x = e.dev(); x.login("hop-%d" % i)
        c = e.noti.wait(CONNECT, "hop-%d" % i)[0]
        if worker_of(c[13]) == 1:
            conn, d = c, x
            break
        x.close()
    assert conn, "no connection landed on worker 1"
    dev = conn[3]
    via0 = list(conn)
    via0[13] = e.noti.ident(0)
    fwd0 = e.metric("sluice_edge_cmds_forwarded_total")
    e.noti.reply([cmd(conn, "h1", msgpack.packb({"op": "hop"}))], via0)
    m = d.recv()
    assert m["t"] == "cmd" and m["id"] == "h1" and m["body"] == {"op": "hop"}, m
    d.send({"t": "res", "id": "h1", "ok": True, "body": "done"})
    res = e.noti.wait(RES, dev)[0]
    # the result leaves from the worker holding the device; the notifier matches it by (dev, id)
    assert res[10] == "h1" and res[11] is True and msgpack.unpackb(res[12]) == "done", res
    assert res[13] == conn[13], res
    assert (res[1], res[2], res[4]) == (conn[1], conn[2], conn[4]), (res, conn)
    # worker 0 counts the forward after posting it, so the device may answer before the count shows
    wait_for(lambda: e.metric("sluice_edge_cmds_forwarded_total") == fwd0 + 1, "the forward counted", DEADLINE)
    assert e.metric("sluice_edge_cmds_total") >= 1
    assert not e.noti.find(UNDELIVERABLE, dev), "a delivered command was also answered undeliverable"
    # the device leaves: the same cmd path now answers undeliverable, exactly once
    d.close()
    e.noti.wait(DISCONNECT, dev)
    for ident, cid in ((via0[13], "h2"), (conn[13], "h3")):
        via = list(conn)
        via[13] = ident
        e.noti.reply([cmd(conn, cid, msgpack.packb(1))], via)
        u = e.noti.wait(UNDELIVERABLE, dev, pred=lambda x, cid=cid: x[10] == cid)[0]
        assert u[9] == "disconnected" and u[13] == ident, u
    time.sleep(0.5)
    undeliv = sorted(x[10] for x in e.noti.find(UNDELIVERABLE, dev))
    assert undeliv == ["h2", "h3"], undeliv  # one answer each, none for h1
    assert [x[10] for x in e.noti.find(RES, dev)] == ["h1"]
    assert e.metric("sluice_edge_cmds_forwarded_total") == fwd0 + 1


if __name__ == "__main__":
    main(scenario, PORT, [])
