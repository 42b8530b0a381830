#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_17_clock_skew: sluice_persister_edge_clock_skew_seconds{edge} shows each edge's clock against the
persister's, from the at_ns of its heartbeats: an edge stamping 5 s ahead reads ~+5, one 3 s behind ~-3, one in
step ~0; a second incarnation of an edge id gives one series (the latest), and an edge gone silent past
--edge-timeout-ms loses its series. A sign error, a unit error (ns, ms) or a stale series fails here."""
import time

import wire
from persister_common import core_persister, pe
from proc import check, wait_for

PORT = 22850  # persister_NN: 22000 + 50 * NN (persister.cmake)
SERIES = 'sluice_persister_edge_clock_skew_seconds{edge="%s"}'


def heartbeat(edge, offset_s):
    edge.send(wire.entry(wire.HEARTBEAT, at_ns=time.time_ns() + int(offset_s * 1e9), seq=0))


def main():
    with core_persister(PORT) as (env, p, edge):
        fast = pe.Edge([p.pull], [p.router], edge_id="edge-fast:7000")
        slow = pe.Edge([p.pull], [p.router], edge_id="edge-slow:7000")
        want = {edge: ("edge-a:7000", 0.0), fast: ("edge-fast:7000", 5.0), slow: ("edge-slow:7000", -3.0)}

        def beat():
            for e, (_, off) in want.items():
                heartbeat(e, off)

        def close_to_wanted():
            got = {name: p.metric(SERIES % name) for name, _ in want.values()}
            ok = all(v is not None and abs(v - off) < 1.0 for (name, off), v in zip(want.values(), got.values()))
            return ok and got

        got = wait_for(close_to_wanted, "skew gauges near 0, +5, -3", timeout=30, pump=beat, interval=0.5)
        print("skew: %r" % got)
        # the same edge id restarted (a new incarnation) in step: one series, the latest incarnation's
        fast2 = pe.Edge([p.pull], [p.router], edge_id="edge-fast:7000")
        del want[fast]
        want[fast2] = ("edge-fast:7000", 0.0)
        fast.close()
        wait_for(close_to_wanted, "edge-fast's series follows its new incarnation", timeout=30, pump=beat,
                 interval=0.5)
        text = p.http("/metrics")[1]
        check(text.count(SERIES % "edge-fast:7000") == 1, "one series per edge id:\n%s" % text)
        # silent edges (--edge-timeout-ms 2500) lose their series
        slow.close()
        wait_for(lambda: p.metric(SERIES % "edge-slow:7000") is None, "edge-slow's series gone", timeout=30,
                 pump=lambda: (heartbeat(edge, 0), heartbeat(fast2, 0)), interval=0.5)
        check(p.metric(SERIES % "edge-a:7000") is not None, "edge-a, still beating, lost its series")
        fast2.close()


if __name__ == "__main__":
    main()
