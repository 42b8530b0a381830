#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""--data-qos 0 with two brokers (--broker A,B, independent Mosquittos): the publisher children
(paho's synchronous client, notifier/mqttsync.c) fail over and come back like the MQTTAsync ones.
Data streams at ~1,000 msgs/s over 8 devices (both children of --pool 2):

1. everything goes to A (the first of the list); B sees nothing;
2. A is killed (SIGKILL): both children log the lost connection and reconnect to B, data flows
   on B; what was in hand when the connection broke is counted (lost{publish_failed}) or was
   written before the kill: nothing published well before the kill is missing;
3. A is restarted: both children probe it, log mqtt_broker_return and connect to A again, data
   flows on A; leaving B is clean and the records in hand wait for A: every message sent after
   both children were on B reaches a subscriber (B's or A's), none lost;
4. every data message is pulled, none refused by the parent; SIGTERM exits 0."""
import re
import sys
import time

import msgpack

import mqtttest
from ntftest import CONNECT, DATA, Env, check, entry, wait_for

# notifier_NN: the 20 ports from 23000 + 20 * NN (notifier.cmake)
BROKER_A, BROKER_B, NTF = 23380, 23381, 23382
RATE = 1000  # data msgs/s offered
DEVS = ["fo-%d" % i for i in range(8)]
KIDS = ("ntf-test-1", "ntf-test-2")


def main():
    with Env(BROKER_A, NTF) as env:
        b = mqtttest.start(BROKER_B, env.dir + "/mqtt-b", persistence=False)
        a_uri, b_uri = env.broker.uri, b.uri
        env.ntf.argv[env.ntf.argv.index("--broker") + 1] = "%s,%s" % (a_uri, b_uri)
        env.ntf.argv += ["--data-qos", "0"]
        env.ntf.start()
        sa = env.sub(["devices/+/data"])  # reconnects by itself when A comes back
        sb = mqtttest.Subscriber(BROKER_B, ["devices/+/data"])
        env.subs.append(sb)
        edge = env.edge("edge-a:7000")
        edge.heartbeat()
        t0 = time.time_ns()
        for i, d in enumerate(DEVS):
            edge.send(entry(CONNECT, i, 1, d, epoch=t0, at_ns=t0, peer="p"))
        feed = {"seq": 0, "start": time.monotonic()}

        def pump():
            """Send what is due at RATE since the start, then let the env pump."""
            due = int((time.monotonic() - feed["start"]) * RATE)
            while feed["seq"] < due:
                n = min(100, due - feed["seq"])
                batch = []
                for _ in range(n):
                    feed["seq"] += 1
                    s = feed["seq"]
                    d = DEVS[s % len(DEVS)]
                    batch.append(entry(DATA, s % len(DEVS), 1, d, epoch=t0, seq=s, at_ns=time.time_ns(),
                                       body=msgpack.packb({"i": s})))
                edge.send(*batch)
            env.pump()

        def seqs(sub):
            return {p["seq"] for t, p, _ in sub.all() if t.endswith("/data")}

        def by_kid(sub, since):
            """Data on sub newer than seq `since`, from devices of each child (fnv1a(dev) % 2)."""
            devs = {t.split("/")[1] for t, p, _ in sub.all() if t.endswith("/data") and p["seq"] > since}
            return len(devs) == len(DEVS)

        # --- 1. on A
        wait_for(lambda: by_kid(sa, 0) and len(seqs(sa)) >= 2 * RATE, "2 s of data of every device on A", pump=pump)
        check(not seqs(sb), "B got data while A was up")
        out = env.ntf.output()
        for k in KIDS:
            check(re.search(r"event=mqtt_connected client=%s broker=%s failures=0 api=sync cork=1" %
                            (k, re.escape(a_uri)), out), "%s on A with the sync client:\n%s" % (k, out))

        # --- 2. A dies
        seq_kill = feed["seq"]
        env.broker.proc.kill9()
        wait_for(lambda: all(re.search(r"event=mqtt_connected client=%s broker=%s .*api=sync" % (k, re.escape(b_uri)),
                                       env.ntf.output()) for k in KIDS), "both children on B", pump=pump)
        seq_b = feed["seq"]
        wait_for(lambda: by_kid(sb, seq_b), "data of every device on B", pump=pump)
        out = env.ntf.output()
        for k in KIDS:
            check(re.search(r"event=mqtt_connection_lost client=%s broker=%s api=sync" % (k, re.escape(a_uri)), out),
                  "%s: no lost line" % k)
        print("A killed at seq %d; both children on B from seq %d" % (seq_kill, seq_b))

        # --- 3. A back: the children return to it (probe every 5 s)
        env.broker.start()
        wait_for(lambda: all("event=mqtt_broker_return client=%s from=%s to=%s" % (k, b_uri, a_uri)
                             in env.ntf.output() for k in KIDS), "both children back to A", timeout=30, pump=pump)
        seq_back = feed["seq"]
        wait_for(lambda: by_kid(sa, seq_back), "data of every device on A again", pump=pump)
        n_sent = feed["seq"]
        wait_for(lambda: env.ntf.metric("sluice_notifier_data_total") == n_sent, "all %d pulled" % n_sent,
                 pump=env.pump)
        wait_for(lambda: set(range(seq_b + 1, n_sent + 1)) <= (seqs(sa) | seqs(sb)),
                 "every message sent after the failover at a subscriber", pump=env.pump, timeout=20)
        got = seqs(sa) | seqs(sb)
        early = set(range(1, max(1, seq_kill - RATE))) - got
        check(not early, "published before the kill and missing: %r" % sorted(early)[:20])
        missing = sorted(set(range(1, n_sent + 1)) - got)
        failed = env.ntf.metric('sluice_notifier_lost_total{what="publish_failed"}')
        refused = env.ntf.metric('sluice_notifier_lost_total{what="data_refused"}')
        # data_refused counts the children's lost records too (main.c: refused + lost): here only those
        check(refused == failed, "data refused by the parent: %r (lost %r)" % (refused, failed))
        check(all(seq_kill - RATE <= s <= seq_b for s in missing), "missing outside the kill window: %r" % missing[:20])
        check(failed <= len(missing), "counted lost %r, missing only %d" % (failed, len(missing)))
        print("%d sent; kill window: %d missing (%d counted lost, the rest written to A before it died); "
              "after the failover and across the return: none missing" % (n_sent, len(missing), failed))
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
