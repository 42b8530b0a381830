#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_05_unroutable: an ack for a gone edge is dropped and counted; the row is stored.

Against a real PostgreSQL; every ack is checked to follow a visible row
(persister_common.collect)."""
from persister_common import core_persister, pe
from proc import wait_for

PORT = 22250  # persister_NN: 22000 + 50 * NN (persister.cmake)


def main():
    with core_persister(PORT) as (env, p, edge):
        # an ack for an edge that is gone is dropped and counted.
        gone = pe.Edge([p.pull], ["tcp://127.0.0.1:1"], edge_id="edge-gone:1", worker=0)
        gone.send(pe.data("gone-dev", 1, {"x": 1}))
        wait_for(lambda: (p.metric("sluice_persister_acks_unroutable_total") or 0) >= 1, "unroutable ack counted", 30)
        assert env.sql("SELECT count(*) FROM telemetry WHERE device_id='gone-dev'")[0][0] == 1
        gone.close()
        print("ok: unroutable acks counted")
    print("PASS")


if __name__ == "__main__":
    main()
