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
  otherwise)."""
import os
import socket
import ssl

from certs import make_ca, make_cert
from edgetest import SECRET, Edge, main
from proc import check, wait_for
from wire import DATA, Device

PORT = 21480  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(binary, port, work):
    ca = make_ca(work, "dev-ca")
    cert, key = make_cert(work, "edge", ca, ["IP:127.0.0.1"])
    tport = port + 5
    e = Edge(binary, port, os.path.join(work, "edge.log"),
             ["--listen-tls", "127.0.0.1:%d" % tport, "--tls-cert", cert, "--tls-key", key])
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


if __name__ == "__main__":
    main(scenario, PORT)
