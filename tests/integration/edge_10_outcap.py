#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_10_outcap: a device that never reads is closed at --out-cap (reason out_cap); the
edge goes on."""
import msgpack

from edgetest import cmd, main
from proc import wait_for
from wire import CONNECT, DISCONNECT

PORT = 21200  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(e):
    d = e.dev(rcvbuf=4096); d.login("oc-1")  # then never reads
    c = e.noti.wait(CONNECT, "oc-1")[0]
    body = msgpack.packb(b"z" * 60000)
    for i in range(400):
        e.noti.reply([cmd(c, "c%d" % i, body)], c)
        if e.metric('sluice_edge_connections_closed_total{reason="out_cap"}') >= 1:
            break
    wait_for(lambda: e.metric('sluice_edge_connections_closed_total{reason="out_cap"}') >= 1, "out_cap close")
    disc = e.pers.wait(DISCONNECT, "oc-1")[0]
    assert disc[9] == "out_cap"
    # the edge is fine afterwards
    x = e.dev(); x.login("oc-2")


if __name__ == "__main__":
    main(scenario, PORT, ["--out-cap", "65536"])
