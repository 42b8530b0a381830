#!/usr/bin/python3
"""edge_21_secrets: the fleet secret and the deny list while the edge runs.

- The secret given in SLUICE_FLEET_SECRET is gone from /proc/PID/environ.
- A weak secret (shorter than 16 bytes, or one of the examples Sluice has
  shipped) is refused at start (exit 2).
- --secret-file and --deny-file in a directory replaced the way Kubernetes
  replaces a mounted secret (a new directory, then the ..data symlink swapped
  atomically; no SIGHUP): rotation (the new secret first, the previous one
  on the second line: both accepted; the second line removed: the previous
  one refused), revocation (a connected device on the new deny list is
  closed with err{auth} within a second and cannot come back).
- SIGHUP reloads and does not kill the edge."""
import hashlib
import hmac
import os
import signal
import subprocess
import time

from edgetest import SECRET, Edge, main
from proc import check, wait_for
from wire import Device

PORT = 21420  # edge_NN: 21000 + 20 * NN (edge.cmake)
OLD = "old-fleet-secret-0000"
NEW = "new-fleet-secret-0001"


def k8s_write(d, files, n):
    """Publish files the way the kubelet does: ..<n>/ then ..data -> ..<n>."""
    real = os.path.join(d, "..v%d" % n)
    os.mkdir(real)
    for name, text in files.items():
        with open(os.path.join(real, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(real, name), 0o600)
    tmp = os.path.join(d, "..data_tmp")
    os.symlink("..v%d" % n, tmp)
    os.rename(tmp, os.path.join(d, "..data"))
    for name in files:
        link = os.path.join(d, name)
        if not os.path.islink(link):
            os.symlink(os.path.join("..data", name), link)


def login(port, dev, secret):
    """welcome, or the err the edge answers (a dict either way)."""
    d = Device(port, secret=secret, timeout=10)
    d.hello(dev, tok=token_of(dev, secret))
    return d, d.recv()


def token_of(dev, secret):
    return hmac.new(secret.encode(), dev.encode(), hashlib.sha256).hexdigest()


def scenario(binary, port, work):
    # 1. The environment secret does not stay in /proc/PID/environ.
    e = Edge(binary, port, os.path.join(work, "edge-env.log"))
    try:
        d = e.dev()
        d.login("env-1")
        with open("/proc/%d/environ" % e.proc.pid, "rb") as f:
            environ = f.read()
        check(SECRET.encode() not in environ, "the fleet secret is still in /proc/PID/environ")
        d.close()
    finally:
        e.stop()

    # 2. Weak secrets are refused at start.
    for weak in ("short-secret", "demo-fleet-secret", "change-me-fleet-secret"):
        r = subprocess.run([binary, "--listen", "127.0.0.1:%d" % (port + 10), "--metrics", ""],
                           env=dict(os.environ, SLUICE_FLEET_SECRET=weak), capture_output=True, text=True,
                           timeout=20)
        check(r.returncode == 2 and "refused SLUICE_FLEET_SECRET" in r.stderr, "weak secret %r: %r" % (weak, r))

    # --max-frame above what the bus's batches hold (1 MiB) is refused too:
    # such a frame could never be sent on and its device would resend it forever.
    r = subprocess.run([binary, "--listen", "127.0.0.1:%d" % (port + 10), "--metrics", "", "--max-frame", "1048577"],
                       env=dict(os.environ, SLUICE_FLEET_SECRET=SECRET), capture_output=True, text=True, timeout=20)
    check(r.returncode == 2 and "max-frame" in r.stderr, "--max-frame 1048577: %r" % r)

    # 3. Files replaced under a running edge, Kubernetes style.
    sd = os.path.join(work, "secrets")
    os.mkdir(sd)
    k8s_write(sd, {"fleet.secret": OLD + "\n", "deny": "# nobody yet\n"}, 1)
    e = Edge(binary, port, os.path.join(work, "edge-files.log"),
             ["--secret-file", os.path.join(sd, "fleet.secret"), "--deny-file", os.path.join(sd, "deny")])
    try:
        a, m = login(port, "dev-a", OLD)
        check(m["t"] == "welcome", "old secret at start: %r" % m)
        _, m = login(port, "dev-b", NEW)
        check(m == {"t": "err", "code": "auth", "msg": "bad token"}, "new secret before the rotation: %r" % m)

        k8s_write(sd, {"fleet.secret": NEW + "\n" + OLD + "\n", "deny": "# nobody yet\n"}, 2)
        wait_for(lambda: login(port, "dev-b", NEW)[1]["t"] == "welcome", "new secret accepted", 10)
        _, m = login(port, "dev-c", OLD)
        check(m["t"] == "welcome", "previous secret during the overlap: %r" % m)

        k8s_write(sd, {"fleet.secret": NEW + "\n", "deny": "# nobody yet\n"}, 3)
        wait_for(lambda: login(port, "dev-d", OLD)[1].get("code") == "auth", "previous secret refused", 10)
        _, m = login(port, "dev-e", NEW)
        check(m["t"] == "welcome", "new secret after the overlap: %r" % m)

        # Revocation: dev-a is still connected (an existing session survives a rotation).
        a.send({"t": "ping"})
        check(a.expect("pong") == {"t": "pong"}, "dev-a still connected")
        t0 = time.monotonic()
        k8s_write(sd, {"fleet.secret": NEW + "\n", "deny": "dev-a\n"}, 4)
        m = a.recv(timeout=5)
        took = time.monotonic() - t0
        check(m.get("code") == "auth" and m.get("msg") == "device revoked", "revoked device got %r" % m)
        check(took < 1.0, "revoked device closed after %.2f s" % took)
        a.expect_closed()
        _, m = login(port, "dev-a", NEW)
        check(m == {"t": "err", "code": "auth", "msg": "device revoked"}, "revoked device came back: %r" % m)

        # SIGHUP reloads (nothing changed) and the edge lives on.
        e.proc.signal(signal.SIGHUP)
        wait_for(lambda: "event=reload why=sighup" in open(os.path.join(work, "edge-files.log")).read(),
                 "reload on SIGHUP")
        _, m = login(port, "dev-f", NEW)
        check(m["t"] == "welcome", "after SIGHUP: %r" % m)
    finally:
        e.stop()


if __name__ == "__main__":
    main(scenario, PORT)
