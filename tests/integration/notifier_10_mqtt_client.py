#!/usr/bin/python3
"""The notifier's own MQTT client against a scripted broker (a few lines of Python that speak
just enough MQTT 3.1.1 and do what the test says), for what a real broker will not do on cue:

1. a command's marker that the broker never acknowledges before the connection drops is not
   sent again on the next connection (at most once), the command is neither routed nor
   acknowledged, while a status left unacknowledged the same way is sent again (at least once);
2. a command whose marker is acknowledged is routed to the edge, and only then acknowledged;
3. a PUBACK out of order (brokers acknowledge QoS 1 in order, MQTT 3.1.1 4.6) restarts the
   connection and everything unacknowledged is written again, in order."""
import json
import os
import socket
import struct
import sys
import threading
import time

import msgpack
import zmq

import proc
from ntftest import CMD, CONNECT, DATA, Edge, Notifier, check, entry, wait_for

FAKE, NTF = 23201, 23202  # notifier_NN: 23000 + 20 * NN (notifier.cmake)


def rlen(n):
    out = b""
    while True:
        b, n = n & 127, n >> 7
        out += bytes([b | (128 if n else 0)])
        if not n:
            return out


class Conn:
    """One client connection of the scripted broker."""

    def __init__(self, sock, broker):
        self.s, self.b = sock, broker
        self.client = None
        self.pubs = []      # (id, topic, payload, qos, retain, dup)
        self.pubacks = []   # ids the client acknowledged
        self.lock = threading.Lock()
        self.alive = True
        threading.Thread(target=self.run, daemon=True).start()

    def send(self, data):
        try:
            self.s.sendall(data)
        except OSError:
            pass

    def publish(self, topic, payload, pid):
        t = topic.encode()
        body = struct.pack(">H", len(t)) + t + struct.pack(">H", pid) + payload
        self.send(bytes([0x32]) + rlen(len(body)) + body)

    def puback(self, pid):
        self.send(bytes([0x40, 2]) + struct.pack(">H", pid))

    def close(self):
        self.alive = False
        try:
            self.s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.s.close()

    def run(self):
        buf = b""
        while self.alive:
            try:
                chunk = self.s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 2:
                n, i, mul = 0, 1, 1
                while i < len(buf) and buf[i] & 128:
                    n += (buf[i] & 127) * mul
                    mul *= 128
                    i += 1
                if i >= len(buf):
                    break
                n += (buf[i] & 127) * mul
                if len(buf) < i + 1 + n:
                    break
                first, body, buf = buf[0], buf[i + 1:i + 1 + n], buf[i + 1 + n:]
                self.packet(first, body)
        self.alive = False

    def packet(self, first, body):
        t = first >> 4
        if t == 1:  # CONNECT
            vl = struct.unpack(">H", body[:2])[0]
            p = 2 + vl + 4
            cl = struct.unpack(">H", body[p:p + 2])[0]
            self.client = body[p + 2:p + 2 + cl].decode()
            self.send(bytes([0x20, 2, 0, 0]))
        elif t == 8:  # SUBSCRIBE: grant QoS 1 to each filter
            pid = body[:2]
            n = 0
            p = 2
            while p < len(body):
                fl = struct.unpack(">H", body[p:p + 2])[0]
                p += 2 + fl + 1
                n += 1
            self.send(bytes([0x90]) + rlen(2 + n) + pid + bytes([1] * n))
        elif t == 3:  # PUBLISH
            qos, retain, dup = (first >> 1) & 3, first & 1, (first >> 3) & 1
            tl = struct.unpack(">H", body[:2])[0]
            topic = body[2:2 + tl].decode()
            p = 2 + tl
            pid = struct.unpack(">H", body[p:p + 2])[0] if qos else 0
            payload = body[p + (2 if qos else 0):]
            with self.lock:
                self.pubs.append((pid, topic, payload, qos, retain, dup))
            if qos and self.b.auto_ack(topic):
                self.puback(pid)
        elif t == 4:  # PUBACK
            with self.lock:
                self.pubacks.append(struct.unpack(">H", body[:2])[0])
        elif t == 12:  # PINGREQ
            self.send(bytes([0xd0, 0]))


class Broker:
    def __init__(self, port):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(16)
        self.conns = []
        self.hold = set()  # topic prefixes not acknowledged
        threading.Thread(target=self.accept, daemon=True).start()

    def auto_ack(self, topic):
        return not any(topic.startswith(h) for h in self.hold)

    def accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            self.conns.append(Conn(s, self))

    def conn(self, client):
        live = [c for c in self.conns if c.client == client and c.alive]
        return live[-1] if live else None

    def conns_of(self, client):
        return [c for c in self.conns if c.client == client]


def main():
    d = proc.workdir("sl-ntf-mqttc-")
    ok = False
    broker = Broker(FAKE)
    ctx = zmq.Context()
    ntf = Notifier(NTF, FAKE, d, extra=["--pool", "1", "--client-id", "nc"])
    try:
        ntf.start()
        ctl = wait_for(lambda: broker.conn("nc-0"), "control client")
        data = wait_for(lambda: broker.conn("nc-1"), "publisher client")
        edge = Edge(ctx, ntf.pull, ntf.router, "edge-a:7000")
        edge.heartbeat()
        t0 = time.time_ns()

        # --- 1. a marker and a status unacknowledged, the connection drops
        broker.hold = {"devices/"}
        edge.send(entry(CONNECT, 1, 1, "d", epoch=t0, at_ns=t0, peer="p"))
        wait_for(lambda: any(p[1] == "devices/d/status" for p in ctl.pubs), "status sent", pump=edge.pump)
        ctl.publish("devices/d/cmd", json.dumps({"id": "c1", "body": 1}).encode(), 41)
        wait_for(lambda: any(p[1] == "devices/_sluice/pending/d/c1" for p in ctl.pubs), "marker sent", pump=edge.pump)
        time.sleep(0.3)
        check(41 not in ctl.pubacks, "the command was acknowledged before its marker was")
        check(not edge.received(CMD), "routed before the broker had the marker")
        broker.hold = set()  # the next connection is acknowledged in order, as a broker would
        ctl.close()
        ctl2 = wait_for(lambda: broker.conn("nc-0") if broker.conn("nc-0") is not ctl else None, "reconnected")
        wait_for(lambda: any(p[1] == "devices/d/status" for p in ctl2.pubs), "status sent again", pump=edge.pump)
        time.sleep(0.5)
        edge.pump()
        check(not any(p[1].startswith("devices/_sluice/pending/") and p[2] for p in ctl2.pubs),
              "the marker was sent again: %r" % ctl2.pubs)
        check(not edge.received(CMD), "routed although its marker may not exist")
        print("1: unacknowledged status sent again, marker not, command neither routed nor acknowledged")

        # --- 2. an acknowledged marker: routed, then the command acknowledged
        ctl2.publish("devices/d/cmd", json.dumps({"id": "c2", "body": 2}).encode(), 42)
        c = wait_for(lambda: edge.received(CMD, id="c2"), "c2 routed", pump=edge.pump)[0]
        check(c["dev"] == "d", "cmd %r" % c)
        wait_for(lambda: 42 in ctl2.pubacks, "c2 acknowledged")
        marks = [i for i, p in enumerate(ctl2.pubs) if p[1] == "devices/_sluice/pending/d/c2"]
        check(marks, "no marker for c2")
        print("2: marker acknowledged, then routed and the command acknowledged")

        # --- 3. PUBACK out of order on the publisher connection
        broker.hold = {"devices/d/data"}
        edge.send(*[entry(DATA, 1, 1, "d", epoch=t0, seq=s, at_ns=time.time_ns(), body=msgpack.packb(s))
                    for s in (1, 2, 3)])
        got = wait_for(lambda: [p for p in data.pubs if p[1] == "devices/d/data"] if len(
            [p for p in data.pubs if p[1] == "devices/d/data"]) == 3 else None, "3 data publishes", pump=edge.pump)
        broker.hold = set()
        data.puback(got[1][0])  # the second first
        data2 = wait_for(lambda: broker.conn("nc-1") if broker.conn("nc-1") is not data else None,
                         "publisher reconnected", pump=edge.pump)
        again = wait_for(lambda: [p for p in data2.pubs if p[1] == "devices/d/data"] if len(
            [p for p in data2.pubs if p[1] == "devices/d/data"]) >= 3 else None, "data written again", pump=edge.pump)
        seqs = [json.loads(p[2])["seq"] for p in again[:3]]
        check(seqs == [1, 2, 3], "written again as %r" % seqs)
        check("out of order" in ntf.output(), "no log line for the PUBACK out of order")
        print("3: PUBACK out of order: reconnected, all three written again in order")
        ntf.stop(expect=0)
        edge.close()
        ok = True
    finally:
        proc.kill_all()
        broker.ls.close()
        ctx.destroy(linger=0)
        proc.finish(d, ok)
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
