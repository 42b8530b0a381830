#!/usr/bin/python3
"""persister_10_boundary_resend: a stored message whose ack was lost, resent after a telemetry partition
boundary (the resend gets a later received_at: another day's partition), is acked again and stored once,
in the partition of its first arrival; new rows in the same batch as the resends are stored.

Exactly once across partitions is telemetry_keys' job (docs/internals.md, "persister: partitions and
exactly once"): without it, each resend lands in the next day's partition as a second row."""
import time

from persister_common import collect, core_persister, pe

PORT = 22500  # persister_NN: 22000 + 50 * NN (persister.cmake)
DAY_NS = 86400 * 10**9


def main():
    with core_persister(PORT) as (env, p, edge):
        # Tomorrow 23:59:59.9 and the day after 00:00:00.1 (UTC): partitions created ahead of time.
        midnight = (time.time_ns() // DAY_NS + 2) * DAY_NS
        before, after = midnight - 100 * 10**6, midnight + 100 * 10**6
        first = [pe.data("b-%d" % (i % 4), i, {"v": i}, at_ns=before + i) for i in range(1, 21)]
        edge.send(*first)
        collect(edge, env, {(e[3], e[5]) for e in first})  # stored; the device "never saw" these acks

        # The device resends them after midnight, with new messages in the same batch.
        edge.acks.clear()
        again = [pe.data("b-%d" % (i % 4), i, {"v": "resent"}, at_ns=after + i) for i in range(1, 21)]
        new = [pe.data("b-%d" % (i % 4), i, {"v": i}, at_ns=after + i) for i in range(21, 31)]
        edge.send(*(again + new))
        collect(edge, env, {(e[3], e[5]) for e in again + new})

        n = env.sql("SELECT count(*), count(DISTINCT (device_id, seq)) FROM telemetry")[0]
        assert n == (30, 30), "each (device, seq) once: %r" % (n,)
        per_part = dict(env.sql("SELECT tableoid::regclass::text, count(*) FROM telemetry GROUP BY 1"))
        assert sorted(per_part.values()) == [10, 20], per_part  # 20 first arrivals before midnight, 10 after
        assert env.sql("SELECT count(*) FROM telemetry WHERE body->>'v' = 'resent'")[0][0] == 0
        assert env.sql("SELECT count(*) FROM telemetry_rejected")[0][0] == 0
        keys = env.sql("SELECT count(*) FROM telemetry_keys k JOIN telemetry t USING (device_id, seq, received_at)")
        assert keys[0][0] == 30, keys
        dups = p.metric("sluice_persister_rows_duplicate_total")
        assert dups == 20, dups
        print("ok: 20 resends after the partition boundary acked and stored once, %r" % per_part)

        # Resent again, in two batches at once: both batches may be committing side by side (two connections).
        edge.acks.clear()
        third = [pe.data("b-%d" % (i % 4), i, {"v": "third"}, at_ns=after + DAY_NS + i) for i in range(1, 31)]
        edge.send(*third[:15])
        edge.send(*third[15:])
        collect(edge, env, {(e[3], e[5]) for e in third})
        assert env.sql("SELECT count(*) FROM telemetry")[0][0] == 30
        print("ok: a third copy, a day later, in two batches: still 30 rows")
    print("PASS")


if __name__ == "__main__":
    main()
