# SPDX-License-Identifier: Apache-2.0
"""ntftest.py - pieces shared by the notifier integration tests: a Python
test edge (PUSH + DEALER speaking docs/protocol.md section 6) that keeps
what the notifier sends back, a real Mosquitto with MQTT subscribers, and
the sluice-notifier process (ports port_base .. port_base+2: pull, router,
metrics)."""
import os
import secrets
import sys
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mqtttest  # noqa: E402
import proc  # noqa: E402
import wire  # noqa: E402
from mqtttest import publish  # noqa: E402,F401  (the scenarios import it from here)
from proc import check, wait_for  # noqa: E402,F401
from wire import (ACK, CMD, CONNECT, DATA, DISCONNECT, HEARTBEAT, KICK, RES, UNDELIVERABLE,  # noqa: E402,F401
                  entry)


class Edge(wire.Edge):
    """One edge worker talking to the notifier; keeps every entry it receives."""

    def __init__(self, ctx, pull, router, edge_id, worker=0, inc=None, reply=None):
        # a real edge worker's identity: "<edge-id>/<worker>/<secret>" (docs/security.md "Identities")
        if reply is None:
            reply = "%s/%d/%s" % (edge_id, worker, secrets.token_hex(12))
        super().__init__(ctx, [pull], [router], edge_id, worker, inc, reply=reply)
        self.got = []  # entries received from the notifier, as dicts (+ "hdr")
        self.last_hb = 0.0

    def heartbeat(self):
        self.send(entry(HEARTBEAT, at_ns=time.time_ns(), seq=0))
        self.last_hb = time.monotonic()

    def pump(self):
        """Heartbeat every second and collect what the notifier sent."""
        if time.monotonic() - self.last_hb > 1.0:
            self.heartbeat()
        for hdr, ents in self.recv():
            for e in ents:
                d = dict(zip(wire.FIELDS, e))
                d["hdr"] = hdr
                self.got.append(d)

    def received(self, kind, **match):
        self.pump()
        return [e for e in self.got if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())]


class Notifier(proc.Proc):
    """sluice-notifier with --pool 2; broker_uri (default tcp://127.0.0.1:<broker_port>) for an ssl:// one;
    name also names its log (<dir>/<name>.log), so several can run in one test."""

    def __init__(self, port_base, broker_port, dir, extra=(), broker_uri=None, name="notifier"):
        self.pull = "tcp://127.0.0.1:%d" % port_base
        self.router = "tcp://127.0.0.1:%d" % (port_base + 1)
        metrics = "127.0.0.1:%d" % (port_base + 2)
        super().__init__(name, [
            proc.binary("sluice-notifier"), "--pull", self.pull, "--router", self.router,
            "--broker", broker_uri or "tcp://127.0.0.1:%d" % broker_port, "--client-id", "ntf-test",
            "--metrics", metrics, "--edge-timeout-ms", "60000", "--pool", "2"] + list(extra),
            os.path.join(dir, name + ".log"), http=metrics, ready=proc.http_ok(), grace=15)


class Env:
    """Broker + notifier + zmq context in a proc.workdir, torn down at the
    end of the with block (proc.finish). broker_kw go to mqtttest.start
    (tls=, users=); the notifier is given the broker's URI (ssl:// with tls),
    its credentials are the test's to add to env.ntf.argv. dir: a
    proc.workdir the test already made (for files the broker needs)."""

    def __init__(self, broker_port, ntf_port, dir=None, **broker_kw):
        self.dir = dir or proc.workdir("sl-ntf-")
        self.broker_port = broker_port
        self.broker = mqtttest.start(broker_port, os.path.join(self.dir, "mqtt"), **broker_kw)
        self.ctx = zmq.Context()
        self.ntf = Notifier(ntf_port, broker_port, self.dir, broker_uri=self.broker.uri)
        self.edges = []
        self.subs = []

    def __enter__(self):
        return self

    def edge(self, edge_id, worker=0, inc=None):
        e = Edge(self.ctx, self.ntf.pull, self.ntf.router, edge_id, worker, inc)
        self.edges.append(e)
        return e

    def sub(self, topics, **kw):
        s = mqtttest.Subscriber(self.broker_port, topics, **kw)
        self.subs.append(s)
        return s

    def pump(self):
        if self.ntf.should_run:
            self.ntf.check_alive()
        for e in self.edges:
            e.pump()

    def __exit__(self, et, ev, tb):
        for s in self.subs:
            s.close()
        ok = et is None
        try:
            self.ntf.stop(expect=0 if ok else None)  # a clean exit on SIGTERM is part of every scenario
        except proc.TestFailure:
            ok = False
            raise
        finally:
            self.broker.stop()
            proc.kill_all()
            for e in self.edges:
                e.close()
            self.ctx.term()
            proc.finish(self.dir, ok)
        return False
