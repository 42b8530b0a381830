# SPDX-License-Identifier: Apache-2.0
"""wire.py - Sluice's two wire formats (docs/protocol.md) as the tests speak them.

    import wire
    d = wire.Device(21000, "dev-1", secret="s"); d.login(); d.data(1, {"x": 1}); d.expect("ack")
    e = wire.Edge(zmq.Context(), ["tcp://127.0.0.1:22101"], ["tcp://127.0.0.1:22102"], "edge-a:7000")
    e.send(wire.entry(wire.DATA, 1, 1, "dev-1", 1, seq=1, body=msgpack.packb(5)))
    for hdr, entries in e.recv(100): ...

Sections 1-2: a Device is one TCP connection speaking u32-BE length-prefixed
msgpack frames (raw bytes too, to send what a correct device would not).
Section 6: envelope batches (a header [v, edge_id, incarnation, reply]
followed by entries, one msgpack array each); an Edge is one test edge
worker (PUSH to the services' PULL, DEALER with its reply address as
identity to their ROUTER).

Deliberately not here: what a test expects of a service (the scenarios),
processes (proc.py).
"""
import hashlib
import hmac
import os
import socket
import ssl
import struct
import time

import msgpack
import zmq

from proc import DEADLINE, TestFailure, check

# envelope entry kinds and field order (protocol.md section 6)
DATA, CONNECT, DISCONNECT, RES, HEARTBEAT, UNDELIVERABLE, ACK, CMD, KICK = range(1, 10)
CMD_SENT = 11  # edge -> both (0.2); 10 is the notifier heartbeat below
FIELDS = ["kind", "slot", "gen", "dev", "epoch", "seq", "ts", "at_ns", "peer", "reason", "id", "ok", "body"]


def entry(kind, slot=0, gen=0, dev="", epoch=0, seq=None, ts=None, at_ns=None, peer=None, reason=None,
          id=None, ok=None, body=None):
    """One envelope entry; trailing nils after the first five fields are left out."""
    e = [kind, slot, gen, dev, epoch, seq, ts, at_ns, peer, reason, id, ok, body]
    while len(e) > 5 and e[-1] is None:
        e.pop()
    return e


# entry kind 10 (notifier -> edge) and the positions appended in version 1
NOTIFIER_HB = 10
P_TO, P_RING = 13, 14


def _mix(x):
    x &= 0xFFFFFFFFFFFFFFFF
    x ^= x >> 30
    x = (x * 0xbf58476d1ce4e5b9) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 27
    x = (x * 0x94d049bb133111eb) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def ring_key(s):
    """sl/ring.h ring_key: FNV-1a 64 of the id, then splitmix64's finaliser."""
    h = 0xcbf29ce484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return _mix(h)


def ring_owner(dev, ids):
    """The notifier id (of ids) an edge sends dev's events to: sl/ring.h ring_pick."""
    d = ring_key(dev)
    return max(ids, key=lambda i: (_mix(d ^ ring_key(i)), -ring_key(i)))


def zcert_keys(path):
    """(public, secret) Z85 keys of a zcert file as sluice-keys writes it (secret None in a public one)."""
    keys = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.strip().partition(" = ")
            if k in ("public-key", "secret-key"):
                keys[k] = v.strip('"')
    return keys.get("public-key"), keys.get("secret-key")


def batch(edge_id, inc, reply, entries, v=1):
    """Envelope batch bytes: header then each entry."""
    return b"".join([msgpack.packb([v, edge_id, inc, reply], use_bin_type=True)] +
                    [msgpack.packb(e, use_bin_type=True) for e in entries])


def parse_batch(buf):
    """Envelope batch bytes -> (header, [entry, ...])."""
    u = msgpack.Unpacker(raw=False, strict_map_key=False)
    u.feed(buf)
    items = list(u)
    return items[0], items[1:]


def token(dev, secret):
    """A device's token: hex HMAC-SHA256(fleet secret, device id)."""
    return hmac.new(secret.encode(), dev.encode(), hashlib.sha256).hexdigest()


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def encode(obj):
    """One frame carrying obj as msgpack (what Device.send writes)."""
    return frame(msgpack.packb(obj, use_bin_type=True))


class Closed(Exception):
    pass


class Device:
    """A device speaking raw frames over one TCP connection."""

    def __init__(self, port, dev=None, secret="", host="127.0.0.1", timeout=DEADLINE, rcvbuf=None, src=None,
                 tls=None, pre=b""):
        """src: the local (source) address to connect from, e.g. "127.0.2.1";
        tls: an ssl.SSLContext to speak TLS with; pre: bytes sent before
        anything else (a PROXY header, before TLS too)."""
        self.dev, self.port, self.secret, self.timeout = dev, port, secret, timeout
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if src:
            self.s.bind((src, 0))
        self.s.settimeout(10)
        self.s.connect((host, port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if pre:
            self.s.sendall(pre)
        if tls:
            self.s = tls.wrap_socket(self.s, server_hostname=host)
        self.buf = b""
        self.welcome = None

    # -- sending
    def raw(self, b):
        self.s.sendall(b)

    def frame(self, payload):
        self.raw(frame(payload))

    def send(self, obj):
        self.raw(encode(obj))

    def hello(self, dev=None, tok=None, v=1):
        dev = dev if dev is not None else self.dev
        self.send({"t": "hello", "v": v, "dev": dev, "tok": tok if tok is not None else token(dev, self.secret)})

    def login(self, dev=None):
        if dev is not None:
            self.dev = dev
        self.hello()
        m = self.recv()
        check(m.get("t") == "welcome", "%s: expected welcome, got %r" % (self.dev, m))
        self.welcome = m
        return m

    def data(self, seq, body, ts=None):
        m = {"t": "data", "seq": seq, "body": body}
        if ts is not None:
            m["ts"] = ts
        self.send(m)

    # -- receiving
    def recv(self, timeout=None):
        """Next payload as a dict; Closed on EOF or reset, socket.timeout when no frame comes in time."""
        end = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    payload, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return msgpack.unpackb(payload, raw=False, strict_map_key=False)
            left = end - time.monotonic()
            if left <= 0:
                raise socket.timeout("no frame within deadline")
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            if not chunk:
                raise Closed("connection closed by edge")
            self.buf += chunk

    def expect(self, t, timeout=None, skip=("pong",)):
        """Next frame of type t, skipping frames of the types in skip."""
        while True:
            m = self.recv(timeout)
            if m.get("t") == t:
                return m
            if m.get("t") in skip:
                continue
            raise TestFailure("%s: expected %s, got %r" % (self.dev, t, m))

    def expect_err(self, code, timeout=None):
        """The edge must send err{code, msg} and then close the connection."""
        m = self.recv(timeout)
        check(m.get("t") == "err" and m.get("code") == code,
              "%s: expected err{code:%s}, got %r" % (self.dev, code, m))
        check(isinstance(m.get("msg"), str) and m["msg"], "err without a msg: %r" % m)
        self.expect_closed(timeout)
        return m

    def expect_closed(self, timeout=None):
        try:
            m = self.recv(timeout)
        except Closed:
            return
        raise TestFailure("%s: expected close, got %r" % (self.dev, m))

    def acks(self, seqs, timeout=None):
        """Wait until every seq in seqs was acked; returns the acks seen in order."""
        want, seen = set(seqs), []
        while want:
            m = self.expect("ack", timeout)
            seen.append(m["seq"])
            want.discard(m["seq"])
        return seen

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class Edge:
    """One test edge worker: PUSH to every PULL in pulls, DEALER (identity =
    reply address, "<edge_id>/<worker>" unless given) to every ROUTER in routers.
    immediate: queue only to connected peers (send waits for one).
    curve: (public, secret, server public) Z85 keys: a CURVE client of that server."""

    def __init__(self, ctx, pulls, routers, edge_id, worker=0, inc=None, immediate=False, reply=None, curve=None):
        self.edge_id = edge_id
        self.reply = reply if reply is not None else "%s/%d" % (edge_id, worker)
        self.inc = inc if inc is not None else int.from_bytes(os.urandom(8), "big")
        self.push = ctx.socket(zmq.PUSH)
        self.dealer = ctx.socket(zmq.DEALER)
        for sock in (self.push, self.dealer):
            sock.setsockopt(zmq.LINGER, 0)
            if curve:
                sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = (k.encode() for k in curve)
        if immediate:
            self.push.setsockopt(zmq.IMMEDIATE, 1)
        self.dealer.setsockopt(zmq.ROUTING_ID, self.reply.encode())
        for r in routers:
            self.dealer.connect(r)
        for p in pulls:
            self.push.connect(p)

    def send(self, *entries, timeout=30):
        """Send one batch of entries; waits up to timeout while the PUSH cannot take it."""
        msg = batch(self.edge_id, self.inc, self.reply, entries)
        end = time.monotonic() + timeout
        while True:
            try:
                self.push.send(msg, zmq.NOBLOCK)
                return
            except zmq.Again:
                if time.monotonic() > end:
                    raise TestFailure("%s: could not send a batch for %.0fs" % (self.reply, timeout))
                time.sleep(0.01)

    def recv(self, timeout_ms=0):
        """Batches received on the DEALER within timeout_ms: [(header, entries), ...]."""
        got = []
        if self.dealer.poll(timeout_ms):
            while True:
                try:
                    buf = self.dealer.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                got.append(parse_batch(buf))
        return got

    def close(self):
        self.push.close(0)
        self.dealer.close(0)
