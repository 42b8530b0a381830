#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_06_sigterm: SIGTERM commits and acks the batch it holds, then exits 0.

Against a real PostgreSQL; every ack is checked to follow a visible row
(persister_common.collect)."""
from persister_common import Env, collect, pe
from proc import wait_for

PORT = 22300  # persister_NN: 22000 + 50 * NN (persister.cmake)


def main():
    with Env(PORT) as env:
        # SIGTERM with a batch held (batch-ms 60 s): it is committed and acked before exit.
        p2 = env.persister(1, ["--batch-ms", "60000", "--batch-max", "1000"])
        p2.wait_ready()
        e2 = pe.Edge([p2.pull], [p2.router], edge_id="edge-t:7000")
        ents = [pe.data("term", i, {"i": i}) for i in range(1, 11)]
        e2.send(*ents)
        wait_for(lambda: p2.metric("sluice_persister_pending_messages") == 10, "10 rows pending", 30)
        assert env.sql("SELECT count(*) FROM telemetry WHERE device_id='term'")[0][0] == 0
        p2.signal(15)
        seen = collect(e2, env, {(e[3], e[5]) for e in ents})
        assert len(seen) == 10
        assert p2.stop() == 0, "persister exit code after SIGTERM"
        assert env.sql("SELECT count(*) FROM telemetry WHERE device_id='term'")[0][0] == 10
        e2.close()
        print("ok: SIGTERM commits and acks the held batch")
    print("PASS")


if __name__ == "__main__":
    main()
