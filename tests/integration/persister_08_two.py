#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Two persisters started at once on a fresh database (migrations must not
race), one test edge with two workers pushing to both: no loss, no
duplicates, both instances do work, and each row is acked exactly once."""
import glob
import os
import time

from persister_common import Env, pe

PORT = 22400  # persister_NN: 22000 + 50 * NN (persister.cmake)
N_BATCHES = 100
PER_BATCH = 40


def main():
    with Env(PORT) as env:
        ps = [env.persister(i, ["--batch-max", "200", "--batch-ms", "10"]) for i in range(2)]
        for p in ps:
            p.wait_ready()
        # every migration applied exactly once (persister/migrations/NNN_*.sql)
        n_mig = len(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "persister",
                                           "migrations", "[0-9][0-9][0-9]_*.sql")))
        assert n_mig >= 2, n_mig
        assert env.sql("SELECT version FROM schema_version ORDER BY 1") == [(v,) for v in range(1, n_mig + 1)]
        pulls = [p.pull for p in ps]
        routers = [p.router for p in ps]
        edges = [pe.Edge(pulls, routers, edge_id="edge-2:7000", worker=w, inc=42) for w in range(2)]
        time.sleep(0.5)  # let both PUSH pipes connect so round-robin spreads
        acks = {}

        def on_ack(a):
            key = (a[3], a[4])
            assert env.check("SELECT 1 FROM telemetry WHERE device_id=%s AND seq=%s", key), key
            acks[key] = acks.get(key, 0) + 1

        want = set()
        for b in range(N_BATCHES):
            w = edges[b % 2]
            ents = [pe.data("t-%d" % (i % 13), b * PER_BATCH + i + 1, {"b": b}, slot=b % 2) for i in range(PER_BATCH)]
            want |= {(e[3], e[5]) for e in ents}
            w.send(*ents)
            for e in edges:
                e.poll_acks(1, on_ack)
        deadline = time.time() + 120
        while not want <= set(acks):
            assert time.time() < deadline, "missing acks: %d" % len(want - set(acks))
            for e in edges:
                e.poll_acks(50, on_ack)
        for e in edges:
            e.poll_acks(300, on_ack)  # any late duplicate ack would show up here
        dup = [k for k, v in acks.items() if v != 1]
        assert not dup, "acked more than once: %r" % dup[:5]
        assert set(acks) == want
        n = env.sql("SELECT count(*) FROM telemetry")[0][0]
        assert n == len(want), n
        per = [p.metric("sluice_persister_rows_committed_total") for p in ps]
        assert all(x and x > 0 for x in per) and sum(per) == len(want), per
        print("ok: %d rows, split %s, no loss, no duplicates" % (n, per))
        for p in ps:
            assert p.stop() == 0
    print("PASS")


if __name__ == "__main__":
    main()
