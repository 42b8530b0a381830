#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""--data-qos 0: data is published at QoS 0 (statuses and results stay QoS 1, retained
statuses retained). With a small window (--max-inflight 8) and 6,000 messages pushed at once,
the publisher must keep going with no acknowledgement to wake it: everything is pulled,
published (counted as written) and received by a subscriber; nothing is refused or lost.
The publisher child runs paho's synchronous client (notifier/mqttsync.c: api=sync in its
lines) and found paho's socket (cork=1) and set TCP_NODELAY on it (nodelay=1, read back: without it
the live view waited up to 40 ms for delayed ACKs); the parent's control client stays on MQTTAsync.
With no --pool, QoS 0 data gets one publisher child (QoS 1: half the usable CPUs, notifier_22). Then the broker is frozen
(SIGSTOP) under 6 MB of data, more than the sockets hold: the child stops writing when paho's socket
is full, and once the broker is thawed it goes on by itself until every message is written."""
import os
import re
import signal
import sys
import time

import msgpack

from ntftest import CONNECT, DATA, Env, check, entry, wait_for

BROKER, NTF = 23301, 23302  # notifier_NN: 23000 + 20 * NN (notifier.cmake)
N = 6000
N_BIG = 3000  # x 2 KB: more than the notifier's and the broker's socket buffers hold


def main():
    with Env(BROKER, NTF) as env:
        i = env.ntf.argv.index("--pool")  # ntftest's --pool 2 out: the default is under test
        del env.ntf.argv[i:i + 2]
        env.ntf.argv += ["--data-qos", "0", "--max-inflight", "8"]
        env.ntf.start()
        sub = env.sub(["devices/#"])
        a = env.edge("edge-a:7000")
        a.heartbeat()
        t0 = time.time_ns()
        a.send(entry(CONNECT, 1, 1, "q0", epoch=t0, at_ns=t0, peer="p"))
        for k in range(N // 100):
            a.send(*[entry(DATA, 1, 1, "q0", epoch=t0, seq=k * 100 + i + 1, at_ns=time.time_ns(),
                           body=msgpack.packb({"i": i})) for i in range(100)])
        env.pump()
        wait_for(lambda: env.ntf.metric("sluice_notifier_data_total") == N, "all %d pulled" % N, pump=env.pump)
        wait_for(lambda: env.ntf.metric("sluice_notifier_published_total") >= N + 1, "all published",
                 pump=env.pump)
        got = wait_for(lambda: len(sub.on("devices/q0/data")) == N and sub.received("devices/q0/data"),
                       "all %d at the subscriber" % N, pump=env.pump)
        check([p["seq"] for p, _ in got] == list(range(1, N + 1)), "data out of order or missing")
        st = sub.received("devices/q0/status")
        check(st and st[-1][0]["online"] is True, "status %r" % st)
        check(env.ntf.metric("sluice_notifier_lost_total") == 0, "lost %r" % env.ntf.metric("sluice_notifier_lost_total"))
        out = env.ntf.output()
        check("event=publisher_client index=1 client=ntf-test-1 qos=0 api=sync" in out, "no sync publisher:\n" + out)
        check(re.search(r"event=start .* pool=1 ", out) and "event=publisher_client index=2" not in out
              and env.ntf.metric("sluice_notifier_mqtt_connected") == 2,
              "QoS 0 with the default --pool: one publisher child expected\n" + out)
        check(re.search(r"event=mqtt_connected client=ntf-test-1 broker=\S+ failures=0 api=sync cork=1 nodelay=1", out),
              "the publisher's connection: sync with cork and TCP_NODELAY (read back from the kernel)\n" + out)
        check(re.search(r"event=mqtt_connected client=ntf-test-0 .* api=async", out), "control client not async")
        print("QoS 0: %d data messages with a window of 8, all received, in order" % N)

        base = env.ntf.metric("sluice_notifier_published_total")
        big = msgpack.packb("x" * 2000)
        os.kill(env.broker.proc.pid, signal.SIGSTOP)
        try:
            for k in range(N_BIG // 50):
                a.send(*[entry(DATA, 1, 1, "q0big", epoch=t0, seq=k * 50 + i + 1, at_ns=time.time_ns(), body=big)
                         for i in range(50)])
                env.pump()
            wait_for(lambda: env.ntf.metric("sluice_notifier_publish_inflight") > 0, "the child holding records",
                     pump=env.pump)
            time.sleep(0.5)
            held = env.ntf.metric("sluice_notifier_publish_inflight")
            check(held > 0 and env.ntf.metric("sluice_notifier_published_total") < base + N_BIG,
                  "the frozen broker's socket never filled (inflight %r)" % held)
        finally:
            os.kill(env.broker.proc.pid, signal.SIGCONT)
        wait_for(lambda: env.ntf.metric("sluice_notifier_published_total") >= base + N_BIG,
                 "every message written after the thaw", pump=env.pump)
        check(env.ntf.metric("sluice_notifier_lost_total") == 0, "lost after the thaw")
        print("QoS 0, broker frozen under %d x 2 KB: %d held, all written after the thaw" % (N_BIG, held))
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
