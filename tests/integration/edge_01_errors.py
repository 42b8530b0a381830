#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_01_errors: every refusal of docs/protocol.md sections 1-2 (frame, decode, proto,
auth), each answered with its err{code} and counted; ping -> pong still works."""
import struct

import msgpack

import wire
from edgetest import main, token

PORT = 21020  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(e):
    # frame: N = 0, and N > max (judged on the header alone)
    d = e.dev(); d.raw(b"\0\0\0\0"); d.expect_err("frame")
    d = e.dev(); d.raw(struct.pack(">I", 70000)); d.expect_err("frame")
    # decode: not a map; trailing bytes
    d = e.dev(); p = msgpack.packb([1, 2]); d.raw(wire.frame(p)); d.expect_err("decode")
    d = e.dev(); p = msgpack.packb({"t": "ping"}) + b"\x01"; d.raw(wire.frame(p)); d.expect_err("decode")
    # proto: first frame not hello; v != 1; second hello; device-only type; unknown type
    d = e.dev(); d.send({"t": "ping"}); d.expect_err("proto")
    d = e.dev(); d.hello("dev-v2", v=2); d.expect_err("proto")
    d = e.dev(); d.login("dev-twice"); d.hello("dev-twice"); d.expect_err("proto")
    d = e.dev(); d.login("dev-ack"); d.send({"t": "ack", "seq": 1}); d.expect_err("proto")
    d = e.dev(); d.login("dev-unknown"); d.send({"t": "bogus"}); d.expect_err("proto")
    # auth: bad token; device id outside the alphabet
    d = e.dev(); d.hello("dev-bad", tok="0" * 64); d.expect_err("auth")
    d = e.dev(); d.hello("bad dev!", tok=token("bad dev!")); d.expect_err("auth")
    assert e.metric("sluice_edge_auth_failures_total") >= 2
    # decode after hello: data without seq
    d = e.dev(); d.login("dev-noseq"); d.send({"t": "data", "body": 1}); d.expect_err("decode")
    # ping -> pong keeps working
    d = e.dev(); d.login("dev-ping"); d.send({"t": "ping"}); assert d.recv()["t"] == "pong"
    d.close()
    for code in ("frame", "decode", "proto", "auth"):
        assert e.metric('sluice_edge_errors_total{code="%s"}' % code) >= 1, code


if __name__ == "__main__":
    main(scenario, PORT, [])
