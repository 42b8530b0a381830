#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_09_takeover: the newest connection of a device wins, across workers and on one
worker (err{replaced} to the old one); a kick closes exactly its connection."""
from edgetest import main
from proc import wait_for
from wire import CONNECT, DISCONNECT, KICK

PORT = 21180  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(e):
    # --accept handoff gives each connection to the least loaded worker
    # (ties: worker 0), so a then b land on different workers ...
    for i in range(6):
        dev = "to-%d" % i
        a = e.dev(); a.login(dev)
        b = e.dev(); b.login(dev)
        a.expect_err("replaced")
        b.send({"t": "ping"})
        assert b.recv()["t"] == "pong"
        disc = e.pers.wait(DISCONNECT, dev)[0]
        # two workers' batches may arrive in either order: order by epoch
        conns = sorted(e.pers.wait(CONNECT, dev, count=2), key=lambda x: x[4])
        assert disc[9] == "replaced", disc
        assert (disc[1], disc[2], disc[4]) == (conns[0][1], conns[0][2], conns[0][4]), (disc, conns)
        assert conns[0][13] != conns[1][13], "pair %d on one worker" % i
        b.close()
        # the acceptor must see b's worker empty again (the gauge it reads), or the
        # next pair meets a 1:1 tie and both go to worker 0
        wait_for(lambda: e.metric("sluice_edge_worker_connections_open") == 0, "pair %d closed" % i)
    # ... and with a third connection between them, on the same worker.
    wait_for(lambda: e.metric("sluice_edge_connections_open") == 0, "all closed")
    a = e.dev(); a.login("to-same")
    f = e.dev(); f.login("to-filler")
    b = e.dev(); b.login("to-same")
    a.expect_err("replaced")
    conns = sorted(e.pers.wait(CONNECT, "to-same", count=2), key=lambda x: x[4])
    assert conns[0][13] == conns[1][13], conns
    disc = e.pers.wait(DISCONNECT, "to-same")[0]
    assert disc[9] == "replaced" and (disc[1], disc[2]) == (conns[0][1], conns[0][2]), disc
    b.send({"t": "ping"})
    assert b.recv()["t"] == "pong"
    b.close(); f.close()
    # kick from the notifier closes exactly that connection
    d = e.dev(); d.login("kick-1")
    c = e.noti.wait(CONNECT, "kick-1")[0]
    e.noti.reply([[KICK, c[1], c[2], "kick-1", c[4]]], c)
    d.expect_err("replaced")


if __name__ == "__main__":
    main(scenario, PORT, [])
