#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_15_notifiers_three: three notifiers behind two edges, one Mosquitto.

- every edge worker hears all three (its ring: ntf-0,ntf-1,ntf-2) and sends each
  device's events to the one its id hashes to (sl/ring.h, wire.ring_owner): each
  notifier's sluice_notifier_data_total is exactly the data of its own devices;
- every device's data reaches a subscriber, each message exactly once (the edges
  shed nothing here: sluice_edge_notifier_shed_total stays 0);
- statuses are right right after connects, a move to the other edge (the old
  connection is kicked) and a disconnect;
- a command to a device of each notifier gets to the device whoever takes it from
  the shared subscription, and gets exactly one result; no marker is left behind."""
import json
import time

import mqtttest
from slstack import Stack, check, log, main, publish, wait_for, PREFIX
from wire import ring_owner

PORT = 24750  # system_NN: 24000 + 50 * NN (system.cmake)
IDS = ["ntf-0", "ntf-1", "ntf-2"]
K = 20  # data messages per device


def scenario():
    with Stack(PORT, edges=2, notifiers=3) as s:
        s.start()
        wait_for(lambda: all("members=ntf-0,ntf-1,ntf-2" in s.edge(i).output() for i in range(2)),
                 "both edges' rings of three notifiers")
        m = s.mqtt()
        devs = ["n3-%02d" % i for i in range(24)]
        owner = {d: ring_owner(d, IDS) for d in devs}
        for n in IDS:
            check(sum(1 for d in devs if owner[d] == n) >= 3, "too few devices of %s: %r" % (n, owner))
        dd = {d: s.device(d, edge=i % 2) for i, d in enumerate(devs)}

        def status(d):
            return m.last("%s/%s/status" % (PREFIX, d)) or {}

        wait_for(lambda: all(status(d).get("online") is True and status(d).get("edge") == s.edge_ids[i % 2]
                             for i, d in enumerate(devs)), "every device online on its edge")
        log("24 devices online, owners %r" % {n: sum(1 for d in devs if owner[d] == n) for n in IDS})

        # --- data: every message once, each through its device's notifier
        for d in devs:
            for seq in range(1, K + 1):
                dd[d].data(seq, {"i": seq})
        for d in devs:
            dd[d].acks(range(1, K + 1))

        def got():
            out = {}
            for t, p, _ in m.all():
                if t.endswith("/data"):
                    out.setdefault(p["dev"], []).append(p["seq"])
            return out

        wait_for(lambda: sum(len(v) for v in got().values()) >= len(devs) * K, "all data at the subscriber")
        time.sleep(0.5)  # room for duplicates to show up
        g = got()
        for d in devs:
            check(sorted(g.get(d, [])) == list(range(1, K + 1)), "%s: data seqs %r" % (d, g.get(d)))
        for i in range(2):
            check(s.edge(i).metric("sluice_edge_notifier_shed_total") == 0, "edge %d shed data" % i)
        # (counters reach /metrics on the notifier's next 50 ms tick)
        want = [K * sum(1 for d in devs if owner[d] == n) for n in IDS]
        have = wait_for(lambda: (lambda h: sum(h) == len(devs) * K and h)(
            [s.ntf(k).metric("sluice_notifier_data_total") for k in range(3)]), "data counted")
        check(have == want, "data messages published per notifier %r, devices' per owner %r" % (have, want))
        log("data: %d messages, each once; per notifier exactly its own devices'" % (len(devs) * K))

        # --- a command to a device of each notifier, whoever takes it
        cmds = []
        for n in IDS:
            d = [x for x in devs if owner[x] == n][0]
            cid = "c-%s" % n
            publish(s.mqtt_port, "%s/%s/cmd" % (PREFIX, d), {"id": cid, "body": {"to": n}})
            c = dd[d].expect("cmd")
            check(c["id"] == cid and c["body"] == {"to": n}, "cmd at %s: %r" % (d, c))
            dd[d].send({"t": "res", "id": cid, "ok": True, "body": {"by": d}})
            cmds.append((d, cid))
        for d, cid in cmds:
            r = wait_for(lambda: m.last("%s/%s/cmd/%s/result" % (PREFIX, d, cid)), "result of " + cid)
            check(r == {"ok": True, "body": {"by": d}}, "result %r" % r)
        takers = wait_for(lambda: (lambda t: sum(t) == 3 and t)(
            [s.ntf(k).metric('sluice_notifier_commands_total{result="routed"}') for k in range(3)]), "commands counted")
        log("commands to a device of each notifier: one result each; routed by %r" % takers)

        # --- a move to the other edge, and a disconnect
        mover = [x for x in devs if owner[x] == "ntf-1"][0]
        i_old = devs.index(mover) % 2
        new = s.device(mover, edge=1 - i_old)
        dd[mover].expect_err("replaced")
        wait_for(lambda: status(mover).get("edge") == s.edge_ids[1 - i_old] and status(mover)["online"],
                 "status of %s on the other edge" % mover)
        leaver = [x for x in devs if owner[x] == "ntf-2"][0]
        dd[leaver].close()
        wait_for(lambda: status(leaver).get("online") is False, "status of %s offline" % leaver)
        new.close()
        wait_for(lambda: status(mover).get("online") is False, "status of %s offline" % mover)
        log("statuses follow a move and disconnects")

        # --- one result each, and no marker left
        time.sleep(1.5)
        for d, cid in cmds:
            n = len(m.on("%s/%s/cmd/%s/result" % (PREFIX, d, cid)))
            check(n == 1, "%d results for %s" % (n, cid))
        left = mqtttest.Subscriber(s.mqtt_port, [PREFIX + "/_sluice/pending/#"])
        time.sleep(0.5)
        check(left.count() == 0, "markers left behind: %r" % left.all())
        left.close()
        for d in devs:
            if d not in (mover, leaver):
                dd[d].close()
        log("no marker left; notifiers: %s" % json.dumps(
            {n: s.ntf(k).metric("sluice_notifier_heartbeats_answered_total") for k, n in enumerate(IDS)}))


if __name__ == "__main__":
    main(scenario)
