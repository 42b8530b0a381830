#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""notifier_07_mqtt_acl: the broker configuration scripts/demo ships, made by the same generator
(scripts/stack.sh mqtt_setup: password file, deploy/mosquitto.acl, no anonymous clients), with the
real notifier logged in as sluice-notifier (--password-file) and an operator:
- the notifier does its whole job under the ACL: retained status, data, a command from the
  operator to a device and its result back;
- an anonymous client and a wrong password are refused;
- the operator cannot set a retained status, nor publish data or a command result: nothing of
  it reaches any subscriber or stays retained (while the same publish with the notifier's
  credentials does: the check can see a retained status when there is one)."""
import json
import os
import subprocess
import time

import paho.mqtt.client as mqtt

import mqtttest
import proc
from ntftest import CMD, CONNECT, DATA, RES, Edge, Notifier, check, entry, wait_for

BROKER, NTF = 23140, 23142  # notifier_NN: 23000 + 20 * NN (notifier.cmake)
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def refused(auth):
    """Whether the broker refuses a connection with auth (None: anonymous)."""
    c = mqtt.Client()
    if auth:
        c.username_pw_set(*auth)
    rc = []
    c.on_connect = lambda c, ud, flags, r: rc.append(r)
    c.connect("127.0.0.1", BROKER)
    c.loop_start()
    try:
        wait_for(lambda: rc, "CONNACK")
    finally:
        c.loop_stop()
        c.disconnect()
    return rc[0] != 0


def main():
    dir = proc.workdir("sl-ntf-acl-")
    mq = os.path.join(dir, "mqtt")
    r = subprocess.run(["bash", "-c", '. "$1/scripts/stack.sh" && mqtt_setup "$2" "$3"', "-", TOP, mq, str(BROKER)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    check(r.returncode == 0, "mqtt_setup: %s" % r.stdout.decode(errors="replace"))
    pw = {u: open(os.path.join(mq, u + ".password")).read().strip() for u in ("notifier", "operator")}
    ntf_auth, op_auth = ("sluice-notifier", pw["notifier"]), ("operator", pw["operator"])
    broker = proc.Proc("mosquitto", [mqtttest.MOSQUITTO, "-c", os.path.join(mq, "mosquitto.conf")],
                       os.path.join(dir, "mosquitto.log"), ready=proc.port_open(BROKER))
    ntf = Notifier(NTF, BROKER, dir, extra=("--username", "sluice-notifier", "--password-file",
                                            os.path.join(mq, "notifier.password")))
    ok, subs = False, []
    try:
        broker.start()
        ntf.start()
        op = mqtttest.Subscriber(BROKER, ["devices/#"], auth=op_auth)
        subs.append(op)
        import zmq
        ctx = zmq.Context()
        e = Edge(ctx, ntf.pull, ntf.router, "edge-acl")
        t0 = time.time_ns()
        e.send(entry(CONNECT, 1, 1, "d-1", epoch=t0, at_ns=t0, peer="p"),
               entry(DATA, 1, 1, "d-1", epoch=t0, seq=1, at_ns=t0, body=b"\x81\xa1v\x01"))
        wait_for(lambda: (op.last("devices/d-1/status") or {}).get("online") and op.last("devices/d-1/data"),
                 "status and data of d-1 at the operator", pump=e.pump)
        mqtttest.publish(BROKER, "devices/d-1/cmd", {"id": "c1", "body": 1}, auth=op_auth)
        c = wait_for(lambda: e.received(CMD, id="c1"), "c1 at the edge", pump=e.pump)[0]
        # routed only once the broker had the command's retained marker (the notifier's own
        # internal topics must be writable and readable for it: every notifier holds every marker)
        marker = "devices/_sluice/pending/d-1/c1"
        mk = mqtttest.Subscriber(BROKER, ["devices/_sluice/pending/#"], auth=ntf_auth)
        subs.append(mk)
        got = wait_for(lambda: mk.received(marker), "the marker of c1 retained at the broker", pump=e.pump)
        # (it names the worker by the public part of its identity: the secret stays off the broker)
        check(got[0][1] and isinstance(got[0][0], dict) and got[0][0].get("edge") == "edge-acl" and
              got[0][0].get("reply") == "edge-acl/0" and e.reply != "edge-acl/0", "marker %r" % got)
        check(ntf.metric("sluice_notifier_commands_total{result=\"lost\"}", 0) == 0, "markers lost")
        e.send(entry(RES, c["slot"], c["gen"], "d-1", epoch=t0, id="c1", ok=True))
        wait_for(lambda: op.last("devices/d-1/cmd/c1/result"), "result of c1 at the operator", pump=e.pump)
        wait_for(lambda: mk.received(marker)[-1][0] is None, "the marker of c1 cleared", pump=e.pump)
        print("the notifier works under the ACL: status, data, command, its marker and result")

        check(refused(None), "an anonymous client was let in")
        check(refused(("sluice-notifier", "wrong")), "a wrong password was let in")
        check(not refused(op_auth), "the operator was refused")

        # The operator tries what only the notifier may do.
        forged = {"online": True, "edge": "evil", "at": 1, "epoch": t0 * 2, "reply": "evil/0", "inc": 1,
                  "slot": 1, "gen": 1}
        mqtttest.publish(BROKER, "devices/d-2/status", forged, retain=True, auth=op_auth)
        mqtttest.publish(BROKER, "devices/d-1/status", forged, retain=True, auth=op_auth)
        mqtttest.publish(BROKER, "devices/d-1/data", {"dev": "d-1", "seq": 99}, auth=op_auth)
        mqtttest.publish(BROKER, "devices/d-1/cmd/c1/result", {"ok": False}, auth=op_auth)
        # The notifier's own credentials can (the positive control), on another device.
        mqtttest.publish(BROKER, "devices/d-3/status", {"online": False, "edge": "x", "at": 1, "epoch": 1},
                         retain=True, auth=ntf_auth)
        fresh = mqtttest.Subscriber(BROKER, ["devices/+/status"], auth=ntf_auth)
        subs.append(fresh)
        wait_for(lambda: fresh.last("devices/d-3/status"), "the control status")
        time.sleep(0.5)
        st = fresh.status()
        check("d-2" not in st, "the operator set a retained status: %r" % st.get("d-2"))
        check(st["d-1"]["edge"] == "edge-acl", "the operator replaced d-1's status: %r" % st["d-1"])
        seen = [(t, p) for (t, p, _) in op.all() if t in ("devices/d-2/status", "devices/d-1/data",
                                                            "devices/d-1/cmd/c1/result") and p not in (None,)]
        check(all(not (isinstance(p, dict) and (p.get("edge") == "evil" or p.get("seq") == 99 or
                                                p.get("ok") is False)) for _, p in seen),
              "the operator's publishes got through: %s" % json.dumps(seen))
        check(ntf.metric("sluice_notifier_status_ignored_total", 0) == 0, "statuses ignored")
        print("anonymous and wrong password refused; the operator's status, data and result went nowhere")
        e.close()
        ctx.term()
        ntf.stop(expect=0)
        ok = True
    finally:
        for s in subs:
            s.close()
        broker.stop()
        proc.kill_all()
        proc.finish(dir, ok)


if __name__ == "__main__":
    main()
