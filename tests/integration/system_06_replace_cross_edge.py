#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_06_replace_cross_edge: newest connection of a device wins.
- device on edge A, same device connects to edge B: A's connection gets err{code:"replaced"} and
  is closed; status stays online on B (A's late disconnect, older epoch, does not flip it);
- a command goes to the connection on B; data on B is acked and stored;
- the same on one edge (second connection to the same edge replaces the first)."""
import time

from slstack import Stack, check, log, main, publish, wait_for, PREFIX, retained_status

PORT = 24300  # system_NN: 24000 + 50 * NN (system.cmake)


def scenario():
    with Stack(PORT, edges=2) as s:
        s.start()
        m = s.mqtt()
        dev = "repl-1"
        st_topic = "%s/%s/status" % (PREFIX, dev)
        a = s.device(dev, edge=0)
        a.data(1, {"on": "a"})
        a.acks([1])
        wait_for(lambda: (m.last(st_topic) or {}).get("online") is True, "online on A")
        ep_a = m.last(st_topic)["epoch"]
        b = s.device(dev, edge=1)
        e = a.expect_err("replaced", timeout=30)
        log("old connection on edge-a: %r" % e)
        st = wait_for(lambda: (m.last(st_topic) or {}).get("edge") == "edge-b" and m.last(st_topic), "status on B")
        check(st["online"] is True and st["epoch"] > ep_a, "status after replace %r" % st)
        time.sleep(2)  # let any late disconnect of A reach the notifier
        st = m.last(st_topic)
        check(st["online"] is True and st["edge"] == "edge-b", "status flipped after replace: %r" % st)
        rs = retained_status(s.mqtt_port, [dev])[dev]
        check(rs["online"] is True and rs["edge"] == "edge-b", "retained status %r" % rs)
        log("status stays online on edge-b: %r" % rs)
        b.data(2, {"on": "b"})
        b.acks([2])
        rows = s.rows(dev)
        check([(r[1], r[4]) for r in rows] == [(1, "edge-a"), (2, "edge-b")], "rows %r" % rows)
        publish(s.mqtt_port, "%s/%s/cmd" % (PREFIX, dev), {"id": "r1", "body": 1})
        check(b.expect("cmd")["id"] == "r1", "cmd to B")
        b.send({"t": "res", "id": "r1", "ok": True})
        r = wait_for(lambda: m.last("%s/%s/cmd/r1/result" % (PREFIX, dev)), "result r1")
        check(r["ok"] is True, "result %r" % r)
        log("data and command go through edge-b")

        # same edge: B2 replaces B
        b2 = s.device(dev, edge=1)
        b.expect_err("replaced", timeout=30)
        wait_for(lambda: m.last(st_topic)["epoch"] > st["epoch"] and m.last(st_topic)["online"], "newer epoch on B")
        time.sleep(1)
        st2 = m.last(st_topic)
        check(st2["online"] is True and st2["edge"] == "edge-b", "same-edge replace status %r" % st2)
        b2.data(3, {})
        b2.acks([3])
        log("same-edge replace ok; status %r" % st2)
        # and back to A: B2 is replaced across edges again
        a2 = s.device(dev, edge=0)
        b2.expect_err("replaced", timeout=30)
        wait_for(lambda: m.last(st_topic)["edge"] == "edge-a" and m.last(st_topic)["online"], "online on A again")
        a2.close()
        wait_for(lambda: m.last(st_topic)["online"] is False, "offline after the last connection closed")
        log("final status: %r" % m.last(st_topic))


if __name__ == "__main__":
    main(scenario)
