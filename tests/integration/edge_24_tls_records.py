#!/usr/bin/python3
"""edge_24_tls_records: the edge reads every TLS record that arrived, and a
device that vanishes without close_notify is an ordinary EOF.

- Two data frames in two TLS records sent in one TCP segment (TCP_CORK):
  both reach the persister at once. A TLS read returns one record at most,
  so "fewer bytes than asked" does not mean the socket is drained; with
  edge-triggered epoll the second record used to wait for the device's
  next bytes (its ack came only after a resend, 10 s later with the device
  library).
- A TLS device that closes its socket without close_notify (a crash, a
  power cut, most embedded stacks) is closed with reason "eof", not counted
  as a TLS failure (OpenSSL 3 reports such an EOF as an error unless told
  otherwise).
- What the edge recorded (--record: the decrypted bytes) replays over TLS
  (sluice-replay --tls-ca) against a second TLS edge with the same
  answers."""
import os
import socket
import ssl

import proc
from certs import make_ca, make_cert
from edgetest import SECRET, Edge, main, replay_bin
from proc import check, wait_for
from wire import DATA, Device

PORT = 21480  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(binary, port, work):
    ca = make_ca(work, "dev-ca")
    cert, key = make_cert(work, "edge", ca, ["IP:127.0.0.1"])
    tport = port + 5
    rec = os.path.join(work, "tls.rec")
    tls_flags = ["--tls-cert", cert, "--tls-key", key]
    e = Edge(binary, port, os.path.join(work, "edge.log"), ["--listen-tls", "127.0.0.1:%d" % tport, "--record", rec]
             + tls_flags)
    try:
        ctx = ssl.create_default_context(cafile=ca)
        d = Device(tport, secret=SECRET, tls=ctx)
        d.login("rec-1")
        d.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        d.data(1, {"n": 1})  # one record each
        d.data(2, {"n": 2})
        d.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)  # one segment with both
        got = e.pers.wait(DATA, "rec-1", count=2)
        check(sorted(x[5] for x in got) == [1, 2], "data entries %r" % [x[5] for x in got])
        e.pers.ack(got)
        check(sorted([d.expect("ack")["seq"], d.expect("ack")["seq"]]) == [1, 2], "both acked")

        failed = e.metric("sluice_edge_tls_failed_total")
        eof = e.metric('sluice_edge_connections_closed_total{reason="eof"}')
        d.s.close()  # Python's close sends no close_notify (unwrap() would)
        wait_for(lambda: e.metric('sluice_edge_connections_closed_total{reason="eof"}') == eof + 1,
                 "the vanished TLS device closed as eof", 10)
        check(e.metric("sluice_edge_tls_failed_total") == failed, "a vanished device counted as a TLS failure")
        check(e.metric('sluice_edge_connections_closed_total{reason="tls"}') == 0, "closed with reason tls")
    finally:
        e.stop()

    e2 = Edge(binary, port + 10, os.path.join(work, "edge2.log"), ["--listen-tls", "127.0.0.1:%d" % (tport + 10)]
              + tls_flags)
    try:
        p = proc.Proc("replay", [replay_bin(binary), "--edge", "127.0.0.1:%d" % (tport + 10), "--tls-ca", ca,
                                 "--linger-ms", "5000", rec], os.path.join(work, "replay.log")).start(wait=False)
        acked = set()

        def pump():  # play the persister: ack what arrives
            e2.pers.poll(20)
            new = [x for h, x in e2.pers.entries if x[0] == DATA and x[5] not in acked]
            acked.update(x[5] for x in new)
            if new:
                e2.pers.ack(new)
        wait_for(lambda: not p.alive(), "sluice-replay to exit", 60, pump=pump, interval=0.001)
        out = p.output()
        check(p.wait() == 0, "sluice-replay failed:\n" + out)
        check(acked == {1, 2}, "replayed data %r" % acked)
        check("summary connections=1 " in out and "summary result=same" in out, "replay summary:\n" + out)
        check(e2.metric("sluice_edge_tls_handshakes_total") == 1, "the replay spoke TLS")
    finally:
        e2.stop()


if __name__ == "__main__":
    main(scenario, PORT)
