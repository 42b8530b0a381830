#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_05_cmd_roundtrip: operator commands through MQTT, seen from outside.
- publish P/<dev>/cmd {id, body}: the device (on either edge) gets cmd{id, body}, answers res,
  and exactly one result {ok, body} appears on P/<dev>/cmd/<id>/result;
- a device that is not connected: result {ok:false, error:"offline"};
- a device that leaves before answering: {ok:false, error:"disconnected"};
- a device that stays but never answers: {ok:false, error:"timeout"} (--cmd-timeout-ms 3000);
- a late res after its timeout does not produce a second result."""
import time

from slstack import Stack, check, log, main, publish, wait_for, PREFIX

PORT = 24250  # system_NN: 24000 + 50 * NN (system.cmake)


def scenario():
    with Stack(PORT, edges=2, notifier_extra=("--cmd-timeout-ms", "3000")) as s:
        s.start()
        m = s.mqtt()

        def res_topic(dev, cid):
            return "%s/%s/cmd/%s/result" % (PREFIX, dev, cid)

        def wait_online(dev, edge):
            wait_for(lambda: (m.last("%s/%s/status" % (PREFIX, dev)) or {}).get("edge") == edge and
                     m.last("%s/%s/status" % (PREFIX, dev))["online"], "%s online on %s" % (dev, edge))

        # round trip on each edge
        for i in range(2):
            dev = "cmd-%d" % i
            d = s.device(dev, edge=i)
            wait_online(dev, s.edge_ids[i])
            cid = "c%d.1" % i
            publish(s.mqtt_port, "%s/%s/cmd" % (PREFIX, dev), {"id": cid, "body": {"valve": "open", "n": i}})
            c = d.expect("cmd")
            check(c["id"] == cid and c["body"] == {"valve": "open", "n": i}, "cmd frame %r" % c)
            d.send({"t": "res", "id": cid, "ok": True, "body": {"done": 1, "by": dev}})
            r = wait_for(lambda: m.last(res_topic(dev, cid)), "result of %s" % cid)
            check(r == {"ok": True, "body": {"done": 1, "by": dev}}, "result %r" % r)
            # a failing answer without body
            publish(s.mqtt_port, "%s/%s/cmd" % (PREFIX, dev), {"id": "c%d.2" % i, "body": None})
            c = d.expect("cmd")
            d.send({"t": "res", "id": c["id"], "ok": False})
            r = wait_for(lambda: m.last(res_topic(dev, c["id"])), "result of %s" % c["id"])
            check(r["ok"] is False and r.get("body") is None and "error" not in r, "result %r" % r)
            log("edge %s: cmd round trip ok: %r" % (s.edge_ids[i], r))
            d.close()

        # offline: never-connected device, and a device that was connected and left
        publish(s.mqtt_port, "%s/ghost/cmd" % PREFIX, {"id": "g1", "body": 1})
        r = wait_for(lambda: m.last(res_topic("ghost", "g1")), "offline result for ghost")
        check(r == {"ok": False, "error": "offline"}, "never-connected device: %r" % r)
        wait_for(lambda: (m.last("%s/cmd-0/status" % PREFIX) or {}).get("online") is False, "cmd-0 offline")
        publish(s.mqtt_port, "%s/cmd-0/cmd" % PREFIX, {"id": "off1", "body": 1})
        r = wait_for(lambda: m.last(res_topic("cmd-0", "off1")), "offline result for cmd-0")
        check(r == {"ok": False, "error": "offline"}, "left device: %r" % r)
        log("offline results ok")

        # disconnected before answering
        d = s.device("cmd-disc", edge=1)
        wait_online("cmd-disc", "edge-b")
        publish(s.mqtt_port, "%s/cmd-disc/cmd" % PREFIX, {"id": "d1", "body": "reboot"})
        check(d.expect("cmd")["id"] == "d1", "cmd d1")
        d.close()
        r = wait_for(lambda: m.last(res_topic("cmd-disc", "d1")), "disconnected result")
        check(r == {"ok": False, "error": "disconnected"}, "disconnected: %r" % r)
        log("disconnected result ok")

        # timeout, then a late answer produces no second result
        d = s.device("cmd-slow", edge=0)
        wait_online("cmd-slow", "edge-a")
        publish(s.mqtt_port, "%s/cmd-slow/cmd" % PREFIX, {"id": "s1", "body": {}})
        check(d.expect("cmd")["id"] == "s1", "cmd s1")
        r = wait_for(lambda: m.last(res_topic("cmd-slow", "s1")), "timeout result", timeout=30)
        check(r == {"ok": False, "error": "timeout"}, "timeout: %r" % r)
        d.send({"t": "res", "id": "s1", "ok": True})
        d.send({"t": "ping"})
        d.expect("pong")
        time.sleep(1.5)
        # exactly one result for every command
        for dev, cid in (("cmd-0", "c0.1"), ("cmd-1", "c1.1"), ("cmd-0", "c0.2"), ("cmd-1", "c1.2"), ("ghost", "g1"),
                         ("cmd-0", "off1"), ("cmd-disc", "d1"), ("cmd-slow", "s1")):
            n = len(m.on(res_topic(dev, cid)))
            check(n == 1, "%d results for %s/%s, expected exactly 1" % (n, dev, cid))
        log("timeout result ok; every command got exactly one result")
        d.close()


if __name__ == "__main__":
    main(scenario)
