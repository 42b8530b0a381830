#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_31_ntf_confirm: the edge keeps the control entries it sent a notifier until the notifier
confirms them, and routes them again when its connection closes first (docs/protocol.md §6,
notifier_heartbeat `seq`); an answer without `seq` (a notifier of the version before it) still
confirms, so mixed versions hand nothing on twice.

edgetest's Python peer plays the notifier and answers the edge's heartbeats under the id ntf-py:
1. as the previous version does (no `seq`): a device connects, heartbeats after it are answered,
   the notifier goes away: nothing is routed again;
2. as this version does (`seq` = the heartbeat's at_ns): the same, nothing routed again;
3. a device connects and the notifier goes away before answering: its connect is routed again."""
import time

import zmq

from edgetest import TO, main, rebind
from proc import wait_for
import wire
from wire import CONNECT, HEARTBEAT, NOTIFIER_HB

PORT = 21620  # edge_NN: 21000 + 20 * NN (edge.cmake)
ID = "ntf-py"


class Answerer:
    def __init__(self, e):
        self.e, self.done = e, 0

    def answer(self, echo):
        """Answer the heartbeats to the notifier not answered yet; with echo, seq = their at_ns."""
        n = self.e.noti
        n.poll()
        for h, x in n.entries[self.done:]:
            if x[0] == HEARTBEAT and len(x) > TO and x[TO]:
                ent = [NOTIFIER_HB, 0, 0, "", 0, x[7] if echo else None, None, time.time_ns(), None, None, None,
                       None, None, x[TO]]
                n._send(x[13], wire.batch(ID, x[14], ID, [ent]))
        self.done = len(n.entries)

    def answer_for(self, seconds, echo):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.answer(echo)
            time.sleep(0.05)


def last_rings(e):
    """Each worker's members as it logged them last (event=notifier_ring)."""
    last = {}
    for ln in e.proc.output().splitlines():
        if "event=notifier_ring" in ln:
            f = dict(kv.split("=", 1) for kv in ln.split() if "=" in kv)
            last[f["worker"]] = f["members"]
    return last


def member_again(e, a, echo):
    """Answer until both workers have ntf-py in their rings."""
    wait_for(lambda: a.answer(echo) or list(last_rings(e).values()) == [ID, ID], "both workers' rings with " + ID, 20)


def notifier_gone(e, a):
    """Close the notifier's PULL (its connections to the edge drop), wait until both workers saw
    it, and bind a fresh one for the next step."""
    e.noti.pull.close(linger=0)
    wait_for(lambda: list(last_rings(e).values()) == ["-", "-"], "both workers without the notifier", 20)
    e.noti.pull = rebind(zmq.PULL, PORT + 3, e.ctx)
    a.done = len(e.noti.entries)


def rerouted(e):
    return e.metric("sluice_edge_notifier_ctl_rerouted_total")


def step(e, a, dev, echo, answered):
    member_again(e, a, echo)
    d = e.dev()
    d.login(dev)
    wait_for(lambda: a.answer(echo) or e.noti.find(CONNECT, dev), "%s's connect at the notifier" % dev, 20)
    if answered:
        a.answer_for(2.5, echo)  # heartbeats every second per worker: each answered after the connect
    before = rerouted(e)
    notifier_gone(e, a)
    return d, before


def scenario(e):
    a = Answerer(e)
    # 1. the previous version: answers without seq, everything it was sent is confirmed
    d1, before = step(e, a, "conf-old", echo=False, answered=True)
    time.sleep(1.5)  # the metrics thread sums the workers' counts every second
    assert rerouted(e) == before == 0, "an answer without seq did not confirm: %s routed again" % rerouted(e)
    # 2. this version: seq echoes the heartbeat, which confirms what was sent before it
    d2, before = step(e, a, "conf-new", echo=True, answered=True)
    time.sleep(1.5)
    assert rerouted(e) == before, "confirmed entries routed again: %s" % (rerouted(e) - before)
    # 3. gone before confirming: the connect is routed again
    d3, before = step(e, a, "conf-lost", echo=True, answered=False)
    wait_for(lambda: rerouted(e) >= before + 1, "the unconfirmed connect routed again", 20)
    assert "event=notifier_entries_rerouted" in e.proc.output()
    for d in (d1, d2, d3):
        d.close()


if __name__ == "__main__":
    main(scenario, PORT, [])
