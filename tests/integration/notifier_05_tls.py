#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Notifier against a Mosquitto that only speaks TLS and wants a password
(throwaway CA and certificates made with openssl in the test's dir):

1. --broker ssl://127.0.0.1:P --tls-ca --username --password: the control
   client and both --pool publisher children connect (over TLS, as user
   ntf: the broker's log says so), data of devices of both children reaches
   a TLS subscriber, the retained status too, and a command round trip works;
2. refused connections fail loudly and visibly, but once: a CA that did not
   sign the broker's certificate, a wrong password, and a certificate of
   the right CA issued for another host name (hostname verification is on).
   Each time /readyz stays 503, no client connects, the notifier keeps
   retrying (the broker sees >= 3 attempts per client) and logs exactly one
   mqtt_connect_failed line per client, naming the cause, then exits 0 on
   SIGTERM;
3. configurations that cannot be right are refused at start (exit 1, one
   line): --tls-ca with a tcp:// broker (it would send the password in
   clear), and an ssl:// broker with a --tls-ca file that does not exist.
"""
import json
import os
import re
import sys
import time

import msgpack

import mqtttest
import proc
from ntftest import CMD, CONNECT, DATA, RES, Env, Notifier, check, entry, wait_for

# notifier_NN: the 20 ports from 23000 + 20 * NN (notifier.cmake); notifier_20_qos0_tls runs this
# scenario again from its own base with --data-qos 0
BASE = 23100
CLIENTS = 3  # the control client and ntftest's --pool 2 publishers
USERS = {"ntf": "ntf-secret", "tester": "tester-secret"}
TESTER = ("tester", USERS["tester"])
DEVS = ["tls-0", "tls-1"]  # fnv1a(dev) % 2: publisher 2 and publisher 1
FAILED = re.compile(r"level=(\w+) .*event=mqtt_connect_failed client=(\S+) .* err=(.*)")


def refused_start(env, port_base, broker, name, extra):
    """A notifier that must not get in: started without waiting for readiness."""
    n = Notifier(port_base, broker.port, env.dir, broker_uri=broker.uri, name=name,
                 extra=["--client-id", name] + extra + EXTRA)
    return n.start(wait=False)


def refused_check(n, broker, name, why, level="error"):
    """After >= 3 connection attempts per client at its broker: not ready, nothing
    connected, one failure line per client naming why (at that level), a clean exit. (paho
    left at its default MQTT version makes 2 connections per attempt, 3.1.1
    then 3.1: count 6 per client, so a notifier that logs every attempt is
    caught either way.)"""
    def not_in():
        n.check_alive()
        check("event=mqtt_connected" not in n.output(), "%s: a client connected:\n%s" % (name, n.output()))

    wait_for(lambda: broker.proc.output().count("New connection from") >= 6 * CLIENTS,
             "%s: 3 connection attempts per client at the broker" % name, pump=not_in)
    check(n.http("/readyz")[0] == 503, "%s: /readyz %r, want 503" % (name, n.http("/readyz")))
    check(n.metric("sluice_notifier_mqtt_connected") == 0, "%s: a client connected" % name)
    lines = [ln for ln in n.output().splitlines() if "event=mqtt_connect_failed" in ln]
    found = [f for f in (FAILED.search(ln) for ln in lines) if f]
    per = {}
    for f in found:
        per.setdefault(f.group(2), []).append(f)
    # One line per cause, not per attempt: each client logged its first refusal,
    # naming why. A second line is allowed only for a new cause (a loaded box
    # can make the broker drop a handshake: "unexpected eof"), never one a try.
    check(sorted(per) == ["%s-%d" % (name, i) for i in range(CLIENTS)] and all(len(v) <= 2 for v in per.values()),
          "%s: want one mqtt_connect_failed line per client and cause, got %d:\n%s" % (name, len(lines), "\n".join(lines)))
    for v in per.values():
        f = v[0]
        check(why in f.group(3) and f.group(1) == level, "%s: %r should be level=%s naming %r" %
              (name, f.group(0), level, why))
        check(len(v) == 1 or v[1].group(3) != f.group(3), "%s: the same cause logged twice: %r" % (name, v))
    check("New client connected" not in broker.proc.output(), "%s: the broker let a client in" % name)
    n.stop(expect=0)
    print("%s: %s" % (name, lines[0].split("event=", 1)[1]))


def refused_at_start(dir, port_base, name, broker_uri, extra, why):
    n = Notifier(port_base, 1, dir, broker_uri=broker_uri, name=name, extra=extra + EXTRA)
    n.start(wait=False)
    rc = n.wait(timeout=30)
    out = n.output()
    check(rc == 1 and why in out, "%s: exit %r, log must name %r:\n%s" % (name, rc, why, out))
    print("%s: exit %d: %s" % (name, rc, [ln for ln in out.splitlines() if why in ln][0].split("event=", 1)[1]))


EXTRA = []  # flags every notifier of the scenario gets (run(): --data-qos 0)


def main(base=BASE, extra=(), check_ntf=None):
    """The scenario with its ports from base; extra: flags for every notifier; check_ntf(env), if
    given, runs once the good notifier's data went through."""
    EXTRA[:] = list(extra)
    BROKER, BROKER_CA, BROKER_PW, BROKER_HOST = base, base + 1, base + 2, base + 3
    NTF, NTF_CA, NTF_PW, NTF_HOST, NTF_BAD = base + 4, base + 7, base + 10, base + 13, base + 16
    d = proc.workdir("sl-ntf-tls-")
    tls = os.path.join(d, "tls")
    os.makedirs(tls)
    os.chmod(tls, 0o755)
    ca = mqtttest.make_ca(tls, "ca")
    other_ca = mqtttest.make_ca(tls, "other-ca")
    srv = mqtttest.make_cert(tls, "srv", ca, ["IP:127.0.0.1", "DNS:localhost"])
    elsewhere = mqtttest.make_cert(tls, "elsewhere", ca, ["DNS:broker.elsewhere.example"])
    good = ["--tls-ca", ca, "--username", "ntf", "--password", USERS["ntf"]]

    with Env(BROKER, NTF, dir=d, tls=(ca,) + srv, users=USERS) as env:
        check(env.broker.uri == "ssl://127.0.0.1:%d" % BROKER, "broker uri %s" % env.broker.uri)
        b_ca = mqtttest.start(BROKER_CA, os.path.join(d, "mqtt-ca"), tls=(ca,) + srv, users=USERS)
        b_pw = mqtttest.start(BROKER_PW, os.path.join(d, "mqtt-pw"), tls=(ca,) + srv, users=USERS)
        b_host = mqtttest.start(BROKER_HOST, os.path.join(d, "mqtt-host"), tls=(ca,) + elsewhere, users=USERS)
        # the refused ones run while the good one works
        n_ca = refused_start(env, NTF_CA, b_ca, "ntf-wrong-ca", ["--tls-ca", other_ca, "--username", "ntf",
                                                                  "--password", USERS["ntf"]])
        n_pw = refused_start(env, NTF_PW, b_pw, "ntf-wrong-pw", ["--tls-ca", ca, "--username", "ntf",
                                                                  "--password", "not-the-password"])
        n_host = refused_start(env, NTF_HOST, b_host, "ntf-wrong-host", good)

        # --- 1. everything over TLS ---
        env.ntf.argv += good + EXTRA
        env.ntf.start()
        wait_for(lambda: env.ntf.metric("sluice_notifier_mqtt_connected") == CLIENTS, "all clients connected")
        logins = re.findall(r"New client connected from \S+ as ntf-test-(\d) \(p\d, c\d, k\d+, u'ntf'\)",
                            env.broker.proc.output())
        check(sorted(logins) == [str(i) for i in range(CLIENTS)], "clients in over TLS as ntf: %r" % logins)
        sub = env.sub(["devices/#"], tls_ca=ca, auth=TESTER)
        a = env.edge("edge-a:7000")
        a.heartbeat()
        t0 = time.time_ns()
        for i, dev in enumerate(DEVS):
            a.send(entry(CONNECT, i, 1, dev, epoch=t0, at_ns=t0, peer="p"))
        a.send(*[entry(DATA, i, 1, dev, epoch=t0, seq=s, at_ns=time.time_ns(), body=msgpack.packb({"s": s}))
                 for s in range(1, 4) for i, dev in enumerate(DEVS)])
        for dev in DEVS:
            got = wait_for(lambda: len(sub.on("devices/%s/data" % dev)) >= 3 and sub.on("devices/%s/data" % dev),
                           "data of %s over TLS" % dev, pump=env.pump)
            check([(m["seq"], m["body"]) for m in got] == [(s, {"s": s}) for s in range(1, 4)], "%s: %r" % (dev, got))
            st = wait_for(lambda: sub.last("devices/%s/status" % dev), "status of " + dev, pump=env.pump)
            check(st["online"] is True and st["epoch"] == t0, "status %r" % st)
        mqtttest.publish(BROKER, "devices/tls-1/cmd", json.dumps({"id": "t-1", "body": {"go": 1}}), tls_ca=ca,
                         auth=TESTER)
        c = wait_for(lambda: a.received(CMD, id="t-1"), "command over TLS at the edge", pump=env.pump)[0]
        check(c["dev"] == "tls-1" and msgpack.unpackb(c["body"]) == {"go": 1}, "cmd %r" % c)
        a.send(entry(RES, 1, 1, "tls-1", epoch=t0, at_ns=time.time_ns(), id="t-1", ok=True,
                     body=msgpack.packb("done")))
        r = wait_for(lambda: sub.on("devices/tls-1/cmd/t-1/result"), "result over TLS", pump=env.pump)
        check(r == [{"ok": True, "body": "done"}], "result %r" % r)
        print("TLS: %d clients in as ntf, data of %s, status, command round trip" % (CLIENTS, DEVS))
        if check_ntf:
            check_ntf(env)

        # --- 2. refused: wrong CA, wrong password, certificate for another host ---
        refused_check(n_ca, b_ca, "ntf-wrong-ca", "certificate verify failed")
        refused_check(n_pw, b_pw, "ntf-wrong-pw", "not authorized")
        # paho's host name check leaves no OpenSSL error: the cause cannot be told from a broker that is
        # down, so it is a warning that names both
        refused_check(n_host, b_host, "ntf-wrong-host", "certificate does not name the host", level="warn")
        for b in (b_ca, b_pw, b_host):
            b.stop()

        # --- 3. refused at start ---
        refused_at_start(d, NTF_BAD, "ntf-tcp-with-ca", "tcp://127.0.0.1:%d" % BROKER, good, "tls-ca")
        refused_at_start(d, NTF_BAD, "ntf-no-ca-file", env.broker.uri, ["--tls-ca", os.path.join(tls, "missing.pem")],
                         "missing.pem")
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
