#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""--data-qos 0: data is published at QoS 0 (statuses and results stay QoS 1, retained
statuses retained). With a small window (--max-inflight 8) and 6,000 messages pushed at once,
the publisher must keep going with no acknowledgement to wake it: everything is pulled,
published (counted as written) and received by a subscriber; nothing is refused or lost.
The publisher child runs paho's synchronous client (notifier/mqttsync.c: api=sync in its
lines) and found paho's socket (cork=1); the parent's control client stays on MQTTAsync.
With no --pool, QoS 0 data gets one publisher child (QoS 1 gets four)."""
import re
import sys
import time

import msgpack

from ntftest import CONNECT, DATA, Env, check, entry, wait_for

BROKER, NTF = 23301, 23302  # notifier_NN: 23000 + 20 * NN (notifier.cmake)
N = 6000


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
        check(re.search(r"event=mqtt_connected client=ntf-test-1 broker=\S+ failures=0 api=sync cork=1", out),
              "the publisher's connection: sync with cork\n" + out)
        check(re.search(r"event=mqtt_connected client=ntf-test-0 .* api=async", out), "control client not async")
        print("QoS 0: %d data messages with a window of 8, all received, in order" % N)
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
