#!/usr/bin/python3
"""persister_02_json: body JSON round trip for a corpus of tricky bodies (docs/protocol.md
section 3), checked in Python and by PostgreSQL.

Against a real PostgreSQL; every ack is checked to follow a visible row
(persister_common.collect)."""
import json

import msgpack

from persister_common import collect, core_persister, pe

PORT = 22100  # persister_NN: 22000 + 50 * NN (persister.cmake)


def corpus():
    """(msgpack bytes, expected JSON value)."""
    c = []

    def add(obj, expected):
        c.append((msgpack.packb(obj, use_bin_type=True), expected))

    add({"temp": 21.5, "on": True}, {"temp": 21.5, "on": True})
    add({"a": {"b": {"c": [1, [2, [3, {"d": None}]]]}}}, {"a": {"b": {"c": [1, [2, [3, {"d": None}]]]}}})
    add([], [])
    add({}, {})
    add(None, None)
    add(False, False)
    add(-1, -1)
    add(-9223372036854775808, -9223372036854775808)
    add(18446744073709551615, 18446744073709551615)
    add(9007199254740993, 9007199254740993)  # not representable as a double
    add(0.1, 0.1)
    add(-2.5e-300, -2.5e-300)
    add(1e300, 1e300)
    add(float("nan"), "NaN")
    add(float("inf"), "Infinity")
    add(float("-inf"), "-Infinity")
    add(b"\x00\x01\xfe\xff", "AAH+/w==")
    add(b"", "")
    add("héllo ✓ 😀 日本", "héllo ✓ 😀 日本")
    add('quote " backslash \\ slash / tab \t nl \n cr \r bell \x07', 'quote " backslash \\ slash / tab \t nl \n cr \r bell \x07')
    add({"\\n": "\\t", "k\tk": "v\nv"}, {"\\n": "\\t", "k\tk": "v\nv"})
    add({1: "int key", "s": [True, None]}, {"1": "int key", "s": [True, None]})
    # SQL literal hazards (small batches go as E'...' literals): quotes, backslash before a quote
    add("it's \\' '' E'x' '); DROP TABLE telemetry; --", "it's \\' '' E'x' '); DROP TABLE telemetry; --")
    c.append((b"\xca\x3f\xc0\x00\x00", 1.5))  # float32
    c.append((b"\xa3a\xffb", "a\ufffdb"))  # invalid UTF-8 -> U+FFFD
    c.append((b"\xd6\x05\x01\x02\x03\x04", {"ext": 5, "data": "AQIDBA=="}))  # fixext4
    return c


def main():
    with core_persister(PORT) as (env, p, edge):
        # JSON corpus.
        edge.acks.clear()
        cp = corpus()
        ents = [pe.data("json-dev", i + 1, body_raw=raw) for i, (raw, _) in enumerate(cp)]
        edge.send(*ents)
        collect(edge, env, {(e[3], e[5]) for e in ents})
        rows = dict(env.sql("SELECT seq, body::text FROM telemetry WHERE device_id='json-dev'"))
        for i, (raw, expected) in enumerate(cp):
            got = json.loads(rows[i + 1])
            if isinstance(expected, float):  # jsonb prints 1e300 as digits: compare the number
                got = float(got)
            assert got == expected and type(got) == type(expected), \
                "corpus %d: %r -> %r, want %r" % (i, raw, got, expected)
            # and PostgreSQL agrees with the expected JSON text
            assert env.sql("SELECT body = %s::jsonb FROM telemetry WHERE device_id='json-dev' AND seq=%s",
                           (json.dumps(expected), i + 1))[0][0], i
        print("ok: %d corpus bodies round-trip" % len(cp))
    print("PASS")


if __name__ == "__main__":
    main()
