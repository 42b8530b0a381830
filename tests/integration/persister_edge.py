# SPDX-License-Identifier: Apache-2.0
"""persister_edge - a test edge and the sluice-persister process, for the
persister integration tests (and bench/persister_bench.py).

The edge sends envelope batches exactly per docs/protocol.md section 6
(wire.py) over PUSH and collects the persister's ack batches on a DEALER
whose identity is the batch's reply address.
"""
import os
import sys
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proc  # noqa: E402
import wire  # noqa: E402


def data(dev, seq, body_obj=None, body_raw=None, ts=None, at_ns=None, slot=1, gen=1, epoch=1):
    import msgpack
    raw = body_raw if body_raw is not None else msgpack.packb(body_obj, use_bin_type=True)
    return wire.entry(wire.DATA, slot, gen, dev, epoch, seq, ts, at_ns if at_ns is not None else time.time_ns(),
                      body=raw)


class Edge(wire.Edge):
    """One edge worker: PUSH to every persister PULL (only to connected ones:
    send waits for one), DEALER to every ROUTER; keeps the acks it got."""

    def __init__(self, pulls, routers, edge_id="test-edge:1", worker=0, inc=None):
        super().__init__(zmq.Context.instance(), pulls, routers, edge_id, worker, inc, immediate=True)
        self.acks = []  # (incarnation, slot, gen, dev, seq)

    def poll_acks(self, timeout_ms=100, on_ack=None):
        """Receive ack batches for up to timeout_ms; returns the new acks."""
        got = []
        for hdr, ents in self.recv(timeout_ms):
            proc.check(hdr[0] == 1, "batch version %r" % (hdr,))
            for e in ents:
                proc.check(e[0] == wire.ACK, "not an ack: %r" % (e,))
                a = (hdr[2], e[1], e[2], e[3], e[5])
                if on_ack:
                    on_ack(a)
                got.append(a)
        self.acks.extend(got)
        return got


class Persister(proc.Proc):
    """sluice-persister started at once (not waited for: call wait_ready)."""

    def __init__(self, binary, dsn, pull_port, router_port, metrics_port, extra=(), log=None):
        self.pull = "tcp://127.0.0.1:%d" % pull_port
        self.router = "tcp://127.0.0.1:%d" % router_port
        self.metrics_addr = "127.0.0.1:%d" % metrics_port
        super().__init__("persister", [binary, "--pull", self.pull, "--router", self.router, "--db", dsn,
                                       "--metrics", self.metrics_addr] + list(extra),
                         log, http=self.metrics_addr, ready=proc.http_ok())
        self.start(wait=False)
