#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""PostgreSQL stopped for a few seconds mid-stream and started again:
every message committed exactly once, none acked before it was committed,
/readyz not ready while the database is down, retries counted."""
import time

from persister_common import Env, pe
from proc import wait_for

PORT = 22350  # persister_NN: 22000 + 50 * NN (persister.cmake)
N_BATCHES = 120
PER_BATCH = 25


def main():
    with Env(PORT) as env:
        p = env.persister(0, ["--batch-max", "100", "--batch-ms", "20"])
        p.wait_ready()
        edge = pe.Edge([p.pull], [p.router], edge_id="edge-r:7000")
        acked = set()
        acked_while_down = set()
        state = {"down": False}

        def on_ack(a):
            key = (a[3], a[4])
            assert key not in acked, "acked twice without a resend: %r" % (key,)
            acked.add(key)
            if state["down"]:
                acked_while_down.add(key)  # must have been committed before the stop: checked later
            else:
                r = env.check("SELECT 1 FROM telemetry WHERE device_id=%s AND seq=%s", key)
                assert r, "ack before commit: %r" % (key,)

        want = set()
        for b in range(N_BATCHES):
            ents = [pe.data("r-%d" % (i % 10), b * PER_BATCH + i + 1, {"b": b, "i": i}) for i in range(PER_BATCH)]
            want |= {(e[3], e[5]) for e in ents}
            edge.send(*ents, timeout=60)
            edge.poll_acks(5, on_ack)
            if b == 30:
                state["down"] = True
                edge.poll_acks(200, on_ack)  # acks of what committed before the stop
                env.pg.stop()
                wait_for(lambda: not p.ready(), "readyz to turn not ready", 30)
            if b == 80:
                time.sleep(1.0)
                env.pg.start()
                wait_for(p.ready, "readyz ready again", 60)
                state["down"] = False
        deadline = time.time() + 120
        while not want <= acked:
            assert time.time() < deadline, "missing acks: %d" % len(want - acked)
            edge.poll_acks(100, on_ack)
        n = env.sql("SELECT count(*), count(DISTINCT (device_id, seq)) FROM telemetry")[0]
        assert n == (len(want), len(want)), n
        for key in acked_while_down:
            assert env.check("SELECT 1 FROM telemetry WHERE device_id=%s AND seq=%s", key), key
        retries = p.metric("sluice_persister_db_retries_total")
        print("ok: %d rows committed once, %d acked around the outage, retries=%s" %
              (len(want), len(acked_while_down), retries))
        assert retries and retries > 0, "the outage never held a batch"
        assert p.stop() == 0
    print("PASS")


if __name__ == "__main__":
    main()
