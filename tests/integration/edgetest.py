#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edgetest.py - what the edge scenarios (edge_NN_<what>.py) share: a Python
peer playing persister and notifier over real ZeroMQ, sluice-edge started
with its flags, and the reading of recordings.

A Peer binds PULL + ROUTER as the services do, decodes the edge's envelope
batches and answers through its ROUTER. An Edge starts sluice-edge on
ports base.. (listen base, persister base+1/+2, notifier base+3/+4, metrics
base+9) with a Peer for each service. Devices are raw TCP sockets speaking
frames (wire.Device). No timing assertions: every wait polls a condition
until a generous deadline.

A scenario file ends with main(scenario, PORT, flags):

    edge_NN_<what>.py [PATH/TO/sluice-edge]     (default: $SLUICE_BIN/sluice-edge)

runs it in a workdir of its own (kept if it fails) and stops every process.
Ports: edge_NN uses PORT = 21000 + 20 * NN and the 19 after it (edge.cmake).
"""
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proc  # noqa: E402
import wire  # noqa: E402
from proc import wait_for  # noqa: E402
from wire import ACK, CMD  # noqa: E402

SECRET = "edge-it-fleet-secret"
DEADLINE = 20.0


def token(dev):
    return wire.token(dev, SECRET)


def bind(ctx, sock_type, port, rcvhwm=None):
    """A PULL or ROUTER bound on port as a service binds it; raises if the
    port is taken (see rebind)."""
    s = ctx.socket(sock_type)
    if sock_type == zmq.ROUTER:
        s.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if rcvhwm is not None:
        s.setsockopt(zmq.RCVHWM, rcvhwm)
        s.setsockopt(zmq.RCVBUF, 16384)
    try:
        s.bind("tcp://127.0.0.1:%d" % port)
    except zmq.ZMQError:
        s.close(linger=0)
        raise
    return s


def rebind(sock_type, port, ctx):
    """Bind a fresh socket on a port just closed (libzmq releases it asynchronously)."""
    return wait_for(lambda: bind(ctx, sock_type, port), "bind port %d" % port, DEADLINE)


# Where Peer.entries keep a heartbeat's appended positions (wire.P_TO, wire.P_RING move by 2: the
# header's reply identity and incarnation sit at 13 and 14).
TO, RING = 15, 16


def worker_of(ident):
    """The worker number in an edge worker's identity "<edge-id>/<worker>/<secret>"."""
    return int(ident.rsplit("/", 2)[1])


class Peer:
    """One service: PULL for batches, ROUTER for replies."""

    def __init__(self, ctx, pull_port, router_port, rcvhwm=None):
        self.pull = bind(ctx, zmq.PULL, pull_port, rcvhwm)
        self.router = bind(ctx, zmq.ROUTER, router_port)
        self.entries = []  # (header, entry)
        self.hdr = None

    def poll(self, ms=50):
        n = 0
        while self.pull.poll(ms):
            hdr, ents = wire.parse_batch(self.pull.recv())
            assert hdr[0] == 1, hdr
            self.hdr = hdr
            for e in ents:
                # [0..12] the entry's positions of version 0, [13] reply identity, [14] incarnation,
                # then the positions appended later (a heartbeat's to, ring: at TO, RING)
                e = (list(e) + [None] * 13)[:13] + [hdr[3], hdr[2]] + list(e[13:])
                self.entries.append((hdr, e))
            n += 1
            ms = 0
        return n

    def find(self, kind, dev=None, pred=None):
        self.poll()
        return [e for h, e in self.entries
                if e[0] == kind and (dev is None or e[3] == dev) and (pred is None or pred(e))]

    def wait(self, kind, dev=None, pred=None, count=1):
        return wait_for(lambda: (lambda r: r if len(r) >= count else None)(self.find(kind, dev, pred)),
                        "%d entries of kind %d dev %s" % (count, kind, dev), DEADLINE)

    def ident(self, worker):
        """The DEALER identity of edge worker `worker`, "<edge-id>/<worker>/<secret>" (docs/protocol.md
        section 6: the secret part is drawn at start), as its batches carry it (heartbeats every 2 s)."""
        def seen():
            self.poll()
            return next((e[13] for h, e in self.entries if worker_of(e[13]) == worker), None)
        return wait_for(seen, "a batch from worker %d" % worker, DEADLINE)

    def reply(self, entries, via, incarnation=None):
        """Send a batch to the edge worker that produced entry `via`."""
        ident, inc = via[13], via[14]
        if incarnation is not None:
            inc = incarnation
        out = wire.batch("peer", inc, "peer", entries)
        wait_for(lambda: self._send(ident, out), "router route to " + ident, DEADLINE)

    def ack(self, entries):
        """Ack data entries, in one batch to the worker that sent the first."""
        self.reply([[ACK, x[1], x[2], x[3], x[4], x[5]] for x in entries], entries[0])

    def _send(self, ident, out):
        try:
            self.router.send_multipart([ident.encode(), out])
            return True
        except zmq.ZMQError:  # EHOSTUNREACH until the DEALER is connected
            return False


class Edge:
    def __init__(self, binary, base, log, extra=(), notifier=True, persister=True, rcvhwm=None, env=None):
        self.base = base
        self.port = base
        self.ctx = zmq.Context()
        self.pers = Peer(self.ctx, base + 1, base + 2, rcvhwm) if persister else None
        self.noti = Peer(self.ctx, base + 3, base + 4) if notifier else None
        # without a persister the edge is never ready: wait for it to be alive (/healthz)
        self.proc = proc.Proc("edge", [
            binary, "--listen", "127.0.0.1:%d" % base, "--edge-id", "it-edge",
            "--persister-push", "tcp://127.0.0.1:%d" % (base + 1),
            "--persister-router", "tcp://127.0.0.1:%d" % (base + 2),
            "--notifier-push", "tcp://127.0.0.1:%d" % (base + 3),
            "--notifier-router", "tcp://127.0.0.1:%d" % (base + 4),
            "--metrics", "127.0.0.1:%d" % (base + 9), "--workers", "2",
            # the test devices all come from loopback; a scenario about the
            # per-address limits passes an --allow-cidrs of its own (the last wins)
            "--allow-cidrs", "127.0.0.0/8",
            "--log-level", "debug"] + list(extra), log, env=dict({"SLUICE_FLEET_SECRET": SECRET}, **(env or {})),
            http="127.0.0.1:%d" % (base + 9), ready=proc.http_ok("/readyz" if persister else "/healthz"))
        self.proc.start(timeout=DEADLINE)

    def http(self, path):
        return self.proc.http(path, timeout=5)

    def metric(self, series):
        return self.proc.metric(series, 0.0)

    def dev(self, **kw):
        return wire.Device(self.port, secret=SECRET, timeout=DEADLINE, **kw)

    def stop(self):
        """SIGTERM and wait: the edge must drain and exit 0 (a sanitizer
        report at exit aborts it, and fails here); returns the exit code."""
        try:
            return self.proc.stop(grace=30, expect=0)
        finally:
            self.ctx.destroy(linger=0)


# ------------------------------------------------ the admin endpoint (POST /admin/shed)

def admin_token_file(d, tok):
    """Write tok to d/admin-token (0600, as --admin-token-file wants it); returns the path."""
    path = os.path.join(d, "admin-token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, (tok + "\n").encode())
    os.close(fd)
    return path


def admin_post(e, path, token=None):
    """(status, parsed JSON body or None) of POST path on Edge e's metrics listener."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (e.base + 9, path), data=b"", method="POST")
    if token is not None:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def cmd(conn, cid, body, dev=None):
    """A cmd entry for the connection of CONNECT entry conn; body is msgpack."""
    return wire.entry(CMD, conn[1], conn[2], dev or conn[3], conn[4], id=cid, body=body)


# ------------------------------------------------ recording and replay
# The recording scenarios start their own edges (PORT, PORT+10 for the
# replay); their files (recordings, logs) are in the test's workdir.

def replay_bin(edge_bin):
    return os.environ.get("REPLAY_BIN") or os.path.join(os.path.dirname(edge_bin), "sluice-replay")


def dump(edge_bin, rec, *extra):
    """sluice-replay --dump: [(conn, kind, rest)] in file order."""
    out = subprocess.run([replay_bin(edge_bin), "--dump", rec] + list(extra), check=True,
                         capture_output=True, text=True).stdout
    lines = []
    for line in out.splitlines():
        f = line.split(" ", 3)
        lines.append((f[1], f[2], f[3] if len(f) > 3 else ""))
    return lines


def by_conn(lines):
    conns = {}
    for c, k, rest in lines:
        if c != "-.-.-" and not c.endswith(".-.-"):
            conns.setdefault(c, []).append((k, rest))
    return conns


def conn_of_dev(conns, dev):
    hits = [v for v in conns.values() if v[0][0] == "open" and v[0][1].endswith(" dev=" + dev)]
    assert len(hits) == 1, (dev, conns)
    return hits[0]


def main(scenario, port, flags=None, **edge_kw):
    """Run one scenario in a workdir of its own, kept if it fails (proc.finish).
    With flags (a list, maybe empty), scenario(e) is given an Edge started on
    port with those flags and edge_kw, stopped after it; with flags None it
    starts its own edges: scenario(binary, port, workdir)."""
    binary = sys.argv[1] if len(sys.argv) > 1 else proc.binary("sluice-edge")
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    d = proc.workdir("sl-%s-" % name)
    ok = False
    try:
        if flags is None:
            scenario(binary, port, d)
        else:
            e = Edge(binary, port, os.path.join(d, "edge.log"), flags, **edge_kw)
            try:
                scenario(e)
            finally:
                e.stop()
        ok = True
    finally:
        proc.finish(d, ok)
    print("ok", name)
