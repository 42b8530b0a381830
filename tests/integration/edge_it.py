#!/usr/bin/python3
"""Black-box tests of sluice-edge over real TCP and real ZeroMQ.

A Python peer plays persister and notifier (PULL + ROUTER, bound as the
services do), decodes the edge's envelope batches and answers through its
ROUTER. Devices are raw TCP sockets speaking frames. Usage:

    edge_it.py PATH/TO/sluice-edge SCENARIO BASE_PORT

Each scenario starts its own edge on ports BASE_PORT.. (edge range 21000-21999)
and stops it at the end (record and record_filter start two edges, on
BASE_PORT and BASE_PORT+10). No timing assertions: every wait polls a
condition until a generous deadline.
"""
import os
import signal
import struct
import subprocess
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
        """SIGTERM and wait: the edge must drain and exit 0 (a sanitizer
        report at exit aborts it, and fails here); returns the exit code."""
        try:
            return self.proc.stop(grace=30, expect=0)
        finally:
            self.ctx.destroy(linger=0)


def cmd(conn, cid, body, dev=None):
    """A cmd entry for the connection of CONNECT entry conn; body is msgpack."""
    return wire.entry(CMD, conn[1], conn[2], dev or conn[3], conn[4], id=cid, body=body)


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
    e.pers.ack(got)
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
    e.noti.reply([cmd(conn, "c1", msgpack.packb({"op": "reboot"}))], conn)
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
    e.noti.reply([cmd(conn, "c2", msgpack.packb(1))], conn)
    u = e.noti.wait(UNDELIVERABLE, "cmd-1")[0]
    assert u[10] == "c2" and u[9] == "disconnected", u


def s_cmdhop(e):
    """A cmd that reaches the worker not holding the device (the notifier's
    view is stale: the device reconnected and landed on the other worker)
    is forwarded to the holder; a device on no worker still
    gets exactly one answer."""
    conn, d = None, None
    for i in range(64):  # the edge picks the worker: connect until one lands on worker 1
        x = e.dev(); x.login("hop-%d" % i)
        c = e.noti.wait(CONNECT, "hop-%d" % i)[0]
        if c[13] == "it-edge/1":
            conn, d = c, x
            break
        x.close()
    assert conn, "no connection landed on worker 1"
    dev = conn[3]
    via0 = list(conn)
    via0[13] = "it-edge/0"
    fwd0 = e.metric("sluice_edge_cmds_forwarded_total")
    e.noti.reply([cmd(conn, "h1", msgpack.packb({"op": "hop"}))], via0)
    m = d.recv()
    assert m["t"] == "cmd" and m["id"] == "h1" and m["body"] == {"op": "hop"}, m
    d.send({"t": "res", "id": "h1", "ok": True, "body": "done"})
    res = e.noti.wait(RES, dev)[0]
    # the result leaves from the worker holding the device; the notifier matches it by (dev, id)
    assert res[10] == "h1" and res[11] is True and msgpack.unpackb(res[12]) == "done", res
    assert res[13] == "it-edge/1", res
    assert (res[1], res[2], res[4]) == (conn[1], conn[2], conn[4]), (res, conn)
    assert e.metric("sluice_edge_cmds_forwarded_total") == fwd0 + 1
    assert e.metric("sluice_edge_cmds_total") >= 1
    assert not e.noti.find(UNDELIVERABLE, dev), "a delivered command was also answered undeliverable"
    # the device leaves: the same cmd path now answers undeliverable, exactly once
    d.close()
    e.noti.wait(DISCONNECT, dev)
    for ident, cid in (("it-edge/0", "h2"), ("it-edge/1", "h3")):
        via = list(conn)
        via[13] = ident
        e.noti.reply([cmd(conn, cid, msgpack.packb(1))], via)
        u = e.noti.wait(UNDELIVERABLE, dev, pred=lambda x, cid=cid: x[10] == cid)[0]
        assert u[9] == "disconnected" and u[13] == ident, u
    time.sleep(0.5)
    undeliv = sorted(x[10] for x in e.noti.find(UNDELIVERABLE, dev))
    assert undeliv == ["h2", "h3"], undeliv  # one answer each, none for h1
    assert [x[10] for x in e.noti.find(RES, dev)] == ["h1"]
    assert e.metric("sluice_edge_cmds_forwarded_total") == fwd0 + 1


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
        disc = e.pers.wait(DISCONNECT, dev)[0]
        # two workers' batches may arrive in either order: order by epoch
        conns = sorted(e.pers.wait(CONNECT, dev, count=2), key=lambda x: x[4])
        assert disc[9] == "replaced", disc
        assert (disc[1], disc[2], disc[4]) == (conns[0][1], conns[0][2], conns[0][4]), (disc, conns)
        assert conns[0][13] != conns[1][13], "pair %d on one worker" % i
        b.close()
        # the acceptor must see b's worker empty again (the gauge it reads), or the
        # next pair meets a 1:1 tie and both go to worker 0
        wait_for(lambda: e.metric("sluice_edge_worker_connections_open") == 0, "pair %d closed" % i)
    # ... and with a third connection between them, on the same worker.
    wait_for(lambda: e.metric("sluice_edge_connections_open") == 0, "all closed")
    a = e.dev(); a.login("to-same")
    f = e.dev(); f.login("to-filler")
    b = e.dev(); b.login("to-same")
    a.expect_err("replaced")
    conns = sorted(e.pers.wait(CONNECT, "to-same", count=2), key=lambda x: x[4])
    assert conns[0][13] == conns[1][13], conns
    disc = e.pers.wait(DISCONNECT, "to-same")[0]
    assert disc[9] == "replaced" and (disc[1], disc[2]) == (conns[0][1], conns[0][2]), disc
    b.send({"t": "ping"})
    assert b.recv()["t"] == "pong"
    b.close(); f.close()
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
        e.noti.reply([cmd(c, "c%d" % i, body)], c)
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
            e.pers.ack(new)
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


def s_readyz(e):
    """Ready = listening and connected to a persister (PUSH peer and ROUTER);
    the notifier is reported, never required. Started with no notifier."""
    def state(code, body):
        return wait_for(lambda: e.http("/readyz") == (code, body), "/readyz %d %r" % (code, body), DEADLINE)
    state(200, "ready persister=up notifier=down")
    assert e.metric("sluice_edge_persister_connected") == 1
    assert e.metric("sluice_edge_notifier_connected") == 0
    # the persister ROUTER goes (no acks could come back): not ready
    e.pers.router.close(linger=0)
    state(503, "not ready persister=down notifier=down")
    assert e.metric("sluice_edge_persister_connected") == 0
    e.pers.router = rebind(zmq.ROUTER, e.base + 2, e.ctx)
    state(200, "ready persister=up notifier=down")
    # a notifier arrives: reported, and readiness does not depend on it
    e.noti = Peer(e.ctx, e.base + 3, e.base + 4)
    state(200, "ready persister=up notifier=up")
    assert e.metric("sluice_edge_notifier_connected") == 1
    # the persister PULL goes (nothing could be sent): not ready, notifier still up
    e.pers.pull.close(linger=0)
    state(503, "not ready persister=down notifier=up")
    # no persister at all
    e.pers.router.close(linger=0)
    state(503, "not ready persister=down notifier=up")
    assert e.metric("sluice_edge_persister_connected") == 0
    assert e.metric("sluice_edge_notifier_connected") == 1
    e.pers.pull = rebind(zmq.PULL, e.base + 1, e.ctx)
    e.pers.router = rebind(zmq.ROUTER, e.base + 2, e.ctx)
    state(200, "ready persister=up notifier=up")
    # SIGTERM: not ready, and the body says why
    e.proc.signal(signal.SIGTERM)
    state(503, "not ready draining")


def s_reuseport(e):
    # --accept reuseport (not the default): each worker accepts on its own
    # listener and the kernel hashes connections over them. 40 connections
    # from random ports all on one worker: probability 2^-39.
    devs = []
    for i in range(40):
        d = e.dev(); d.login("rp-%d" % i); devs.append(d)
    per = [e.metric('sluice_edge_worker_connections_open{worker="%d"}' % w) for w in (0, 1)]
    assert sum(per) == 40 and min(per) >= 1, per
    assert e.metric("sluice_edge_connections_open") == 40
    for i, d in enumerate(devs):
        d.send({"t": "data", "seq": 100 + i, "body": i})
    got = e.pers.wait(DATA, count=40)
    by_worker = {}
    for x in got:
        by_worker.setdefault(x[13], []).append(x)
    assert len(by_worker) == 2, list(by_worker)  # both workers' bus sockets carried data
    for ents in by_worker.values():
        e.pers.ack(ents)
    for i, d in enumerate(devs):
        m = d.recv()
        assert m == {"t": "ack", "seq": 100 + i}, (i, m)
    devs[0].close()
    wait_for(lambda: e.metric("sluice_edge_connections_open") == 39, "close counted")


# ------------------------------------------------ recording and replay
# These start their own edges: BASE_PORT, and BASE_PORT+10 for the replay.
# Their files (recordings, logs) are in the test's workdir.

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


def ack_each(peer, entries):
    """Ack each data entry in a batch of its own (as a device saw them, one by one)."""
    for x in entries:
        peer.ack([x])


def data_entries(peer):
    return [(x[3], x[5], x[12]) for x in peer.find(DATA)]


def record_traffic(e):
    """Three connections: one with a split and a coalesced read, one ending
    in a bad frame, one sending garbage before any hello."""
    a = e.dev(); a.login("rec-a")
    a.send({"t": "data", "seq": 1, "body": {"temp": 20.5}})
    ack_each(e.pers, e.pers.wait(DATA, "rec-a"))
    assert a.recv() == {"t": "ack", "seq": 1}
    f2 = wire.encode({"t": "data", "seq": 2, "body": "split across two reads"})
    a.raw(f2[:7]); time.sleep(0.2); a.raw(f2[7:])
    ack_each(e.pers, e.pers.wait(DATA, "rec-a", count=2)[1:])
    assert a.recv() == {"t": "ack", "seq": 2}
    a.raw(wire.encode({"t": "data", "seq": 3, "body": [1, 2]}) +
          wire.encode({"t": "data", "seq": 4, "body": b"\x00\x01"}))
    ack_each(e.pers, e.pers.wait(DATA, "rec-a", count=4)[2:])
    assert [a.recv()["seq"] for _ in range(2)] == [3, 4]
    a.close()
    e.pers.wait(DISCONNECT, "rec-a")
    b = e.dev(); b.login("rec-b")
    b.send({"t": "data", "seq": 10, "body": "b"})
    ack_each(e.pers, e.pers.wait(DATA, "rec-b"))
    assert b.recv() == {"t": "ack", "seq": 10}
    b.raw(wire.encode([1, 2]))  # a frame whose payload is not a map
    b.expect_err("decode")
    g = e.dev(); g.raw(b"\0\0\0\0"); g.expect_err("frame")


def replay(binary, e, rec, log, *extra):
    """Run sluice-replay of rec against edge e, playing its persister (ack
    what arrives) until the replay exits; returns what it printed."""
    p = proc.Proc("replay", [replay_bin(binary), "--edge", "127.0.0.1:%d" % e.port, "--progress-s", "1"]
                  + list(extra) + [rec], log).start(wait=False)
    acked = set()

    def pump():
        e.pers.poll(20)
        new = [x for h, x in e.pers.entries if x[0] == DATA and (x[3], x[4], x[5]) not in acked]
        for x in new:
            acked.add((x[3], x[4], x[5]))
        ack_each(e.pers, new)
    wait_for(lambda: not p.alive(), "sluice-replay to exit", 120, pump=pump, interval=0.001)
    out = p.output()
    assert p.wait() == 0, out
    return out


def s_record(binary, base, d):
    rec, rec2 = os.path.join(d, "a.rec"), os.path.join(d, "b.rec")
    with open(rec, "w") as f:  # an existing file keeps its mode on O_TRUNC: the edge must fix it
        f.write("old")
    os.chmod(rec, 0o644)
    e = Edge(binary, base, os.path.join(d, "edge.log"), ["--record", rec])
    try:
        record_traffic(e)
        sent = data_entries(e.pers)
        assert e.metric("sluice_edge_record_bytes_total") > 0
        assert e.metric("sluice_edge_record_dropped_total") == 0
    finally:
        rc = e.stop()
    assert rc == 0
    assert os.stat(rec).st_mode & 0o777 == 0o600, oct(os.stat(rec).st_mode)

    lines = dump(binary, rec)
    assert lines[-1][1] == "end" and lines[-1][2] == "reason=shutdown", lines[-1]
    conns = by_conn(lines)
    assert len(conns) == 3, conns
    a = conn_of_dev(conns, "rec-a")
    kinds = [k for k, r in a]
    assert kinds == ["open", "in", "out", "in", "out", "in", "in", "out", "in", "out", "out", "close"], a
    assert '"t":"hello"' in a[1][1] and '"dev":"rec-a"' in a[1][1] and '"t":"welcome"' in a[2][1]
    assert '"seq":1' in a[3][1] and a[4][1].endswith('{"t":"ack","seq":1}')
    assert a[5][1] == "n=7 +partial", a[5]                       # the split frame, first read
    assert '"seq":2' in a[6][1] and '"body":"split across two reads"' in a[6][1]
    assert '"seq":3' in a[8][1] and '"seq":4' in a[8][1], a[8]    # two frames, one read
    assert a[11][1] == "reason=eof"
    b = conn_of_dev(conns, "rec-b")
    assert [k for k, r in b] == ["open", "in", "out", "in", "out", "in", "out", "close"], b
    assert b[5][1].endswith(" [1,2]") and '"code":"decode"' in b[6][1] and b[7][1] == "reason=decode", b
    g = [v for v in conns.values() if v[0][1].endswith(" dev=-")][0]
    assert [k for k, r in g] == ["open", "in", "out", "close"], g
    assert g[1][1] == "n=4 bad-frame(len=0)" and '"code":"frame"' in g[2][1] and g[3][1] == "reason=frame", g

    # Replay against a fresh edge (recording too, to compare the reads).
    e2 = Edge(binary, base + 10, os.path.join(d, "edge2.log"), ["--record", rec2])
    try:
        out = replay(binary, e2, rec, os.path.join(d, "replay.log"), "--device", "rec-b")
        assert [dev for dev, s, b in data_entries(e2.pers)] == ["rec-b"], out
        assert "summary connections=1 " in out and "summary result=same" in out, out
        e2.pers.entries.clear()
        out = replay(binary, e2, rec, os.path.join(d, "replay.log"))
        got = data_entries(e2.pers)
        assert sorted(got) == sorted(sent), (got, sent)
        assert "summary connections=3 " in out and "summary result=same" in out, out
        summ = {l.split()[2]: l for l in out.splitlines() if l.startswith("conn ")}
        assert "back: welcome=1 ack=4 recorded: welcome=1 ack=4" in summ["dev=rec-a"], out
        assert "back: welcome=1 ack=1 err:decode=1 recorded: welcome=1 ack=1 err:decode=1" in summ["dev=rec-b"], out
        assert "back: err:frame=1 recorded: err:frame=1" in summ["dev=-"], out
    finally:
        e2.stop()
    # The replay read as the device wrote: the same chunks, in the same order.
    c1, c2 = by_conn(dump(binary, rec)), by_conn(dump(binary, rec2, "--device", "rec-a"))
    chunks = lambda c: [r.split(" ")[0] for k, r in c if k == "in"]
    assert len(c2) == 1, c2  # rec-a was replayed by the second run only
    for c in c2.values():
        assert chunks(c) == chunks(conn_of_dev(c1, "rec-a")), (chunks(c), c1)


def s_record_filter(binary, base, d):
    rec = os.path.join(d, "f.rec")
    e = Edge(binary, base, os.path.join(d, "edge.log"), ["--record", rec, "--record-devices", "flt-keep,other-*"])
    try:
        k1 = e.dev(); k1.login("flt-keep-1")
        k1.send({"t": "ping"}); assert k1.recv()["t"] == "pong"
        # a hello in three reads: held back, then released in order
        h = wire.encode({"t": "hello", "v": 1, "dev": "flt-keep-2", "tok": token("flt-keep-2")})
        k2 = e.dev(); k2.raw(h[:3]); time.sleep(0.1); k2.raw(h[3:20]); time.sleep(0.1); k2.raw(h[20:])
        assert k2.recv()["t"] == "welcome"
        k2.send({"t": "data", "seq": 5, "body": 1})
        e.pers.wait(DATA, "flt-keep-2")
        dr = e.dev(); dr.login("flt-drop-1")
        dr.send({"t": "data", "seq": 6, "body": 2})
        e.pers.wait(DATA, "flt-drop-1")
        bad = e.dev(); bad.hello("flt-keep-3", tok="0" * 64); bad.expect_err("auth")  # refused, still its device
        g = e.dev(); g.raw(b"\0\0\0\0"); g.expect_err("frame")
        for x in (k1, k2, dr):
            x.close()
        e.pers.wait(DISCONNECT, "flt-drop-1")
        e.pers.wait(DISCONNECT, "flt-keep-2")
    finally:
        e.stop()
    raw = open(rec, "rb").read()
    assert b"flt-drop" not in raw and token("flt-drop-1").encode() not in raw
    conns = by_conn(dump(binary, rec))
    devs = sorted(v[0][1].split(" dev=")[1] for v in conns.values())
    assert devs == ["flt-keep-1", "flt-keep-2", "flt-keep-3"], conns
    k2c = conn_of_dev(conns, "flt-keep-2")
    assert [r.split(" ")[0] for k, r in k2c if k == "in"][:3] == ["n=3", "n=17", "n=%d" % (len(h) - 20)], k2c
    assert '"t":"hello"' in k2c[3][1] and k2c[4][0] == "out" and '"t":"welcome"' in k2c[4][1], k2c
    assert conn_of_dev(conns, "flt-keep-3")[-1][1] == "reason=auth"
    only = by_conn(dump(binary, rec, "--device", "flt-keep-1"))
    assert len(only) == 1 and conn_of_dev(only, "flt-keep-1")


SCENARIOS = {
    "errors": (s_errors, []),
    "busy": (s_busy, ["--max-conns", "2"]),
    "timeouts": (s_timeouts, ["--hello-timeout-ms", "300", "--idle-timeout-ms", "800"]),
    "bytewise": (s_bytewise, []),
    "coalesced": (s_coalesced, []),
    "ackroute": (s_ackroute, []),
    "cmd": (s_cmd, []),
    "takeover": (s_takeover, []),
    "cmdhop": (s_cmdhop, []),
    "outcap": (s_outcap, ["--out-cap", "65536"]),
    "backpressure": (s_backpressure, ["--zmq-hwm", "2", "--workers", "1", "--drain-timeout-ms", "3000"]),
    "drain": (s_drain, ["--drain-rate", "20"]),
    "readyz": (s_readyz, []),
    # These start their own edges (two each: ports BASE..BASE+19).
    "record": (s_record, None),
    "record_filter": (s_record_filter, None),
    "reuseport": (s_reuseport, ["--accept", "reuseport"]),
}


def main():
    binary, name, base = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fn, extra = SCENARIOS[name]
    d = proc.workdir("sl-edge-it-%s-" % name)
    ok = False
    try:
        if extra is None:
            fn(binary, base, d)
        else:
            kw = {"backpressure": dict(notifier=False, rcvhwm=2), "readyz": dict(notifier=False)}.get(name, {})
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
