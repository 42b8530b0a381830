#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_12_retention: --retention-days drops whole old telemetry partitions and nothing newer.

A first persister (no retention) stores rows received 10, 6 and 1 day(s) ago and today (each day gets its
partition), a dead letter and a closed session from 10 days ago. A second one with --retention-days 7
detaches and drops the 10-day-old partition at start, deletes the keys, the dead letter and the closed
session of that age, and keeps the rest: rows 6 days old are still there and a resend of one is still
recognized (its key kept)."""
import time

from persister_common import Env, collect, partitions, pe
from proc import wait_for
from wire import CONNECT, DISCONNECT, entry

PORT = 22600  # persister_NN: 22000 + 50 * NN (persister.cmake)
DAY_NS = 86400 * 10**9


def day(ns):
    return "telemetry_" + time.strftime("%Y%m%d", time.gmtime(ns // 10**9))


def main():
    with Env(PORT) as env:
        now = time.time_ns()
        ages = {10: now - 10 * DAY_NS, 6: now - 6 * DAY_NS, 1: now - DAY_NS, 0: now}
        p = env.persister(0, ["--edge-timeout-ms", "60000"])
        p.wait_ready()
        edge = pe.Edge([p.pull], [p.router], edge_id="edge-ret:7000")
        ents = [pe.data("ret-%d" % age, i, {"age": age}, at_ns=at + i) for age, at in ages.items()
                for i in range(1, 6)]
        ents.append(pe.data("ret-10", 99, body_raw=b"\xc1", at_ns=ages[10]))  # not msgpack: dead letter
        edge.send(*ents)
        collect(edge, env, {(e[3], e[5]) for e in ents})
        edge.send(entry(CONNECT, 1, 1, "ret-s", 5, at_ns=ages[10], peer="10.0.0.1:1"),
                  entry(DISCONNECT, 1, 1, "ret-s", 5, at_ns=ages[10] + 10**9, peer="10.0.0.1:1", reason="eof"),
                  entry(CONNECT, 2, 1, "ret-t", 6, at_ns=ages[10], peer="10.0.0.2:1"))  # still open
        wait_for(lambda: env.sql("SELECT count(*) FROM device_sessions")[0][0] == 2, "sessions stored", 30)
        parts = partitions(env)
        assert {day(at) for at in ages.values()} <= parts, parts
        assert env.sql("SELECT count(*) FROM telemetry_keys")[0][0] == 20
        edge.close()
        assert p.stop() == 0

        p2 = env.persister(1, ["--retention-days", "7", "--edge-timeout-ms", "60000"])
        p2.wait_ready()
        wait_for(lambda: p2.metric("sluice_persister_partitions_dropped_total") == 1, "the old partition dropped",
                 30)
        left = partitions(env)
        # (the second persister may add a partition ahead if the UTC date changed meanwhile)
        assert day(ages[10]) not in left and parts - {day(ages[10])} <= left, (sorted(parts), sorted(left))
        assert not env.sql("SELECT 1 FROM pg_class WHERE relname = %s", (day(ages[10]),)), "detached, not dropped"
        by_age = dict(env.sql("SELECT (body->>'age')::int, count(*) FROM telemetry GROUP BY 1"))
        assert by_age == {6: 5, 1: 5, 0: 5}, by_age
        wait_for(lambda: env.sql("SELECT count(*) FROM telemetry_keys")[0][0] == 15, "old keys deleted", 30)
        assert env.sql("SELECT count(*) FROM telemetry_keys WHERE device_id = 'ret-10'")[0][0] == 0
        assert env.sql("SELECT count(*) FROM telemetry_rejected")[0][0] == 0
        assert env.sql("SELECT device_id FROM device_sessions") == [("ret-t",)], "open sessions stay"
        print("ok: the 10-day-old partition, its keys, dead letter and closed session are gone; 6 days old kept")

        # A row 6 days old is still known: its resend (arriving today) is acked and not stored again.
        edge2 = pe.Edge([p2.pull], [p2.router], edge_id="edge-ret:7000", inc=7)
        again = [pe.data("ret-6", 3, {"age": "again"})]
        edge2.send(*again)
        collect(edge2, env, {("ret-6", 3)})
        assert env.sql("SELECT count(*) FROM telemetry WHERE device_id = 'ret-6'")[0][0] == 5
        edge2.close()
        print("ok: a resend of a kept row is still recognized")
    print("PASS")


if __name__ == "__main__":
    main()
