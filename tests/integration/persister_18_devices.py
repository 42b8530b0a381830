#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_18_devices: the devices table (migration 004) follows committed
batches: a device that only connected is listed (no seq), data moves last_seq
and last_seen forward, a resend or an older row never moves them back, a
dead-lettered row counts as seen, and a device whose rows were never acked
does not appear; and a devices table that cannot be written (locked by
another session here; slow in production) never holds back an ack.

Against a real PostgreSQL. The devices update runs on a connection of its
own, after the batch's ack, in a transaction of its own: poll for it."""
import re
import time

import psycopg2

from persister_common import collect, core_persister, pe
from proc import wait_for
from wire import CONNECT, entry

PORT = 22900  # persister_NN: 22000 + 50 * NN (persister.cmake)


def devices(env):
    return {r[0]: r[1:] for r in env.sql(
        "SELECT device_id, last_seq, extract(epoch FROM last_seen)::float8,"
        " extract(epoch FROM first_seen)::float8 FROM devices ORDER BY device_id")}


def pids(env, what):
    """The backends PostgreSQL's statement log shows running `what` (a regex)."""
    with open(env.pg.log, errors="replace") as f:
        return set(re.findall(r"\[(\d+)\] LOG:  duration: [\d.]+ ms  " + what, f.read()))


def main():
    with core_persister(PORT) as (env, p, edge):
        env.sql("ALTER SYSTEM SET log_min_duration_statement = 0")
        env.sql("SELECT pg_reload_conf()")
        t = time.time_ns()
        edge.send(entry(CONNECT, 1, 1, "only-conn", 1000, None, None, t, "10.0.0.1:1"))
        wait_for(lambda: "only-conn" in devices(env), "connect-only device listed", 30, interval=0.2)
        d = devices(env)["only-conn"]
        assert d[0] is None and abs(d[1] - t / 1e9) < 0.01, d
        print("ok: a device that only connected is listed")

        edge.acks.clear()
        edge.send(pe.data("dev-a", 5, {"x": 1}), pe.data("dev-a", 9, {"x": 2}), pe.data("dev-b", 1, {"x": 3}))
        collect(edge, env, {("dev-a", 5), ("dev-a", 9), ("dev-b", 1)})
        wait_for(lambda: devices(env).get("dev-a", (None,))[0] == 9, "dev-a last_seq 9", 30, interval=0.2)
        a1 = devices(env)["dev-a"]
        assert devices(env)["dev-b"][0] == 1
        print("ok: last_seq is the highest stored seq", a1)

        # a resend of 5 and an older seq 7 arrive later: last_seq stays 9, last_seen moves on
        edge.acks.clear()
        edge.send(pe.data("dev-a", 5, {"x": 1}), pe.data("dev-a", 7, {"x": 4}))
        collect(edge, env, {("dev-a", 5), ("dev-a", 7)})
        wait_for(lambda: devices(env)["dev-a"][1] > a1[1], "dev-a last_seen moves", 30, interval=0.2)
        a2 = devices(env)["dev-a"]
        assert a2[0] == 9 and a2[2] == a1[2], (a1, a2)  # first_seen kept
        print("ok: a resend or an older seq never moves last_seq back")

        # a poison row (NUL in a string: jsonb refuses it) is dead-lettered, acked and seen
        edge.acks.clear()
        edge.send(pe.data("dev-p", 3, {"s": "a\x00b"}))
        collect(edge, env, {("dev-p", 3)})
        wait_for(lambda: devices(env).get("dev-p", (None,))[0] == 3, "dead-lettered row seen", 30, interval=0.2)
        print("ok: a dead-lettered row counts as seen")

        # The devices upsert is the prepared "dev" over binary arrays, run by one connection that set
        # synchronous_commit off for its session (the statement is in autocommit: no SET LOCAL); the lanes
        # never prepare it.
        sync_off = pids(env, r"statement: SET synchronous_commit TO off;SET statement_timeout TO 30000")
        ran, parsed = pids(env, r"execute dev: INSERT INTO devices"), pids(env, r"parse dev: INSERT INTO devices")
        assert ran and len(sync_off) == 1 and ran == sync_off and parsed == sync_off, (sync_off, ran, parsed)
        print("ok: the devices writer's backend %s runs the prepared upsert with synchronous_commit off" % ran)
        env.sql("ALTER SYSTEM RESET log_min_duration_statement")
        env.sql("SELECT pg_reload_conf()")

        n = env.sql("SELECT count(*) FROM devices")[0][0]
        assert n == 4, devices(env)

        # The devices table locked against writes for a while: batches keep being
        # acked. Each round waits past the devices writer's second, so its upsert
        # is stuck on the lock; when it ran on the writer lanes, both lanes were
        # stuck within two rounds and no ack came until the lock went.
        lock = psycopg2.connect(env.dsn)
        lock.cursor().execute("LOCK TABLE devices IN EXCLUSIVE MODE")
        try:
            for k in range(1, 5):
                edge.acks.clear()
                edge.send(pe.data("dev-l", k, {"k": k}), pe.data("dev-m", k, {"k": k}))
                collect(edge, env, {("dev-l", k), ("dev-m", k)}, timeout=20)
                time.sleep(1.2)
            assert devices(env).get("dev-l") is None, "written through the lock?"
            print("ok: 4 rounds acked while the devices table was locked")

            # Still locked, 20,000 more devices, one row each: the summary holds
            # DEVWRITER_DEVICES_MAX = 16,384 devices (dev-l and dev-m among them),
            # the rest is left out and counted; every row is acked all the same.
            edge.acks.clear()
            for k in range(0, 20000, 500):
                edge.send(*[pe.data("big-%05d" % i, 1, {"i": i}) for i in range(k, k + 500)])
            deadline = time.time() + 120
            while len(edge.acks) < 20000 and time.time() < deadline:
                edge.poll_acks(200)
            assert len(edge.acks) == 20000, "acked %d of 20000" % len(edge.acks)
            assert env.sql("SELECT count(*) FROM telemetry WHERE left(device_id, 4) = 'big-'")[0][0] == 20000
            left = p.metric("sluice_persister_devices_rows_left_out_total")
            assert left == 20000 - (16384 - 2), left
            print("ok: 20,000 more acked while locked; the summary kept 16,384 devices, %d rows left out" % left)
        finally:
            lock.rollback()
            lock.close()
        wait_for(lambda: devices(env).get("dev-l", (None,))[0] == 4, "dev-l written once the lock went", 30,
                 interval=0.2)
        big = "SELECT count(*) FROM devices WHERE left(device_id, 4) = 'big-'"
        wait_for(lambda: env.sql(big)[0][0] == 16382, "the 16,382 big-* devices held written", 30, interval=0.2)
        time.sleep(1.5)  # a write more: nothing else was held
        assert env.sql(big)[0][0] == 16382, env.sql(big)
        print("ok: the summary held during the lock is written once it goes, and only that")

        # A stop behind the lock: a second persister whose devices writer is
        # stuck in a statement (timeout 30 s) when SIGTERM comes, with one more
        # device held for its last write. The stop takes DEVWRITER_STOP_MS
        # (5 s): the stuck statement is cancelled, the held device is counted
        # as not written. Before, the stop waited out the statement's 30 s,
        # and 30 s more for each statement of the last write. The first
        # persister goes first: its writer must not be the one on the lock.
        # The second starts behind the lock: its lanes connect and ack all
        # the same (the devices statement is prepared on the devices writer's
        # connection alone, under its timeout: preparing it takes a lock).
        edge.close()
        assert p.stop() == 0, "persister exit code"
        lock = psycopg2.connect(env.dsn)
        lock.cursor().execute("LOCK TABLE devices IN EXCLUSIVE MODE")
        p2 = env.persister(1, ["--batch-max", "50", "--batch-ms", "30"])
        try:
            p2.wait_ready()
            edge2 = pe.Edge([p2.pull], [p2.router], edge_id="edge-b:7000", worker=0)
            edge2.send(pe.data("dev-s", 1, {}))
            collect(edge2, env, {("dev-s", 1)}, timeout=20)
            stuck = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                     " AND strpos(query, 'INSERT INTO devices') > 0")
            wait_for(lambda: env.sql(stuck)[0][0] == 1, "the devices writer stuck on the lock", 20, interval=0.1)
            edge2.send(pe.data("dev-t", 1, {}))
            collect(edge2, env, {("dev-t", 1)}, timeout=20)
            t0 = time.monotonic()
            rc = p2.stop(grace=90)
            took = time.monotonic() - t0
            assert rc == 0, "persister exit code %s" % rc
            assert took < 15, "the stop took %.1f s behind the lock" % took
            with open(p2.log_path) as f:
                log = f.read()
            assert "event=devices_write_cancelled" in log, log[-2000:]
            assert "event=devices_not_written devices=1 " in log, log[-2000:]
        finally:
            lock.rollback()
            lock.close()
        edge2.close()
        assert env.sql(stuck)[0][0] == 0
        assert "dev-s" not in devices(env) and "dev-t" not in devices(env), devices(env)
        print("ok: a stop behind the lock took %.1f s: the stuck statement cancelled, the held device counted" % took)
    print("PASS")


if __name__ == "__main__":
    main()
