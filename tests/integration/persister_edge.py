"""persister_edge - a test edge for sluice-persister integration tests.

Builds envelope batches exactly per docs/protocol.md section 6 with
python3-msgpack, pushes them over PUSH and collects ack batches on a DEALER
whose identity is the batch's reply address. Also starts/stops the persister.
"""
import os
import signal
import subprocess
import time
import urllib.request

import msgpack
import zmq

ENV_DATA, ENV_CONNECT, ENV_DISCONNECT, ENV_RES, ENV_HEARTBEAT, ENV_ACK = 1, 2, 3, 4, 5, 7


def entry(kind, slot=0, gen=0, dev="", epoch=0, seq=None, ts=None, at_ns=None, peer=None, reason=None,
          id=None, ok=None, body=None):
    e = [kind, slot, gen, dev, epoch, seq, ts, at_ns, peer, reason, id, ok, body]
    while len(e) > 5 and e[-1] is None:  # trailing nils are left out
        e.pop()
    return e


def data(dev, seq, body_obj=None, body_raw=None, ts=None, at_ns=None, slot=1, gen=1, epoch=1):
    raw = body_raw if body_raw is not None else msgpack.packb(body_obj, use_bin_type=True)
    return entry(ENV_DATA, slot, gen, dev, epoch, seq, ts, at_ns if at_ns is not None else time.time_ns(),
                 body=raw)


def batch(edge_id, incarnation, reply, entries, v=1):
    out = [msgpack.packb([v, edge_id, incarnation, reply], use_bin_type=True)]
    for e in entries:
        out.append(msgpack.packb(e, use_bin_type=True))
    return b"".join(out)


def parse_batch(buf):
    u = msgpack.Unpacker(raw=False, strict_map_key=False)
    u.feed(buf)
    items = list(u)
    return items[0], items[1:]


class Edge:
    """One edge worker: PUSH to every persister PULL, DEALER (identity = reply) to every ROUTER."""

    def __init__(self, pulls, routers, edge_id="test-edge:1", worker=0, incarnation=None):
        self.ctx = zmq.Context.instance()
        self.edge_id = edge_id
        self.reply = "%s/%d" % (edge_id, worker)
        self.incarnation = incarnation if incarnation is not None else int.from_bytes(os.urandom(8), "big")
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.setsockopt(zmq.IMMEDIATE, 1)
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.setsockopt(zmq.IDENTITY, self.reply.encode())
        for r in routers:
            self.dealer.connect(r)
        for p in pulls:
            self.push.connect(p)
        self.acks = []  # (time, incarnation, slot, gen, dev, seq)

    def send(self, entries, timeout=30):
        """Send one batch; waits (up to timeout) for a connected persister (ZMQ_IMMEDIATE)."""
        msg = batch(self.edge_id, self.incarnation, self.reply, entries)
        deadline = time.time() + timeout
        while True:
            try:
                self.push.send(msg, zmq.NOBLOCK)
                return
            except zmq.Again:
                if time.time() > deadline:
                    raise
                time.sleep(0.01)

    def poll_acks(self, timeout_ms=100, on_ack=None):
        """Receive ack batches for up to timeout_ms; returns the new acks."""
        got = []
        if self.dealer.poll(timeout_ms):
            while True:
                try:
                    buf = self.dealer.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                hdr, ents = parse_batch(buf)
                assert hdr[0] == 1, hdr
                for e in ents:
                    assert e[0] == ENV_ACK, e
                    a = (hdr[2], e[1], e[2], e[3], e[5])
                    if on_ack:
                        on_ack(a)
                    got.append(a)
        self.acks.extend(got)
        return got

    def close(self):
        self.push.close(0)
        self.dealer.close(0)


def wait_for(cond, timeout, what, step=0.05):
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(step)


class Persister:
    def __init__(self, binary, dsn, pull_port, router_port, metrics_port, extra=(), log=None):
        self.pull = "tcp://127.0.0.1:%d" % pull_port
        self.router = "tcp://127.0.0.1:%d" % router_port
        self.metrics = "127.0.0.1:%d" % metrics_port
        args = [binary, "--pull", "tcp://127.0.0.1:%d" % pull_port, "--router", self.router, "--db", dsn,
                "--metrics", self.metrics] + list(extra)
        self.logf = open(log, "ab") if log else None
        self.proc = subprocess.Popen(args, stderr=self.logf or None)

    def http(self, path):
        try:
            with urllib.request.urlopen("http://%s%s" % (self.metrics, path), timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except Exception:
            return None, ""

    def ready(self):
        return self.http("/readyz")[0] == 200

    def wait_ready(self, timeout=60):
        wait_for(lambda: self.proc.poll() is None and self.ready() or self._dead(), timeout, "persister ready")

    def _dead(self):
        if self.proc.poll() is not None:
            raise AssertionError("persister exited with %s" % self.proc.returncode)
        return False

    def metric(self, name):
        st, text = self.http("/metrics")
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.split()[-1])
        return None

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.logf:
            self.logf.close()
            self.logf = None
        return self.proc.returncode
