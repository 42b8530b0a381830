#!/usr/bin/python3
"""system_14_tls: devices speak mutual TLS through the device library (sluice-devsim) to two edges
that share ticket keys; one edge is killed (-9) mid-stream.

- 20 devices x 20 msg/s for 6 s over TLS, each presenting the one client certificate (a SAN per
  device id: the edges require client certificates and check them against the hello's dev):
  hello, data and ack through the library; every message acked and stored exactly once.
- The devices of the killed edge reconnect to the other one and resume their TLS sessions there
  (the session survives the reset; the edges share --tls-ticket-keys): resumptions counted by
  devsim and by the surviving edge.
- The certificate of another device (or none) gets no welcome: covered by edge_22_tls; a CA that
  did not sign the edge's certificate: by test_client_tls."""
import os
import shutil
import tempfile

from certs import make_ca, make_cert
from slstack import Stack, check, check_devsim, log, main, wait_for

PORT = 24700  # system_NN: 24000 + 50 * NN (system.cmake); TLS listeners on PORT + 40 + i

N = 20


def scenario():
    d = tempfile.mkdtemp(prefix="sl-sys-13-certs-")
    try:
        run(*certificates(d))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(ca, dev_cert, tls_flags):
    with Stack(PORT, edges=2, edge_extra=lambda i: tls_flags + ["--listen-tls", "127.0.0.1:%d" % (PORT + 40 + i)]) as s:
        s.start()
        r = s.devsim(N, duration=6, rate=20, prefix="tls", background=True, name="devsim-tls",
                     extra=("--edges", "127.0.0.1:%d,127.0.0.1:%d" % (PORT + 40, PORT + 41),
                            "--tls-ca", ca, "--tls-cert", dev_cert[0], "--tls-key", dev_cert[1],
                            "--ack-timeout-ms", "2000", "--drain-s", "30"))
        try:
            wait_for(lambda: s.sql("select count(distinct device_id) from telemetry where device_id like %s",
                                   ("tls-%",))[0][0] == N, "rows from every device")
            on_a = s.edge(0).metric("sluice_edge_tls_handshakes_total")
            check(on_a >= N // 2, "edge-a completed %d handshakes for its %d devices" % (on_a, N // 2))
            s.edge(0).kill9()
            log("edge-a killed (-9) with %d TLS devices" % on_a)
        except BaseException:
            r.kill9()
            raise
        res = r.result()
        check_devsim(res)
        devs, rows = s.count_check("tls", N, res["sent"])
        log("PostgreSQL: %d devices, %d rows, each exactly once; devsim tls=%r" % (devs, rows, res["tls"]))
        check(res["tls"]["handshakes"] >= N + N // 2, "handshakes %r" % res["tls"])
        check(res["tls"]["resumed"] >= N // 2, "the moved devices did not resume: %r" % res["tls"])
        resumed_b = s.edge(1).metric("sluice_edge_tls_resumed_total")
        check(resumed_b >= N // 2, "edge-b resumed %d sessions" % resumed_b)
        check(s.edge(1).metric("sluice_edge_tls_failed_total") == 0, "TLS failures on edge-b")


def certificates(d):
    """A fleet CA, the edges' certificate, one client certificate naming every device, and a
    ticket key file both edges share."""
    ca = make_ca(d, "fleet-ca")
    cert, key = make_cert(d, "edge", ca, ["IP:127.0.0.1"])
    dev_cert = make_cert(d, "devsim", ca, ["DNS:tls-%d" % i for i in range(N)], usage="clientAuth")
    keys = os.path.join(d, "ticket.keys")
    with open(keys, "wb") as f:
        f.write(os.urandom(80))
    os.chmod(keys, 0o600)
    return ca, dev_cert, ["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca, "--tls-ticket-keys", keys]


if __name__ == "__main__":
    main(scenario)
