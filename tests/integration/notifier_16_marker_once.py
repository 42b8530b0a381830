#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""notifier_16_marker_once: a command's marker is published at most once and the command is
routed only after the broker acknowledged the marker (paho's onSuccess), against a real
Mosquitto reached through a TCP relay the test controls:

1. the relay swallows everything the notifier sends (the broker's side still flows): a command
   arrives and a device connects; the marker and the status go out and are never acknowledged,
   and the command does not reach the edge while its marker waits (not routed before the PUBACK);
2. the relay cuts the connections: on the next connection the status is sent again (it reaches
   the broker) but the marker is not (nothing on its topic), the command is never routed and is
   counted lost;
3. with the relay passing again, a command's marker is retained at the broker, the command
   reaches the edge and its result clears the marker."""
import json
import socket
import sys
import threading
import time

from ntftest import CMD, CONNECT, RES, Env, check, entry, publish, wait_for

BROKER, RELAY, NTF = 23320, 23321, 23322  # notifier_NN: 23000 + 20 * NN (notifier.cmake)


class Relay:
    """TCP relay RELAY -> BROKER. With swallow set, bytes from the client side are dropped (as
    if held by a frozen network); cut() closes every relayed connection."""

    def __init__(self, port, target):
        self.target = target
        self.swallow = False
        self.swallowed = 0
        self.lock = threading.Lock()
        self.pairs = []
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            with self.lock:
                self.pairs.append((c, u))
            threading.Thread(target=self._pipe, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, False), daemon=True).start()

    def _pipe(self, src, dst, up):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if up and self.swallow:
                    self.swallowed += len(data)
                    continue
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def cut(self):
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for c, u in pairs:
            for s in (c, u):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.cut()
        self.ls.close()


def main():
    relay = Relay(RELAY, BROKER)
    try:
        with Env(BROKER, NTF) as env:
            argv = env.ntf.argv
            argv[argv.index("--broker") + 1] = "tcp://127.0.0.1:%d" % RELAY
            argv += ["--pool", "1"]
            env.ntf.start()
            sub = env.sub(["devices/#"])
            a = env.edge("edge-a:7000")
            a.heartbeat()
            t0 = time.time_ns()
            a.send(entry(CONNECT, 1, 1, "m-1", epoch=t0, at_ns=t0, peer="p"))
            wait_for(lambda: (sub.last("devices/m-1/status") or {}).get("online"), "m-1 online", pump=env.pump)
            # (the subscriber can see m-1's status before the notifier has its PUBACK)
            wait_for(lambda: env.ntf.metric("sluice_notifier_publish_inflight") == 0, "nothing in flight",
                     pump=env.pump)

            # --- 1. nothing the notifier sends reaches the broker
            relay.swallow = True
            publish(BROKER, "devices/m-1/cmd", json.dumps({"id": "c1", "body": 1}))
            a.send(entry(CONNECT, 2, 1, "m-2", epoch=t0 + 1, at_ns=t0 + 1, peer="p"))
            wait_for(lambda: env.ntf.metric("sluice_notifier_publish_inflight") >= 2,
                     "the marker of c1 and the status of m-2 in flight", pump=env.pump)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                env.pump()
                check(not a.received(CMD, id="c1"), "c1 routed before the broker acknowledged its marker")
                time.sleep(0.05)
            check(not sub.on("devices/_sluice/pending/m-1/c1") and not sub.on("devices/m-2/status"),
                  "the relay let something through")
            print("c1 not routed while its marker waits for the PUBACK (%d bytes held)" % relay.swallowed)

            # --- 2. the connection drops: the status is sent again, the marker is not
            relay.swallow = False
            relay.cut()
            wait_for(lambda: (sub.last("devices/m-2/status") or {}).get("online"), "m-2's status sent again",
                     pump=env.pump)
            wait_for(lambda: env.ntf.metric('sluice_notifier_commands_total{result="lost"}', 0) == 1,
                     "c1 counted lost", pump=env.pump)
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                env.pump()
                time.sleep(0.05)
            check(not sub.on("devices/_sluice/pending/m-1/c1"), "the marker of c1 was sent again: %r" %
                  sub.on("devices/_sluice/pending/m-1/c1"))
            check(not a.received(CMD, id="c1"), "c1 routed after its marker was dropped")
            check(not sub.on("devices/m-1/cmd/c1/result"), "a result for c1: %r" % sub.on("devices/m-1/cmd/c1/result"))
            print("after the drop: m-2's status resent, c1's marker not, c1 never routed (lost)")

            # --- 3. a command through a healthy connection
            publish(BROKER, "devices/m-1/cmd", json.dumps({"id": "c2", "body": 2}))
            c = wait_for(lambda: a.received(CMD, id="c2"), "c2 at the edge", pump=env.pump)[0]
            mk = sub.received("devices/_sluice/pending/m-1/c2")
            check(mk and mk[0][0].get("edge") == "edge-a:7000", "c2's marker at the broker: %r" % mk)
            a.send(entry(RES, c["slot"], c["gen"], "m-1", epoch=t0, id="c2", ok=True))
            wait_for(lambda: sub.last("devices/m-1/cmd/c2/result"), "c2's result", pump=env.pump)
            wait_for(lambda: sub.received("devices/_sluice/pending/m-1/c2")[-1][0] is None, "c2's marker cleared",
                     pump=env.pump)
            check(len(sub.on("devices/m-1/cmd/c2/result")) == 1, "c2 results %r" % sub.on("devices/m-1/cmd/c2/result"))
            print("c2: marker retained, routed, one result, marker cleared")
    finally:
        relay.close()
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
