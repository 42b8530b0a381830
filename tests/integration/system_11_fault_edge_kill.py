#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_11_fault_edge_kill: kill -9 one of two edges in the middle of a stream (80 devices x 10 msg/s
for 14 s, half on each edge). Its devices reconnect to the other edge and resend what was not
acked: every message acked and stored exactly once; while they run, every device is online on
the surviving edge; after they leave and the dead edge's timeout (10 s) has passed, every device
is offline on the surviving edge (the dead edge's stale sessions never override a newer one)."""
import time

from slstack import (Stack, check, check_final_status, log, main, retained_status,
                     stream_with_fault, wait_for)

PORT = 24550  # system_NN: 24000 + 50 * NN (system.cmake)

N = 80


def scenario():
    with Stack(PORT, edges=2) as s:
        s.start()
        killed = [0.0]

        def fault():
            s.edge(0).kill9()
            killed[0] = time.monotonic()
            log("edge-a killed (-9)")

        def during(run):
            devs = ["ek-%d" % i for i in range(N)]

            def all_on_b():
                st = retained_status(s.mqtt_port, devs, timeout=10)
                return all(st[d]["online"] is True and st[d]["edge"] == "edge-b" for d in devs)
            wait_for(all_on_b, "every device online on edge-b", timeout=40)
            check(run.alive(), "devsim ended before the status could be checked mid-run")
            log("mid-run: all %d devices online on edge-b" % N)

        r = stream_with_fault(s, "ek", N, rate=10, duration=14, fault=fault, during=during)
        check(r["reconnects"] >= N // 2, "only %d reconnects for %d devices on the killed edge" %
              (r["reconnects"], N // 2))
        log("resent %d, reconnects %d" % (r["resent"], r["reconnects"]))
        # let the notifier's and persister's edge timeout for edge-a pass before judging status
        left = 12 - (time.monotonic() - killed[0])
        if left > 0:
            time.sleep(left)
        check_final_status(s, "ek", N, edge="edge-b")
        n = s.sql("select count(*) from device_sessions where edge_id='edge-a' and disconnected_at is null")[0][0]
        check(n == 0, "%d sessions of the dead edge still open in device_sessions" % n)
        log("device_sessions: no session of edge-a left open")


if __name__ == "__main__":
    main(scenario)
