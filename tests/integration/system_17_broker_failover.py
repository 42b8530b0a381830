#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_17_broker_failover: two notifiers given two brokers (--broker A,B), independent
Mosquittos. While devices stream data, A is killed (SIGKILL):

- every notifier client moves to B; data reaches a subscriber on B again, B's retained statuses
  are right for every device (republished there: B had none), a command published on B gets to
  its device and exactly one result, a disconnect meanwhile shows on B;
- A comes back (its persisted statuses are stale: the device that left still shows online
  there): the clients return to A within the probe period, A's statuses are right again, data
  and commands flow through A."""
import time

import mqtttest
from slstack import Stack, check, log, main, publish, wait_for, PREFIX

PORT = 24850  # system_NN: 24000 + 50 * NN (system.cmake)


def retained_status(port, devs):
    """A fresh subscription's view of the retained statuses of devs on the broker at port."""
    sub = mqtttest.Subscriber(port, [PREFIX + "/+/status"])
    try:
        wait_for(lambda: set(devs) <= set(sub.status(PREFIX)), "retained statuses of %d devices" % len(devs))
        return sub.status(PREFIX)
    finally:
        sub.close()


def scenario():
    with Stack(PORT, edges=1, notifiers=2, brokers=2) as s:
        s.start()
        pa, pb = s.mqtt_ports
        a_uri, b_uri = "tcp://127.0.0.1:%d" % pa, "tcp://127.0.0.1:%d" % pb
        wait_for(lambda: "members=ntf-0,ntf-1" in s.edge(0).output(), "the edge's ring of two")
        ma, mb = s.mqtt(broker=0), s.mqtt(broker=1)
        devs = ["bf-%d" % i for i in range(6)]
        dd = {d: s.device(d) for d in devs}
        wait_for(lambda: all((ma.last("%s/%s/status" % (PREFIX, d)) or {}).get("online") for d in devs),
                 "statuses on A")
        check(mb.count() == 0, "B got messages while A was up: %r" % mb.all()[:3])
        run = s.devsim(10, duration=14, rate=20, prefix="bfs", background=True, name="devsim-bfs",
                       extra=("--ack-timeout-ms", "20000"))
        wait_for(lambda: sum(1 for t, _, _ in ma.all() if t.endswith("/data")) >= 100, "data on A")

        # --- A dies
        s.brokers[0].proc.kill9()
        t_kill = time.monotonic()
        wait_for(lambda: sum(1 for t, _, _ in mb.all() if t.endswith("/data")) >= 100, "data on B")
        log("data on B %.2fs after A died" % (time.monotonic() - t_kill))
        st = retained_status(pb, devs)
        for d in devs:
            check(st[d]["online"] is True and st[d]["edge"] == "edge-a", "%s on B: %r" % (d, st[d]))
        publish(pb, "%s/bf-1/cmd" % PREFIX, {"id": "on-b", "body": 1})
        check(dd["bf-1"].expect("cmd")["id"] == "on-b", "command through B")
        dd["bf-1"].send({"t": "res", "id": "on-b", "ok": True})
        wait_for(lambda: mb.on("%s/bf-1/cmd/on-b/result" % PREFIX), "result on B")
        dd["bf-2"].close()
        wait_for(lambda: (mb.last("%s/bf-2/status" % PREFIX) or {}).get("online") is False, "bf-2 offline on B")
        for k in range(2):
            out = s.ntf(k).output()
            check(out.count("event=mqtt_connected client=sys-%d-%d" % (PORT, k)) >= 2 and b_uri in out,
                  "ntf-%d's clients on B" % k)
        log("on B: statuses republished and right, command round trip, a disconnect")

        # --- A comes back, with its stale statuses; the notifiers return to it
        s.brokers[0].start()
        wait_for(lambda: all(s.ntf(k).output().count("event=mqtt_broker_return") >= 3 for k in range(2)),
                 "every client back to A", timeout=30)
        st = retained_status(pa, devs)
        wait_for(lambda: retained_status(pa, devs)["bf-2"]["online"] is False, "bf-2 offline on A again")
        for d in devs:
            if d != "bf-2":
                check(st[d]["online"] is True, "%s on A: %r" % (d, st[d]))
        ma2 = s.mqtt(broker=0)
        wait_for(lambda: sum(1 for t, _, _ in ma2.all() if t.endswith("/data")) >= 50, "data on A again")
        publish(pa, "%s/bf-3/cmd" % PREFIX, {"id": "on-a", "body": 2})
        check(dd["bf-3"].expect("cmd")["id"] == "on-a", "command through A")
        dd["bf-3"].send({"t": "res", "id": "on-a", "ok": False})
        wait_for(lambda: ma2.on("%s/bf-3/cmd/on-a/result" % PREFIX), "result on A")
        time.sleep(1)
        check(len(mb.on("%s/bf-1/cmd/on-b/result" % PREFIX)) == 1, "one result for on-b")
        check(len(ma2.on("%s/bf-3/cmd/on-a/result" % PREFIX)) == 1, "one result for on-a")
        log("back on A: statuses right, data, command round trip (%s)" % a_uri)
        r = run.result()
        check(r["acked"] == r["sent"], "devsim: %d of %d acked" % (r["acked"], r["sent"]))
        for d in devs:
            if d != "bf-2":
                dd[d].close()


if __name__ == "__main__":
    main(scenario)
