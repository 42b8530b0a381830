#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_01_acks: every ack arrives only for a row already visible in telemetry, over many
batches with a heartbeat between them; dedup: resent seqs are acked again and
stored once, the first body kept.

Against a real PostgreSQL; every ack is checked to follow a visible row
(persister_common.collect)."""
import time

from persister_common import collect, core_persister, pe
from proc import wait_for
from wire import DATA, HEARTBEAT, entry

PORT = 22050  # persister_NN: 22000 + 50 * NN (persister.cmake)


def main():
    with core_persister(PORT) as (env, p, edge):
        # acks only for visible rows, many batches; a heartbeat in between is ignored.
        want = set()
        for b in range(20):
            ents = [pe.data("dev-%d" % (i % 7), b * 100 + i, {"b": b, "i": i}, ts=1764358200000 + i)
                    for i in range(1, 31)]
            ents.append(entry(HEARTBEAT, 0, 0, "", 0, 3, None, time.time_ns()))
            edge.send(*ents)
            want |= {(e[3], e[5]) for e in ents if e[0] == DATA}
        collect(edge, env, want)
        n = env.sql("SELECT count(*) FROM telemetry")[0][0]
        assert n == 600, n
        r = env.sql("SELECT device_ts, edge_id FROM telemetry WHERE device_id='dev-1' AND seq=1")
        assert r[0][1] == "edge-a:7000", r
        assert int(r[0][0].timestamp() * 1000) == 1764358200001, r
        print("ok: 600 rows acked only once visible")

        # dedup: resend 100 of them (same seqs, different bodies): acked again, stored once, first body kept.
        edge.acks.clear()
        ents = [pe.data("dev-%d" % (i % 7), i, {"dup": True}) for i in range(1, 31)]
        edge.send(*ents)
        edge.send(*ents)
        collect(edge, env, {(e[3], e[5]) for e in ents})
        assert env.sql("SELECT count(*) FROM telemetry")[0][0] == 600
        assert env.sql("SELECT count(*) FROM telemetry WHERE body ? 'dup'")[0][0] == 0
        wait_for(lambda: (p.metric("sluice_persister_rows_duplicate_total") or 0) >= 60, "duplicate counter", 10)
        print("ok: dedup")
    print("PASS")


if __name__ == "__main__":
    main()
