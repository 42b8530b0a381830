#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_20_queue: the durable command queue through sluice-api and the persister.
- queue two commands for an offline device; it connects: both arrive in order, before a newer
  one; its answers show as ok (with the body) and error over HTTP, with the history;
- queue false: an offline device's command is rejected at once; an online device gets it now;
- TTL: an undelivered command expires and is never sent;
- the per-device cap (--max-queued 3): 409;
- --max-attempts 2: written twice across reconnects, never answered: error max_attempts;
- a restart of the persister and of the notifier between queueing and delivery;
- a device that moves edges between two queued commands;
- bad JSON, read-only token, unknown device and command;
- DELETE connection: 409 offline, 404 unknown, 202 and the edge closes it.
Replies are checked against docs/api.yaml (apitest.py)."""
import socket
import time

import apitest
from apitest import RO, RW
from slstack import Stack, check, log, main, wait_for

PORT = 25000  # system_NN: 24000 + 50 * NN (system.cmake); the API on PORT+8


def scenario():
    with Stack(PORT, edges=2, persister_extra=("--max-attempts", "2")) as s:
        s.start()
        api = apitest.Api(s, PORT + 8, extra=("--max-queued", "3")).start()

        def known(dev, edge=0):
            """Connect dev once, so the devices table lists it, and leave."""
            d = s.device(dev, edge=edge)
            d.close()
            wait_for(lambda: api.req("GET", "/v1/devices/" + dev, token=RO)[0] == 200, dev + " known", 30)

        def submit(dev, body, status=202, **kw):
            req = {"body": body}
            req.update(kw)
            st, out, _ = api.req("POST", "/v1/devices/%s/commands" % dev, token=RW, body=req)
            check(st == status, "submit to %s: %d %r" % (dev, st, out))
            return out

        def command(cid):
            st, out, _ = api.req("GET", "/v1/commands/" + cid, token=RO)
            check(st == 200, "GET command %s: %d %r" % (cid, st, out))
            return out

        def no_cmd(d, secs=1.5):
            try:
                m = d.recv(timeout=secs)
            except socket.timeout:
                return
            check(m.get("t") != "cmd", "%s got an unexpected %r" % (d.dev, m))

        for dev in ("sleepy", "rej", "now", "ttl", "cap", "flaky", "restart", "mover"):
            known(dev, edge=1 if dev == "mover" else 0)

        # ---- queued for an offline device, delivered in order on connect, answered
        c1 = submit("sleepy", {"valve": 3, "close": True}, queue=True)
        c2 = submit("sleepy", [1, 2.5, "x", None], queue=True, ttl_s=600)
        check(c1["state"] == "queued" and c1["device"] == "sleepy" and c1["attempts"] == 0, "c1 %r" % c1)
        check(command(c1["id"])["state"] == "queued", "still queued while offline")
        t0 = time.monotonic()
        d = s.device("sleepy", edge=0)
        m1 = d.expect("cmd", timeout=10)
        delay = time.monotonic() - t0
        c3 = submit("sleepy", {"newer": True}, queue=True)  # submitted while online: after the queued ones
        m2 = d.expect("cmd", timeout=10)
        m3 = d.expect("cmd", timeout=10)
        check([m1["id"], m2["id"], m3["id"]] == [c1["id"], c2["id"], c3["id"]], "order %r" % [m1, m2, m3])
        check(m1["body"] == {"valve": 3, "close": True} and m2["body"] == [1, 2.5, "x", None], "bodies %r %r" % (m1, m2))
        wait_for(lambda: command(c1["id"])["state"] == "delivered", "c1 delivered", 15)
        d.send({"t": "res", "id": c1["id"], "ok": True, "body": {"closed": 3}})
        d.send({"t": "res", "id": c2["id"], "ok": False, "body": "no such valve"})
        d.send({"t": "res", "id": c3["id"], "ok": True})
        wait_for(lambda: command(c1["id"])["state"] == "ok", "c1 ok", 15)
        r1, r2, r3 = command(c1["id"]), command(c2["id"]), command(c3["id"])
        check(r1["result"] == {"closed": 3} and r1["attempts"] == 1 and
              [h["state"] for h in r1["history"]] == ["queued", "delivered", "ok"], "c1 %r" % r1)
        wait_for(lambda: command(c2["id"])["state"] == "error", "c2 error", 15)
        check(command(c2["id"])["result"] == "no such valve", "c2 %r" % command(c2["id"]))
        wait_for(lambda: command(c3["id"])["state"] == "ok", "c3 ok", 15)
        check(command(c3["id"])["result"] is None, "c3 without body %r" % command(c3["id"]))
        d.close()
        log("ok: queued, delivered in order on connect (hello -> first cmd %.0f ms), answered ok/error" %
            (delay * 1000))

        # ---- queue false
        r = submit("rej", {"x": 1}, queue=False)
        check(r["state"] == "rejected" and r["result"] == {"error": "offline"}, "rejected %r" % r)
        d = s.device("now", edge=1)
        wait_for(lambda: api.req("GET", "/v1/devices/now", token=RO)[1]["online"], "now online", 15)
        r = submit("now", "ping")
        check(r["state"] == "queued", "online, not queued: queued for now %r" % r)
        m = d.expect("cmd", timeout=10)
        check(m["id"] == r["id"] and m["body"] == "ping", "now %r" % m)
        d.send({"t": "res", "id": r["id"], "ok": True, "body": "pong"})
        wait_for(lambda: command(r["id"])["state"] == "ok", "now ok", 15)
        d.close()
        log("ok: queue false: rejected offline, delivered online")

        # ---- TTL
        r = submit("ttl", {"late": True}, queue=True, ttl_s=1)
        wait_for(lambda: command(r["id"])["state"] == "expired", "expired", 15)
        check(command(r["id"])["result"] == {"error": "expired"}, "expired result")
        d = s.device("ttl", edge=0)
        no_cmd(d)
        d.close()
        log("ok: TTL expiry without delivery")

        # ---- cap
        ids = [submit("cap", i, queue=True)["id"] for i in range(3)]
        h = api.err("POST", "/v1/devices/cap/commands", 409, "conflict", token=RW, body={"body": 4, "queue": True})
        log("ok: --max-queued 3: the 4th is refused (409)")

        # ---- max attempts: written twice, never answered
        r = submit("flaky", {"try": 1}, queue=True)
        for attempt in (1, 2):
            d = s.device("flaky", edge=attempt - 1)
            m = d.expect("cmd", timeout=10)
            check(m["id"] == r["id"], "attempt %d %r" % (attempt, m))
            wait_for(lambda: command(r["id"])["attempts"] == attempt, "attempts %d" % attempt, 15)
            d.close()
            wait_for(lambda: not api.req("GET", "/v1/devices/flaky", token=RO)[1]["online"], "flaky offline", 15)
        wait_for(lambda: command(r["id"])["state"] == "error", "gave up", 15)
        check(command(r["id"])["result"]["error"] == "max_attempts", "result %r" % command(r["id"]))
        d = s.device("flaky", edge=0)
        no_cmd(d)
        d.close()
        log("ok: --max-attempts 2: two deliveries across reconnects, then error")

        # ---- restarts between queueing and delivery
        r = submit("restart", {"after": "restarts"}, queue=True)
        s.persister.stop(expect=0)
        s.persister.start()
        s.notifier.stop(expect=0)
        s.notifier.start()
        d = s.device("restart", edge=1)
        m = d.expect("cmd", timeout=15)
        check(m["id"] == r["id"], "after restarts %r" % m)
        d.send({"t": "res", "id": r["id"], "ok": True, "body": 1})
        wait_for(lambda: command(r["id"])["state"] == "ok", "ok after restarts", 15)
        d.close()
        log("ok: persister and notifier restarted between queueing and delivery")

        # ---- a device that moves edges between two queued commands
        a = submit("mover", "first", queue=True)
        d = s.device("mover", edge=0)
        check(d.expect("cmd", timeout=10)["id"] == a["id"], "first on edge-a")
        d.send({"t": "res", "id": a["id"], "ok": True})
        d.close()
        wait_for(lambda: command(a["id"])["state"] == "ok", "first ok", 15)
        b = submit("mover", "second", queue=True)
        d = s.device("mover", edge=1)
        check(d.expect("cmd", timeout=10)["id"] == b["id"], "second on edge-b")
        d.send({"t": "res", "id": b["id"], "ok": True})
        wait_for(lambda: command(b["id"])["state"] == "ok", "second ok", 15)
        d.close()
        log("ok: commands follow a device from edge-a to edge-b")

        # ---- refusals
        api.err("POST", "/v1/devices/sleepy/commands", 400, "bad_request", token=RW, raw=b"{not json")
        api.err("POST", "/v1/devices/sleepy/commands", 400, "bad_request", token=RW, body={"queue": True})
        api.err("POST", "/v1/devices/sleepy/commands", 400, "bad_request", token=RW, body={"body": 1, "ttl_s": 0})
        api.err("POST", "/v1/devices/sleepy/commands", 400, "bad_request", token=RW, body=[1])
        api.err("POST", "/v1/devices/sleepy/commands", 403, "forbidden", token=RO, body={"body": 1})
        api.err("POST", "/v1/devices/nobody/commands", 404, "not_found", token=RW, body={"body": 1})
        api.err("GET", "/v1/commands/c-0000000000000000", 404, "not_found", token=RO)
        log("ok: 400 bad JSON and fields, 403 read-only, 404 unknown device and command")

        # ---- DELETE connection: the edge closes it (err replaced); the device may come back
        api.err("DELETE", "/v1/devices/sleepy/connection", 409, "conflict", token=RW)  # offline
        api.err("DELETE", "/v1/devices/nobody/connection", 404, "not_found", token=RW)
        api.err("DELETE", "/v1/devices/sleepy/connection", 403, "forbidden", token=RO)
        d = s.device("sleepy", edge=1)
        wait_for(lambda: api.req("GET", "/v1/devices/sleepy", token=RO)[1]["online"], "sleepy online", 15)
        st, out, _ = api.req("DELETE", "/v1/devices/sleepy/connection", token=RW)
        check(st == 202 and out == {"device": "sleepy", "edge": "edge-b", "closing": True}, "kick %r" % out)
        d.expect_err("replaced", timeout=10)
        wait_for(lambda: not api.req("GET", "/v1/devices/sleepy", token=RO)[1]["online"], "sleepy offline", 15)
        d = s.device("sleepy", edge=0)
        wait_for(lambda: api.req("GET", "/v1/devices/sleepy", token=RO)[1]["online"], "sleepy back", 15)
        d.close()
        log("ok: DELETE connection closes it, the device reconnects")
        check(api.proc.stop(expect=0) == 0, "api exit code")


if __name__ == "__main__":
    main(scenario)
