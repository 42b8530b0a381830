#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_16_notifier_kill: three notifiers; one (ntf-1) is killed with SIGKILL while devices
stream data and commands are in flight, then started again.

- commands routed before the kill (the device has the cmd frame, whoever took it) and answered
  right after it: each gets exactly one result, the device's own (an answer an edge hands to the
  dead notifier before it notices is routed again once its connection closes);
- the killed notifier's devices: their data reaches the subscriber again, and their statuses
  follow new events, within RESUME_S of the kill (the edges drop it from their ring when its
  connections close; what it held when it died is lost from the live view);
- devices whose notifier did not change (the others') lose nothing and get nothing twice;
- after the restart its devices come back to it (its data_total grows), commands sent around
  the restart get exactly one result each, and again the others' data is neither lost nor doubled;
- a notifier that dies with the devices' answers in its socket (stopped, answered, then killed):
  the edges route what it had not confirmed to its successor, and each command gets the device's
  answer, not a timeout;
- a notifier stopped by SIGTERM (a rolling restart) stops pulling at once: the answers that reach
  its socket after that are routed to its successor when it exits, and each command again gets
  the device's answer."""
import signal
import time

from slstack import Stack, check, log, main, publish, wait_for, PREFIX
from wire import ring_owner

PORT = 24800  # system_NN: 24000 + 50 * NN (system.cmake)
IDS = ["ntf-0", "ntf-1", "ntf-2"]
VICTIM = 1
RESUME_S = 5.0  # documented bound (docs/notifier.md, "A notifier dies"); measured ~0.1-1 s


def last_ring(p):
    """The members the edge's worker logged last (event=notifier_ring)."""
    rings = [ln.split("members=", 1)[1].split(" ")[0] for ln in p.output().splitlines() if "event=notifier_ring" in ln]
    return rings[-1] if rings else None


def scenario():
    with Stack(PORT, edges=2, notifiers=3, notifier_extra=("--cmd-timeout-ms", "30000")) as s:
        s.start()
        wait_for(lambda: all("members=ntf-0,ntf-1,ntf-2" in s.edge(i).output() for i in range(2)),
                 "both edges' rings of three notifiers")
        m = s.mqtt()
        victim = s.ntf(VICTIM)
        survivors = [i for i in IDS if i != IDS[VICTIM]]

        # command devices: raw connections that answer when told to
        cdevs = ["kc-%02d" % i for i in range(12)]
        check(sum(1 for d in cdevs if ring_owner(d, IDS) == IDS[VICTIM]) >= 3, "too few victim command devices")
        dd = {d: s.device(d, edge=i % 2) for i, d in enumerate(cdevs)}

        def status(d):
            return m.last("%s/%s/status" % (PREFIX, d)) or {}

        wait_for(lambda: all(status(d).get("online") for d in cdevs), "command devices online")

        # a data stream through both edges, before, during and after the kill
        run = s.devsim(30, duration=16, rate=20, prefix="ks", background=True, name="devsim-ks",
                       extra=("--ack-timeout-ms", "20000"))
        sdevs = ["ks-%d" % i for i in range(30)]
        wait_for(lambda: sum(1 for t, _, _ in m.all() if t.endswith("/data")) >= 600, "data flowing")

        def cmd_round(tag):
            for d in cdevs:
                publish(s.mqtt_port, "%s/%s/cmd" % (PREFIX, d), {"id": "%s-%s" % (tag, d), "body": tag})
            for d in cdevs:
                c = dd[d].expect("cmd")
                check(c["id"] == "%s-%s" % (tag, d), "%s got %r" % (d, c))

        def answer_round(tag):
            for d in cdevs:
                dd[d].send({"t": "res", "id": "%s-%s" % (tag, d), "ok": True, "body": {"dev": d}})

        def results(tag):
            return {d: m.on("%s/%s/cmd/%s-%s/result" % (PREFIX, d, tag, d)) for d in cdevs}

        # --- routed before the kill, answered after it
        cmd_round("a")
        log("12 commands routed; killing %s" % IDS[VICTIM])
        kill_wall_ms, kill_t = time.time() * 1000, time.monotonic()
        victim.kill9()
        answer_round("a")

        # a device of the dead notifier connects: its status must appear anyway
        newcomer = [d for d in ("kn-%d" % i for i in range(100)) if ring_owner(d, IDS) == IDS[VICTIM]][0]
        nd = s.device(newcomer, edge=0)
        wait_for(lambda: status(newcomer).get("online") is True, "status of %s after the kill" % newcomer,
                 timeout=RESUME_S)
        status_s = time.monotonic() - kill_t

        def first_after(devs):
            """Subscriber time of the first data message of devs the edge received after the kill."""
            for t_rx, topic, p, _ in list(m.msgs):
                if topic.endswith("/data") and p["dev"] in devs and p["rx"] > kill_wall_ms + 200:
                    return t_rx
            return None

        vdevs = {d for d in sdevs if ring_owner(d, IDS) == IDS[VICTIM]}
        t_first = wait_for(lambda: first_after(vdevs), "data of %s's devices again" % IDS[VICTIM],
                           timeout=RESUME_S + 5)
        data_s = t_first - kill_t
        check(data_s <= RESUME_S, "data of the dead notifier's devices resumed after %.1fs" % data_s)
        r = wait_for(lambda: all(v for v in results("a").values()) and results("a"), "results of round a")
        for d, v in r.items():
            check(v[0] == {"ok": True, "body": {"dev": d}}, "%s: result %r" % (d, v))
        log("after the kill: status of a new device in %.2fs, its data again in %.2fs, 12 results" %
            (status_s, data_s))

        # commands to its devices while it is down: the survivors take and route them
        cmd_round("b")
        answer_round("b")
        wait_for(lambda: all(results("b").values()), "results of round b")
        nd.close()
        wait_for(lambda: status(newcomer).get("online") is False, "status of %s offline" % newcomer)

        # --- back: its share moves back; commands around the restart
        cmd_round("c")
        victim.start()
        answer_round("c")
        wait_for(lambda: all(last_ring(s.edge(i)) == "ntf-0,ntf-1,ntf-2" for i in range(2)), "both rings whole again")
        wait_for(lambda: all(results("c").values()), "results of round c")
        cmd_round("d")
        answer_round("d")
        wait_for(lambda: all(results("d").values()), "results of round d")
        d0 = victim.metric("sluice_notifier_data_total")
        wait_for(lambda: victim.metric("sluice_notifier_data_total") > d0 + 20, "data through %s again" % IDS[VICTIM])

        # --- dead with the answers unread: stopped, so it reads nothing but its connections stay
        # open (0.5 s, well inside the 3 s after which a silent notifier leaves the rings), the
        # devices answer, then SIGKILL. Without the edges keeping what it had not confirmed, its
        # devices' commands end with a timeout at the 30 s deadline.
        cmd_round("e")
        rerouted = sum(s.edge(i).metric("sluice_edge_notifier_ctl_rerouted_total") for i in range(2))
        victim.signal(signal.SIGSTOP)
        answer_round("e")
        time.sleep(0.5)
        victim.kill9()
        r = wait_for(lambda: all(v for v in results("e").values()) and results("e"), "results of round e",
                     timeout=40)
        for d, v in r.items():
            check(v[0] == {"ok": True, "body": {"dev": d}}, "%s: result %r" % (d, v))
        moved = sum(s.edge(i).metric("sluice_edge_notifier_ctl_rerouted_total") for i in range(2)) - rerouted
        nv = sum(1 for d in cdevs if ring_owner(d, IDS) == IDS[VICTIM])
        check(moved >= nv, "edges routed %d unconfirmed entries again, %d answers were the victim's" % (moved, nv))
        log("round e: %d answers in the stopped-then-killed notifier's socket, all delivered (%d entries "
            "routed again)" % (nv, moved))

        # --- SIGTERM: answered right after the signal, while it flushes and no longer pulls
        victim.start()
        wait_for(lambda: all(last_ring(s.edge(i)) == "ntf-0,ntf-1,ntf-2" for i in range(2)), "both rings whole")
        cmd_round("f")
        victim.signal(signal.SIGTERM)
        answer_round("f")
        check(victim.wait(30) == 0, "%s: no clean exit on SIGTERM" % IDS[VICTIM])
        r = wait_for(lambda: all(v for v in results("f").values()) and results("f"), "results of round f",
                     timeout=40)
        for d, v in r.items():
            check(v[0] == {"ok": True, "body": {"dev": d}}, "%s: result %r" % (d, v))

        summary = run.result()
        log("devsim: sent=%d acked=%d resent=%d" % (summary["sent"], summary["acked"], summary["resent"]))
        time.sleep(2)  # late duplicates, if any, show up

        # --- one result per command, the device's own
        for tag in "abcdef":
            for d, v in results(tag).items():
                check(len(v) == 1, "%d results for %s-%s: %r" % (len(v), tag, d, v))
                check(v[0] == {"ok": True, "body": {"dev": d}}, "%s-%s: %r" % (tag, d, v[0]))
        # --- devices whose notifier never changed: everything once
        seqs = {}
        for t, p, _ in m.all():
            if t.endswith("/data") and p["dev"] in sdevs:
                seqs.setdefault(p["dev"], []).append(p["seq"])
        stable = [d for d in sdevs if ring_owner(d, IDS) != IDS[VICTIM]]
        check(summary["resent"] == 0, "devsim resent %d: duplicates would be expected" % summary["resent"])
        per_dev = summary["sent"] // 30  # about: each device sends at the same rate
        for d in stable:
            got = seqs.get(d, [])
            check(got, "%s: no data published" % d)
            check(len(got) == len(set(got)), "%s: %d messages published twice" % (d, len(got) - len(set(got))))
            check(max(got) - min(got) + 1 == len(got), "%s: %d messages missing" % (d, max(got) - min(got) + 1 - len(got)))
        lost = sum(max(v) - min(v) + 1 - len(set(v)) for v in (seqs.get(d, [0]) for d in vdevs))
        shed = sum(s.edge(i).metric("sluice_edge_notifier_shed_total") for i in range(2))
        log("stable devices: every message once; the dead notifier's %d devices: ~%d of %d messages missing "
            "(edges shed %d meanwhile); survivors %s" % (len(vdevs), lost, per_dev * len(vdevs), shed, survivors))
        for d in cdevs:
            dd[d].close()


if __name__ == "__main__":
    main(scenario)
