#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_04_bytewise: hello and data written one byte at a time: the same welcome, and the
same entry at the persister and the notifier."""
import time

import msgpack

import wire
from edgetest import main, token
from wire import DATA

PORT = 21080  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(e):
    d = e.dev()
    hello = msgpack.packb({"t": "hello", "v": 1, "dev": "bw-1", "tok": token("bw-1")})
    body = {"temp": 21.5, "on": True, "blob": b"x" * 300}
    data = msgpack.packb({"t": "data", "seq": 42, "ts": 1764358200000, "body": body})
    stream = wire.frame(hello) + wire.frame(data)
    for i in range(len(stream)):
        d.raw(stream[i:i + 1])
        if i < len(hello) + 4:
            time.sleep(0.001)
    assert d.recv()["t"] == "welcome"
    ent = e.pers.wait(DATA, "bw-1")[0]
    assert ent[5] == 42 and ent[6] == 1764358200000
    assert msgpack.unpackb(ent[12], raw=False) == body
    assert e.noti.wait(DATA, "bw-1")


if __name__ == "__main__":
    main(scenario, PORT, [])
