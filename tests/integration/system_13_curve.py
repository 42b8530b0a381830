#!/usr/bin/python3
"""system_13_curve: CURVE on every ZeroMQ link (docs/security.md), with the real persister,
PostgreSQL, notifier and edges, keys made by sluice-keys.
- edge-a (key bound to edge-a, allowed by both services): a device's data is acked and stored,
  and an operator command reaches it and its result comes back;
- edge-b (its own key, not in the services' allowed directories): its device is welcomed but
  never acked, nothing of it is stored, edge-b is not ready (persister=down), and the services
  count the refused handshakes;
- an allowed impostor (key bound to edge-x) cannot act as edge-a: its batches naming edge-a (or
  edge-a's reply address under its own edge id) are dropped and counted by the persister (no row)
  and by the notifier (a connect with a huge epoch does not take edge-a's device), and a DEALER
  with edge-a's documented identity "edge-a/0" receives none of edge-a's acks or commands: the
  real identity carries a secret part."""
import os
import socket
import subprocess
import time

import zmq

import proc
import wire
from slstack import Stack, check, log, main, publish, wait_for, PREFIX

PORT = 24650  # system_NN: 24000 + 50 * NN (system.cmake)


def make_keys(dir):
    """persister, notifier, edge-a, edge-b, edge-x pairs; allow/ holds edge-a and edge-x only."""
    keys = proc.binary("sluice-keys")
    allow = os.path.join(dir, "allow")
    os.makedirs(allow)
    for name, bound in (("persister", None), ("notifier", None), ("edge-a", "edge-a"), ("edge-b", "edge-b"),
                        ("edge-x", "edge-x")):
        argv = [keys, "--out", os.path.join(dir, name + ".key")] + (["--edge-id", bound] if bound else [])
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        check(r.returncode == 0, "sluice-keys %s: %s" % (name, r.stdout.decode(errors="replace")))
    for name in ("edge-a", "edge-x"):
        os.link(os.path.join(dir, name + ".key"), os.path.join(allow, name + ".key"))
    return allow


def edge_keys(dir, name):
    return ("--curve-key", os.path.join(dir, name + ".key_secret"), "--persister-key",
            os.path.join(dir, "persister.key"), "--notifier-key", os.path.join(dir, "notifier.key"))


def scenario():
    keydir = proc.workdir("sl-sys-curve-keys-")
    allow = make_keys(keydir)
    svc = lambda name: ("--curve-key", os.path.join(keydir, name + ".key_secret"), "--curve-allow", allow)  # noqa
    with Stack(PORT, edges=1, persister_extra=svc("persister"), notifier_extra=svc("notifier"),
               edge_extra=edge_keys(keydir, "edge-a")) as s:
        s.start()  # waits for edge-a's /readyz: its CURVE handshakes with both services succeeded
        m = s.mqtt()
        # edge-b: a key the services do not know. Started by hand, since it never gets ready.
        eb = proc.Proc("edge-b", [
            proc.binary("sluice-edge"), "--listen", "127.0.0.1:%d" % s.edge_port(1), "--edge-id", "edge-b",
            "--workers", "1", "--metrics", "127.0.0.1:%d" % (PORT + 13),
            "--persister-push", "tcp://127.0.0.1:%d" % (PORT + 2), "--persister-router", "tcp://127.0.0.1:%d" % (PORT + 3),
            "--notifier-push", "tcp://127.0.0.1:%d" % (PORT + 5), "--notifier-router", "tcp://127.0.0.1:%d" % (PORT + 6),
            "--drain-timeout-ms", "1000"] + list(edge_keys(keydir, "edge-b")),
            os.path.join(s.dir, "edge-b.log"), env={"SLUICE_FLEET_SECRET": "sluice-system-test-secret"},
            http="127.0.0.1:%d" % (PORT + 13), ready=proc.http_ok("/healthz"))
        eb.start()

        # edge-a: acked, stored, commands both ways.
        da = s.device("curve-a", edge=0)
        da.data(1, {"v": 1})
        da.acks([1])
        check(s.sql("select edge_id from telemetry where device_id = 'curve-a'") == [("edge-a",)], "curve-a's row")
        wait_for(lambda: (m.last("%s/curve-a/status" % PREFIX) or {}).get("online"), "curve-a online")
        publish(s.mqtt_port, "%s/curve-a/cmd" % PREFIX, {"id": "k1", "body": 1})
        check(da.expect("cmd")["id"] == "k1", "cmd k1 on curve-a")
        da.send({"t": "res", "id": "k1", "ok": True})
        wait_for(lambda: m.last("%s/curve-a/cmd/k1/result" % PREFIX), "result of k1")
        log("edge-a (allowed key): acked, stored, command round trip")

        # edge-b: refused by both services; its device is never acked, nothing stored. (Without a
        # persister the edge soon stops reading devices: the hello may not even be answered.)
        db = wire.Device(s.edge_port(1), "curve-b", "sluice-system-test-secret")
        db.hello()
        db.data(1, {"v": 1})
        wait_for(lambda: (s.persister.metric('sluice_persister_curve_handshakes_total{result="refused"}') or 0) >= 1
                 and (s.notifier.metric('sluice_notifier_curve_handshakes_total{result="refused"}') or 0) >= 1,
                 "both services refuse edge-b's key")
        got_b = []
        try:
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                got_b.append(db.recv(max(0.01, end - time.monotonic())).get("t"))
        except (socket.timeout, wire.Closed):
            pass
        check("ack" not in got_b, "edge-b's device was acked: %r" % got_b)
        check(s.sql("select count(*) from telemetry where device_id = 'curve-b'") == [(0,)], "curve-b stored")
        code, body = eb.http("/readyz")
        check(code == 503 and "persister=down" in body, "edge-b ready? %s %r" % (code, body))
        log("edge-b (unknown key): not acked, nothing stored, not ready: %r" % body.strip())
        db.close()
        eb.stop()

        # The impostor: an allowed key, bound to edge-x.
        ctx = zmq.Context()
        pub, sec = wire.zcert_keys(os.path.join(keydir, "edge-x.key_secret"))
        ppub = wire.zcert_keys(os.path.join(keydir, "persister.key"))[0]
        npub = wire.zcert_keys(os.path.join(keydir, "notifier.key"))[0]
        ep = lambda n: "tcp://127.0.0.1:%d" % (PORT + n)  # noqa
        # Its DEALERs take edge-a's documented identity on both ROUTERs.
        imp_p = wire.Edge(ctx, [ep(2)], [ep(3)], "edge-a", curve=(pub, sec, ppub), immediate=True)
        imp_n = wire.Edge(ctx, [ep(5)], [ep(6)], "edge-a", curve=(pub, sec, npub), immediate=True)
        time.sleep(0.5)  # their handshakes (allowed: edge-x's key is known)
        st0 = m.last("%s/curve-a/status" % PREFIX)
        now = time.time_ns()
        # Batches naming edge-a, then edge-x's own id with edge-a's reply address.
        imp_p.send(wire.entry(wire.DATA, 1, 1, "imp-1", epoch=now, seq=1, at_ns=now, body=b"\x01"))
        imp_n.send(wire.entry(wire.CONNECT, 1, 1, "curve-a", epoch=now + 10 ** 15, at_ns=now, peer="x:1"))
        forged = wire.Edge(ctx, [ep(2)], [], "edge-x", reply=imp_p.reply + "/0", curve=(pub, sec, ppub),
                           immediate=True)
        forged.send(wire.entry(wire.DATA, 1, 1, "imp-2", epoch=now, seq=1, at_ns=now, body=b"\x01"))
        wait_for(lambda: (s.persister.metric("sluice_persister_curve_impostor_batches_total") or 0) >= 2 and
                 (s.notifier.metric("sluice_notifier_curve_impostor_batches_total") or 0) >= 1,
                 "impostor batches counted by both services")
        # Meanwhile edge-a's device keeps working, and nothing reaches the impostor's DEALERs.
        da.data(2, {"v": 2})
        da.acks([2])
        publish(s.mqtt_port, "%s/curve-a/cmd" % PREFIX, {"id": "k2", "body": 2})
        check(da.expect("cmd")["id"] == "k2", "cmd k2 on curve-a")
        da.send({"t": "res", "id": "k2", "ok": True})
        wait_for(lambda: m.last("%s/curve-a/cmd/k2/result" % PREFIX), "result of k2")
        got = imp_p.recv(500) + imp_n.recv(500)
        check(got == [], "the impostor's DEALER received %r" % got)
        check(s.sql("select count(*) from telemetry where device_id like %s", ("imp-%",)) == [(0,)], "impostor rows")
        st = m.last("%s/curve-a/status" % PREFIX)
        check(st["edge"] == "edge-a" and st["epoch"] == st0["epoch"], "curve-a's status changed: %r" % st)
        log("impostor: %d persister and %d notifier batches dropped; its DEALERs got nothing" %
            (s.persister.metric("sluice_persister_curve_impostor_batches_total"),
             s.notifier.metric("sluice_notifier_curve_impostor_batches_total")))
        for e in (imp_p, imp_n, forged):
            e.close()
        ctx.term()
        da.close()
    proc.finish(keydir, True)


if __name__ == "__main__":
    main(scenario)
