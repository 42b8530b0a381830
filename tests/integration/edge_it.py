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
import os
import signal
import struct
import sys
import threading
import time

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proc  # noqa: E402
import wire  # noqa: E402
from proc import wait_for  # noqa: E402
from wire import ACK, CMD, CONNECT, DATA, DISCONNECT, KICK, RES, UNDELIVERABLE  # noqa: E402

SECRET = "edge-it-secret"
DEADLINE = 20.0


def token(dev):
    return wire.token(dev, SECRET)


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
            hdr, ents = wire.parse_batch(self.pull.recv())
            assert hdr[0] == 1, hdr
            self.hdr = hdr
            for e in ents:
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
                        "%d entries of kind %d dev %s" % (count, kind, dev), DEADLINE)

    def reply(self, entries, via, incarnation=None):
        """Send a batch to the edge worker that produced entry `via`."""
        ident, inc = via[13], via[14]
        if incarnation is not None:
            inc = incarnation
        out = wire.batch("peer", inc, "peer", entries)
        wait_for(lambda: self._send(ident, out), "router route to " + ident, DEADLINE)

    def _send(self, ident, out):
        try:
            self.router.send_multipart([ident.encode(), out])
            return True
        except zmq.ZMQError:  # EHOSTUNREACH until the DEALER is connected
            return False


class Edge:
    def __init__(self, binary, base, log, extra=(), notifier=True, persister=True, rcvhwm=None):
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
            "--log-level", "debug"] + list(extra), log, env={"SLUICE_FLEET_SECRET": SECRET},
            http="127.0.0.1:%d" % (base + 9), ready=proc.http_ok("/readyz" if persister else "/healthz"))
        self.proc.start(timeout=DEADLINE)

    def http(self, path):
        return self.proc.http(path, timeout=5)

    def metric(self, series):
        return self.proc.metric(series, 0.0)

    def dev(self, **kw):
        return wire.Device(self.port, secret=SECRET, timeout=DEADLINE, **kw)

    def stop(self):
        try:
            rc = self.proc.stop(grace=30)
            assert rc != -signal.SIGKILL, "edge did not exit on SIGTERM"
        finally:
            self.ctx.destroy(linger=0)


# ---------------------------------------------------------------- scenarios

def s_errors(e):
    # frame: N = 0, and N > max (judged on the header alone)
    d = e.dev(); d.raw(b"\0\0\0\0"); d.expect_err("frame")
    d = e.dev(); d.raw(struct.pack(">I", 70000)); d.expect_err("frame")
    # decode: not a map; trailing bytes
    d = e.dev(); p = msgpack.packb([1, 2]); d.raw(wire.frame(p)); d.expect_err("decode")
    d = e.dev(); p = msgpack.packb({"t": "ping"}) + b"\x01"; d.raw(wire.frame(p)); d.expect_err("decode")
    # proto: first frame not hello; v != 1; second hello; device-only type; unknown type
    d = e.dev(); d.send({"t": "ping"}); d.expect_err("proto")
    d = e.dev(); d.hello("dev-v2", v=2); d.expect_err("proto")
    d = e.dev(); d.login("dev-twice"); d.hello("dev-twice"); d.expect_err("proto")
    d = e.dev(); d.login("dev-ack"); d.send({"t": "ack", "seq": 1}); d.expect_err("proto")
    d = e.dev(); d.login("dev-unknown"); d.send({"t": "bogus"}); d.expect_err("proto")
    # auth: bad token; device id outside the alphabet
    d = e.dev(); d.hello("dev-bad", tok="0" * 64); d.expect_err("auth")
    d = e.dev(); d.hello("bad dev!", tok=token("bad dev!")); d.expect_err("auth")
    assert e.metric("sluice_edge_auth_failures_total") >= 2
    # decode after hello: data without seq
    d = e.dev(); d.login("dev-noseq"); d.send({"t": "data", "body": 1}); d.expect_err("decode")
    # ping -> pong keeps working
    d = e.dev(); d.login("dev-ping"); d.send({"t": "ping"}); assert d.recv()["t"] == "pong"
    d.close()
    for code in ("frame", "decode", "proto", "auth"):
        assert e.metric('sluice_edge_errors_total{code="%s"}' % code) >= 1, code


def s_busy(e):
    a = e.dev(); a.login("busy-1")
    b = e.dev(); b.login("busy-2")
    c = e.dev(); c.expect_err("busy")
    a.close()
    wait_for(lambda: e.metric("sluice_edge_connections_open") == 1, "slot freed")
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
    disc = e.pers.wait(DISCONNECT, "idle-1")
    assert disc[0][9] == "timeout", disc


def s_bytewise(e):
    d = e.dev()
    hello = msgpack.packb({"t": "hello", "v": 1, "dev": "bw-1", "tok": token("bw-1")})
    body = {"temp": 21.5, "on": True, "blob": b"x" * 300}
    data = msgpack.packb({"t": "data", "seq": 42, "ts": 1764358200000, "body": body})
    stream = wire.frame(hello) + wire.frame(data)
    for i in range(len(stream)):
        d.raw(stream[i:i + 1])
        if i < len(hello) + 4:
            time.sleep(0.001)
    assert d.recv()["t"] == "welcome"
    ent = e.pers.wait(DATA, "bw-1")[0]
    assert ent[5] == 42 and ent[6] == 1764358200000
    assert msgpack.unpackb(ent[12], raw=False) == body
    assert e.noti.wait(DATA, "bw-1")


def s_coalesced(e):
    d = e.dev(); d.login("co-1")
    conn = e.pers.wait(CONNECT, "co-1")[0]
    blob = b"".join(wire.frame(p) for p in
                    (msgpack.packb({"t": "data", "seq": 1000 + i, "body": i}) for i in range(50)))
    d.raw(blob)
    got = e.pers.wait(DATA, "co-1", count=50)
    assert [x[5] for x in got] == list(range(1000, 1050))
    assert all(x[1] == conn[1] and x[2] == conn[2] and x[4] == conn[4] for x in got)
    e.pers.reply([[ACK, x[1], x[2], x[3], x[4], x[5]] for x in got], got[0])
    acks = [d.recv() for _ in range(50)]
    assert [a["seq"] for a in acks] == list(range(1000, 1050)), acks


def s_ackroute(e):
    a = e.dev(); a.login("ar-a")
    b = e.dev(); b.login("ar-b")
    a.send({"t": "data", "seq": 7, "body": "a"})
    b.send({"t": "data", "seq": 8, "body": "b"})
    ea = e.pers.wait(DATA, "ar-a")[0]
    eb = e.pers.wait(DATA, "ar-b")[0]
    # the ack for b reaches b only
    e.pers.reply([[ACK, eb[1], eb[2], "ar-b", eb[4], 8]], eb)
    m = b.recv(); assert m == {"t": "ack", "seq": 8}, m
    # stale acks: old generation, wrong device, other incarnation -> dropped
    stale0 = e.metric("sluice_edge_stale_replies_total")
    e.pers.reply([[ACK, ea[1], ea[2] + 1, "ar-a", ea[4], 7], [ACK, ea[1], ea[2], "ar-b", ea[4], 7]], ea)
    e.pers.reply([[ACK, ea[1], ea[2], "ar-a", ea[4], 7]], ea, incarnation=(ea[14] + 1) % (1 << 64))
    wait_for(lambda: e.metric("sluice_edge_stale_replies_total") >= stale0 + 2, "stale acks counted")
    wait_for(lambda: e.metric("sluice_edge_stale_batches_total") >= 1, "stale batch counted")
    a.send({"t": "ping"})
    m = a.recv(); assert m["t"] == "pong", "a stale ack was delivered: %r" % m
    # a reused slot: a closes, a new connection may take the slot; the old id must not reach it
    a.close()
    e.pers.wait(DISCONNECT, "ar-a")
    c = e.dev(); c.login("ar-a")
    e.pers.reply([[ACK, ea[1], ea[2], "ar-a", ea[4], 7]], ea)
    c.send({"t": "ping"})
    m = c.recv(); assert m["t"] == "pong", "ack of the old session reached the new one: %r" % m


def s_cmd(e):
    d = e.dev(); d.login("cmd-1")
    conn = e.noti.wait(CONNECT, "cmd-1")[0]
    assert conn[8].startswith("127.0.0.1:"), conn
    e.noti.reply([[CMD, conn[1], conn[2], "cmd-1", conn[4], None, None, None, None, None, "c1", None,
                   msgpack.packb({"op": "reboot"})]], conn)
    m = d.recv()
    assert m["t"] == "cmd" and m["id"] == "c1" and m["body"] == {"op": "reboot"}, m
    d.send({"t": "res", "id": "c1", "ok": True, "body": {"done": 1}})
    res = e.noti.wait(RES, "cmd-1")[0]
    assert res[10] == "c1" and res[11] is True and msgpack.unpackb(res[12]) == {"done": 1}, res
    # res never goes to the persister
    time.sleep(0.2)
    assert not e.pers.find(RES)
    d.close()
    e.noti.wait(DISCONNECT, "cmd-1")
    e.noti.reply([[CMD, conn[1], conn[2], "cmd-1", conn[4], None, None, None, None, None, "c2", None,
                   msgpack.packb(1)]], conn)
    u = e.noti.wait(UNDELIVERABLE, "cmd-1")[0]
    assert u[10] == "c2" and u[9] == "disconnected", u


def s_takeover(e):
    for i in range(6):  # with 2 workers, some pairs land on different workers
        dev = "to-%d" % i
        a = e.dev(); a.login(dev)
        b = e.dev(); b.login(dev)
        a.expect_err("replaced")
        b.send({"t": "ping"})
        assert b.recv()["t"] == "pong"
        disc = e.pers.wait(DISCONNECT, dev)[0]
        # two workers' batches may arrive in either order: order by epoch
        conns = sorted(e.pers.wait(CONNECT, dev, count=2), key=lambda x: x[4])
        assert disc[9] == "replaced", disc
        assert (disc[1], disc[2], disc[4]) == (conns[0][1], conns[0][2], conns[0][4]), (disc, conns)
        b.close()
    # kick from the notifier closes exactly that connection
    d = e.dev(); d.login("kick-1")
    c = e.noti.wait(CONNECT, "kick-1")[0]
    e.noti.reply([[KICK, c[1], c[2], "kick-1", c[4]]], c)
    d.expect_err("replaced")


def s_outcap(e):
    d = e.dev(rcvbuf=4096); d.login("oc-1")  # then never reads
    c = e.noti.wait(CONNECT, "oc-1")[0]
    body = msgpack.packb(b"z" * 60000)
    for i in range(400):
        e.noti.reply([[CMD, c[1], c[2], "oc-1", c[4], None, None, None, None, None, "c%d" % i, None, body]], c)
        if e.metric('sluice_edge_connections_closed_total{reason="out_cap"}') >= 1:
            break
    wait_for(lambda: e.metric('sluice_edge_connections_closed_total{reason="out_cap"}') >= 1, "out_cap close")
    disc = e.pers.wait(DISCONNECT, "oc-1")[0]
    assert disc[9] == "out_cap"
    # the edge is fine afterwards
    x = e.dev(); x.login("oc-2")


def s_backpressure(e):
    d = e.dev(); d.login("bp-1")
    e.pers.wait(CONNECT, "bp-1")
    pauses0 = e.metric("sluice_edge_backpressure_pauses_total")
    N = 4000
    body = b"b" * 2000
    def writer():
        for i in range(N):
            d.send({"t": "data", "seq": i + 1, "body": body})
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    # the peer does not pull: the edge must pause reading
    wait_for(lambda: e.metric("sluice_edge_backpressure_pauses_total") > pauses0, "a backpressure pause", 60)
    assert e.metric("sluice_edge_acks_total") == 0
    # now pull and ack everything
    seen = {}
    acked = set()
    def pump():
        e.pers.poll(20)
        new = [x for h, x in e.pers.entries if x[0] == DATA and x[5] not in seen]
        for x in new:
            seen[x[5]] = x
        if new:
            e.pers.reply([[ACK, x[1], x[2], x[3], x[4], x[5]] for x in new], new[0])
        return len(seen) == N
    wait_for(pump, "all %d data entries at the persister" % N, 120)
    t.join(30)
    while len(acked) < N:
        m = d.recv()
        assert m is not None and m["t"] == "ack", m
        acked.add(m["seq"])
    assert acked == set(range(1, N + 1))
    assert e.metric("sluice_edge_notifier_shed_total") > 0  # no notifier bound: data copies shed, ingest went on
    wait_for(lambda: e.metric("sluice_edge_backpressure_paused_microseconds_total") > 0, "paused time counted")


def s_drain(e):
    ds = [e.dev() for _ in range(5)]
    for i, d in enumerate(ds):
        d.login("dr-%d" % i)
    e.proc.signal(signal.SIGTERM)
    wait_for(lambda: e.http("/readyz")[0] != 200, "readyz failing")
    for d in ds:
        d.expect_err("draining")
    assert e.proc.wait(30) == 0


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
}


def main():
    binary, name, base = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fn, extra = SCENARIOS[name]
    kw = {}
    if name == "backpressure":
        kw = dict(notifier=False, rcvhwm=2)
    d = proc.workdir("sl-edge-it-%s-" % name)
    ok = False
    try:
        e = Edge(binary, base, os.path.join(d, "edge.log"), extra, **kw)
        try:
            fn(e)
        finally:
            e.stop()
        ok = True
    finally:
        proc.finish(d, ok)
    print("ok", name)


if __name__ == "__main__":
    main()
