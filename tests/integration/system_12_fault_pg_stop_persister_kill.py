#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_12_fault_pg_stop_persister_kill: PostgreSQL stops in the middle of a stream (60 devices x 20
msg/s for 10 s over two edges); while it is down, the persister (holding rows it cannot commit) is
killed -9 and started again; 5 s after the stop PostgreSQL comes back. The rows the dead persister
held were never acked (acks follow COMMIT), so the devices resend them: every message is acked
and stored exactly once, and every device's status is offline at the end."""
import time

from slstack import Stack, check, check_final_status, log, main, stream_with_fault, wait_for

PORT = 24600  # system_NN: 24000 + 50 * NN (system.cmake)

N = 60


def scenario():
    with Stack(PORT, edges=2) as s:
        s.start()

        def fault():
            s.pg_stop()
            log("PostgreSQL stopped")
            t0 = time.monotonic()
            # the persister now holds rows it cannot commit
            held = wait_for(lambda: (s.persister.metric("sluice_persister_pending_messages") or 0) > 0 and
                            s.persister.metric("sluice_persister_pending_messages"), "persister holding uncommitted rows", timeout=20)
            time.sleep(1)
            s.persister.kill9()
            log("persister killed (-9) while holding %d uncommitted rows" % held)
            s.persister.start(wait=False)  # not ready until the database is back
            time.sleep(max(0.0, 5 - (time.monotonic() - t0)))
            s.pg_start()
            log("PostgreSQL started again")
            s.persister.wait_ready()
            log("persister ready")

        r = stream_with_fault(s, "pgk", N, rate=20, duration=10, fault=fault)
        check(r["resent"] > 0, "nothing resent although the persister died holding rows")
        log("resent %d, reconnects %d" % (r["resent"], r["reconnects"]))
        check_final_status(s, "pgk", N)


if __name__ == "__main__":
    main(scenario)
