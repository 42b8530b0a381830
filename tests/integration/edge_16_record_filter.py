#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_16_record_filter: --record-devices keeps only the named devices (a held-back hello is
released in order, a refused hello still counts as its device); nothing of the
others is in the file."""
import os
import time

import wire
from edgetest import Edge, by_conn, conn_of_dev, dump, main, token
from wire import DATA, DISCONNECT

PORT = 21320  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(binary, base, d):
    rec = os.path.join(d, "f.rec")
    e = Edge(binary, base, os.path.join(d, "edge.log"), ["--record", rec, "--record-devices", "flt-keep,other-*"])
    try:
        k1 = e.dev(); k1.login("flt-keep-1")
        k1.send({"t": "ping"}); assert k1.recv()["t"] == "pong"
        # a hello in three reads: held back, then released in order
        h = wire.encode({"t": "hello", "v": 1, "dev": "flt-keep-2", "tok": token("flt-keep-2")})
        k2 = e.dev(); k2.raw(h[:3]); time.sleep(0.1); k2.raw(h[3:20]); time.sleep(0.1); k2.raw(h[20:])
        assert k2.recv()["t"] == "welcome"
        k2.send({"t": "data", "seq": 5, "body": 1})
        e.pers.wait(DATA, "flt-keep-2")
        dr = e.dev(); dr.login("flt-drop-1")
        dr.send({"t": "data", "seq": 6, "body": 2})
        e.pers.wait(DATA, "flt-drop-1")
        bad = e.dev(); bad.hello("flt-keep-3", tok="0" * 64); bad.expect_err("auth")  # refused, still its device
        g = e.dev(); g.raw(b"\0\0\0\0"); g.expect_err("frame")
        for x in (k1, k2, dr):
            x.close()
        e.pers.wait(DISCONNECT, "flt-drop-1")
        e.pers.wait(DISCONNECT, "flt-keep-2")
    finally:
        e.stop()
    raw = open(rec, "rb").read()
    assert b"flt-drop" not in raw and token("flt-drop-1").encode() not in raw
    conns = by_conn(dump(binary, rec))
    devs = sorted(v[0][1].split(" dev=")[1] for v in conns.values())
    assert devs == ["flt-keep-1", "flt-keep-2", "flt-keep-3"], conns
    k2c = conn_of_dev(conns, "flt-keep-2")
    assert [r.split(" ")[0] for k, r in k2c if k == "in"][:3] == ["n=3", "n=17", "n=%d" % (len(h) - 20)], k2c
    assert '"t":"hello"' in k2c[3][1] and k2c[4][0] == "out" and '"t":"welcome"' in k2c[4][1], k2c
    assert conn_of_dev(conns, "flt-keep-3")[-1][1] == "reason=auth"
    only = by_conn(dump(binary, rec, "--device", "flt-keep-1"))
    assert len(only) == 1 and conn_of_dev(only, "flt-keep-1")


if __name__ == "__main__":
    main(scenario, PORT)
