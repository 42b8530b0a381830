"""ntftest.py - pieces shared by the notifier integration tests: a Python
test edge (PUSH + DEALER speaking docs/protocol.md section 6), an MQTT
subscriber that records everything, and the sluice-notifier process."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import msgpack
import paho.mqtt.client as mqtt
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mqtttest  # noqa: E402

DATA, CONNECT, DISCONNECT, RES, HEARTBEAT, UNDELIVERABLE, ACK, CMD, KICK = range(1, 10)
FIELDS = ["kind", "slot", "gen", "dev", "epoch", "seq", "ts", "at_ns", "peer", "reason", "id", "ok", "body"]


def fail(msg):
    raise AssertionError(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def wait_for(pred, what, timeout=20.0, pump=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pump:
            pump()
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    fail("timed out waiting for " + what)


def entry(kind, slot=0, gen=0, dev="", epoch=0, seq=None, ts=None, at_ns=None, peer=None,
          reason=None, id=None, ok=None, body=None):
    e = [kind, slot, gen, dev, epoch, seq, ts, at_ns, peer, reason, id, ok, body]
    while e and e[-1] is None:
        e.pop()
    return e


class Edge:
    """One edge worker: PUSH to the notifier's PULL, DEALER (identity
    reply) to its ROUTER."""

    def __init__(self, ctx, pull, router, edge_id, worker=0, inc=None):
        self.edge_id = edge_id
        self.reply = "%s/%d" % (edge_id, worker)
        self.inc = inc if inc is not None else int.from_bytes(os.urandom(8), "big")
        self.push = ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.connect(pull)
        self.dealer = ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.setsockopt(zmq.ROUTING_ID, self.reply.encode())
        self.dealer.connect(router)
        self.got = []  # entries received from the notifier, as dicts
        self.last_hb = 0.0

    def send(self, *entries):
        b = msgpack.packb([1, self.edge_id, self.inc, self.reply])
        for e in entries:
            b += msgpack.packb(e, use_bin_type=True)
        self.push.send(b)

    def heartbeat(self):
        self.send(entry(HEARTBEAT, at_ns=time.time_ns(), seq=0))
        self.last_hb = time.monotonic()

    def pump(self):
        """Heartbeat every second and collect what the notifier sent."""
        if time.monotonic() - self.last_hb > 1.0:
            self.heartbeat()
        while self.dealer.poll(0):
            msg = self.dealer.recv()
            u = msgpack.Unpacker(raw=False)
            u.feed(msg)
            items = list(u)
            hdr, ents = items[0], items[1:]
            for e in ents:
                d = dict(zip(FIELDS, e))
                d["hdr"] = hdr
                self.got.append(d)

    def received(self, kind, **match):
        self.pump()
        return [e for e in self.got if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())]

    def close(self):
        self.push.close()
        self.dealer.close()


class Sub:
    """A real MQTT subscriber (paho) recording (topic, payload, retained)."""

    def __init__(self, port, topics, client_id=None, clean=True):
        self.lock = threading.Lock()
        self.msgs = []
        self.c = mqtt.Client(client_id=client_id or "", clean_session=clean)
        self.c.on_message = self._on_msg
        self.topics = topics
        self.connected = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        wait_for(self.connected.is_set, "subscriber connected")
        time.sleep(0.2)  # SUBACK

    def _on_connect(self, c, ud, flags, rc):
        for t in self.topics:
            c.subscribe(t, qos=1)
        self.connected.set()

    def _on_msg(self, c, ud, m):
        with self.lock:
            self.msgs.append((m.topic, m.payload, m.retain))

    def on(self, topic):
        with self.lock:
            return [(json.loads(p) if p else None, r) for t, p, r in self.msgs if t == topic]

    def count(self):
        with self.lock:
            return len(self.msgs)

    def all(self):
        with self.lock:
            return list(self.msgs)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def publish(port, topic, payload, retain=False):
    c = mqtt.Client()
    c.connect("127.0.0.1", port)
    c.loop_start()
    info = c.publish(topic, payload, qos=1, retain=retain)
    info.wait_for_publish()
    c.loop_stop()
    c.disconnect()


def bin_dir():
    d = os.environ.get("SLUICE_BIN")
    if d:
        return d
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "..", "build", "bin")


class Notifier:
    def __init__(self, port_base, broker_port, dir, extra=()):
        self.pull = "tcp://127.0.0.1:%d" % port_base
        self.router = "tcp://127.0.0.1:%d" % (port_base + 1)
        self.metrics = "127.0.0.1:%d" % (port_base + 2)
        self.args = [os.path.join(bin_dir(), "sluice-notifier"), "--pull", self.pull, "--router", self.router,
                     "--broker", "tcp://127.0.0.1:%d" % broker_port, "--client-id", "ntf-test",
                     "--metrics", self.metrics, "--edge-timeout-ms", "60000", "--pool", "2"] + list(extra)
        self.log = os.path.join(dir, "notifier.log")
        self.proc = None

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_for(self.ready, "notifier /readyz")
        return self

    def ready(self):
        import urllib.request
        if self.proc.poll() is not None:
            fail("notifier exited with %s; log:\n%s" % (self.proc.returncode, open(self.log).read()[-3000:]))
        try:
            with urllib.request.urlopen("http://%s/readyz" % self.metrics, timeout=1) as r:
                return r.status == 200
        except Exception:
            return False

    def metric(self, name):
        import urllib.request
        with urllib.request.urlopen("http://%s/metrics" % self.metrics, timeout=2) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                if line.split(" ")[0] == name:
                    return float(line.split(" ")[1])
        return None

    def stop(self, sig_kill=False):
        if self.proc and self.proc.poll() is None:
            if sig_kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                rc = self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                fail("notifier did not exit on SIGTERM")
            if not sig_kill and rc != 0:
                fail("notifier exited %d on SIGTERM" % rc)
        self.proc = None


class Env:
    """Broker + notifier + zmq context in a temp dir, torn down on exit."""

    def __init__(self, broker_port, ntf_port):
        self.dir = tempfile.mkdtemp(prefix="sl-ntf-")
        os.chmod(self.dir, 0o755)  # mosquitto (user mosquitto) must reach its persistence dir inside
        self.broker_port = broker_port
        self.broker = mqtttest.start(broker_port, os.path.join(self.dir, "mqtt"))
        self.ctx = zmq.Context()
        self.ntf = Notifier(ntf_port, broker_port, self.dir)
        self.edges = []
        self.subs = []

    def __enter__(self):
        return self

    def edge(self, edge_id, worker=0, inc=None):
        e = Edge(self.ctx, self.ntf.pull, self.ntf.router, edge_id, worker, inc)
        self.edges.append(e)
        return e

    def sub(self, topics, **kw):
        s = Sub(self.broker_port, topics, **kw)
        self.subs.append(s)
        return s

    def pump(self):
        if self.ntf.proc is not None and self.ntf.proc.poll() is not None:
            fail("notifier died with status %s" % self.ntf.proc.returncode)
        for e in self.edges:
            e.pump()

    def __exit__(self, *exc):
        for s in self.subs:
            try:
                s.close()
            except Exception:
                pass
        try:
            self.ntf.stop()
        finally:
            for e in self.edges:
                e.close()
            self.ctx.term()
            self.broker.stop()
        if exc[0] is None:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            sys.stderr.write("--- notifier log (kept in %s) ---\n" % self.dir)
            try:
                sys.stderr.write(open(self.ntf.log).read()[-4000:])
            except OSError:
                pass
        return False
