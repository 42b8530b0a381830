#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_13_migrate: a database created by the schema before partitioning (persister/migrations/001, as
main at b8cf4d8 shipped it, unchanged since), with rows in it, is migrated at start (002_partitions) and
keeps every row, byte for byte: the old table becomes the partition telemetry_legacy and its keys go into
telemetry_keys, so a resend of an old message is still recognized. New rows go on being stored, today's in
the legacy partition (it covers up to the midnight after its newest row) and later ones in new partitions.
"""
import os
import time

from persister_common import Env, collations, collect, pe

PORT = 22650  # persister_NN: 22000 + 50 * NN (persister.cmake)
DAY_NS = 86400 * 10**9
HERE = os.path.dirname(os.path.abspath(__file__))
OLD_SCHEMA = os.path.join(HERE, "..", "..", "persister", "migrations", "001_init.sql")
# What the persister of b8cf4d8 ran around 001 (persister/db.c, migrate()).
SCHEMA_VERSION = ("CREATE TABLE IF NOT EXISTS schema_version (version int PRIMARY KEY, name text NOT NULL,"
                  " applied_at timestamptz NOT NULL DEFAULT now())")
N = 30000
CHECKSUM = "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY device_id, seq)) FROM telemetry t"


def main():
    with Env(PORT) as env:
        now = time.time_ns()
        # The old schema, and rows received over the last 3 days up to now (some with no device_ts).
        env.sql(SCHEMA_VERSION)
        env.sql(open(OLD_SCHEMA).read())
        env.sql("INSERT INTO schema_version (version, name) VALUES (1, '001_init.sql')")
        env.sql("INSERT INTO telemetry SELECT 'old-' || (i %% 100), i,"
                " CASE WHEN i %% 7 = 0 THEN NULL ELSE to_timestamp(1764358200 + i) END,"
                " to_timestamp(%s::float8 / 1e9) - (i || ' seconds')::interval * 8, 'old-edge:7000',"
                " jsonb_build_object('i', i, 's', repeat('x', i %% 50), 'f', i / 3.0)"
                " FROM generate_series(1, %s) i", (now, N))
        env.sql("INSERT INTO telemetry_rejected (device_id, seq, received_at, edge_id, raw, error)"
                " VALUES ('old-1', 999999, now(), 'old-edge:7000', '\\xc1', 'body is not valid msgpack')")
        env.sql("INSERT INTO device_sessions VALUES ('old-1', 'old-edge:7000', 1, 2, '10.0.0.1:5', now(), NULL, NULL)")
        before = env.sql(CHECKSUM)[0]
        assert before[0] == N
        # A reader of the previous version, connected before the migration: its staging table (a persister's
        # sl_stage) has device_id in the database's collation, as every table had.
        old = env.pg._connect()
        old.cursor().execute("CREATE TEMP TABLE old_stage (device_id text, seq bigint, received_at timestamptz)")

        p = env.persister(0, ["--batch-ms", "20"])
        p.wait_ready(timeout=120)
        assert env.sql("SELECT version FROM schema_version ORDER BY 1")[:2] == [(1,), (2,)]
        assert "migrate_notice" not in p.output(), p.output()
        after = env.sql(CHECKSUM)[0]
        assert after == before, "rows changed by the migration: %r -> %r" % (before, after)
        legacy = env.sql("SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
                         " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'telemetry'::regclass"
                         " AND c.relname = 'telemetry_legacy'")
        assert legacy and "MINVALUE" in legacy[0][0], legacy
        assert env.sql("SELECT count(*) FROM telemetry_keys")[0][0] == N
        assert env.sql("SELECT count(*) FROM telemetry_rejected")[0][0] == 1
        assert env.sql("SELECT count(*) FROM device_sessions")[0][0] == 1
        print("ok: %d rows kept byte for byte, legacy partition %s" % (N, legacy[0][0]))
        # 007: device ids compared bytewise, the legacy partition's too (its primary key rebuilt, still used).
        tables = ("telemetry", "telemetry_legacy", "telemetry_keys", "telemetry_rejected", "device_sessions")
        coll = collations(env, tables)
        assert coll == dict.fromkeys(tables, "C"), coll
        plan = "\n".join(r[0] for r in env.sql("EXPLAIN SELECT * FROM telemetry_legacy"
                                                " WHERE device_id = 'old-7' AND seq = 107"))
        assert "telemetry_legacy_pkey" in plan, plan
        print("ok: device_id COLLATE \"C\" after the migration, the legacy key rebuilt and used")
        # That reader still works against the migrated tables: its ids meet "C" ones in a join and an ON CONFLICT
        # (an implicit non-default collation wins over the default; two different ones would be an error).
        cur = old.cursor()
        cur.execute("INSERT INTO old_stage VALUES ('old-1', 1, now()), ('old-1', %s, now())", (N + 100,))
        cur.execute("BEGIN")
        cur.execute("INSERT INTO telemetry_keys SELECT * FROM old_stage ON CONFLICT (device_id, seq) DO NOTHING")
        assert cur.rowcount == 1, cur.rowcount  # (old-1, 1) is stored: only the new key goes in
        cur.execute("SELECT count(*) FROM old_stage s JOIN telemetry_keys k USING (device_id, seq)")
        assert cur.fetchone()[0] == 2
        cur.execute("ROLLBACK")
        cur.execute("SELECT count(*) FROM telemetry WHERE device_id = %s", ("old-1",))
        assert cur.fetchone()[0] == N // 100
        old.close()
        print("ok: a connection of the old schema's collation still joins and upserts keys")

        # Old messages resent now (another day than the first arrival for most): acked, not stored again;
        # new ones today and in two days stored.
        edge = pe.Edge([p.pull], [p.router], edge_id="edge-m:7000")
        old = [pe.data("old-%d" % (i % 100), i, {"resent": True}) for i in (1, 2, 5000, 29999, 30000)]
        new = [pe.data("old-1", N + 1, {"new": 1}), pe.data("old-2", N + 2, {"new": 2}, at_ns=now + 2 * DAY_NS)]
        edge.send(*(old + new))
        collect(edge, env, {(e[3], e[5]) for e in old + new})
        assert env.sql("SELECT count(*) FROM telemetry")[0][0] == N + 2
        assert env.sql("SELECT count(*) FROM telemetry WHERE body ? 'resent'")[0][0] == 0
        where = dict(env.sql("SELECT seq, tableoid::regclass::text FROM telemetry WHERE seq > %s", (N,)))
        day = lambda ns: time.strftime("%Y%m%d", time.gmtime(ns // 10**9))  # noqa: E731
        # (unless the newest old row, 8 s before the start, was yesterday's: then today has a partition)
        assert where[N + 1] == ("telemetry_legacy" if day(now - 8 * 10**9) == day(now) else
                                "telemetry_" + day(time.time_ns())), where
        assert where[N + 2] == "telemetry_" + time.strftime("%Y%m%d", time.gmtime((now + 2 * DAY_NS) // 10**9)), where
        edge.close()
        assert p.stop() == 0
        print("ok: old messages resent are recognized; new ones stored (today's in the legacy partition)")
    print("PASS")


if __name__ == "__main__":
    main()
