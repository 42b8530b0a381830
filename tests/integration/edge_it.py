#!/usr/bin/python3
"""Black-box tests of sluice-edge over real TCP and real ZeroMQ.

A Python peer plays persister and notifier (PULL + ROUTER, bound as the
services do), decodes the edge's envelope batches and answers through its
ROUTER. Devices are raw TCP sockets speaking frames. Usage:

    edge_it.py PATH/TO/sluice-edge SCENARIO BASE_PORT

Each scenario starts its own edge on ports BASE_PORT.. (edge range 21000-21999)
and stops it at the end. No timing assertions: every wait polls a condition
until a generous deadline.
"""
import hashlib
import hmac
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import msgpack
import zmq

SECRET = b"edge-it-secret"
DEADLINE = 20.0
ENV_DATA, ENV_CONNECT, ENV_DISCONNECT, ENV_RES, ENV_HEARTBEAT, ENV_UNDELIV, ENV_ACK, ENV_CMD, ENV_KICK = range(1, 10)


def token(dev):
    return hmac.new(SECRET, dev.encode(), hashlib.sha256).hexdigest()


def wait_for(cond, what, timeout=DEADLINE):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


class Peer:
    """One service: PULL for batches, ROUTER for replies."""

    def __init__(self, ctx, pull_port, router_port, rcvhwm=None):
        self.pull = ctx.socket(zmq.PULL)
        if rcvhwm is not None:
            self.pull.setsockopt(zmq.RCVHWM, rcvhwm)
            self.pull.setsockopt(zmq.RCVBUF, 16384)
        self.pull.bind("tcp://127.0.0.1:%d" % pull_port)
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.bind("tcp://127.0.0.1:%d" % router_port)
        self.entries = []  # (header, entry)
        self.hdr = None

    def poll(self, ms=50):
        n = 0
        while self.pull.poll(ms):
            data = self.pull.recv()
            up = msgpack.Unpacker(raw=False, strict_map_key=False)
            up.feed(data)
            items = list(up)
            hdr = items[0]
            assert hdr[0] == 1, hdr
            self.hdr = hdr
            for e in items[1:]:
                e = list(e) + [None] * (13 - len(e))
                e += [hdr[3], hdr[2]]  # [13] reply identity, [14] incarnation
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
                        "%d entries of kind %d dev %s" % (count, kind, dev))

    def reply(self, entries, via, incarnation=None):
        """Send a batch to the edge worker that produced entry `via`."""
        ident, inc = via[13], via[14]
        if incarnation is not None:
            inc = incarnation
        out = msgpack.packb([1, "peer", inc, "peer"]) + b"".join(msgpack.packb(e) for e in entries)
        wait_for(lambda: self._send(ident, out), "router route to " + ident)

    def _send(self, ident, out):
        try:
            self.router.send_multipart([ident.encode(), out])
            return True
        except zmq.ZMQError:  # EHOSTUNREACH until the DEALER is connected
            return False


class Dev:
    def __init__(self, port, rcvbuf=None):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.connect(("127.0.0.1", port))
        self.s.settimeout(DEADLINE)
        self.buf = b""

    def raw(self, b):
        self.s.sendall(b)

    def send(self, obj):
        p = msgpack.packb(obj)
        self.s.sendall(struct.pack(">I", len(p)) + p)

    def recv(self):
        """Next message, or None at EOF/reset."""
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    p, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return msgpack.unpackb(p, raw=False, strict_map_key=False)
            try:
                b = self.s.recv(65536)
            except ConnectionResetError:
                return None
            if not b:
                return None
            self.buf += b

    def hello(self, dev, tok=None, v=1):
        self.send({"t": "hello", "v": v, "dev": dev, "tok": tok or token(dev)})

    def login(self, dev):
        self.hello(dev)
        w = self.recv()
        assert w and w["t"] == "welcome", w
        return w

    def expect_err(self, code):
        m = self.recv()
        assert m is not None and m["t"] == "err" and m["code"] == code, (code, m)
        assert isinstance(m["msg"], str) and m["msg"]
        assert self.recv() is None, "connection not closed after err"

    def close(self):
        self.s.close()


class Edge:
    def __init__(self, binary, base, extra=(), notifier=True, persister=True, rcvhwm=None):
        self.base = base
        self.port = base
        self.mport = base + 9
        self.ctx = zmq.Context()
        self.pers = Peer(self.ctx, base + 1, base + 2, rcvhwm) if persister else None
        self.noti = Peer(self.ctx, base + 3, base + 4) if notifier else None
        args = [binary, "--listen", "127.0.0.1:%d" % base, "--edge-id", "it-edge",
                "--persister-push", "tcp://127.0.0.1:%d" % (base + 1),
                "--persister-router", "tcp://127.0.0.1:%d" % (base + 2),
                "--notifier-push", "tcp://127.0.0.1:%d" % (base + 3),
                "--notifier-router", "tcp://127.0.0.1:%d" % (base + 4),
                "--metrics", "127.0.0.1:%d" % self.mport, "--workers", "2",
                "--log-level", "debug"] + list(extra)
        env = dict(os.environ, SLUICE_FLEET_SECRET=SECRET.decode())
        self.proc = subprocess.Popen(args, env=env)
        if persister:
            wait_for(lambda: self.http("/readyz")[0] == 200, "edge /readyz")
        else:
            wait_for(lambda: self.http("/healthz")[0] == 200, "edge /healthz")

    def http(self, path):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.mport, path), timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""
        except OSError:
            return 0, ""

    def metric(self, name):
        st, text = self.http("/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{") and name.endswith("}") is False and line.split(" ")[0] == name:
                total += float(line.split()[-1])
        return total

    def metric_line(self, series):
        st, text = self.http("/metrics")
        for line in text.splitlines():
            if line.split(" ")[0] == series:
                return float(line.split()[-1])
        return 0.0

    def dev(self, **kw):
        return Dev(self.port, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise AssertionError("edge did not exit on SIGTERM")
        self.ctx.destroy(linger=0)


# ---------------------------------------------------------------- scenarios

def s_errors(e):
    # frame: N = 0, and N > max (judged on the header alone)
    d = e.dev(); d.raw(b"\0\0\0\0"); d.expect_err("frame")
    d = e.dev(); d.raw(struct.pack(">I", 70000)); d.expect_err("frame")
    # decode: not a map; trailing bytes
    d = e.dev(); p = msgpack.packb([1, 2]); d.raw(struct.pack(">I", len(p)) + p); d.expect_err("decode")
    d = e.dev(); p = msgpack.packb({"t": "ping"}) + b"\x01"; d.raw(struct.pack(">I", len(p)) + p); d.expect_err("decode")
    # proto: first frame not hello; v != 1; second hello; device-only type; unknown type
    d = e.dev(); d.send({"t": "ping"}); d.expect_err("proto")
    d = e.dev(); d.hello("dev-v2", v=2); d.expect_err("proto")
    d = e.dev(); d.login("dev-twice"); d.hello("dev-twice"); d.expect_err("proto")
    d = e.dev(); d.login("dev-ack"); d.send({"t": "ack", "seq": 1}); d.expect_err("proto")
    d = e.dev(); d.login("dev-unknown"); d.send({"t": "bogus"}); d.expect_err("proto")
    # auth: bad token; device id outside the alphabet
    d = e.dev(); d.hello("dev-bad", tok="0" * 64); d.expect_err("auth")
    d = e.dev(); d.hello("bad dev!", tok=token("bad dev!")); d.expect_err("auth")
    assert e.metric_line("sluice_edge_auth_failures_total") >= 2
    # decode after hello: data without seq
    d = e.dev(); d.login("dev-noseq"); d.send({"t": "data", "body": 1}); d.expect_err("decode")
    # ping -> pong keeps working
    d = e.dev(); d.login("dev-ping"); d.send({"t": "ping"}); assert d.recv()["t"] == "pong"
    d.close()
    for code in ("frame", "decode", "proto", "auth"):
        assert e.metric_line('sluice_edge_errors_total{code="%s"}' % code) >= 1, code


def s_busy(e):
    a = e.dev(); a.login("busy-1")
    b = e.dev(); b.login("busy-2")
    c = e.dev(); c.expect_err("busy")
    a.close()
    wait_for(lambda: e.metric_line("sluice_edge_connections_open") == 1, "slot freed")
    d = e.dev(); d.login("busy-3")


def s_timeouts(e):
    d = e.dev(); d.expect_err("timeout")  # no hello within --hello-timeout-ms
    d = e.dev(); d.login("idle-1")
    # keep it alive past the idle timeout with pings, then go silent
    for _ in range(4):
        time.sleep(0.3)
        d.send({"t": "ping"})
        assert d.recv()["t"] == "pong"
    d.expect_err("timeout")
    disc = e.pers.wait(ENV_DISCONNECT, "idle-1")
    assert disc[0][9] == "timeout", disc


def s_bytewise(e):
    d = e.dev()
    hello = msgpack.packb({"t": "hello", "v": 1, "dev": "bw-1", "tok": token("bw-1")})
    body = {"temp": 21.5, "on": True, "blob": b"x" * 300}
    data = msgpack.packb({"t": "data", "seq": 42, "ts": 1764358200000, "body": body})
    stream = struct.pack(">I", len(hello)) + hello + struct.pack(">I", len(data)) + data
    for i in range(len(stream)):
        d.raw(stream[i:i + 1])
        if i < len(hello) + 4:
            time.sleep(0.001)
    assert d.recv()["t"] == "welcome"
    ent = e.pers.wait(ENV_DATA, "bw-1")[0]
    assert ent[5] == 42 and ent[6] == 1764358200000
    assert msgpack.unpackb(ent[12], raw=False) == body
    assert e.noti.wait(ENV_DATA, "bw-1")


def s_coalesced(e):
    d = e.dev(); d.login("co-1")
    conn = e.pers.wait(ENV_CONNECT, "co-1")[0]
    blob = b"".join(struct.pack(">I", len(p)) + p for p in
                    (msgpack.packb({"t": "data", "seq": 1000 + i, "body": i}) for i in range(50)))
    d.raw(blob)
    got = e.pers.wait(ENV_DATA, "co-1", count=50)
    assert [x[5] for x in got] == list(range(1000, 1050))
    assert all(x[1] == conn[1] and x[2] == conn[2] and x[4] == conn[4] for x in got)
    e.pers.reply([[ENV_ACK, x[1], x[2], x[3], x[4], x[5]] for x in got], got[0])
    acks = [d.recv() for _ in range(50)]
    assert [a["seq"] for a in acks] == list(range(1000, 1050)), acks


def s_ackroute(e):
    a = e.dev(); a.login("ar-a")
    b = e.dev(); b.login("ar-b")
    a.send({"t": "data", "seq": 7, "body": "a"})
    b.send({"t": "data", "seq": 8, "body": "b"})
    ea = e.pers.wait(ENV_DATA, "ar-a")[0]
    eb = e.pers.wait(ENV_DATA, "ar-b")[0]
    # the ack for b reaches b only
    e.pers.reply([[ENV_ACK, eb[1], eb[2], "ar-b", eb[4], 8]], eb)
    m = b.recv(); assert m == {"t": "ack", "seq": 8}, m
    # stale acks: old generation, wrong device, other incarnation -> dropped
    stale0 = e.metric_line("sluice_edge_stale_replies_total")
    e.pers.reply([[ENV_ACK, ea[1], ea[2] + 1, "ar-a", ea[4], 7], [ENV_ACK, ea[1], ea[2], "ar-b", ea[4], 7]], ea)
    e.pers.reply([[ENV_ACK, ea[1], ea[2], "ar-a", ea[4], 7]], ea, incarnation=(ea[14] + 1) % (1 << 64))
    wait_for(lambda: e.metric_line("sluice_edge_stale_replies_total") >= stale0 + 2, "stale acks counted")
    wait_for(lambda: e.metric_line("sluice_edge_stale_batches_total") >= 1, "stale batch counted")
    a.send({"t": "ping"})
    m = a.recv(); assert m["t"] == "pong", "a stale ack was delivered: %r" % m
    # a reused slot: a closes, a new connection may take the slot; the old id must not reach it
    a.close()
    e.pers.wait(ENV_DISCONNECT, "ar-a")
    c = e.dev(); c.login("ar-a")
    e.pers.reply([[ENV_ACK, ea[1], ea[2], "ar-a", ea[4], 7]], ea)
    c.send({"t": "ping"})
    m = c.recv(); assert m["t"] == "pong", "ack of the old session reached the new one: %r" % m


def s_cmd(e):
    d = e.dev(); d.login("cmd-1")
    conn = e.noti.wait(ENV_CONNECT, "cmd-1")[0]
    assert conn[8].startswith("127.0.0.1:"), conn
    e.noti.reply([[ENV_CMD, conn[1], conn[2], "cmd-1", conn[4], None, None, None, None, None, "c1", None,
                   msgpack.packb({"op": "reboot"})]], conn)
    m = d.recv()
    assert m["t"] == "cmd" and m["id"] == "c1" and m["body"] == {"op": "reboot"}, m
    d.send({"t": "res", "id": "c1", "ok": True, "body": {"done": 1}})
    res = e.noti.wait(ENV_RES, "cmd-1")[0]
    assert res[10] == "c1" and res[11] is True and msgpack.unpackb(res[12]) == {"done": 1}, res
    # res never goes to the persister
    time.sleep(0.2)
    assert not e.pers.find(ENV_RES)
    d.close()
    e.noti.wait(ENV_DISCONNECT, "cmd-1")
    e.noti.reply([[ENV_CMD, conn[1], conn[2], "cmd-1", conn[4], None, None, None, None, None, "c2", None,
                   msgpack.packb(1)]], conn)
    u = e.noti.wait(ENV_UNDELIV, "cmd-1")[0]
    assert u[10] == "c2" and u[9] == "disconnected", u


def s_takeover(e):
    # --accept handoff gives each connection to the least loaded worker
    # (ties: worker 0), so a then b land on different workers ...
    for i in range(6):
        dev = "to-%d" % i
        a = e.dev(); a.login(dev)
        b = e.dev(); b.login(dev)
        a.expect_err("replaced")
        b.send({"t": "ping"})
        assert b.recv()["t"] == "pong"
        disc = e.pers.wait(ENV_DISCONNECT, dev)[0]
        # two workers' batches may arrive in either order: order by epoch
        conns = sorted(e.pers.wait(ENV_CONNECT, dev, count=2), key=lambda x: x[4])
        assert disc[9] == "replaced", disc
        assert (disc[1], disc[2], disc[4]) == (conns[0][1], conns[0][2], conns[0][4]), (disc, conns)
        assert conns[0][13] != conns[1][13], "pair %d on one worker" % i
        b.close()
    # ... and with a third connection between them, on the same worker.
    wait_for(lambda: e.metric_line("sluice_edge_connections_open") == 0, "all closed")
    a = e.dev(); a.login("to-same")
    f = e.dev(); f.login("to-filler")
    b = e.dev(); b.login("to-same")
    a.expect_err("replaced")
    conns = sorted(e.pers.wait(ENV_CONNECT, "to-same", count=2), key=lambda x: x[4])
    assert conns[0][13] == conns[1][13], conns
    disc = e.pers.wait(ENV_DISCONNECT, "to-same")[0]
    assert disc[9] == "replaced" and (disc[1], disc[2]) == (conns[0][1], conns[0][2]), disc
    b.send({"t": "ping"})
    assert b.recv()["t"] == "pong"
    b.close(); f.close()
    # kick from the notifier closes exactly that connection
    d = e.dev(); d.login("kick-1")
    c = e.noti.wait(ENV_CONNECT, "kick-1")[0]
    e.noti.reply([[ENV_KICK, c[1], c[2], "kick-1", c[4]]], c)
    d.expect_err("replaced")


def s_outcap(e):
    d = e.dev(rcvbuf=4096); d.login("oc-1")  # then never reads
    c = e.noti.wait(ENV_CONNECT, "oc-1")[0]
    body = msgpack.packb(b"z" * 60000)
    for i in range(400):
        e.noti.reply([[ENV_CMD, c[1], c[2], "oc-1", c[4], None, None, None, None, None, "c%d" % i, None, body]], c)
        if e.metric_line('sluice_edge_connections_closed_total{reason="out_cap"}') >= 1:
            break
    wait_for(lambda: e.metric_line('sluice_edge_connections_closed_total{reason="out_cap"}') >= 1, "out_cap close")
    disc = e.pers.wait(ENV_DISCONNECT, "oc-1")[0]
    assert disc[9] == "out_cap"
    # the edge is fine afterwards
    x = e.dev(); x.login("oc-2")


def s_backpressure(e):
    d = e.dev(); d.login("bp-1")
    e.pers.wait(ENV_CONNECT, "bp-1")
    pauses0 = e.metric_line("sluice_edge_backpressure_pauses_total")
    N = 4000
    body = b"b" * 2000
    import threading
    def writer():
        for i in range(N):
            d.send({"t": "data", "seq": i + 1, "body": body})
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    # the peer does not pull: the edge must pause reading
    wait_for(lambda: e.metric_line("sluice_edge_backpressure_pauses_total") > pauses0, "a backpressure pause", 60)
    assert e.metric_line("sluice_edge_acks_total") == 0
    # now pull and ack everything
    seen = {}
    acked = set()
    def pump():
        e.pers.poll(20)
        new = [x for h, x in e.pers.entries if x[0] == ENV_DATA and x[5] not in seen]
        for x in new:
            seen[x[5]] = x
        if new:
            e.pers.reply([[ENV_ACK, x[1], x[2], x[3], x[4], x[5]] for x in new], new[0])
        return len(seen) == N
    wait_for(pump, "all %d data entries at the persister" % N, 120)
    t.join(30)
    while len(acked) < N:
        m = d.recv()
        assert m is not None and m["t"] == "ack", m
        acked.add(m["seq"])
    assert acked == set(range(1, N + 1))
    assert e.metric_line("sluice_edge_notifier_shed_total") > 0  # no notifier bound: data copies shed, ingest went on
    wait_for(lambda: e.metric_line("sluice_edge_backpressure_paused_microseconds_total") > 0, "paused time counted")


def s_drain(e):
    ds = [e.dev() for _ in range(5)]
    for i, d in enumerate(ds):
        d.login("dr-%d" % i)
    e.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: e.http("/readyz")[0] != 200, "readyz failing")
    for d in ds:
        d.expect_err("draining")
    assert e.proc.wait(30) == 0


def s_reuseport(e):
    # --accept reuseport (not the default): each worker accepts on its own
    # listener and the kernel hashes connections over them. 40 connections
    # from random ports all on one worker: probability 2^-39.
    devs = []
    for i in range(40):
        d = e.dev(); d.login("rp-%d" % i); devs.append(d)
    per = [e.metric_line('sluice_edge_worker_connections_open{worker="%d"}' % w) for w in (0, 1)]
    assert sum(per) == 40 and min(per) >= 1, per
    assert e.metric_line("sluice_edge_connections_open") == 40
    for i, d in enumerate(devs):
        d.send({"t": "data", "seq": 100 + i, "body": i})
    got = e.pers.wait(ENV_DATA, count=40)
    by_worker = {}
    for x in got:
        by_worker.setdefault(x[13], []).append(x)
    assert len(by_worker) == 2, list(by_worker)  # both workers' bus sockets carried data
    for ents in by_worker.values():
        e.pers.reply([[ENV_ACK, x[1], x[2], x[3], x[4], x[5]] for x in ents], ents[0])
    for i, d in enumerate(devs):
        m = d.recv()
        assert m == {"t": "ack", "seq": 100 + i}, (i, m)
    devs[0].close()
    wait_for(lambda: e.metric_line("sluice_edge_connections_open") == 39, "close counted")


SCENARIOS = {
    "errors": (s_errors, []),
    "busy": (s_busy, ["--max-conns", "2"]),
    "timeouts": (s_timeouts, ["--hello-timeout-ms", "300", "--idle-timeout-ms", "800"]),
    "bytewise": (s_bytewise, []),
    "coalesced": (s_coalesced, []),
    "ackroute": (s_ackroute, []),
    "cmd": (s_cmd, []),
    "takeover": (s_takeover, []),
    "outcap": (s_outcap, ["--out-cap", "65536"]),
    "backpressure": (s_backpressure, ["--zmq-hwm", "2", "--workers", "1", "--drain-timeout-ms", "3000"]),
    "drain": (s_drain, ["--drain-rate", "20"]),
    "reuseport": (s_reuseport, ["--accept", "reuseport"]),
}


def main():
    binary, name, base = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fn, extra = SCENARIOS[name]
    kw = {}
    if name == "backpressure":
        kw = dict(notifier=False, rcvhwm=2)
    e = Edge(binary, base, extra, **kw)
    try:
        fn(e)
    finally:
        e.stop()
    print("ok", name)


if __name__ == "__main__":
    main()
