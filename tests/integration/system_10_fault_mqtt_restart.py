#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_10_fault_mqtt_restart: restart Mosquitto (down 2 s) in the middle of a stream (60 devices x
10 msg/s for 10 s over two edges). Data storage is not affected: every message acked and stored
exactly once. The notifier reconnects: while the devices are still connected a fresh subscriber
sees all of them online, a device that arrived and one that left while the broker was down
have the right status; a command round trip works after the restart; when they leave, all go
offline."""
import time

from slstack import (Stack, check, check_final_status, log, main, publish, retained_status,
                     stream_with_fault, wait_for, PREFIX)

PORT = 24500  # system_NN: 24000 + 50 * NN (system.cmake)

N = 60


def scenario():
    with Stack(PORT, edges=2) as s:
        s.start()
        probe = s.device("mq-probe", edge=1)
        gone = s.device("mq-gone", edge=0)
        wait_for(lambda: retained_status(s.mqtt_port, ["mq-gone"])["mq-gone"]["online"] is True, "mq-gone online")
        late = []

        def fault():
            s.broker.stop()
            # act only once the notifier itself saw the broker go (its /readyz turns 503)
            wait_for(lambda: not s.notifier.ready(), "notifier not ready while the broker is down", timeout=20)
            log("Mosquitto stopped, notifier not ready; while it is down, mq-gone leaves and mq-late arrives")
            gone.close()
            late.append(s.device("mq-late", edge=0))
            time.sleep(2)
            s.broker.start()
            log("Mosquitto started again")
            s.notifier.wait_ready()
            log("notifier ready again")

        def during(run):
            devs = ["mr-%d" % i for i in range(N)]

            def all_online():
                st = retained_status(s.mqtt_port, devs, timeout=10)
                return all(st[d]["online"] is True for d in devs)
            wait_for(all_online, "all devices online after the broker restart", timeout=30)
            check(run.alive(), "devsim ended before the status could be checked mid-run")
            log("mid-run: all %d devices online (fresh subscriber after restart)" % N)
            wait_for(lambda: retained_status(s.mqtt_port, ["mq-late"])["mq-late"]["online"] is True,
                     "mq-late (connected while the broker was down) online", timeout=30)
            wait_for(lambda: retained_status(s.mqtt_port, ["mq-gone"])["mq-gone"]["online"] is False,
                     "mq-gone (left while the broker was down) offline", timeout=30)
            log("changes during the outage published after it: mq-late online, mq-gone offline")
            m = s.mqtt(topics=[PREFIX + "/mq-probe/cmd/+/result"])
            # the notifier may need a moment to resubscribe to cmd topics: retry with new ids
            got = None
            for i in range(30):
                publish(s.mqtt_port, "%s/mq-probe/cmd" % PREFIX, {"id": "p%d" % i, "body": i})
                try:
                    c = probe.expect("cmd", timeout=1)
                except Exception:
                    continue
                probe.send({"t": "res", "id": c["id"], "ok": True, "body": "after-restart"})
                got = wait_for(lambda: m.last("%s/mq-probe/cmd/%s/result" % (PREFIX, c["id"])), "cmd result")
                break
            check(got == {"ok": True, "body": "after-restart"}, "command after broker restart: %r" % got)
            log("command round trip after the broker restart ok")
            m.close()

        r = stream_with_fault(s, "mr", N, rate=10, duration=10, fault=fault, during=during)
        log("resent %d, reconnects %d" % (r["resent"], r["reconnects"]))
        check_final_status(s, "mr", N)
        probe.close()
        late[0].close()


if __name__ == "__main__":
    main(scenario)
