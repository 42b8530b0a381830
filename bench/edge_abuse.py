#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_abuse.py - abuse soak: good devices beside bad clients (benchmark, not a
test; docs/performance.md, "abuse soak").

The whole stack on loopback (slstack: PostgreSQL, Mosquitto, persister,
notifier, one edge). Good devices are sluice-devsim (--devices at --rate,
verified in PostgreSQL). The run is done twice, without and with bad clients,
for --seconds each. The bad clients, from addresses 127.1.9.x (not on the
edge's allow list, so the per-address limits apply to them):

  garbage    random bytes, then close            huge      a 4 GiB length
  partial    half a hello, held open             prehello  connect, say nothing, hold
  badtoken   hellos with wrong tokens            churn     connect and drop at once
  pingflood  an authenticated device sending pings without pause
  services   malformed batches pushed to the persister's and the notifier's PULL,
             and garbage to their ROUTERs (well-formed forged batches are the trust
             issue's: CURVE keeps strangers out; this checks that a buggy peer
             cannot take a service down)

At the end: 0 acked messages missing in PostgreSQL (devsim --verify), every
service still up, the edge's RSS and open fds back to their baseline once the
bad clients are gone, the good devices' p99 ack latency within 2x of the run
without bad clients. Prints one line per check; exit 1 if one fails.

The bad clients stand for hosts elsewhere on the internet: with --attacker-cpu F
(default 0.5) they run in a process of their own, in a CPU cgroup capped at F of
one core, so the generator's own Python does not take the two cores from the
stack it attacks (what the edge spends on refusing them still counts: that is
the defence's price). --attacker-cpu 0 runs them uncapped, in this process, as
the first runs did. The bad clients' rate is printed either way.

--sink aims the same bad clients at bench/tcp_sink (accept, read, close) instead
of the edge, while the good devices still use the edge: how much of the abused p99
is the box's (the attacker's CPU and the kernel's TCP work for both ends of each
loopback connection) and how much the edge's.

usage: edge_abuse.py [--seconds 30] [--devices 200] [--rate 5 (per device)] [--attacker-cpu 0.5]
                     [--edge-args "--accept-rate 2000"] [--control | --sink]
    (run inside `unshare -n`, as root; binaries from $SLUICE_BIN or build/release/bin)
"""
import argparse
import collections
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import types

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../tests/integration"))
import msgpack  # noqa: E402
import zmq  # noqa: E402

import proc  # noqa: E402
import slstack  # noqa: E402
import wire  # noqa: E402

BASE = 25900  # the benchmarks' block (system.cmake)
HELD_MAX = 4000  # sockets held open (partial, prehello) at once; the oldest is closed beyond
SINK_PORT = BASE + 90  # --sink: tcp_sink's listener
BAD_NET = "127.1."  # each kind of bad client has its own /24: 127.1.<kind>.1..200


def src(kind, i):
    return "%s%d.%d" % (BAD_NET, kind, 1 + i % 200)


def conn(port, addr, timeout=2.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
    s.bind((addr, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


class Bad:
    """The bad clients, each kind in a thread, until stop is set. `stack` needs `base` (the services' PULL
    and ROUTER ports are at fixed offsets from it) and `edge_port(0)`."""

    def __init__(self, stack):
        self.s, self.port = stack, stack.edge_port(0)
        self.stop = threading.Event()
        self.counts = {}
        self.held = collections.deque()
        self.lock = threading.Lock()

    def count(self, what):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def loop(self, kind, what, fn):
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                fn(src(kind, i))
                self.count(what)
            except Exception:  # refused, reset, banned: all expected
                self.count(what + "_refused")
                time.sleep(0.01)

    def garbage(self, a):
        s = conn(self.port, a)
        s.sendall(os.urandom(random.randint(1, 300)))
        s.close()

    def huge(self, a):
        s = conn(self.port, a)
        s.sendall(b"\xff\xff\xff\xff")
        s.close()

    def hold(self, s):
        """Keep s open; beyond HELD_MAX close the oldest (the edge has long dropped it: its hello deadline is
        at most 10 s), so a run of minutes does not run this process out of fds."""
        with self.lock:
            self.held.append(s)
            old = self.held.popleft() if len(self.held) > HELD_MAX else None
        if old:
            old.close()

    def partial(self, a):
        s = conn(self.port, a)
        s.sendall(b"\x00\x00\x03\xe8\x84")
        self.hold(s)
        time.sleep(0.002)

    def prehello(self, a):
        s = conn(self.port, a)
        self.hold(s)
        time.sleep(0.002)

    def badtoken(self, a):
        s = conn(self.port, a)
        s.sendall(wire.encode({"t": "hello", "v": 1, "dev": "liar", "tok": "0" * 64}))
        try:
            s.recv(256)
        except OSError:
            pass
        s.close()

    def churn(self, a):
        conn(self.port, a).close()

    def pingflood(self, a):
        d = wire.Device(self.port, secret=slstack.SECRET, src=a)
        d.login("flooder-" + a.rsplit(".", 1)[1])
        ping = wire.encode({"t": "ping"})
        end = time.monotonic() + 2
        while time.monotonic() < end and not self.stop.is_set():
            d.s.sendall(ping * 64)
        d.close()

    def services(self, a):
        ctx = zmq.Context.instance()
        base = self.s.base
        for pull in (base + 2, base + 5):  # persister, notifier PULL
            p = ctx.socket(zmq.PUSH)
            p.setsockopt(zmq.LINGER, 100)
            p.connect("tcp://127.0.0.1:%d" % pull)
            bad = [
                os.urandom(64),
                msgpack.packb([1, "edge-x", 1, "a\x00b"]) + msgpack.packb([1, 0, 0, "d\x00v", 1, 1]),
                msgpack.packb([1, "edge-x", 1, "r"]) + msgpack.packb([99, 0, 0, "x", 1]),
                msgpack.packb([1, "e" * 300, 1, "r"]) + msgpack.packb([1, 0, 0, "x" * 80, 1, 0]),
                msgpack.packb([2, "edge-x", 1, "r"]),
                b"\x94\x01",
            ]
            for b in bad:
                p.send(b)
            p.close()
        for router in (base + 3, base + 6):
            d = ctx.socket(zmq.DEALER)
            d.setsockopt(zmq.LINGER, 100)
            d.connect("tcp://127.0.0.1:%d" % router)
            d.send(os.urandom(32))
            d.close()
        time.sleep(0.05)

    def start(self):
        kinds = [("garbage", self.garbage), ("huge", self.huge), ("partial", self.partial),
                 ("prehello", self.prehello), ("badtoken", self.badtoken), ("churn", self.churn),
                 ("pingflood", self.pingflood), ("services", self.services)]
        self.threads = [threading.Thread(target=self.loop, args=(n + 1,) + k, daemon=True)
                        for n, k in enumerate(kinds)]
        for t in self.threads:
            t.start()

    def end(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)
        for s in self.held:
            s.close()


CGROUP = "/sys/fs/cgroup/cpu/sl-abuse-%d" % os.getpid()  # cgroup v1 cpu controller (ENV-NOTES)


class CappedBad:
    """The bad clients in a child process (this script with --attack BASE PORT) inside a CPU cgroup
    capped at `share` of one core. stdin closed = stop; the child then prints its counts and CPU seconds
    as one JSON line."""

    def __init__(self, stack, share, spin=False, port=None):
        os.mkdir(CGROUP)
        with open(CGROUP + "/cpu.cfs_period_us", "w") as f:
            f.write("100000")
        with open(CGROUP + "/cpu.cfs_quota_us", "w") as f:
            f.write(str(int(100000 * share)))
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--attack", str(stack.base),
                                   str(port or stack.edge_port(0))] + (["--spin"] if spin else []), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        with open(CGROUP + "/cgroup.procs", "w") as f:
            f.write(str(self.p.pid))  # before it imports and starts its threads; they follow it
        self.counts, self.cpu_s = {}, 0.0

    def end(self):
        out, _ = self.p.communicate(b"", timeout=60)
        r = json.loads(out.decode().strip().splitlines()[-1])
        self.counts, self.cpu_s = r["counts"], r["cpu_s"]
        os.rmdir(CGROUP)


def spin():
    """The child of CappedBad with --spin: burn its CPU share until stdin closes, touching no socket."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.buffer.read(), stop.set()), daemon=True).start()
    n = 0
    while not stop.is_set():
        for _ in range(10000):
            n += 1
    t = os.times()
    print(json.dumps({"counts": {"spin_loops": n // 10000}, "cpu_s": t.user + t.system}), flush=True)
    return 0


def attack(base, port):
    """The child of CappedBad: attack until stdin closes."""
    bad = Bad(types.SimpleNamespace(base=base, edge_port=lambda i: port))
    bad.start()
    sys.stdin.buffer.read()
    bad.end()
    t = os.times()
    print(json.dumps({"counts": bad.counts, "cpu_s": t.user + t.system}), flush=True)
    return 0


def edge_res(stack):
    pid = stack.procs["edge0"].pid
    with open("/proc/%d/statm" % pid) as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def cpu(stack):
    """CPU seconds (user + system) so far of the services, of this process (the bad clients, when
    uncapped) and of the good devices, and the box's 1-minute load average: where the two cores went
    during a phase."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name in ("edge0", "persister", "notifier"):
        with open("/proc/%d/stat" % stack.procs[name].pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    t = os.times()
    out["bad clients"] = t.user + t.system
    # the good devices: sluice-devsim runs to completion in each phase, so the children's times are its own
    # (the capped attacker is reaped only after the last reading)
    out["devices"] = t.children_user + t.children_system
    out["load"] = os.getloadavg()[0]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--rate", type=float, default=5, help="messages per second per device")
    ap.add_argument("--attacker-cpu", type=float, default=0.5,
                    help="CPU cap of the bad clients' process, in cores (0: uncapped, in this process)")
    ap.add_argument("--edge-args", default="", help="more flags for the edge, e.g. \"--accept-rate 2000\"")
    ap.add_argument("--control", action="store_true",
                    help="control run: the capped child only burns its CPU share (no socket), to show what taking "
                    "that CPU from the box alone does to the good devices' p99")
    ap.add_argument("--sink", action="store_true",
                    help="aim the bad clients at bench's tcp_sink (accept, read, close) instead of the edge: the "
                    "good devices' p99 then shows what the attack costs the box itself, without the edge")
    ap.add_argument("--attack", nargs=2, type=int, help=argparse.SUPPRESS)  # the capped child: BASE PORT
    ap.add_argument("--spin", action="store_true", help=argparse.SUPPRESS)  # the capped child of --control
    a = ap.parse_args()
    if a.attack:
        return spin() if a.spin else attack(*a.attack)
    if (a.control or a.sink) and a.attacker_cpu <= 0:
        ap.error("--control and --sink need --attacker-cpu > 0")
    results = []
    ok = True
    with slstack.Stack(BASE, edges=1, name="abuse", edge_extra=["--allow-cidrs", "127.0.0.0/16"] + a.edge_args.split()) as s:
        s.start()
        time.sleep(1)
        base_res = edge_res(s)
        c0 = cpu(s)
        r0 = s.devsim(devices=a.devices, duration=a.seconds, rate=a.rate, prefix="calm", name="calm")
        slstack.check_devsim(r0)
        c1 = cpu(s)
        sink = None
        if a.sink:
            sink = proc.Proc("tcp_sink", [proc.binary("tcp_sink"), str(SINK_PORT)], None).start(wait=False)
            time.sleep(0.2)  # listening
        if a.attacker_cpu > 0:
            bad = CappedBad(s, a.attacker_cpu, spin=a.control, port=SINK_PORT if sink else None)
        else:
            bad = Bad(s)
            bad.start()
        r1 = s.devsim(devices=a.devices, duration=a.seconds, rate=a.rate, prefix="abused", name="abused")
        c2 = cpu(s)
        bad.end()
        if sink:
            sink.stop()
        if isinstance(bad, CappedBad):  # this process is not the bad clients then
            c0["bad clients"], c1["bad clients"], c2["bad clients"] = 0.0, 0.0, bad.cpu_s
        time.sleep(15)  # hello deadlines and held sockets run out
        end_res = edge_res(s)
        slstack.check_devsim(r1)
        for name in ("edge0", "persister", "notifier"):
            alive = s.procs[name].alive()
            ok &= alive
            results.append("%s alive after the soak: %s" % (name, alive))
        p0, p1 = r0["latency_ms"]["p99"], r1["latency_ms"]["p99"]
        within = p1 <= 2 * max(p0, 1)
        ok &= within
        results.append("good devices: p99 %s ms without bad clients, %s ms with them%s (within 2x: %s)"
                       % (p0, p1, " (aimed at tcp_sink, not the edge)" if sink else "", within))
        results.append("acked %d and %d, missing %d and %d in PostgreSQL"
                       % (r0["acked"], r1["acked"], r0["verify"]["missing"], r1["verify"]["missing"]))
        grown = end_res[0] - base_res[0]
        rss_ok = grown < 8 << 20
        fds_ok = end_res[1] <= base_res[1] + 8
        ok &= rss_ok and fds_ok
        results.append("edge RSS %d -> %d KiB (%+d KiB), fds %d -> %d: back to baseline: %s"
                       % (base_res[0] >> 10, end_res[0] >> 10, grown >> 10, base_res[1], end_res[1],
                          rss_ok and fds_ok))
        n_bad = sum(bad.counts.values())
        results.append("bad clients (%s): %d actions, %.0f/s: %s" % (
            "capped at %.2f core" % a.attacker_cpu if a.attacker_cpu > 0 else "uncapped", n_bad,
            n_bad / a.seconds, ", ".join("%s=%d" % kv for kv in sorted(bad.counts.items()))))
        for phase, x, y in (("calm", c0, c1), ("abused", c1, c2)):
            results.append("%s: CPU seconds %s; load average %.1f -> %.1f" % (
                phase, ", ".join("%s %.1f" % (k, y[k] - x[k]) for k in y if k != "load"), x["load"], y["load"]))
        for line in results:
            print(line)
    print("abuse soak: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
