#!/usr/bin/python3
"""persister core scenario against a real PostgreSQL:
 - every ack arrives only for a row already visible in telemetry;
 - dedup: resent seqs are acked again and stored once;
 - body JSON round trip for a corpus of tricky bodies (docs/protocol.md section 3);
 - a NUL string body lands in telemetry_rejected (raw msgpack + error), the rest
   of its batch in telemetry, all acked; an invalid msgpack body too;
 - device_sessions from connect/disconnect in either order, and edge_lost for a
   silent edge incarnation;
 - an ack for a gone edge is dropped and counted;
 - SIGTERM commits and acks the batch it holds, then exits 0.
"""
import json
import time

import msgpack

from persister_common import Env, pe
from proc import wait_for
from wire import CONNECT, DATA, DISCONNECT, HEARTBEAT, entry

PORT = 22100


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
    c.append((b"\xca\x3f\xc0\x00\x00", 1.5))  # float32
    c.append((b"\xa3a\xffb", "a\ufffdb"))  # invalid UTF-8 -> U+FFFD
    c.append((b"\xd6\x05\x01\x02\x03\x04", {"ext": 5, "data": "AQIDBA=="}))  # fixext4
    return c


def check_visible(env, dev, seq):
    r = env.sql("SELECT 1 FROM telemetry WHERE device_id=%s AND seq=%s "
                "UNION ALL SELECT 1 FROM telemetry_rejected WHERE device_id=%s AND seq=%s", (dev, seq, dev, seq))
    assert r, "ack for (%s,%s) arrived before the row was visible" % (dev, seq)


def collect(edge, env, want, timeout=60):
    """Poll acks until `want` (set of (dev, seq)) are all acked; check visibility of each on arrival."""
    seen = set()

    def on_ack(a):
        check_visible(env, a[3], a[4])
        assert a[0] == edge.inc, a
        seen.add((a[3], a[4]))

    deadline = time.time() + timeout
    while not want <= seen:
        assert time.time() < deadline, "missing acks: %s" % sorted(want - seen)[:10]
        edge.poll_acks(100, on_ack)
    return seen


def main():
    with Env(PORT) as env:
        p = env.persister(0, ["--batch-max", "50", "--batch-ms", "30", "--edge-timeout-ms", "2500"])
        p.wait_ready()
        edge = pe.Edge([p.pull], [p.router], edge_id="edge-a:7000", worker=0)

        # 1. acks only for visible rows, many batches; a heartbeat in between is ignored.
        want = set()
        for b in range(20):
            ents = [pe.data("dev-%d" % (i % 7), b * 100 + i, {"b": b, "i": i}, ts=1764358200000 + i)
                    for i in range(1, 31)]
            ents.append(entry(HEARTBEAT, 0, 0, "", 0, 3, None, time.time_ns()))
            edge.send(*ents)
            want |= {(e[3], e[5]) for e in ents if e[0] == DATA}
        collect(edge, env, want)
        n = env.sql("SELECT count(*) FROM telemetry")[0][0]
        assert n == 600, n
        r = env.sql("SELECT device_ts, edge_id FROM telemetry WHERE device_id='dev-1' AND seq=1")
        assert r[0][1] == "edge-a:7000", r
        assert int(r[0][0].timestamp() * 1000) == 1764358200001, r
        print("ok: 600 rows acked only once visible")

        # 2. dedup: resend 100 of them (same seqs, different bodies): acked again, stored once, first body kept.
        edge.acks.clear()
        ents = [pe.data("dev-%d" % (i % 7), i, {"dup": True}) for i in range(1, 31)]
        edge.send(*ents)
        edge.send(*ents)
        collect(edge, env, {(e[3], e[5]) for e in ents})
        assert env.sql("SELECT count(*) FROM telemetry")[0][0] == 600
        assert env.sql("SELECT count(*) FROM telemetry WHERE body ? 'dup'")[0][0] == 0
        wait_for(lambda: (p.metric("sluice_persister_rows_duplicate_total") or 0) >= 60, "duplicate counter", 10)
        print("ok: dedup")

        # 3. JSON corpus.
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

        # 4. poison rows: NUL in a string (jsonb refuses: 22P05) and a body that is not msgpack.
        edge.acks.clear()
        nul = msgpack.packb({"s": "a\x00b"}, use_bin_type=True)
        ents = [pe.data("poison", i, {"i": i}) for i in range(1, 11)]
        ents[4] = pe.data("poison", 5, body_raw=nul)
        ents[7] = pe.data("poison", 8, body_raw=b"\xc1")
        edge.send(*ents)
        collect(edge, env, {(e[3], e[5]) for e in ents})
        good = [r[0] for r in env.sql("SELECT seq FROM telemetry WHERE device_id='poison' ORDER BY seq")]
        assert good == [1, 2, 3, 4, 6, 7, 9, 10], good
        rej = env.sql("SELECT seq, raw, error, edge_id FROM telemetry_rejected WHERE device_id='poison' ORDER BY seq")
        assert [r[0] for r in rej] == [5, 8], rej
        assert bytes(rej[0][1]) == nul and "0000" in rej[0][2], rej[0]
        assert bytes(rej[1][1]) == b"\xc1" and rej[1][3] == "edge-a:7000", rej[1]
        # resent poison: acked again, stored once
        edge.acks.clear()
        edge.send(ents[4], ents[7])
        collect(edge, env, {("poison", 5), ("poison", 8)})
        assert env.sql("SELECT count(*) FROM telemetry_rejected")[0][0] == 2
        print("ok: poison rows dead-lettered and acked, the rest committed")

        # 5. sessions: connect then disconnect; disconnect before connect (separate batches).
        t = time.time_ns()
        edge.acks.clear()
        edge.send(entry(CONNECT, 3, 1, "sess-1", 1000, None, None, t, "10.0.0.1:5000"),
                  pe.data("sess-1", 1, {"x": 1}, slot=3, gen=1))
        edge.send(entry(DISCONNECT, 3, 1, "sess-1", 1000, None, None, t + 10**9, "10.0.0.1:5000",
                        "idle"),
                  entry(DISCONNECT, 4, 1, "sess-2", 2000, None, None, t + 2 * 10**9, "10.0.0.2:6000",
                        "replaced"),
                  pe.data("sess-1", 2, {"x": 2}, slot=3, gen=1))
        collect(edge, env, {("sess-1", 1), ("sess-1", 2)})
        edge.send(entry(CONNECT, 4, 1, "sess-2", 2000, None, None, t, "10.0.0.2:6000"),
                  pe.data("sess-1", 3, {"x": 3}, slot=3, gen=1))
        collect(edge, env, {("sess-1", 3)})
        s = env.sql("SELECT device_id, epoch, peer, connected_at IS NOT NULL, disconnected_at - connected_at, reason"
                    " FROM device_sessions WHERE edge_id='edge-a:7000' ORDER BY device_id")
        assert s[0][:4] == ("sess-1", 1000, "10.0.0.1:5000", True) and s[0][5] == "idle", s
        assert s[0][4].total_seconds() == 1.0, s
        assert s[1][:4] == ("sess-2", 2000, "10.0.0.2:6000", True) and s[1][5] == "replaced", s
        assert s[1][4].total_seconds() == 2.0, s
        print("ok: sessions")

        # 6. edge_lost: another edge incarnation connects a device, heartbeats once, goes silent.
        lost = pe.Edge([p.pull], [p.router], edge_id="edge-b:7000", worker=0)
        lost.send(entry(CONNECT, 1, 1, "lost-dev", 3000, None, None, time.time_ns(), "10.0.0.3:1"),
                  entry(HEARTBEAT, 0, 0, "", 0, 1, None, time.time_ns()),
                  pe.data("lost-dev", 1, {"x": 1}))
        wait_for(lambda: (lost.poll_acks(100), len(lost.acks) >= 1)[1], "lost-dev ack", 30)
        lost.close()

        def closed():
            edge.send(entry(HEARTBEAT, 0, 0, "", 0, 1, None, time.time_ns()))  # edge-a stays alive
            r = env.sql("SELECT reason, disconnected_at IS NOT NULL FROM device_sessions WHERE device_id='lost-dev'")
            return r and r[0] == ("edge_lost", True)
        wait_for(closed, "edge_lost", 30, interval=0.5)
        r = env.sql("SELECT count(*) FROM device_sessions WHERE edge_id='edge-a:7000' AND reason='edge_lost'")
        assert r[0][0] == 0, "a live edge's sessions were closed"
        print("ok: edge_lost")

        # 7. an ack for an edge that is gone is dropped and counted.
        gone = pe.Edge([p.pull], ["tcp://127.0.0.1:1"], edge_id="edge-gone:1", worker=0)
        gone.send(pe.data("gone-dev", 1, {"x": 1}))
        wait_for(lambda: (p.metric("sluice_persister_acks_unroutable_total") or 0) >= 1, "unroutable ack counted", 30)
        assert env.sql("SELECT count(*) FROM telemetry WHERE device_id='gone-dev'")[0][0] == 1
        gone.close()
        print("ok: unroutable acks counted")

        edge.close()
        assert p.stop() == 0, "persister exit code"

        # 8. SIGTERM with a batch held (batch-ms 60 s): it is committed and acked before exit.
        p2 = env.persister(1, ["--batch-ms", "60000", "--batch-max", "1000"])
        p2.wait_ready()
        e2 = pe.Edge([p2.pull], [p2.router], edge_id="edge-t:7000")
        ents = [pe.data("term", i, {"i": i}) for i in range(1, 11)]
        e2.send(*ents)
        wait_for(lambda: p2.metric("sluice_persister_pending_messages") == 10, "10 rows pending", 30)
        assert env.sql("SELECT count(*) FROM telemetry WHERE device_id='term'")[0][0] == 0
        p2.signal(15)
        seen = collect(e2, env, {(e[3], e[5]) for e in ents})
        assert len(seen) == 10
        assert p2.stop() == 0, "persister exit code after SIGTERM"
        assert env.sql("SELECT count(*) FROM telemetry WHERE device_id='term'")[0][0] == 10
        e2.close()
        print("ok: SIGTERM commits and acks the held batch")
    print("PASS")


if __name__ == "__main__":
    main()
