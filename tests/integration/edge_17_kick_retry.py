#!/usr/bin/python3
"""edge_17_kick_retry: a takeover kick is never dropped, even when the worker
holding the old connection cannot take it for a while.

1,100 devices sit on worker 1, which is then frozen (ptrace: only that
thread stops). Every one of them reconnects; the acceptor passes the stuck
worker over, so worker 0 takes the new connections and each hello kicks an
old connection on worker 1 through worker 1's mailbox, whose kick share
(1,024) cannot hold them all. Worker 0 keeps the kicks that do not fit and
posts them again. After the thaw every old connection must get
err{replaced} and be closed, every new one must still answer, and the edge
must have counted kicks it had to post again (a build that dropped them
leaves old connections open: the test fails on the first of those)."""
import time

from edgetest import main, worker_of
from proc import frozen_thread, wait_for
from wire import CONNECT

PORT = 21340  # edge_NN: 21000 + 20 * NN (edge.cmake)
PER_WORKER = 1100  # above the mailbox's kick share (MAILBOX_KICK_SHARE, 1024)


def scenario(e):
    old = {}
    for i in range(2 * PER_WORKER):
        d = e.dev()
        d.login("kr-%d" % i)
        old[d.dev] = d
    conns = e.pers.wait(CONNECT, count=2 * PER_WORKER)
    on_w1 = sorted({c[3] for c in conns if worker_of(c[13]) == 1})
    assert len(on_w1) >= PER_WORKER - 50, len(on_w1)  # handoff balances the two workers
    assert len(on_w1) > 1024, len(on_w1)  # more than the kick share: some must wait
    new = {}
    with frozen_thread(e.proc.pid, "edge-w1"):
        # The acceptor hands each connection to the least loaded worker (ties
        # to worker 0): once worker 0 has one more than worker 1, the next
        # lands in worker 1's mailbox and stays there; after 250 ms without
        # progress the acceptor passes worker 1 over.
        n0, n1 = 2 * PER_WORKER - len(on_w1), len(on_w1)
        probes = [e.dev() for _ in range(max(0, n1 - n0 + 1) + 1)]
        time.sleep(0.6)
        for dev in on_w1:
            d = e.dev()
            d.login(dev)  # welcomed by worker 0 while worker 1 is frozen
            new[dev] = d
        wait_for(lambda: e.metric("sluice_edge_kicks_retried_total") > 0, "kicks kept for a retry")
        retried = e.metric("sluice_edge_kicks_retried_total")
    assert retried >= len(on_w1) - 1024, retried
    for dev in on_w1:
        old[dev].expect_err("replaced")
    for dev, d in new.items():
        d.send({"t": "ping"})
        assert d.expect("pong", skip=()) == {"t": "pong"}, dev
    for d in probes:
        d.close()


if __name__ == "__main__":
    main(scenario, PORT, ["--max-conns", "8000", "--hello-timeout-ms", "60000"])
