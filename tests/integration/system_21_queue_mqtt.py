#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_21_queue_mqtt: the durable command queue on MQTT (a notifier with --db).
- queued over HTTP for an offline device; it connects, receives, answers: ok with the body over
  HTTP, and on MQTT the states queued -> delivered -> ok on P/<dev>/cmd/<id>/state and exactly one
  result {"ok":true,"body":...};
- queue false for an offline device: state rejected, result offline;
- TTL expiry: state expired, one result {"ok":false,"error":"expired"};
- --max-attempts 2: written twice across reconnects, never answered: state error and one result
  {"ok":false,"error":"max_attempts"};
- a notifier restart between queueing and delivery (delivered while it is down): every state and
  the one result are still published;
- queued over MQTT ("queue":true, "ttl_s") while offline: stored as the API stores it (visible over
  HTTP under the MQTT id), delivered on connect, answered: ok over HTTP and on MQTT, one result;
  the same id again is dropped (still one result); an unknown device and a full queue
  (--max-queued 2) are answered unknown_device and queue_full; a bad ttl_s bad_command;
- the queue's database down: a command queued over MQTT is answered unavailable (after the
  notifier's 10 s wait), is not stored, and the stack works again once the database is back."""
import socket
import time

import apitest
import mqtttest
from apitest import RO, RW
from slstack import PREFIX, Stack, check, log, main, wait_for

PORT = 25050  # system_NN: 24000 + 50 * NN (system.cmake); the API on PORT+8
SETTLE_S = 1.0  # after a result: time for a duplicate to show up


def scenario():
    with Stack(PORT, edges=1, persister_extra=("--max-attempts", "2")) as s:
        s.notifier.argv.extend(["--db", s.pg.dsn, "--max-queued", "2"])
        s.start()
        api = apitest.Api(s, PORT + 8).start()
        sub = s.mqtt(topics=(PREFIX + "/+/cmd/+/state", PREFIX + "/+/cmd/+/result"))

        def known(dev):
            d = s.device(dev)
            d.close()
            wait_for(lambda: api.req("GET", "/v1/devices/" + dev, token=RO)[0] == 200, dev + " known", 30)

        def submit(dev, body, **kw):
            req = {"body": body}
            req.update(kw)
            st, out, _ = api.req("POST", "/v1/devices/%s/commands" % dev, token=RW, body=req)
            check(st == 202, "submit to %s: %d %r" % (dev, st, out))
            return out

        def command(cid):
            st, out, _ = api.req("GET", "/v1/commands/" + cid, token=RO)
            check(st == 200, "GET command %s: %d %r" % (cid, st, out))
            return out

        def states(dev, cid):
            return [m["state"] for m in sub.on("%s/%s/cmd/%s/state" % (PREFIX, dev, cid))]

        def results(dev, cid):
            return sub.received("%s/%s/cmd/%s/result" % (PREFIX, dev, cid))

        def outcome(dev, cid, want_states, want_result):
            """Wait for the states and the result, then check nothing more comes."""
            wait_for(lambda: states(dev, cid) == want_states and results(dev, cid),
                     "%s: states %r and a result (have %r, %r)" % (cid, want_states, states(dev, cid),
                                                                    results(dev, cid)), 20)
            time.sleep(SETTLE_S)
            check(states(dev, cid) == want_states, "%s states %r" % (cid, states(dev, cid)))
            check(results(dev, cid) == [(want_result, False)], "%s one result: %r" % (cid, results(dev, cid)))
            sts = sub.on("%s/%s/cmd/%s/state" % (PREFIX, dev, cid))
            check(all(isinstance(m["at"], str) and isinstance(m["attempts"], int) for m in sts), "state %r" % sts)
            return sts

        def mqtt_cmd(dev, cmd):
            mqtttest.publish(s.mqtt_port, "%s/%s/cmd" % (PREFIX, dev), cmd)

        for dev in ("sleepy", "rej", "ttl", "flaky", "restart", "mq", "capm"):
            known(dev)

        # ---- (a) queued over HTTP while offline: delivered on connect, answered
        c = submit("sleepy", {"valve": 3}, queue=True)
        wait_for(lambda: states("sleepy", c["id"]) == ["queued"], "queued published", 15)
        check(not results("sleepy", c["id"]), "no result while queued")
        d = s.device("sleepy")
        m = d.expect("cmd", timeout=10)
        check(m["id"] == c["id"] and m["body"] == {"valve": 3}, "cmd %r" % m)
        wait_for(lambda: states("sleepy", c["id"]) == ["queued", "delivered"], "delivered published", 15)
        d.send({"t": "res", "id": c["id"], "ok": True, "body": {"closed": 3}})
        wait_for(lambda: command(c["id"])["state"] == "ok", "ok over HTTP", 15)
        check(command(c["id"])["result"] == {"closed": 3}, "HTTP result %r" % command(c["id"]))
        sts = outcome("sleepy", c["id"], ["queued", "delivered", "ok"], {"ok": True, "body": {"closed": 3}})
        check([x["attempts"] for x in sts] == [0, 1, 1], "attempts %r" % sts)
        d.close()
        log("ok: queued over HTTP, delivered, answered: states and one result on MQTT")

        # ---- queue false, offline: rejected at once
        r = submit("rej", 1, queue=False)
        check(r["state"] == "rejected", "rejected %r" % r)
        outcome("rej", r["id"], ["rejected"], {"ok": False, "error": "offline"})
        log("ok: rejected (offline): state and result")

        # ---- (c) TTL
        t = submit("ttl", {"late": True}, queue=True, ttl_s=1)
        outcome("ttl", t["id"], ["queued", "expired"], {"ok": False, "error": "expired"})
        check(command(t["id"])["state"] == "expired", "HTTP expired")
        log("ok: TTL expiry: state expired and one result")

        # ---- max attempts: written twice across reconnects, never answered
        f = submit("flaky", {"try": 1}, queue=True)
        for attempt in (1, 2):
            d = s.device("flaky")
            m = d.expect("cmd", timeout=10)
            check(m["id"] == f["id"], "attempt %d: %r" % (attempt, m))
            wait_for(lambda: command(f["id"])["attempts"] == attempt, "attempts %d" % attempt, 15)
            d.close()
            wait_for(lambda: not api.req("GET", "/v1/devices/flaky", token=RO)[1]["online"], "flaky offline", 15)
        wait_for(lambda: results("flaky", f["id"]), "max_attempts answered on MQTT", 20)
        time.sleep(SETTLE_S)
        check(results("flaky", f["id"]) == [({"ok": False, "error": "max_attempts"}, False)],
              "one max_attempts result: %r" % results("flaky", f["id"]))
        fs = states("flaky", f["id"])
        check(fs[0] == "queued" and "delivered" in fs and fs[-1] == "error", "flaky states %r" % fs)
        check(command(f["id"])["state"] == "error", "HTTP %r" % command(f["id"]))
        log("ok: --max-attempts 2: delivered twice, never answered: state error and one max_attempts result")

        # ---- (d) the notifier restarts between queueing and delivery
        q = submit("restart", {"after": "restart"}, queue=True)
        wait_for(lambda: states("restart", q["id"]) == ["queued"], "queued published", 15)
        s.notifier.stop(expect=0)
        d = s.device("restart")
        m = d.expect("cmd", timeout=15)
        check(m["id"] == q["id"], "cmd while the notifier is down %r" % m)
        wait_for(lambda: command(q["id"])["state"] == "delivered", "delivered (HTTP)", 15)
        s.notifier.start()
        d.send({"t": "res", "id": q["id"], "ok": False, "body": "jammed"})
        outcome("restart", q["id"], ["queued", "delivered", "error"], {"ok": False, "body": "jammed"})
        d.close()
        log("ok: notifier restarted between queueing and delivery: every state and one result")

        # ---- (b) queued over MQTT while offline
        mqtt_cmd("mq", {"id": "mq-1", "body": {"open": [1, 2]}, "queue": True, "ttl_s": 600})
        wait_for(lambda: states("mq", "mq-1") == ["queued"], "MQTT command queued", 15)
        h = command("mq-1")
        check(h["state"] == "queued" and h["device"] == "mq" and h["body"] == {"open": [1, 2]}, "HTTP %r" % h)
        mqtt_cmd("mq", {"id": "mq-1", "body": "again", "queue": True})  # the same id: dropped
        d = s.device("mq")
        m = d.expect("cmd", timeout=10)
        check(m["id"] == "mq-1" and m["body"] == {"open": [1, 2]}, "cmd %r" % m)
        d.send({"t": "res", "id": "mq-1", "ok": True, "body": {"opened": 2}})
        wait_for(lambda: command("mq-1")["state"] == "ok", "MQTT command ok over HTTP", 15)
        check(command("mq-1")["result"] == {"opened": 2}, "HTTP result %r" % command("mq-1"))
        outcome("mq", "mq-1", ["queued", "delivered", "ok"], {"ok": True, "body": {"opened": 2}})
        try:
            extra = d.recv(timeout=0.5)
            check(extra.get("t") != "cmd", "the duplicate was delivered: %r" % extra)
        except socket.timeout:
            pass
        d.close()
        log("ok: queued over MQTT: stored, delivered, answered: ok over HTTP and on MQTT; a duplicate id dropped")

        # ---- MQTT refusals: unknown device, full queue (--max-queued 2), bad ttl_s
        mqtt_cmd("nobody", {"id": "nb-1", "body": 1, "queue": True})
        wait_for(lambda: results("nobody", "nb-1"), "unknown_device answered", 15)
        for i in (1, 2, 3):
            mqtt_cmd("capm", {"id": "cap-%d" % i, "body": i, "queue": True})
        wait_for(lambda: results("capm", "cap-3"), "queue_full answered", 15)
        mqtt_cmd("capm", {"id": "ttl-bad", "body": 1, "queue": True, "ttl_s": 0})
        wait_for(lambda: results("capm", "ttl-bad"), "bad ttl_s answered", 15)
        time.sleep(SETTLE_S)
        check(results("nobody", "nb-1") == [({"ok": False, "error": "unknown_device"}, False)], "unknown %r" %
              results("nobody", "nb-1"))
        check(results("capm", "cap-3") == [({"ok": False, "error": "queue_full"}, False)], "full %r" %
              results("capm", "cap-3"))
        check(results("capm", "ttl-bad") == [({"ok": False, "error": "bad_command"}, False)], "ttl %r" %
              results("capm", "ttl-bad"))
        check(states("capm", "cap-1") == ["queued"] and states("capm", "cap-2") == ["queued"] and
              not states("capm", "cap-3"), "cap states %r" % [states("capm", "cap-%d" % i) for i in (1, 2, 3)])
        log("ok: MQTT refusals: unknown_device, queue_full, bad_command")

        # ---- the queue's database down: unavailable, nothing stored; back to work once it returns
        s.pg_stop()
        t0 = time.monotonic()
        mqtt_cmd("mq", {"id": "down-1", "body": 1, "queue": True})
        wait_for(lambda: results("mq", "down-1"), "unavailable answered", 30)
        waited = time.monotonic() - t0
        s.pg_start()
        check(results("mq", "down-1") == [({"ok": False, "error": "unavailable"}, False)],
              "unavailable %r" % results("mq", "down-1"))
        check(waited >= 5, "answered after %.1f s: before the notifier's 10 s wait for the database" % waited)
        wait_for(lambda: api.req("GET", "/v1/commands/down-1", token=RO)[0] == 404, "down-1 not stored", 30)
        mqtt_cmd("mq", {"id": "up-1", "body": 2, "queue": True})
        wait_for(lambda: states("mq", "up-1") == ["queued"], "queued again once the database is back", 30)
        d = s.device("mq")
        m = d.expect("cmd", timeout=15)
        check(m["id"] == "up-1", "cmd after the outage %r" % m)
        d.send({"t": "res", "id": "up-1", "ok": True, "body": "fine"})
        outcome("mq", "up-1", ["queued", "delivered", "ok"], {"ok": True, "body": "fine"})
        d.close()
        log("ok: database down: unavailable after %.1f s, not stored; queued and answered once it is back" % waited)

        left = s.sql("SELECT count(*) FROM command_events")[0][0]
        check(left == 0, "outbox drained: %d events left" % left)
        sub.close()
        check(api.proc.stop(expect=0) == 0, "api exit code")


if __name__ == "__main__":
    main(scenario)
