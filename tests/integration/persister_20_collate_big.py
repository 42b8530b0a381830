#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_20_collate_big: migration 007 (device_id COLLATE "C") leaves a database with over 1,000,000 stored
keys as it is, because rebuilding its device_id indexes would stop writing for as long as that takes: it is
recorded as applied, the persister logs its WARNING (event=migrate_notice) once, and messages go on being
stored and acked. (A smaller database is migrated: persister_13_migrate; a fresh one: persister_19.)

The database is made as the persister of session 14 left it: migrations 001-006 applied by hand."""
import glob
import os

from persister_common import Env, collations, collect, pe

PORT = 23000  # persister_NN: 22000 + 50 * NN (persister.cmake)
HERE = os.path.dirname(os.path.abspath(__file__))
MIGRATIONS = os.path.join(HERE, "..", "..", "persister", "migrations")
SCHEMA_VERSION = ("CREATE TABLE IF NOT EXISTS schema_version (version int PRIMARY KEY, name text NOT NULL,"
                  " applied_at timestamptz NOT NULL DEFAULT now())")
KEYS = 1000001


TABLES = ("telemetry", "telemetry_keys", "device_sessions")


def main():
    with Env(PORT) as env:
        env.sql(SCHEMA_VERSION)
        for path in sorted(glob.glob(os.path.join(MIGRATIONS, "00[1-6]_*.sql"))):
            name = os.path.basename(path)
            env.sql(open(path).read().replace("%", "%%"))  # no parameters: a % is text
            env.sql("INSERT INTO schema_version (version, name) VALUES (%s, %s)", (int(name[:3]), name))
        env.sql("INSERT INTO telemetry_keys SELECT 'big-' || (i %% 1000), i, now() - interval '1 hour'"
                " FROM generate_series(1, %s) i", (KEYS,))
        before = collations(env, TABLES)
        assert set(before.values()) == {"default"} and len(before) == 3, before

        p = env.persister(0, ["--batch-ms", "20"])
        p.wait_ready(timeout=120)
        assert env.sql("SELECT max(version) FROM schema_version")[0][0] >= 7
        assert collations(env, TABLES) == before, collations(env, TABLES)
        log = p.output()
        notes = [ln for ln in log.splitlines() if "event=migrate_notice" in ln]
        assert len(notes) == 1 and "007 skipped" in notes[0] and "1,000,000" in notes[0], log
        print("ok: %d keys: 007 changed nothing and said so: %s" % (KEYS, notes[0]))

        edge = pe.Edge([p.pull], [p.router], edge_id="edge-c:7000")
        ents = [pe.data("big-%d" % i, KEYS + i, {"i": i}) for i in range(40)]
        edge.send(*ents)
        collect(edge, env, {(e[3], e[5]) for e in ents})
        assert env.sql("SELECT count(*) FROM telemetry")[0][0] == 40
        assert env.sql("SELECT count(*) FROM telemetry_keys")[0][0] == KEYS + 40
        edge.close()
        assert p.stop() == 0
        print("ok: messages stored and acked on the database left as it was")
    print("PASS")


if __name__ == "__main__":
    main()
