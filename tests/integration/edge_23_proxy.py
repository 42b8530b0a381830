#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_23_proxy: the edge behind a load balancer (--proxy-protocol, PROXY v2).

- From an allowed balancer (--proxy-from 127.0.0.2/32): the header's source
  address becomes the connection's peer (the connect envelope names
  203.0.113.7:5555, not the balancer), on the plain and on the TLS listener
  (the header comes before the TLS handshake).
- The per-address limits apply to that address, not to the balancer's.
- The LOCAL command (a balancer's health check) keeps the balancer's address.
- From an address not in --proxy-from: refused, nothing welcomed.
- A balancer that sends no PROXY header: err{proto}."""
import os
import select
import socket
import ssl
import struct

from certs import make_ca, make_cert
from edgetest import SECRET, Edge, main
from proc import check, wait_for
from wire import CONNECT, Closed, Device

PORT = 21460  # edge_NN: 21000 + 20 * NN (edge.cmake)
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(src, sport, dst="127.0.0.1", dport=7000, local=False):
    if local:
        return SIG + bytes([0x20, 0x00]) + struct.pack(">H", 0)
    a = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport)
    tlv = bytes([0x04, 0x00, 0x02, 0xab, 0xcd])  # a TLV the edge skips
    return SIG + bytes([0x21, 0x11]) + struct.pack(">H", len(a) + len(tlv)) + a + tlv


def scenario(binary, port, work):
    ca = make_ca(work, "ca")
    srv = make_cert(work, "edge", ca, ["IP:127.0.0.1"])
    tport = port + 5
    e = Edge(binary, port, os.path.join(work, "edge.log"),
             ["--proxy-protocol", "--proxy-from", "127.0.0.2/32", "--listen-tls", "127.0.0.1:%d" % tport,
              "--tls-cert", srv[0], "--tls-key", srv[1], "--source-max-early", "1"])
    try:
        d = Device(port, secret=SECRET, src="127.0.0.2", pre=v2("203.0.113.7", 5555))
        d.login("behind-lb-1")
        c = e.pers.wait(CONNECT, "behind-lb-1")[0]
        check(c[8] == "203.0.113.7:5555", "peer recorded %r" % c[8])

        # TLS behind the balancer: the header first, then the handshake
        t = Device(tport, secret=SECRET, src="127.0.0.2", pre=v2("203.0.113.8", 6666),
                   tls=ssl.create_default_context(cafile=ca))
        t.login("behind-lb-tls")
        c = e.pers.wait(CONNECT, "behind-lb-tls")[0]
        check(c[8] == "203.0.113.8:6666", "TLS peer recorded %r" % c[8])

        # the per-address limit counts the device's address: one early at most
        # (two workers read the two headers: either may be judged first)
        x1 = Device(port, secret=SECRET, src="127.0.0.2", pre=v2("198.51.100.9", 1000))
        x2 = Device(port, secret=SECRET, src="127.0.0.2", pre=v2("198.51.100.9", 1001))
        ready, _, _ = select.select([x1.s, x2.s], [], [], 8)
        check(len(ready) == 1, "one of two early connections from one address refused, got %d" % len(ready))
        if ready[0] is x1.s:
            x1, x2 = x2, x1
        m = x2.expect_err("busy")
        check(m.get("retry_ms", 0) > 0, "refusal without retry_ms: %r" % m)
        y = Device(port, secret=SECRET, src="127.0.0.2", pre=v2("198.51.100.10", 1000))
        y.login("other-source")  # another address behind the same balancer
        x1.login("first-of-nine")

        # a health check: LOCAL keeps the balancer's own address
        h = Device(port, secret=SECRET, src="127.0.0.2", pre=v2(None, 0, local=True))
        h.login("health")
        c = e.pers.wait(CONNECT, "health")[0]
        check(c[8].startswith("127.0.0.2:"), "LOCAL peer %r" % c[8])

        # not a balancer: refused before anything is read
        try:
            n = Device(port, secret=SECRET, src="127.0.0.1", pre=v2("203.0.113.7", 5555))
            n.hello("sneaky")
            m = n.recv(timeout=5)
            check(False, "a PROXY header from a non-balancer was welcomed: %r" % m)
        except (Closed, ConnectionResetError, BrokenPipeError):
            pass
        # a balancer without a header: err proto
        b = Device(port, secret=SECRET, src="127.0.0.2")
        b.hello("no-header")
        b.expect_err("proto")
        # the err frame is written before the close is counted: the device can
        # read it first, so wait for the count rather than read it once
        wait_for(lambda: e.metric('sluice_edge_connections_closed_total{reason="proto"}') >= 1, "proto close counted",
                 10)
    finally:
        e.stop()


if __name__ == "__main__":
    main(scenario, PORT)
