#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Broker restarted mid-stream: every data message reaches a subscriber (a
persistent QoS 1 session) at least once, and the notifier reconnects."""
import sys
import time

import msgpack

from ntftest import CONNECT, DATA, Env, check, entry, wait_for

BROKER, NTF = 23061, 23062  # notifier_NN: 23000 + 20 * NN (notifier.cmake)
N = 6000
PER_BATCH = 20


def main():
    with Env(BROKER, NTF) as env:
        env.ntf.start()
        sub = env.sub(["devices/+/data"], client_id="ntf-test-sub", clean=False)
        a = env.edge("edge-a:7000")
        t0 = time.time_ns()
        devs = ["m-%d" % i for i in range(8)]
        for i, d in enumerate(devs):
            a.send(entry(CONNECT, i, 1, d, epoch=t0, at_ns=t0, peer="p"))
        seq = 0
        restarted = False
        while seq < N:
            batch = []
            for _ in range(PER_BATCH):
                seq += 1
                d = devs[seq % len(devs)]
                batch.append(entry(DATA, seq % len(devs), 1, d, epoch=t0, seq=seq, at_ns=time.time_ns(),
                                   body=msgpack.packb({"i": seq})))
            a.send(*batch)
            env.pump()
            if seq == N // 2 and not restarted:
                env.broker.restart(down_s=1.0)
                restarted = True
            time.sleep(0.002)

        def seen():
            got = set()
            for t, p, r in sub.all():
                got.add(p["seq"])
            return got

        try:
            wait_for(lambda: len(seen()) >= N, "all %d data messages at the subscriber" % N, timeout=60,
                     pump=env.pump)
        except AssertionError:
            m = sorted(set(range(1, N + 1)) - seen())
            print("missing %d: %r ... %r" % (len(m), m[:10], m[-10:]), file=sys.stderr)
            for k in ["sluice_notifier_published_total", 'sluice_notifier_lost_total{what="data_refused"}',
                      'sluice_notifier_lost_total{what="publish_failed"}', "sluice_notifier_data_total",
                      "sluice_notifier_publish_inflight", "sluice_notifier_mqtt_connected"]:
                print(k, env.ntf.metric(k), file=sys.stderr)
            raise
        missing = set(range(1, N + 1)) - seen()
        check(not missing, "missing seqs %r" % sorted(missing)[:20])
        rc = env.ntf.metric("sluice_notifier_mqtt_reconnects_total")
        check(rc is not None and rc >= 1, "reconnects metric %r" % rc)
        print("ok: %d messages, %d deliveries, reconnects %d" % (N, sub.count(), rc))


if __name__ == "__main__":
    sys.exit(main())
