#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""notifier_18_clock_skew: sluice_notifier_edge_clock_skew_seconds{edge} shows each edge's clock against the
notifier's, from the at_ns of the heartbeats the edges send it (the persister's twin: persister_17): an edge
stamping 5 s ahead reads ~+5, one 3 s behind ~-3, one in step ~0; a second incarnation of an edge id gives one
series (the latest), and an edge silent past --edge-timeout-ms loses its series. A sign error, a unit error
(ns, ms) or a stale series fails here; so does a notifier without the gauge."""
import time

from ntftest import HEARTBEAT, Env, check, entry, wait_for

BROKER, NTF = 23360, 23362  # notifier_NN: 23000 + 20 * NN (notifier.cmake)
SERIES = 'sluice_notifier_edge_clock_skew_seconds{edge="%s"}'


def heartbeat(edge, offset_s):
    edge.send(entry(HEARTBEAT, at_ns=time.time_ns() + int(offset_s * 1e9), seq=0))


def main():
    with Env(BROKER, NTF) as env:
        env.ntf.argv += ["--edge-timeout-ms", "2500"]
        env.ntf.start()
        # the edges are not pumped (pump heartbeats in step): beat() stamps each with its own clock
        a = env.edge("edge-a:7000")
        fast = env.edge("edge-fast:7000")
        slow = env.edge("edge-slow:7000")
        want = {a: ("edge-a:7000", 0.0), fast: ("edge-fast:7000", 5.0), slow: ("edge-slow:7000", -3.0)}

        def beat():
            env.ntf.check_alive()
            for e, (_, off) in want.items():
                heartbeat(e, off)

        def close_to_wanted():
            got = {name: env.ntf.metric(SERIES % name) for name, _ in want.values()}
            ok = all(v is not None and abs(v - off) < 1.0 for (name, off), v in zip(want.values(), got.values()))
            return ok and got

        got = wait_for(close_to_wanted, "skew gauges near 0, +5, -3", timeout=30, pump=beat, interval=0.5)
        print("skew: %r" % got)
        # the same edge id restarted (a new incarnation) in step: one series, the latest incarnation's
        fast2 = env.edge("edge-fast:7000")
        check(fast2.inc != fast.inc, "a new incarnation")
        del want[fast]
        want[fast2] = ("edge-fast:7000", 0.0)
        wait_for(close_to_wanted, "edge-fast's series follows its new incarnation", timeout=30, pump=beat,
                 interval=0.5)
        text = env.ntf.http("/metrics")[1]
        check(text.count(SERIES % "edge-fast:7000") == 1, "one series per edge id:\n%s" % text)
        # a silent edge (--edge-timeout-ms 2500) loses its series; the others keep theirs
        del want[slow]
        wait_for(lambda: env.ntf.metric(SERIES % "edge-slow:7000") is None, "edge-slow's series gone", timeout=30,
                 pump=beat, interval=0.5)
        check(env.ntf.metric(SERIES % "edge-a:7000") is not None, "edge-a, still beating, lost its series")
        print("new incarnation followed, silent edge dropped")


if __name__ == "__main__":
    main()
