#!/usr/bin/python3
"""edge_22_tls: TLS on the device port (--listen-tls), with mutual TLS.

- A device with a client certificate for pump-1 says hello as pump-1 over
  TLS, sends data and gets its ack (after the peer's commit) through TLS;
  the plain listener keeps working beside it.
- A certificate for pump-2 saying hello as pump-1: err{auth}.
- No client certificate: the handshake fails, nothing is welcomed.
- TLS 1.2 and TLS 1.3 both work; TLS 1.1 is refused.
- The certificate replaced under the running edge (Kubernetes style: the
  ..data symlink swapped, no signal): the open TLS connection goes on, a new
  one is served the new certificate.
- A session is resumed (a ticket) on reconnect."""
import hashlib
import os
import ssl
import time

from certs import make_ca, make_cert
from edgetest import Edge, main
from proc import check, wait_for
from wire import DATA, Closed, Device

PORT = 21440  # edge_NN: 21000 + 20 * NN (edge.cmake)


def publish(d, files, n):
    """..v<n>/ with the files, then ..data -> ..v<n> swapped atomically."""
    real = os.path.join(d, "..v%d" % n)
    os.mkdir(real)
    for name, src in files.items():
        with open(src, "rb") as f, open(os.path.join(real, name), "wb") as g:
            g.write(f.read())
    tmp = os.path.join(d, "..data_tmp")
    os.symlink("..v%d" % n, tmp)
    os.rename(tmp, os.path.join(d, "..data"))
    for name in files:
        if not os.path.islink(os.path.join(d, name)):
            os.symlink(os.path.join("..data", name), os.path.join(d, name))


def ctx_for(ca, cert=None, key=None, version=None):
    c = ssl.create_default_context(cafile=ca)
    if cert:
        c.load_cert_chain(cert, key)
    if version:
        c.minimum_version = c.maximum_version = version
    return c


def fingerprint(d):
    return hashlib.sha256(d.s.getpeercert(binary_form=True)).hexdigest()


def scenario(binary, port, work):
    ca = make_ca(work, "dev-ca")
    srv1 = make_cert(work, "edge-a", ca, ["IP:127.0.0.1"])
    srv2 = make_cert(work, "edge-b", ca, ["IP:127.0.0.1"])
    pump1 = make_cert(work, "pump-1", ca, ["DNS:pump-1"], usage="clientAuth")
    pump2 = make_cert(work, "pump-2", ca, [], usage="clientAuth")  # CN only
    sd = os.path.join(work, "tls")
    os.mkdir(sd)
    publish(sd, {"edge.pem": srv1[0], "edge.key": srv1[1]}, 1)
    tport = port + 5
    e = Edge(binary, port, os.path.join(work, "edge.log"),
             ["--listen-tls", "127.0.0.1:%d" % tport, "--tls-cert", os.path.join(sd, "edge.pem"),
              "--tls-key", os.path.join(sd, "edge.key"), "--tls-client-ca", ca])
    try:
        # hello, data, ack through TLS (1.3 by default)
        d = Device(tport, secret=e.dev().secret, tls=ctx_for(ca, *pump1))
        check(d.s.version() == "TLSv1.3", "negotiated %s" % d.s.version())
        d.login("pump-1")
        d.data(1, {"level": 3})
        got = e.pers.wait(DATA, "pump-1")
        e.pers.ack(got)
        check(d.expect("ack")["seq"] == 1, "ack over TLS")
        first = fingerprint(d)
        plain = e.dev()
        plain.login("plain-1")  # the plain listener works beside it

        # TLS 1.2 too
        d12 = Device(tport, secret=e.dev().secret, tls=ctx_for(ca, *pump2, version=ssl.TLSVersion.TLSv1_2))
        check(d12.s.version() == "TLSv1.2", "negotiated %s" % d12.s.version())
        d12.login("pump-2")  # CN = pump-2 (no SAN)

        # another device's certificate
        x = Device(tport, secret=e.dev().secret, tls=ctx_for(ca, *pump2))
        x.hello("pump-1")
        m = x.expect_err("auth")
        check("certificate" in m["msg"], "mTLS mismatch: %r" % m)

        # no client certificate: no handshake, nothing welcomed
        try:
            n = Device(tport, secret=e.dev().secret, tls=ctx_for(ca))
            n.hello("pump-1")
            m = n.recv(timeout=5)
            check(False, "welcomed without a client certificate: %r" % m)
        except (ssl.SSLError, Closed, ConnectionResetError, BrokenPipeError):
            pass
        # TLS 1.1 refused
        try:
            old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            old.load_verify_locations(ca)
            old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
            Device(tport, tls=old)
            check(False, "TLS 1.1 accepted")
        except (ssl.SSLError, ConnectionResetError):
            pass

        # the certificate replaced under the running edge
        publish(sd, {"edge.pem": srv2[0], "edge.key": srv2[1]}, 2)

        def served_new():
            n = Device(tport, secret=e.dev().secret, tls=ctx_for(ca, *pump2))
            fp = fingerprint(n)
            n.close()
            return fp != first
        wait_for(served_new, "the new certificate served", 10)
        d.send({"t": "ping"})
        check(d.expect("pong") == {"t": "pong"}, "the TLS connection made before the reload goes on")

        # resumption with the session of an earlier connection
        c = ctx_for(ca, *pump1)
        a = Device(tport, secret=e.dev().secret, tls=c)
        a.login("pump-1")  # replaces the first connection (newest wins)
        time.sleep(0.2)    # TLS 1.3 sends its ticket after the handshake
        a.send({"t": "ping"})
        a.expect("pong")
        sess = a.s.session
        a.close()
        s = c.wrap_socket(__import__("socket").create_connection(("127.0.0.1", tport)), server_hostname="127.0.0.1",
                          session=sess)
        check(s.session_reused, "session not resumed")
        s.close()
        wait_for(lambda: e.metric("sluice_edge_tls_resumed_total") >= 1, "resumption counted")
        check(e.metric("sluice_edge_tls_handshakes_total") >= 6, "handshakes counted")
        check(e.metric("sluice_edge_tls_failed_total") >= 2, "failed handshakes counted")
    finally:
        e.stop()


if __name__ == "__main__":
    main(scenario, PORT)
