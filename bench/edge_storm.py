#!/usr/bin/python3
"""edge_storm.py - a connect storm beside steady devices (benchmark, not a test;
docs/performance.md, "edge: connect storms").

One edge (started by edge_bench, which plays an instant persister) carries a
steady load: --steady-conns devices sending --rate frames/s in all, each
frame's ack latency recorded (edge_bench --lat-out). After --before seconds,
--storm devices connect at once (a second edge_bench, --external, from
127.0.1.x .. so the per-address limits do not refuse them) and say hello; the
steady devices' ack latency is reported for the second before the storm and
for the storm itself (until every storm device is welcomed), with the edge's
--accept-rate off and on.

usage: edge_storm.py BIN_DIR [--port 21990] [--storm 10000] [--rate 5000]
                     [--steady-conns 20] [--before 3] [--accept-rates 0,2000]
Run inside `unshare -n` (fixed loopback ports).
"""
import argparse
import os
import subprocess
import tempfile
import time


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] / 1000.0 if xs else float("nan")


def run(a, accept_rate):
    d = tempfile.mkdtemp(prefix="edge-storm-")
    lat = os.path.join(d, "lat")
    env = dict(os.environ, SLUICE_ACCEPT_RATE=str(accept_rate), SLUICE_ACCEPT_BURST="500",
               SLUICE_MAX_CONNS=str(a.storm + a.steady_conns + 1000))
    total = a.before + 12
    steady = subprocess.Popen([a.bin + "/edge_bench", "--edge-bin", a.bin + "/sluice-edge", "--mode", "rate",
                               "--rate", str(a.rate), "--conns", str(a.steady_conns), "--window", "16",
                               "--seconds", str(total), "--port", str(a.port), "--lat-out", lat],
                              stdout=subprocess.PIPE, text=True, env=env)
    line = steady.stdout.readline()
    if line.strip() != "measuring":
        raise SystemExit("edge_bench: %r" % line)
    start_wall = time.monotonic()  # lat-out offsets count from here
    time.sleep(a.before)
    t_storm = time.monotonic()
    storm = subprocess.run([a.bin + "/edge_bench", "--mode", "idle", "--external", "1", "--conns", str(a.storm),
                            "--port", str(a.port), "--src-base", "256", "--nsrc", "250", "--hold", "1"],
                           capture_output=True, text=True, env=env)
    t_done = time.monotonic()
    out, _ = steady.communicate()
    # lat-out: send offset (us since the run began) and latency (us), one ack a line
    rows = [tuple(map(int, l.split())) for l in open(lat) if l.strip()]
    s0 = (t_storm - start_wall - 1.0) * 1e6
    s1 = (t_storm - start_wall) * 1e6
    s2 = (t_done - start_wall) * 1e6
    before = [l for t, l in rows if s0 <= t < s1]
    during = [l for t, l in rows if s1 <= t < s2]
    held = [l for l in storm.stdout.splitlines() if "held" in l or "welcomed" in l]
    print("accept-rate=%s: storm of %d took %.2f s (%s); steady %d frames/s: before p50 %.2f p99 %.2f ms, "
          "during p50 %.2f p99 %.2f ms max %.2f ms (n=%d)"
          % (accept_rate or "off", a.storm, t_done - t_storm, held[-1] if held else storm.stdout.strip()[-80:],
             a.rate, pct(before, 0.5), pct(before, 0.99), pct(during, 0.5), pct(during, 0.99),
             pct(during, 1.0), len(during)))
    print("   " + out.strip().splitlines()[0] if out.strip() else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--port", type=int, default=21990)
    ap.add_argument("--storm", type=int, default=10000)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--steady-conns", type=int, default=20)
    ap.add_argument("--before", type=float, default=3)
    ap.add_argument("--accept-rates", default="0,2000")
    a = ap.parse_args()
    for r in a.accept_rates.split(","):
        run(a, float(r))


if __name__ == "__main__":
    main()
