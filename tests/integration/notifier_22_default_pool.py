#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""With no --pool, QoS 1 data gets half the CPUs the notifier may use, 1 to 4 publisher
children (notifier/pubproc.h: on a small box every further child only adds paho's wake-ups).

- pinned to one CPU (taskset), the notifier says cpus=1 pool=1 and starts one publisher child
  (its clients: the control one and one publisher), and data reaches a subscriber in order;
  before, it started four whatever the box;
- unpinned, its pool is cpus / 2 between 1 and 4 for the cpus it logs (the affinity mask,
  capped by a cgroup quota: sl/sysres.h), and data flows again."""
import os
import re
import sys
import time

import msgpack

from ntftest import CONNECT, DATA, Env, check, entry, wait_for

BROKER, NTF = 23441, 23442  # notifier_NN: 23000 + 20 * NN (notifier.cmake)
N = 200


def start_line(out):
    m = re.search(r"event=start .* pool=(\d+) cpus=(\d+) ", out)
    check(m, "no start line with pool= and cpus=\n" + out)
    return int(m.group(1)), int(m.group(2))


def children(out):
    return sorted(int(i) for i in re.findall(r"event=publisher_client index=(\d+) \S+ qos=1 ", out))


def stream(env, sub, edge, dev, t0):
    edge.send(entry(CONNECT, 1, 1, dev, epoch=t0, at_ns=t0, peer="p"))
    edge.send(*[entry(DATA, 1, 1, dev, epoch=t0, seq=s, at_ns=time.time_ns(), body=msgpack.packb(s))
                for s in range(1, N + 1)])
    got = wait_for(lambda: len(sub.on("devices/%s/data" % dev)) == N and sub.on("devices/%s/data" % dev),
                   "%d data messages of %s" % (N, dev), pump=env.pump)
    check([p["seq"] for p in got] == list(range(1, N + 1)), "%s: data out of order or missing" % dev)


def main():
    with Env(BROKER, NTF) as env:
        i = env.ntf.argv.index("--pool")  # ntftest's --pool 2 out: the default is under test
        del env.ntf.argv[i:i + 2]
        argv = list(env.ntf.argv)
        cpu = min(os.sched_getaffinity(0))
        env.ntf.argv = ["taskset", "-c", str(cpu)] + argv
        env.ntf.start()
        sub = env.sub(["devices/#"])
        a = env.edge("edge-a:7000")
        a.heartbeat()
        t0 = time.time_ns()
        stream(env, sub, a, "pin", t0)
        out = env.ntf.output()
        check(start_line(out) == (1, 1), "pinned to CPU %d: want pool=1 cpus=1, got %r" % (cpu, start_line(out)))
        check(children(out) == [1], "pinned to one CPU: want one QoS 1 publisher child, got %r\n%s" %
              (children(out), out))
        wait_for(lambda: env.ntf.metric("sluice_notifier_mqtt_connected") == 2, "the control client and one publisher")
        print("pinned to CPU %d: pool=1, one publisher child, %d messages in order" % (cpu, N))
        env.ntf.stop(expect=0)

        env.ntf.argv = argv
        env.ntf.start()
        a.heartbeat()
        stream(env, sub, a, "free", t0 + 1)
        out = env.ntf.output()
        pool, cpus = start_line(out)
        want = min(4, max(1, cpus // 2))
        check(cpus >= 1 and pool == want, "unpinned: cpus=%d, want pool=%d, got %d" % (cpus, want, pool))
        check(children(out) == list(range(1, want + 1)), "unpinned: children %r" % children(out))
        print("unpinned: cpus=%d pool=%d" % (cpus, pool))
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
