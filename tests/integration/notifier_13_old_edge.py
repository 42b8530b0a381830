#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Mixed versions, an edge of the previous version beside two new notifiers.

The previous edge is emulated by ntftest's Python edge (wire.py speaks version 1 of the
envelope as b8cf4d8 wrote it): one PUSH connected to both notifiers' PULLs, so its batches go
round-robin, and heartbeats without the `to` and `ring` positions. A new notifier must
still serve it: data published, statuses right (a connect and the disconnect of the same
session may reach different notifiers: every notifier reads every status, and fencing orders
them), commands taken by either notifier reach the device and get exactly one result whichever
notifier the answer reaches (both hold the command's marker), and the edge gets no
notifier heartbeat (kind 10) it never asked for (an old edge ignores unknown kinds anyway)."""
import json
import os
import sys
import time

import msgpack

import ntftest
from ntftest import CMD, CONNECT, DATA, DISCONNECT, RES, Env, check, entry, publish, wait_for
from wire import NOTIFIER_HB

BROKER, NTF, NTF2 = 23261, 23262, 23265  # notifier_NN: 23000 + 20 * NN (notifier.cmake)


class OldEdge(ntftest.Edge):
    """The previous version's edge worker: one PUSH to every notifier, heartbeats without to/ring."""

    def __init__(self, ctx, pulls, routers, edge_id):
        ntftest.wire.Edge.__init__(self, ctx, pulls, routers, edge_id, 0, None)
        self.got = []
        self.last_hb = 0.0


def main():
    with Env(BROKER, NTF) as env:
        env.ntf.argv += ["--id", "new-1", "--client-id", "mixed-1"]
        n2 = ntftest.Notifier(NTF2, BROKER, env.dir, name="notifier2", extra=["--id", "new-2", "--client-id", "mixed-2"])
        env.ntf.start()
        n2.start()
        sub = env.sub(["devices/#"])
        e = OldEdge(env.ctx, [env.ntf.pull, n2.pull], [env.ntf.router, n2.router], "old-edge:7000")
        env.edges.append(e)
        e.heartbeat()
        t0 = time.time_ns()
        devs = ["old-%d" % i for i in range(4)]
        for i, d in enumerate(devs):
            e.send(entry(CONNECT, i, 1, d, epoch=t0 + i, at_ns=t0, peer="p"))
        wait_for(lambda: all((sub.last("devices/%s/status" % d) or {}).get("online") for d in devs), "online",
                 pump=env.pump)
        for seq in range(1, 11):
            e.send(*[entry(DATA, i, 1, d, epoch=t0 + i, seq=seq, at_ns=time.time_ns(), body=msgpack.packb(seq))
                     for i, d in enumerate(devs)])
        wait_for(lambda: all(len(sub.on("devices/%s/data" % d)) == 10 for d in devs), "all data", pump=env.pump)
        # (counters reach /metrics on the notifier's next 50 ms tick)
        per = wait_for(lambda: (lambda p: sum(p) == 40 and p)(
            [env.ntf.metric("sluice_notifier_data_total"), n2.metric("sluice_notifier_data_total")]), "data counted")
        check(sum(per) == 40 and min(per) > 0, "data split %r: the old edge's PUSH round-robins" % per)

        # commands: round-robin takers; the answers round-robin too
        for k in range(6):
            d = devs[k % 4]
            publish(BROKER, "devices/%s/cmd" % d, json.dumps({"id": "m%d" % k, "body": k}))
            c = wait_for(lambda: e.received(CMD, id="m%d" % k), "cmd m%d at the old edge" % k, pump=env.pump)[0]
            check(c["dev"] == d, "cmd %r" % c)
            e.send(entry(RES, c["slot"], c["gen"], d, epoch=c["epoch"], at_ns=time.time_ns(), id="m%d" % k,
                         ok=True, body=msgpack.packb("done")))
        for k in range(6):
            wait_for(lambda: sub.on("devices/%s/cmd/m%d/result" % (devs[k % 4], k)), "result m%d" % k, pump=env.pump)
        took = wait_for(lambda: (lambda t: sum(t) == 6 and t)(
            [env.ntf.metric('sluice_notifier_commands_total{result="routed"}'),
             n2.metric('sluice_notifier_commands_total{result="routed"}')]), "commands counted")
        check(sum(took) == 6 and min(took) > 0, "commands taken %r: the shared subscription splits them" % took)

        # a disconnect of each session: offline, whichever notifier it reaches
        for i, d in enumerate(devs):
            e.send(entry(DISCONNECT, i, 1, d, epoch=t0 + i, at_ns=time.time_ns(), peer="p", reason="eof"))
        wait_for(lambda: all((sub.last("devices/%s/status" % d) or {}).get("online") is False for d in devs),
                 "offline", pump=env.pump)
        time.sleep(1.0)
        env.pump()
        for k in range(6):
            r = sub.on("devices/%s/cmd/m%d/result" % (devs[k % 4], k))
            check(r == [{"ok": True, "body": "done"}], "m%d: results %r" % (k, r))
        check(not e.received(NOTIFIER_HB), "notifier heartbeats sent to an edge that never asked for them")
        check(env.ntf.metric("sluice_notifier_heartbeats_answered_total") == 0, "heartbeats answered")
        print("old edge beside two new notifiers: data split %r, commands taken %r, one result each" % (per, took))
        n2.stop(expect=0)
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
