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
- each service logged the stale session and its reconnection.
Then the migration itself: schema_version forgets 007 and the persister restarts, so it runs 007 again
(device_id back to "C"). A stand-in for an older notifier, which has no such reconnect (a session named
as the cmdlog's, holding a prepared statement that returns commands.device_id), must find its
session ended by the migrating persister (it would otherwise fail on every execution, forever), and a
stand-in for an older persister's lane must keep its session; the real cmdq and cmdlog go on
delivering and publishing."""
import time

import psycopg2

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
            check("event=%s_db_failed" % tag in log_of(s, svc) and
                  "cached plan must not change result type" in log_of(s, svc), "%s logged its stale statement" % svc)
            check("event=%s_db_connected after_failures=" % tag in log_of(s, svc), "%s reconnected" % svc)

        # ---- the persister migrates under an older service's session
        old = psycopg2.connect(s.pg.dsn, application_name="sluice-notifier-cmdlog", connect_timeout=5)
        old.autocommit = True
        cur = old.cursor()
        cur.execute("PREPARE old_claim AS SELECT device_id FROM commands ORDER BY id LIMIT 1")
        cur.execute("EXECUTE old_claim")
        check(cur.fetchall() == [("pump-1",)], "the stand-in reads commands")
        cur.execute("SELECT pg_backend_pid()")
        old_pid = cur.fetchone()[0]
        # And a stand-in for an older persister's writer lane, which the reset must leave alone.
        lane = psycopg2.connect(s.pg.dsn, application_name="sluice-persister", connect_timeout=5)
        lane.autocommit = True
        s.sql("DELETE FROM schema_version WHERE version = 7")
        n_mig = log_of(s, "persister").count("event=migrated version=7")  # its log spans both starts
        n_reset = log_of(s, "persister").count("event=migrate_reset_sessions")
        s.persister.restart()
        wait_for(lambda: log_of(s, "persister").count("event=migrated version=7") > n_mig, "007 run again", 30)
        coll = s.pg.sql("SELECT c.collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation"
                        " WHERE a.attrelid = 'command_events'::regclass AND a.attname = 'device_id'")
        check(coll == [("C",)], "007 again: %r" % (coll,))
        wait_for(lambda: not s.pg.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (old_pid,)),
                 "the stand-in's session ended by the migrating persister", 20)
        try:
            cur.execute("EXECUTE old_claim")
            raise AssertionError("the stand-in's stale session still answers")
        except psycopg2.OperationalError:
            pass  # terminated: an older service reconnects, as after any broken connection
        old.close()
        lane_cur = lane.cursor()
        lane_cur.execute("SELECT 1")  # raises if the reset ended it
        check(lane_cur.fetchall() == [(1,)], "a lane's session is not reset")
        lane.close()
        check(log_of(s, "persister").count("event=migrate_reset_sessions") > n_reset, "the persister logged the reset")
        cid = submit("pump-1", {"valve": 3})
        round_trip("pump-1", cid, {"valve": 3}).close()


def log_of(s, svc):
    with open(s.procs[svc].log_path, errors="replace") as f:
        return f.read()


if __name__ == "__main__":
    main(scenario)
