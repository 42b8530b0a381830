#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_22_schema_change: the command paths survive a schema change made under them.
In a rolling upgrade the first persister of a newer version migrates while the services of this one
keep their connections. Migration 007 changed the collation of every device_id column, and a
prepared statement that returns such a column then fails with SQLSTATE 0A000 ("cached plan must not
change result type") on every execution in that session: the persister's command queue ("pick")
and the notifier's command log ("claim") stopped until their process restarted
(bench/persister_upgrade.sh found it). Here "the other version" takes commands.device_id and
command_events.device_id back from COLLATE "C" to the database's default (007 undone) while the
stack runs, after both statements have run once:
- a command queued afterwards for an offline device is delivered when it connects, and its answer
  shows over HTTP and as its states and one result on MQTT (the notifier's command log);
- data is still acked and stored;
- each service logged the stale session and its reconnection."""
import time

import apitest
from apitest import RO, RW
from slstack import PREFIX, Stack, check, log, main, wait_for

PORT = 25100  # system_NN: 24000 + 50 * NN (system.cmake); the API on PORT+8
ALTER = ("ALTER TABLE commands ALTER COLUMN device_id TYPE text COLLATE \"default\";"
         "ALTER TABLE command_events ALTER COLUMN device_id TYPE text COLLATE \"default\"")


def scenario():
    with Stack(PORT, edges=1) as s:
        s.notifier.argv.extend(["--db", s.pg.dsn])
        s.start()
        api = apitest.Api(s, PORT + 8).start()
        sub = s.mqtt(topics=(PREFIX + "/+/cmd/+/state", PREFIX + "/+/cmd/+/result"))

        def submit(dev, body):
            st, out, _ = api.req("POST", "/v1/devices/%s/commands" % dev, token=RW, body={"body": body, "queue": True})
            check(st == 202 and out["state"] == "queued", "submit to %s: %d %r" % (dev, st, out))
            return out["id"]

        def command(cid):
            st, out, _ = api.req("GET", "/v1/commands/" + cid, token=RO)
            check(st == 200, "GET command %s: %d %r" % (cid, st, out))
            return out

        def round_trip(dev, cid, body):
            """dev connects, gets cid, answers ok; the answer shows over HTTP and on MQTT."""
            d = s.device(dev)
            m = d.expect("cmd", timeout=20)
            check(m["id"] == cid and m["body"] == body, "%s got %r" % (dev, m))
            d.send({"t": "res", "id": cid, "ok": True, "body": {"done": cid}})
            wait_for(lambda: command(cid)["state"] == "ok", cid + " ok over HTTP", 20)
            topic = "%s/%s/cmd/%s/" % (PREFIX, dev, cid)
            wait_for(lambda: sub.received(topic + "result"), cid + ": its result on MQTT", 30)
            check(sub.received(topic + "result") == [({"ok": True, "body": {"done": cid}}, False)],
                  "%s one result %r" % (cid, sub.received(topic + "result")))
            states = [x["state"] for x in sub.on(topic + "state")]
            check(states == ["queued", "delivered", "ok"], "%s states %r" % (cid, states))
            return d

        d = s.device("pump-1")
        d.close()
        wait_for(lambda: api.req("GET", "/v1/devices/pump-1", token=RO)[0] == 200, "pump-1 known", 30)
        # Before: both statements prepared and run on the services' connections.
        round_trip("pump-1", submit("pump-1", {"valve": 1}), {"valve": 1}).close()

        log("another version migrates: %s" % ALTER)
        s.pg.sql(ALTER)
        coll = s.pg.sql("SELECT a.attrelid::regclass::text, c.collname FROM pg_attribute a JOIN pg_collation c"
                        " ON c.oid = a.attcollation WHERE a.attname = 'device_id'"
                        " AND a.attrelid IN ('commands'::regclass, 'command_events'::regclass) ORDER BY 1")
        check(coll == [("command_events", "default"), ("commands", "default")], "collations %r" % (coll,))

        cid = submit("pump-1", {"valve": 2})
        t0 = time.monotonic()
        d = round_trip("pump-1", cid, {"valve": 2})
        log("after the change: delivered and answered in %.1f s" % (time.monotonic() - t0))
        d.data(1, {"level": 7})
        a = d.expect("ack", timeout=10)
        check(a.get("seq") == 1, "ack %r" % a)
        check(s.pg.sql("SELECT count(*) FROM telemetry WHERE device_id = 'pump-1' AND seq = 1") == [(1,)], "stored")
        d.close()

        # The log says what happened: the stale session, then the new one.
        for svc, tag in (("persister", "cmdq"), ("notifier", "cmdlog")):
            with open(s.procs[svc].log_path, errors="replace") as f:
                text = f.read()
            check("event=%s_db_failed" % tag in text and "cached plan must not change result type" in text,
                  "%s logged its stale statement" % svc)
            check("event=%s_db_connected after_failures=" % tag in text, "%s reconnected" % svc)


if __name__ == "__main__":
    main(scenario)
