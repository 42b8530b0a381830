#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Notifier against a real Mosquitto: data JSON, retained status online then
offline, command round trip, offline / bad / timeout results, and a device
moving between two edges (routing follows, old connection kicked, a late
disconnect of the old session does not take it offline)."""
import json
import sys
import time

import msgpack

from ntftest import (CMD, CONNECT, DATA, DISCONNECT, KICK, RES, UNDELIVERABLE, Env, check, entry,
                     publish, wait_for)

BROKER, NTF = 23021, 23022  # notifier_NN: 23000 + 20 * NN (notifier.cmake)


def main():
    with Env(BROKER, NTF) as env:
        env.ntf.argv += ["--cmd-timeout-ms", "1500"]
        env.ntf.start()
        sub = env.sub(["devices/#"])
        a = env.edge("edge-a:7000")
        b = env.edge("edge-b:7000")
        a.heartbeat()
        b.heartbeat()
        t0 = time.time_ns()

        # --- connect on A, data ---
        a.send(entry(CONNECT, 3, 7, "pump-1", epoch=t0, at_ns=t0, peer="10.0.0.1:5000"))
        st = wait_for(lambda: sub.received("devices/pump-1/status"), "online status", pump=env.pump)
        s, retained = st[-1]
        check(s["online"] is True and s["edge"] == "edge-a:7000" and s["epoch"] == t0, "status %r" % s)
        check(s["at"] == t0 // 1000000, "status at %r" % s)
        check(s["inc"] == a.inc and s["slot"] == 3 and s["gen"] == 7, "routing %r" % s)
        # the worker's identity secret stays off the broker: the status names "<edge-id>/<worker>"
        secret = a.reply.rsplit("/", 1)[1]
        check(s["reply"] == "edge-a:7000/0" and a.reply == "edge-a:7000/0/" + secret, "reply %r" % s)

        body = msgpack.packb({"temp": 21.5, "on": True, "raw": b"\x00\x01", "n": -5})
        rx = time.time_ns()
        a.send(entry(DATA, 3, 7, "pump-1", epoch=t0, seq=42, ts=1764358200000, at_ns=rx, body=body),
               entry(DATA, 3, 7, "pump-1", epoch=t0, seq=43, at_ns=rx, body=msgpack.packb([1, None])))
        d = wait_for(lambda: len(sub.received("devices/pump-1/data")) >= 2 and sub.received("devices/pump-1/data"),
                     "data", pump=env.pump)
        m0, m1 = d[0][0], d[1][0]
        check(set(m0) == {"dev", "seq", "ts", "rx", "edge", "body"}, "data keys %r" % m0)
        check(m0["dev"] == "pump-1" and m0["seq"] == 42 and m0["ts"] == 1764358200000, "data %r" % m0)
        check(m0["rx"] == rx // 1000000 and m0["edge"] == "edge-a:7000", "data rx/edge %r" % m0)
        check(m0["body"] == {"temp": 21.5, "on": True, "raw": "AAE=", "n": -5}, "data body %r" % m0)
        check(m1["seq"] == 43 and m1["ts"] is None and m1["body"] == [1, None], "second data %r" % m1)

        # --- retained: a late subscriber sees the online status ---
        late = env.sub(["devices/pump-1/status"])
        r = wait_for(lambda: late.received("devices/pump-1/status"), "retained status")
        check(r[0][1] and r[0][0]["online"] is True, "retained flag/online %r" % (r,))

        # --- command round trip ---
        publish(BROKER, "devices/pump-1/cmd", json.dumps({"id": "c-1", "body": {"set": 3}}))
        c = wait_for(lambda: a.received(CMD, id="c-1"), "cmd at edge A", pump=env.pump)[0]
        check(c["dev"] == "pump-1" and c["slot"] == 3 and c["gen"] == 7, "cmd entry %r" % c)
        check(c["hdr"][2] == a.inc, "cmd header incarnation %r" % c["hdr"])
        check(msgpack.unpackb(c["body"]) == {"set": 3}, "cmd body %r" % c["body"])
        a.send(entry(RES, 3, 7, "pump-1", epoch=t0, at_ns=time.time_ns(), id="c-1", ok=True,
                     body=msgpack.packb({"done": 1})))
        res = wait_for(lambda: sub.received("devices/pump-1/cmd/c-1/result"), "result c-1", pump=env.pump)
        check(res[0][0] == {"ok": True, "body": {"done": 1}}, "result %r" % res)

        # --- offline, bad command, bad id, timeout, undeliverable ---
        publish(BROKER, "devices/ghost/cmd", json.dumps({"id": "c-2", "body": None}))
        r = wait_for(lambda: sub.received("devices/ghost/cmd/c-2/result"), "offline result", pump=env.pump)
        check(r[0][0] == {"ok": False, "error": "offline"}, "offline %r" % r)
        publish(BROKER, "devices/pump-1/cmd", json.dumps({"id": "c-3"}))
        r = wait_for(lambda: sub.received("devices/pump-1/cmd/c-3/result"), "bad_command", pump=env.pump)
        check(r[0][0] == {"ok": False, "error": "bad_command"}, "bad %r" % r)
        publish(BROKER, "devices/pump-1/cmd", json.dumps({"id": "bad/id", "body": 1}))
        publish(BROKER, "devices/pump-1/cmd", b"{not json")
        wait_for(lambda: (env.ntf.metric('sluice_notifier_commands_total{result="bad_id"}') or 0) >= 1 and
                 (env.ntf.metric('sluice_notifier_commands_total{result="unreadable"}') or 0) >= 1,
                 "bad id / unreadable metrics", pump=env.pump)
        publish(BROKER, "devices/pump-1/cmd", json.dumps({"id": "c-4", "body": 1}))
        r = wait_for(lambda: sub.received("devices/pump-1/cmd/c-4/result"), "timeout result", pump=env.pump)
        check(r[0][0] == {"ok": False, "error": "timeout"}, "timeout %r" % r)
        a.send(entry(RES, 3, 7, "pump-1", epoch=t0, id="c-4", ok=True))  # too late: no second result
        publish(BROKER, "devices/pump-1/cmd", json.dumps({"id": "c-5", "body": 1}))
        wait_for(lambda: a.received(CMD, id="c-5"), "cmd c-5 at A", pump=env.pump)
        a.send(entry(UNDELIVERABLE, 3, 7, "pump-1", id="c-5", reason="disconnected"))
        r = wait_for(lambda: sub.received("devices/pump-1/cmd/c-5/result"), "undeliverable", pump=env.pump)
        check(r[0][0] == {"ok": False, "error": "disconnected"}, "undeliverable %r" % r)

        # --- move A -> B: online on B, old connection kicked, late disconnect of A ignored ---
        t1 = t0 + 2_000_000_000
        b.send(entry(CONNECT, 9, 1, "pump-1", epoch=t1, at_ns=t1, peer="10.0.0.1:5001"))
        k = wait_for(lambda: a.received(KICK, dev="pump-1"), "kick at A", pump=env.pump)[0]
        check(k["slot"] == 3 and k["gen"] == 7 and k["hdr"][2] == a.inc, "kick entry %r" % k)
        check(not b.received(KICK), "B must not be kicked")
        a.send(entry(DISCONNECT, 3, 7, "pump-1", epoch=t0, at_ns=t1 + 1, peer="10.0.0.1:5000", reason="replaced"))
        a.send(entry(CONNECT, 3, 7, "pump-1", epoch=t0, at_ns=t0, peer="10.0.0.1:5000"))  # duplicate, late
        publish(BROKER, "devices/pump-1/cmd", json.dumps({"id": "c-6", "body": "x"}))
        c = wait_for(lambda: b.received(CMD, id="c-6"), "cmd c-6 at B", pump=env.pump)[0]
        check(c["slot"] == 9 and c["gen"] == 1, "cmd on B %r" % c)
        check(not a.received(CMD, id="c-6"), "cmd c-6 must not go to A")
        last = sub.received("devices/pump-1/status")[-1][0]
        check(last["online"] is True and last["edge"] == "edge-b:7000" and last["epoch"] == t1, "status %r" % last)
        b.send(entry(RES, 9, 1, "pump-1", epoch=t1, id="c-6", ok=False))
        r = wait_for(lambda: sub.received("devices/pump-1/cmd/c-6/result"), "result c-6", pump=env.pump)
        check(r[0][0] == {"ok": False, "body": None}, "result c-6 %r" % r)

        # --- pending command then disconnect of the current session: "disconnected" ---
        publish(BROKER, "devices/pump-1/cmd", json.dumps({"id": "c-7", "body": 1}))
        wait_for(lambda: b.received(CMD, id="c-7"), "cmd c-7 at B", pump=env.pump)
        b.send(entry(DISCONNECT, 9, 1, "pump-1", epoch=t1, at_ns=t1 + 5, peer="x", reason="eof"))
        r = wait_for(lambda: sub.received("devices/pump-1/cmd/c-7/result"), "result c-7", pump=env.pump)
        check(r[0][0] == {"ok": False, "error": "disconnected"}, "c-7 %r" % r)
        st = wait_for(lambda: [x for x in sub.received("devices/pump-1/status") if x[0]["online"] is False],
                      "offline status", pump=env.pump)
        check(st[-1][0]["epoch"] == t1 and st[-1][0]["edge"] == "edge-b:7000", "offline %r" % st[-1][0])
        late2 = env.sub(["devices/pump-1/status"])
        r = wait_for(lambda: late2.received("devices/pump-1/status"), "retained offline")
        check(r[-1][0]["online"] is False and r[-1][1], "retained offline %r" % (r,))

        # exactly one result per command
        time.sleep(2.0)
        env.pump()
        for cid in ["c-1", "c-3", "c-4", "c-5", "c-6", "c-7"]:
            n = len(sub.received("devices/pump-1/cmd/%s/result" % cid))
            check(n == 1, "%s has %d results" % (cid, n))
        # nothing the broker got names a worker's whole identity (statuses, markers, results)
        leaked = [t for t, p, _ in sub.all() if any(e.reply.rsplit("/", 1)[1] in repr(p) for e in (a, b))]
        check(not leaked, "a worker secret went to the broker on %s" % leaked)
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
