#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A data publisher child of the notifier (--pool 2) is killed (SIGKILL)
mid-stream, twice. docs/notifier.md promises: the death is logged
(event=publisher_died ... lost=K) and counted
(sluice_notifier_publisher_restarts_total), the K records the child held are
counted in sluice_notifier_lost_total{what="publisher_died"} (at most once
for those), the child is restarted (1 s later) and the parent does not pull
while it is down. Seen by a persistent QoS 1 subscriber on a real Mosquitto:

1. child 1 killed while it runs: what is missing is at most its K, only data
   of child 1's devices (fnv1a(dev) % pool), only data sent before the death
   was logged;
2. child 2 frozen (SIGSTOP) once idle, then fed only its own devices: the
   parent pulls until the child holds its bound (4 x --max-inflight
   unreported records) and then stops pulling; killed there, its K is what
   the parent handed it since the freeze (bound <= K < bound + one batch), and
   exactly those K messages, the first K sent after the freeze, are missing;
3. each time a new process takes the index (new pid, its MQTT client
   connects), the other child keeps its pid, data flows again and everything
   queued meanwhile arrives; nothing is refused (data_refused stays 0); the
   notifier exits 0 on SIGTERM.
"""
import os
import re
import signal
import sys
import time

import msgpack

from ntftest import CONNECT, DATA, Env, check, entry, wait_for

BROKER, NTF = 23081, 23082  # notifier_NN: 23000 + 20 * NN (notifier.cmake)
POOL = 2
MAX_INFLIGHT = 32
BOUND = 4 * MAX_INFLIGHT  # records a child may hold unreported before the parent stops pulling
PER_BATCH = 20
DEVS = ["m-%d" % i for i in range(8)]
DIED = re.compile(r"event=publisher_died index=(\d+) pid=(\d+) why=\S+ status=(\d+) lost=(\d+)")
STARTED = re.compile(r"event=publisher_started index=(\d+) pid=(\d+)")


def child_of(dev):
    """The publisher child (1..POOL) of a device: fnv1a(dev) % pool + 1, as notifier/pubproc.c."""
    h = 2166136261
    for b in dev.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h % POOL + 1


class Stream:
    """Data messages with increasing seqs from one test edge; remembers each seq's child."""

    def __init__(self, env, edge, t0):
        self.env, self.edge, self.t0 = env, edge, t0
        self.seq = 0
        self.child = {}  # seq -> publisher child index

    def batch(self, devs=DEVS):
        ents = []
        for _ in range(PER_BATCH):
            self.seq += 1
            d = devs[self.seq % len(devs)]
            self.child[self.seq] = child_of(d)
            ents.append(entry(DATA, DEVS.index(d), 1, d, epoch=self.t0, seq=self.seq, at_ns=time.time_ns(),
                              body=msgpack.packb({"i": self.seq})))
        self.edge.send(*ents)
        self.env.pump()

    def run(self, n, devs=DEVS):
        for _ in range(n // PER_BATCH):
            self.batch(devs)
            time.sleep(0.002)

    def until(self, cond, what, devs=DEVS):
        """Keep streaming until cond() holds."""
        return wait_for(cond, what, pump=lambda: self.batch(devs), interval=0.005)


def main():
    with Env(BROKER, NTF) as env:
        ntf = env.ntf
        ntf.argv += ["--max-inflight", str(MAX_INFLIGHT)]  # ntftest runs --pool 2
        ntf.start()
        sub = env.sub(["devices/+/data"], client_id="ntf04-sub", clean=False)
        a = env.edge("edge-a:7000")
        t0 = time.time_ns()
        for i, d in enumerate(DEVS):
            a.send(entry(CONNECT, i, 1, d, epoch=t0, at_ns=t0, peer="p"))
        check({child_of(d) for d in DEVS} == set(range(1, POOL + 1)), "every child must have devices")
        s = Stream(env, a, t0)

        def m(series):
            return int(ntf.metric(series, 0))

        def children():
            """index -> pid of its latest incarnation, from the log."""
            return {int(i): int(p) for i, p in STARTED.findall(ntf.output())}

        def died(pid):
            for i, p, st, lost in DIED.findall(ntf.output()):
                if int(p) == pid:
                    return int(i), int(st), int(lost)
            return None

        def replaced(idx, old_pid):
            """The index has a new process and its MQTT client connected (a second time)."""
            return (children()[idx] != old_pid and
                    ntf.output().count("event=mqtt_connected client=ntf-test-%d" % idx) == 2)

        def check_replaced(idx, old_pid, other):
            new = children()[idx]
            check(new != old_pid and os.path.exists("/proc/%d" % new), "no new child %d: %r" % (idx, children()))
            with open("/proc/%d/stat" % new) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            check(ppid == ntf.pid, "child %d (pid %d) has parent %d, not the notifier %d" % (idx, new, ppid, ntf.pid))
            check(children()[other] == pids[other] and os.path.exists("/proc/%d" % pids[other]),
                  "child %d changed or died: %r (was %d)" % (other, children(), pids[other]))
            return new

        pids = wait_for(lambda: len(children()) == POOL and children(), "%d publisher children" % POOL)
        wait_for(lambda: ntf.output().count("event=mqtt_connected client=ntf-test-") == POOL + 1,
                 "every MQTT client connected")
        print("children %r, devices by child %r" % (pids, {d: child_of(d) for d in DEVS}))

        # --- 1. child 1 killed mid-stream ---
        s.run(1000)
        os.kill(pids[1], signal.SIGKILL)
        d1 = s.until(lambda: died(pids[1]), "publisher_died of child 1")
        died1_seq = s.seq  # anything sent later must arrive
        check(d1[0] == 1 and d1[1] == signal.SIGKILL, "death of child 1 logged as %r" % (d1,))
        lost1 = d1[2]
        s.until(lambda: replaced(1, pids[1]), "child 1 restarted and connected")
        pids[1] = check_replaced(1, pids[1], 2)
        s.run(500)
        wait_for(lambda: m("sluice_notifier_data_total") == s.seq, "the notifier pulling everything again",
                 pump=env.pump)
        check(m("sluice_notifier_publisher_restarts_total") == 1, "restarts after the first kill")
        check(m('sluice_notifier_lost_total{what="publisher_died"}') == lost1,
              "publisher_died count %r, log says %d" % (m('sluice_notifier_lost_total{what="publisher_died"}'), lost1))
        print("child 1 killed: lost=%d, restarted as pid %d, data flowing (%d pulled)" % (lost1, pids[1], s.seq))

        # --- 2. child 2 frozen until the parent stops pulling, then killed ---
        wait_for(lambda: m("sluice_notifier_publish_inflight") == 0 and m("sluice_notifier_data_total") == s.seq,
                 "every record done", pump=env.pump)
        os.kill(pids[2], signal.SIGSTOP)
        stop_seq = s.seq
        own = [d for d in DEVS if child_of(d) == 2]
        s.until(lambda: m("sluice_notifier_publish_inflight") >= BOUND, "child 2 at its bound", devs=own)
        s.run(10 * PER_BATCH, devs=own)
        time.sleep(0.3)  # room for a parent that would go on pulling
        held = m("sluice_notifier_data_total") - stop_seq
        check(BOUND <= held < BOUND + PER_BATCH, "the parent pulled %d records for a frozen child (bound %d)" %
              (held, BOUND))
        check(m("sluice_notifier_publish_inflight") == held, "inflight %r, %d pulled since the freeze" %
              (m("sluice_notifier_publish_inflight"), held))
        os.kill(pids[2], signal.SIGKILL)
        d2 = s.until(lambda: died(pids[2]), "publisher_died of child 2", devs=own)
        check(d2[0] == 2 and d2[1] == signal.SIGKILL, "death of child 2 logged as %r" % (d2,))
        lost2 = d2[2]
        check(lost2 == held, "child 2 held %d records, counted lost %d" % (held, lost2))
        s.until(lambda: replaced(2, pids[2]), "child 2 restarted and connected")
        pids[2] = check_replaced(2, pids[2], 1)
        lost2_seqs = set(range(stop_seq + 1, stop_seq + 1 + held))  # the first records after the freeze
        print("child 2 frozen then killed: lost=%d (bound %d), restarted as pid %d" % (lost2, BOUND, pids[2]))

        # --- 3. the rest, then judge what reached the subscriber ---
        s.run(1000)
        n = s.seq
        may_miss1 = {q for q in range(1, died1_seq + 1) if s.child[q] == 1}

        def received():
            return {p["seq"] for _, p, _ in sub.all()}

        want = set(range(1, n + 1)) - may_miss1 - lost2_seqs
        try:
            wait_for(lambda: want <= received(), "every message not held by a killed child", pump=env.pump)
        except AssertionError:
            miss = sorted(want - received())
            print("missing %d: %r ... %r" % (len(miss), miss[:10], miss[-10:]), file=sys.stderr)
            raise
        got = received()
        miss1 = may_miss1 - got
        check(len(miss1) <= lost1, "%d messages of child 1 missing, %d counted lost: %r" %
              (len(miss1), lost1, sorted(miss1)[:20]))
        check(not (lost2_seqs & got), "%d of child 2's held records arrived although it was frozen" %
              len(lost2_seqs & got))
        check(m("sluice_notifier_publisher_restarts_total") == 2, "restarts %r" %
              m("sluice_notifier_publisher_restarts_total"))
        check(m('sluice_notifier_lost_total{what="publisher_died"}') == lost1 + lost2, "publisher_died %r" %
              m('sluice_notifier_lost_total{what="publisher_died"}'))
        check(m('sluice_notifier_lost_total{what="data_refused"}') == 0, "data refused while a child was down")
        wait_for(lambda: m("sluice_notifier_data_total") == n, "all %d pulled" % n)
        print("ok: %d messages, %d received, missing %d of child 1 (counted %d) and %d of child 2 (counted %d)" %
              (n, len(got), len(miss1), lost1, len(lost2_seqs), lost2))


if __name__ == "__main__":
    sys.exit(main())
