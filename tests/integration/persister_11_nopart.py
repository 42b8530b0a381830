#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_11_nopart: a row whose received_at falls on a day with no telemetry partition (an edge clock far
ahead or behind; maintenance behind) is stored and acked, not dead-lettered: the writer creates the
partition and commits the batch again. The rest of its batch, in partitions that exist, is stored with it.

Without the classification (PostgreSQL's 'no partition of relation "telemetry" found for row' is SQLSTATE
23514, class 23 like a refused row), the row would go to telemetry_rejected."""
import time

from persister_common import collect, core_persister, partitions, pe

PORT = 22550  # persister_NN: 22000 + 50 * NN (persister.cmake)
DAY_NS = 86400 * 10**9


def main():
    with core_persister(PORT) as (env, p, edge):
        now = time.time_ns()
        far = (now // DAY_NS + 400) * DAY_NS + 3600 * 10**9  # 400 days ahead: no partition
        past = (now // DAY_NS - 30) * DAY_NS + 60 * 10**9     # 30 days ago: none either
        before = partitions(env)
        ents = [pe.data("np-1", 1, {"when": "now"}, at_ns=now),
                pe.data("np-1", 2, {"when": "far"}, at_ns=far),
                pe.data("np-2", 1, {"when": "past"}, at_ns=past),
                pe.data("np-2", 2, {"when": "now"}, at_ns=now)]
        edge.send(*ents)
        collect(edge, env, {(e[3], e[5]) for e in ents})
        assert env.sql("SELECT count(*) FROM telemetry_rejected")[0][0] == 0, "dead-lettered"
        rows = env.sql("SELECT device_id, seq, body->>'when', tableoid::regclass::text FROM telemetry ORDER BY 1, 2")
        assert [r[:3] for r in rows] == [("np-1", 1, "now"), ("np-1", 2, "far"), ("np-2", 1, "past"),
                                        ("np-2", 2, "now")], rows
        made = partitions(env) - before
        day = lambda ns: "telemetry_" + time.strftime("%Y%m%d", time.gmtime(ns // 10**9))  # noqa: E731
        assert {day(far), day(past)} <= made, made
        assert rows[1][3] == day(far) and rows[2][3] == day(past), rows
        created = p.metric("sluice_persister_partitions_created_total")
        assert created and created >= 2, created
        print("ok: rows for days without partition stored in new partitions %s" % sorted(made))
    print("PASS")


if __name__ == "__main__":
    main()
