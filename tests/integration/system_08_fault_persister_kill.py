#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_08_fault_persister_kill: kill -9 the persister in the middle of a stream (60 devices x 20 msg/s
for 10 s over two edges), start it again 1 s later; three times (each kill lands on a random point
of the persister's receive/commit/ack cycle). Whatever it held uncommitted was never acked,
so the devices resend it: at the end every message sent is acked and stored exactly once, and
every device's status is offline (they left when devsim ended)."""
import time

from slstack import Stack, check_final_status, log, main, stream_with_fault, wait_for

PORT = 24400  # system_NN: 24000 + 50 * NN (system.cmake)

N = 60
KILLS = 3


def scenario():
    with Stack(PORT, edges=2) as s:
        s.start()

        def rows():
            return s.sql("select count(*) from telemetry where device_id like 'pk-%%'")[0][0]

        def fault():
            for i in range(KILLS):
                n = rows()
                s.persister.kill9()
                log("persister killed (-9), kill %d of %d, %d rows stored" % (i + 1, KILLS, n))
                time.sleep(1)
                s.persister.start()
                log("persister restarted and ready")
                if i + 1 < KILLS:  # mid-stream again before the next kill
                    wait_for(lambda: rows() > n + N, "rows flowing again after the restart")

        r = stream_with_fault(s, "pk", N, rate=20, duration=10, fault=fault)
        log("resent %d, reconnects %d" % (r["resent"], r["reconnects"]))
        check_final_status(s, "pk", N)


if __name__ == "__main__":
    main(scenario)
