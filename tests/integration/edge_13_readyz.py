#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_13_readyz: /readyz follows the persister's PUSH and ROUTER, reports the notifier
but never requires it, and says draining after SIGTERM."""
import signal

import zmq

from edgetest import DEADLINE, Peer, main, rebind
from proc import wait_for

PORT = 21260  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(e):
    """Ready = listening and connected to a persister (PUSH peer and ROUTER);
    the notifier is reported, never required. Started with no notifier."""
    def state(code, body):
        return wait_for(lambda: e.http("/readyz") == (code, body), "/readyz %d %r" % (code, body), DEADLINE)
    state(200, "ready persister=up notifier=down")
    assert e.metric("sluice_edge_persister_connected") == 1
    assert e.metric("sluice_edge_notifier_connected") == 0
    # the persister ROUTER goes (no acks could come back): not ready
    e.pers.router.close(linger=0)
    state(503, "not ready persister=down notifier=down")
    assert e.metric("sluice_edge_persister_connected") == 0
    e.pers.router = rebind(zmq.ROUTER, e.base + 2, e.ctx)
    state(200, "ready persister=up notifier=down")
    # a notifier arrives: reported, and readiness does not depend on it
    e.noti = Peer(e.ctx, e.base + 3, e.base + 4)
    state(200, "ready persister=up notifier=up")
    assert e.metric("sluice_edge_notifier_connected") == 1
    # the persister PULL goes (nothing could be sent): not ready, notifier still up
    e.pers.pull.close(linger=0)
    state(503, "not ready persister=down notifier=up")
    # no persister at all
    e.pers.router.close(linger=0)
    state(503, "not ready persister=down notifier=up")
    assert e.metric("sluice_edge_persister_connected") == 0
    assert e.metric("sluice_edge_notifier_connected") == 1
    e.pers.pull = rebind(zmq.PULL, e.base + 1, e.ctx)
    e.pers.router = rebind(zmq.ROUTER, e.base + 2, e.ctx)
    state(200, "ready persister=up notifier=up")
    # SIGTERM: not ready, and the body says why
    e.proc.signal(signal.SIGTERM)
    state(503, "not ready draining")


if __name__ == "__main__":
    main(scenario, PORT, [], notifier=False)
