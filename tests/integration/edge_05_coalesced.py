#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_05_coalesced: 50 frames in one write: 50 data entries in order, 50 acks in order."""
import msgpack

import wire
from edgetest import main
from wire import CONNECT, DATA

PORT = 21100  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(e):
    d = e.dev(); d.login("co-1")
    conn = e.pers.wait(CONNECT, "co-1")[0]
    blob = b"".join(wire.frame(p) for p in
                    (msgpack.packb({"t": "data", "seq": 1000 + i, "body": i}) for i in range(50)))
    d.raw(blob)
    got = e.pers.wait(DATA, "co-1", count=50)
    assert [x[5] for x in got] == list(range(1000, 1050))
    assert all(x[1] == conn[1] and x[2] == conn[2] and x[4] == conn[4] for x in got)
    e.pers.ack(got)
    acks = [d.recv() for _ in range(50)]
    assert [a["seq"] for a in acks] == list(range(1000, 1050)), acks


if __name__ == "__main__":
    main(scenario, PORT, [])
