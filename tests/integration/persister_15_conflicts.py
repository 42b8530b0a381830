#!/usr/bin/python3
"""persister_15_conflicts: a resend that is not a resend (issue 11 item 7). A (device, seq) already stored
that arrives with another body or another ts is acked, not stored in telemetry (the first version stays),
kept in telemetry_conflicts with both versions (once per version), at most --max-conflicts-per-device per
device, and counted in sluice_persister_conflicts_total (beyond the bound too). An identical resend is not
a conflict. Two different copies in one batch: the earliest is stored, the other is a conflict."""
from persister_common import Env, collect, pe
from proc import wait_for

PORT = 22750  # persister_NN: 22000 + 50 * NN (persister.cmake)
TS = 1764358200000


def conflicts(env, dev):
    return env.sql("SELECT seq, stored_body, body, stored_device_ts IS NOT DISTINCT FROM device_ts"
                   " FROM telemetry_conflicts WHERE device_id = %s ORDER BY noted_at, received_at", (dev,))


def main():
    with Env(PORT) as env:
        p = env.persister(0, ["--batch-ms", "20", "--max-conflicts-per-device", "3"])
        p.wait_ready()
        edge = pe.Edge([p.pull], [p.router], edge_id="edge-c:7000")

        def send(*ents):
            edge.acks.clear()
            edge.send(*ents)
            collect(edge, env, {(e[3], e[5]) for e in ents})

        send(pe.data("c-1", 1, {"v": 1}, ts=TS))
        send(pe.data("c-1", 1, {"v": 1}, ts=TS))  # a true resend: nothing to note
        assert conflicts(env, "c-1") == []
        send(pe.data("c-1", 1, {"v": 2}, ts=TS))  # another body
        send(pe.data("c-1", 1, {"v": 2}, ts=TS))  # the same other body again: noted once
        send(pe.data("c-1", 1, {"v": 1}, ts=TS + 1))  # another ts
        got = conflicts(env, "c-1")
        assert got == [(1, {"v": 1}, {"v": 2}, True), (1, {"v": 1}, {"v": 1}, False)], got
        assert env.sql("SELECT body FROM telemetry WHERE device_id = 'c-1'") == [({"v": 1},)]
        print("ok: another body and another ts noted once each, the stored version kept")

        # Two different copies in one batch, none stored before: the earliest is stored.
        send(pe.data("c-2", 5, {"v": "a"}, ts=TS), pe.data("c-2", 5, {"v": "b"}, ts=TS))
        assert env.sql("SELECT body FROM telemetry WHERE device_id = 'c-2'") == [({"v": "a"},)]
        assert conflicts(env, "c-2") == [(5, {"v": "a"}, {"v": "b"}, True)], conflicts(env, "c-2")

        # The bound: 5 conflicting resends of one device, 3 kept, all counted.
        send(*[pe.data("c-3", i, {"v": i}, ts=TS) for i in range(1, 6)])
        send(*[pe.data("c-3", i, {"v": -i}, ts=TS) for i in range(1, 6)])
        assert len(conflicts(env, "c-3")) == 3, conflicts(env, "c-3")
        assert env.sql("SELECT count(*) FROM telemetry WHERE device_id = 'c-3' AND (body->>'v')::int < 0")[0][0] == 0
        wait_for(lambda: p.metric("sluice_persister_conflicts_total") == 2 + 1 + 5, "conflicts counted", 10)
        assert env.sql("SELECT count(*) FROM telemetry")[0][0] == 1 + 1 + 5
        assert env.sql("SELECT count(*) FROM telemetry_rejected")[0][0] == 0
        print("ok: one batch's two copies, and the per-device bound (3 kept of 5, 5 counted)")
        edge.close()
        assert p.stop() == 0
    print("PASS")


if __name__ == "__main__":
    main()
