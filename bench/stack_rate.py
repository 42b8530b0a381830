#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""stack_rate - the highest offered rate the whole stack holds on this box:
sluice-devsim (the devices) -> one sluice-edge -> sluice-persister ->
PostgreSQL 15, and -> sluice-notifier(s) -> Mosquitto, all on one machine.

For each offered rate (msgs/s over --devices devices, window 16) devsim runs
--seconds and reports its ack latency; the run "holds" when
  - p99 ack <= --p99-ms (devsim's 1 ms buckets, low edge),
  - devsim got >= 99 % of the offered messages acked,
  - the live view kept up: the notifiers published >= 99.9 % of the data
    messages (edge shed + notifier losses <= 0.1 %).
Beside each rate it prints the CPU each process used per data message
(notifier = the parent plus its publisher children; mosquitto = the broker
for the same messages), from /proc/<pid>/stat, the load average, the notifier's
data messages per edge batch (ntf_mpb) and the live view's latency p50/p99
(edge receive to an MQTT subscriber, sampled on every 50th device).

usage: bench/stack_rate.py [--bin BUILD/bin] [--rates 10000,20000,...] [--seconds 20]
         [--notifiers 1] [--ntf-arg=--data-qos=0 ...] [--devices 1000] [--p99-ms 50]
Run it inside `unshare -n` (fixed loopback ports 23950-23999).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import mqtttest  # noqa: E402
import pgtest  # noqa: E402
import proc  # noqa: E402

BASE = 23950  # 0 pg, 1 mqtt, 2-4 persister, 5-7 edge (listen, metrics), 10 + 3 i notifier i
SECRET = "stack-rate-secret"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """utime + stime of pid and its live children (publisher processes), seconds."""
    tot = 0.0
    pids = [pid]
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            tot += (int(fields[11]) + int(fields[12])) / TICK
        except OSError:
            pass
    return tot


def pg_cpu_s(pid):
    """The PostgreSQL cluster whose postmaster is pid: its own time, what its
    exited children left (cutime, cstime) and its live children's."""
    def times(p, children):
        with open("/proc/%d/stat" % p) as f:
            x = f.read().rsplit(")", 1)[1].split()
        return sum(int(v) for v in x[11:15 if children else 13]) / TICK
    try:
        tot = times(pid, True)
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        return 0.0
    for k in kids:
        try:
            tot += times(k, False)
        except OSError:
            pass
    return tot


class LiveProbe:
    """The live view's latency: the tests' subscriber on the data of every 50th
    device (20 of 1,000: a few hundred msgs/s, so Python does not load the box).
    Its arrival times are monotonic; rx (the edge's receive time) is wall-clock
    ms, truncated, so figures read up to 1 ms high."""

    def __init__(self, port, prefix, devices):
        self.wall_minus_mono = time.time() - time.monotonic()
        self.sub = mqtttest.Subscriber(port, ["devices/%s-%d/data" % (prefix, i) for i in range(0, devices, 50)])

    def close(self):
        self.sub.close()
        with self.sub.lock:
            v = sorted((t + self.wall_minus_mono) * 1000.0 - p["rx"]
                       for (t, _, p, _) in self.sub.msgs if isinstance(p, dict) and "rx" in p)
        return (v[len(v) // 2], v[min(len(v) - 1, len(v) * 99 // 100)]) if v else (float("nan"),) * 2


def metric_sum(p, name):
    try:
        return p.metric(name, 0) or 0
    except Exception:
        return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "release", "bin"))
    ap.add_argument("--rates", default="10000,15000,20000,25000,30000,35000,40000")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--notifiers", type=int, default=1)
    ap.add_argument("--ntf-arg", action="append", default=[], help="extra notifier flag (repeat)")
    ap.add_argument("--pers-arg", action="append", default=[], help="extra persister flag (repeat)")
    ap.add_argument("--no-notifier", action="store_true", help="no notifier: the edge sheds its copies")
    ap.add_argument("--p99-ms", type=float, default=50)
    ap.add_argument("--stop-after-fail", type=int, default=2, help="stop after this many rates in a row fail")
    a = ap.parse_args()
    os.environ["SLUICE_BIN"] = os.path.abspath(a.bin)
    d = tempfile.mkdtemp(prefix="sl-stack-rate-")
    pg = pgtest.Postgres(BASE, os.path.join(d, "pg"))
    dsn = pg.start()
    broker = mqtttest.Broker(BASE + 1, os.path.join(d, "mqtt"), persistence=False).start()
    persister = proc.Proc("persister", [proc.binary("sluice-persister"), "--db", dsn,
                                        "--pull", "tcp://127.0.0.1:%d" % (BASE + 2),
                                        "--router", "tcp://127.0.0.1:%d" % (BASE + 3),
                                        "--metrics", "127.0.0.1:%d" % (BASE + 4), "--log-level", "warn"] + a.pers_arg,
                          os.path.join(d, "persister.log"), http="127.0.0.1:%d" % (BASE + 4),
                          ready=proc.http_ok())
    ntfs = []
    for i in range(0 if a.no_notifier else a.notifiers):
        port = BASE + 10 + 3 * i
        ntfs.append(proc.Proc("notifier%d" % i, [
            proc.binary("sluice-notifier"), "--pull", "tcp://127.0.0.1:%d" % port,
            "--router", "tcp://127.0.0.1:%d" % (port + 1), "--metrics", "127.0.0.1:%d" % (port + 2),
            "--broker", broker.uri, "--log-level", "warn"] +
            (["--id", "n%d" % i] if a.notifiers > 1 else []) + a.ntf_arg,
            os.path.join(d, "notifier%d.log" % i), http="127.0.0.1:%d" % (port + 2), ready=proc.http_ok()))
    pulls = ",".join("tcp://127.0.0.1:%d" % (BASE + 10 + 3 * i) for i in range(a.notifiers))
    routers = ",".join("tcp://127.0.0.1:%d" % (BASE + 11 + 3 * i) for i in range(a.notifiers))
    allow = ["--allow-cidrs", "127.0.0.0/8"] if "--allow-cidrs" in subprocess.run(
        [proc.binary("sluice-edge"), "--help"], capture_output=True, text=True).stdout else []
    edge = proc.Proc("edge", [proc.binary("sluice-edge")] + allow + ["--listen", "127.0.0.1:%d" % (BASE + 5),
                              "--edge-id", "bench-edge", "--metrics", "127.0.0.1:%d" % (BASE + 6),
                              "--persister-push", "tcp://127.0.0.1:%d" % (BASE + 2),
                              "--persister-router", "tcp://127.0.0.1:%d" % (BASE + 3),
                              "--notifier-push", pulls, "--notifier-router", routers, "--log-level", "warn"],
                     os.path.join(d, "edge.log"), env={"SLUICE_FLEET_SECRET": SECRET},
                     http="127.0.0.1:%d" % (BASE + 6), ready=proc.http_ok())
    rows = []
    try:
        persister.start()
        for n in ntfs:
            n.start()
        edge.start()
        if ntfs:
            proc.wait_for(lambda: edge.metric("sluice_edge_notifier_connected", 0) > 0, "edge connected to a notifier")
        print("%-7s %7s %7s %7s %6s %6s %8s %8s %9s %8s %8s %8s %8s %5s %7s %11s" % (
            "offered", "acked/s", "acked%", "p50ms", "p99ms", "held", "shed%", "ntf_us", "mqtt_us", "edge_us", "pers_us",
            "pg_us", "total%", "load1", "ntf_mpb", "live50/99"))
        fails = 0
        for r in [int(x) for x in a.rates.split(",")]:
            def snap():
                return dict(
                    t=time.monotonic(),
                    ntf=sum(cpu_s(n.pid) for n in ntfs), mqtt=cpu_s(broker.proc.pid), edge=cpu_s(edge.pid),
                    pers=cpu_s(persister.pid), pg=pg_cpu_s(pg.proc.pid),
                    data=sum(metric_sum(n, "sluice_notifier_data_total") for n in ntfs),
                    batches=sum(metric_sum(n, "sluice_notifier_batches_total") for n in ntfs),
                    pub=sum(metric_sum(n, "sluice_notifier_published_total") for n in ntfs),
                    lost=sum(metric_sum(n, "sluice_notifier_lost_total") for n in ntfs),
                    shed=metric_sum(edge, "sluice_edge_notifier_shed_total"),
                    frames=metric_sum(edge, "sluice_edge_received_frames_total"))
            live = LiveProbe(BASE + 1, "r%d" % r, a.devices) if ntfs else None
            s0 = snap()
            out = subprocess.run([proc.binary("sluice-devsim"), "--edges", "127.0.0.1:%d" % (BASE + 5),
                                  "--devices", str(a.devices), "--rate", "%.4f" % (r / a.devices),
                                  "--window", str(a.window), "--duration", str(a.seconds), "--ramp", "0",
                                  "--drain-s", "10", "--prefix", "r%d" % r, "--log-level", "warn"],
                                 env=dict(os.environ, SLUICE_FLEET_SECRET=SECRET), capture_output=True, text=True)
            time.sleep(1.0)  # let the notifier finish what it pulled
            s1 = snap()
            live_ms = live.close() if live else (float("nan"),) * 2
            try:
                j = json.loads(out.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                print("devsim failed at %d: %s %s" % (r, out.stdout[-500:], out.stderr[-500:]))
                break
            data = s1["data"] - s0["data"]
            frames = max(1, s1["frames"] - s0["frames"])
            shed = s1["shed"] - s0["shed"] + s1["lost"] - s0["lost"]
            offered = r * a.seconds
            shed_pct = 100.0 * shed / max(1, j["sent"]) if ntfs else 0.0
            held = (j["latency_ms"]["p99"] <= a.p99_ms and j["acked"] >= 0.99 * offered and shed_pct <= 0.1)
            per = {k: 1e6 * (s1[k] - s0[k]) / max(1, data if k in ("ntf", "mqtt") else frames)
                   for k in ("ntf", "mqtt", "edge", "pers", "pg")}
            busy = 100.0 * sum(s1[k] - s0[k] for k in ("ntf", "mqtt", "edge", "pers", "pg")) / \
                (os.cpu_count() * (s1["t"] - s0["t"]))
            load = os.getloadavg()[0]
            rows.append(dict(rate=r, devsim=j, data=data, shed_pct=shed_pct, held=held, us=per, load=load))
            mpb = data / max(1, s1["batches"] - s0["batches"])  # data messages per edge batch the notifier pulled
            print("%-7d %7.0f %7.1f %7d %6d %6s %8.2f %8.1f %9.1f %8.1f %8.1f %8.1f %8.0f %5.2f %7.1f %5.1f/%5.1f" % (
                r, j["acked"] / a.seconds, 100.0 * j["acked"] / offered, j["latency_ms"]["p50"], j["latency_ms"]["p99"], "yes" if held else "NO",
                shed_pct, per["ntf"], per["mqtt"], per["edge"], per["pers"], per["pg"], busy, load, mpb, live_ms[0], live_ms[1]))
            sys.stdout.flush()
            fails = 0 if held else fails + 1
            if fails >= a.stop_after_fail:
                break
            time.sleep(2)
        best = max([x["rate"] for x in rows if x["held"]], default=0)
        thru = max([x["rate"] for x in rows
                    if x["devsim"]["acked"] >= 0.99 * x["rate"] * a.seconds and x["shed_pct"] <= 0.1], default=0)
        print("highest offered rate held (p99 ack <= %g ms, >= 99%% acked, live view >= 99.9%%): %d msgs/s"
              % (a.p99_ms, best))
        print("highest offered rate carried whatever the latency (>= 99%% acked, live view >= 99.9%%): %d msgs/s"
              % thru)
    finally:
        edge.stop()
        for n in ntfs:
            n.stop()
        persister.stop()
        broker.stop()
        pg.destroy()
        proc.kill_all()


if __name__ == "__main__":
    main()
