#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_04_sessions: device_sessions from connect/disconnect in either order, and
edge_lost for a silent edge incarnation (never for a live edge's sessions).

Against a real PostgreSQL; every ack is checked to follow a visible row
(persister_common.collect)."""
import os
import time

from persister_common import collect, core_persister, pe
from proc import wait_for
from wire import CONNECT, DISCONNECT, HEARTBEAT, entry

PORT = 22200  # persister_NN: 22000 + 50 * NN (persister.cmake)


def main():
    with core_persister(PORT) as (env, p, edge):
        # sessions: connect then disconnect; disconnect before connect (separate batches).
        t = time.time_ns()
        edge.acks.clear()
        edge.send(entry(CONNECT, 3, 1, "sess-1", 1000, None, None, t, "10.0.0.1:5000"),
                  pe.data("sess-1", 1, {"x": 1}, slot=3, gen=1))
        edge.send(entry(DISCONNECT, 3, 1, "sess-1", 1000, None, None, t + 10**9, "10.0.0.1:5000",
                        "idle"),
                  entry(DISCONNECT, 4, 1, "sess-2", 2000, None, None, t + 2 * 10**9, "10.0.0.2:6000",
                        "replaced"),
                  pe.data("sess-1", 2, {"x": 2}, slot=3, gen=1))
        collect(edge, env, {("sess-1", 1), ("sess-1", 2)})
        edge.send(entry(CONNECT, 4, 1, "sess-2", 2000, None, None, t, "10.0.0.2:6000"),
                  pe.data("sess-1", 3, {"x": 3}, slot=3, gen=1))
        collect(edge, env, {("sess-1", 3)})
        s = env.sql("SELECT device_id, epoch, peer, connected_at IS NOT NULL, disconnected_at - connected_at, reason"
                    " FROM device_sessions WHERE edge_id='edge-a:7000' ORDER BY device_id")
        assert s[0][:4] == ("sess-1", 1000, "10.0.0.1:5000", True) and s[0][5] == "idle", s
        assert s[0][4].total_seconds() == 1.0, s
        assert s[1][:4] == ("sess-2", 2000, "10.0.0.2:6000", True) and s[1][5] == "replaced", s
        assert s[1][4].total_seconds() == 2.0, s
        print("ok: sessions")

        # A disconnect that names no peer (and no connect ever came): peer is NULL, not ''.
        edge.send(entry(DISCONNECT, 5, 1, "sess-3", 3000, None, None, t, None, "idle"),
                  pe.data("sess-1", 4, {"x": 4}, slot=3, gen=1))
        collect(edge, env, {("sess-1", 4)})
        r = env.sql("SELECT peer IS NULL, reason FROM device_sessions WHERE device_id='sess-3'")
        assert r == [(True, "idle")], r
        print("ok: a session without a peer stores none")

        # A connect and a disconnect (of other devices) in one edge batch: each statement takes
        # only the rows of its kind, and both arrays hold exactly those. A statement given the
        # other kind's rows too fails (22P03) and the writer's bisection would still store both,
        # one at a time: PostgreSQL's log shows the difference.
        pg_log_at = os.path.getsize(env.pg.log)
        edge.send(entry(CONNECT, 6, 1, "sess-4", 4000, None, None, t, "10.0.0.4:1"),
                  entry(DISCONNECT, 7, 1, "sess-5", 5000, None, None, t, "10.0.0.5:1", "idle"),
                  pe.data("sess-1", 5, {"x": 5}, slot=3, gen=1))
        collect(edge, env, {("sess-1", 5)})
        r = env.sql("SELECT device_id, peer, connected_at IS NOT NULL, disconnected_at IS NOT NULL, reason"
                    " FROM device_sessions WHERE device_id IN ('sess-4', 'sess-5') ORDER BY device_id")
        assert r == [("sess-4", "10.0.0.4:1", True, False, None), ("sess-5", "10.0.0.5:1", False, True, "idle")], r
        with open(env.pg.log, errors="replace") as f:
            f.seek(pg_log_at)
            errors = [line for line in f if "ERROR:" in line]
        assert not errors, errors
        print("ok: connects and disconnects of one batch")

        # edge_lost: another edge incarnation connects a device, heartbeats once, goes silent.
        lost = pe.Edge([p.pull], [p.router], edge_id="edge-b:7000", worker=0)
        lost.send(entry(CONNECT, 1, 1, "lost-dev", 3000, None, None, time.time_ns(), "10.0.0.3:1"),
                  entry(HEARTBEAT, 0, 0, "", 0, 1, None, time.time_ns()),
                  pe.data("lost-dev", 1, {"x": 1}))
        wait_for(lambda: (lost.poll_acks(100), len(lost.acks) >= 1)[1], "lost-dev ack", 30)
        lost.close()

        def closed():
            edge.send(entry(HEARTBEAT, 0, 0, "", 0, 1, None, time.time_ns()))  # edge-a stays alive
            r = env.sql("SELECT reason, disconnected_at IS NOT NULL FROM device_sessions WHERE device_id='lost-dev'")
            return r and r[0] == ("edge_lost", True)
        wait_for(closed, "edge_lost", 30, interval=0.5)
        r = env.sql("SELECT count(*) FROM device_sessions WHERE edge_id='edge-a:7000' AND reason='edge_lost'")
        assert r[0][0] == 0, "a live edge's sessions were closed"
        print("ok: edge_lost")
    print("PASS")


if __name__ == "__main__":
    main()
