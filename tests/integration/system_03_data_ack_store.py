#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_03_data_ack_store: data -> row in PostgreSQL -> ack, seen from outside.
- the edge never acks by itself: with the persister frozen (SIGSTOP) no ack comes and no row
  exists; once it runs again the ack comes and the row is there;
- at the moment each ack arrives, its row is already committed (queried right after the ack);
- the row's fields: device_id, seq, device_ts (from ts, NULL without), received_at (the edge's
  receive time, between send and ack), edge_id, body as JSON per docs/protocol.md section 3;
- the same data on MQTT P/<dev>/data: {dev, seq, ts, rx, edge, body};
- a body jsonb refuses (NUL in a string) goes to telemetry_rejected with its raw msgpack, acked."""
import os
import signal
import socket
import time

import msgpack

from slstack import Stack, check, log, main, wait_for, PREFIX

PORT = 24150  # system_NN: 24000 + 50 * NN (system.cmake)

TS = 1764358200000


def ms(dt):
    return int(dt.timestamp() * 1000)


def scenario():
    with Stack(PORT, edges=1) as s:
        s.start()
        m = s.mqtt()
        dev = "data-1"
        d = s.device(dev)

        # 1. frozen persister: no ack, no row; thawed: ack, row.
        os.kill(s.persister.pid, signal.SIGSTOP)
        try:
            d.data(1, {"temp": 21.5, "on": True}, ts=TS)
            try:
                m0 = d.recv(timeout=3)
                raise AssertionError("got %r while the persister was frozen: the edge acked by itself" % m0)
            except socket.timeout:
                pass
            check(s.sql("select count(*) from telemetry where device_id=%s", (dev,))[0][0] == 0,
                  "row stored while persister frozen?")
        finally:
            os.kill(s.persister.pid, signal.SIGCONT)
        a = d.expect("ack")
        check(a["seq"] == 1, "ack %r" % a)
        check(len(s.rows(dev)) == 1, "ack came but no row")
        log("persister frozen 3s: no ack; thawed: ack seq 1 and its row")

        # 2. fields, body JSON mapping, ack-after-commit for each.
        nan, inf = float("nan"), float("inf")
        cases = [
            (2, {"temp": 21.5, "on": True}, TS, {"temp": 21.5, "on": True}),
            (3, [None, False, -5, 2 ** 64 - 1, -2 ** 63, 0.1, 2.5e-7], None,
             [None, False, -5, 2 ** 64 - 1, -2 ** 63, 0.1, 2.5e-7]),
            (4, {"nan": nan, "inf": inf, "ninf": -inf}, TS + 1, {"nan": "NaN", "inf": "Infinity", "ninf": "-Infinity"}),
            (5, {"bin": b"\x00\x01\xff", "ext": msgpack.ExtType(5, b"ab")}, None,
             {"bin": "AAH/", "ext": {"ext": 5, "data": "YWI="}}),
            (6, {1: "one", "nested": {"a": [1, {"b": "héllo"}]}}, None,
             {"1": "one", "nested": {"a": [1, {"b": "héllo"}]}}),
            (7, "just a string", None, "just a string"),
            (2 ** 63 - 1, 42, 0, 42),
        ]
        for seq, body, ts, want in cases:
            t0 = time.time()
            d.data(seq, body, ts=ts)
            check(d.expect("ack")["seq"] == seq, "ack for seq %d" % seq)
            t1 = time.time()
            r = s.sql("select device_id, seq, device_ts, received_at, edge_id, body from telemetry "
                      "where device_id=%s and seq=%s", (dev, seq))
            check(len(r) == 1, "seq %d acked but not in telemetry right after the ack" % seq)
            _, rseq, dts, rx, edge, rbody = r[0]
            check(rseq == seq and edge == "edge-a", "row %r" % (r[0],))
            if ts is None:
                check(dts is None, "seq %d: device_ts %r, expected NULL" % (seq, dts))
            else:
                check(ms(dts) == ts, "seq %d: device_ts %r, expected %d ms" % (seq, dts, ts))
            check(t0 - 1 <= rx.timestamp() <= t1 + 1, "received_at %r not within send..ack" % rx)
            check(rbody == want, "seq %d: body %r, expected %r" % (seq, rbody, want))
        log("%d rows: fields and JSON bodies as in protocol.md section 3" % len(cases))
        # invalid UTF-8 in a str becomes U+FFFD: hand-built map {"t":"data","seq":8,"body":"a\xffb"}
        d.frame(b"\x83\xa1t\xa4data\xa3seq\x08\xa4body\xa3a\xffb")
        check(d.expect("ack")["seq"] == 8, "ack 8")
        check(s.rows(dev)[-2][5] == "a\ufffdb", "invalid UTF-8 not replaced: %r" % (s.rows(dev)[-2][5],))

        # 3. telemetry_rejected: a NUL in a string, which jsonb cannot hold.
        raw_body = msgpack.packb({"s": "a\0b"}, use_bin_type=True)
        d.data(9, {"s": "a\0b"})
        check(d.expect("ack")["seq"] == 9, "rejected body not acked")
        r = s.sql("select raw, error, edge_id from telemetry_rejected where device_id=%s and seq=9", (dev,))
        check(len(r) == 1 and bytes(r[0][0]) == raw_body, "telemetry_rejected row %r" % (r,))
        check(s.sql("select count(*) from telemetry where device_id=%s and seq=9", (dev,))[0][0] == 0,
              "NUL body also in telemetry")
        log("NUL body: acked, in telemetry_rejected (error %r)" % r[0][1])

        # 4. MQTT data messages.
        topic = "%s/%s/data" % (PREFIX, dev)
        wait_for(lambda: {x["seq"] for x in m.on(topic)} >= {1, 2, 3, 7, 8}, "MQTT data for seqs 1..8")
        by = {x["seq"]: x for x in m.on(topic)}
        x = by[2]
        check(x["dev"] == dev and x["ts"] == TS and x["edge"] == "edge-a" and x["body"] == {"temp": 21.5, "on": True},
              "MQTT data %r" % x)
        check(isinstance(x["rx"], int) and abs(x["rx"] - ms(s.rows(dev)[1][3])) <= 1,
              "MQTT rx %r vs received_at %r" % (x["rx"], s.rows(dev)[1][3]))
        check(by[3]["ts"] is None, "ts without ts: %r" % by[3]["ts"])
        check(by[4]["body"] == {"nan": "NaN", "inf": "Infinity", "ninf": "-Infinity"}, "MQTT body %r" % by[4]["body"])
        log("MQTT %s: %d messages, e.g. %r" % (topic, len(m.on(topic)), x))
        d.close()


if __name__ == "__main__":
    main(scenario)
