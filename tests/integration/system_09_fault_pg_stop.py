#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_09_fault_pg_stop: stop PostgreSQL (fast shutdown) for 5 s in the middle of a stream (60 devices
x 20 msg/s for 10 s over two edges), then start it again. Nothing is acked while the database is
down; the persister retries; at the end every message is acked and stored exactly once and every
device's status is offline."""
import time

from slstack import Stack, check_final_status, log, main, stream_with_fault

PORT = 24450  # system_NN: 24000 + 50 * NN (system.cmake)

N = 60


def scenario():
    with Stack(PORT, edges=2) as s:
        s.start()

        def fault():
            s.pg_stop()
            log("PostgreSQL stopped")
            time.sleep(5)
            s.pg_start()
            log("PostgreSQL started again")

        r = stream_with_fault(s, "pg", N, rate=20, duration=10, fault=fault)
        log("resent %d, reconnects %d" % (r["resent"], r["reconnects"]))
        check_final_status(s, "pg", N)


if __name__ == "__main__":
    main(scenario)
