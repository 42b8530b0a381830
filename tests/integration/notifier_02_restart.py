#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Notifier restarted: routing is rebuilt from the retained statuses, so
commands still reach connected devices on the right edge, and a takeover
after the restart still kicks the old connection."""
import json
import sys
import time

from ntftest import CMD, CONNECT, KICK, RES, Env, check, entry, publish, wait_for

BROKER, NTF = 23041, 23042  # notifier_NN: 23000 + 20 * NN (notifier.cmake)


def main():
    with Env(BROKER, NTF) as env:
        env.ntf.start()
        sub = env.sub(["devices/#"])
        a = env.edge("edge-a:7000", worker=1)
        b = env.edge("edge-b:7000", worker=0)
        t0 = time.time_ns()
        a.send(entry(CONNECT, 5, 2, "d-1", epoch=t0, at_ns=t0, peer="p"))
        b.send(entry(CONNECT, 6, 4, "d-2", epoch=t0 + 1, at_ns=t0, peer="p"))
        wait_for(lambda: sub.received("devices/d-1/status") and sub.received("devices/d-2/status"), "statuses", pump=env.pump)

        env.ntf.stop(expect=0)    # SIGTERM: clean exit
        env.ntf.start()          # fresh process: empty table until the retained statuses arrive

        publish(BROKER, "devices/d-1/cmd", json.dumps({"id": "r-1", "body": {"x": 1}}))
        publish(BROKER, "devices/d-2/cmd", json.dumps({"id": "r-2", "body": [1]}))
        try:
            c1 = wait_for(lambda: a.received(CMD, id="r-1"), "r-1 at A", pump=env.pump)[0]
        except AssertionError:
            print(sub.all(), file=sys.stderr)
            raise
        c2 = wait_for(lambda: b.received(CMD, id="r-2"), "r-2 at B", pump=env.pump)[0]
        check(c1["dev"] == "d-1" and c1["slot"] == 5 and c1["gen"] == 2 and c1["hdr"][2] == a.inc, "r-1 %r" % c1)
        check(c2["dev"] == "d-2" and c2["slot"] == 6 and c2["gen"] == 4 and c2["hdr"][2] == b.inc, "r-2 %r" % c2)
        check(not sub.received("devices/d-1/cmd/r-1/result"), "no offline result for a routed command")
        a.send(entry(RES, 5, 2, "d-1", epoch=t0, id="r-1", ok=True))
        r = wait_for(lambda: sub.received("devices/d-1/cmd/r-1/result"), "r-1 result", pump=env.pump)
        check(r[0][0] == {"ok": True, "body": None}, "r-1 %r" % r)

        # takeover after the restart: d-1 moves to B; A's old connection is kicked
        t1 = t0 + 10**9
        b.send(entry(CONNECT, 8, 1, "d-1", epoch=t1, at_ns=t1, peer="p"))
        k = wait_for(lambda: a.received(KICK, dev="d-1"), "kick of d-1 at A", pump=env.pump)[0]
        check(k["slot"] == 5 and k["gen"] == 2, "kick %r" % k)

        # a killed notifier (no clean shutdown) also recovers its routing,
        # from what it had published before it died
        wait_for(lambda: sub.received("devices/d-1/status")[-1][0]["edge"] == "edge-b:7000", "d-1 status on B",
                 pump=env.pump)
        env.ntf.kill9()
        env.ntf.start()
        publish(BROKER, "devices/d-1/cmd", json.dumps({"id": "r-3", "body": None}))
        try:
            c3 = wait_for(lambda: b.received(CMD, id="r-3"), "r-3 at B", pump=env.pump)[0]
        except AssertionError:
            print(sub.all(), a.got, file=sys.stderr)
            raise
        check(c3["slot"] == 8 and c3["gen"] == 1, "r-3 %r" % c3)
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
