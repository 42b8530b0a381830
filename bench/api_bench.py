#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""api_bench - sluice-api figures on the real stack (docs/performance.md, "operator API"):
requests/s of device lookups (GET /v1/devices/{id}), of device pages (GET /v1/devices?limit=100)
and of command submissions (POST .../commands, queued), measured with ab (apache2-utils) at a
concurrency of --conc over keep-alive connections; and the delay from a device's hello to the
delivery of its first queued command (a Python device; the clock runs from the hello written to
the cmd frame read, so it includes the welcome and one round of the persister's cmdq).

    unshare -n -- sh -c 'ip link set lo up && SLUICE_BIN=build/release/bin bench/api_bench.py'

Starts its own stack (tests/integration/slstack.py) on ports 24950-24999 (the benchmarks' range);
--devices rows go straight into devices and device_sessions (one session each). Not a test: prints figures.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../tests/integration"))
import apitest  # noqa: E402
from apitest import RO, RW  # noqa: E402
import slstack  # noqa: E402


def ab(url, n, conc, token, post=None):
    argv = ["ab", "-q", "-k", "-n", str(n), "-c", str(conc), "-H", "Authorization: Bearer " + token]
    if post:
        argv += ["-p", post, "-T", "application/json"]
    out = subprocess.run(argv + [url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode()
    rps = re.search(r"Requests per second:\s+([\d.]+)", out)
    failed = re.search(r"Non-2xx responses:\s+(\d+)", out)
    p50 = re.search(r"\n\s+50%\s+(\d+)", out)
    p99 = re.search(r"\n\s+99%\s+(\d+)", out)
    if not rps:
        raise SystemExit("ab failed:\n" + out)
    return float(rps.group(1)), int(failed.group(1)) if failed else 0, p50 and p50.group(1), p99 and p99.group(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10000)
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--conc", type=int, default=8)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--delays", type=int, default=30, help="devices measured hello -> first queued command")
    a = ap.parse_args()
    with slstack.Stack(24950, edges=1, name="api_bench") as s:
        s.start()
        api = apitest.Api(s, 24958, extra=("--threads", str(a.threads), "--rate", "1000000", "--burst", "1000000",
                                           "--max-queued", "1000000")).start()
        s.sql("INSERT INTO devices SELECT 'bench-' || lpad(i::text, 6, '0'), now() - interval '1 day', now(), i"
              " FROM generate_series(1, %d) i" % a.devices)
        s.sql("INSERT INTO device_sessions (device_id, edge_id, epoch, incarnation, peer, connected_at,"
              " disconnected_at, reason) SELECT 'bench-' || lpad(i::text, 6, '0'), 'edge-x', i, 1, '10.0.0.1:1',"
              " now() - interval '1 hour', now(), 'eof' FROM generate_series(1, %d) i" % a.devices)
        s.sql("ANALYZE")
        load = os.getloadavg()[0]
        base = "http://127.0.0.1:24958"
        mid = "bench-%06d" % (a.devices // 2)
        print("devices=%d requests=%d concurrency=%d api_threads=%d load=%.1f" %
              (a.devices, a.requests, a.conc, a.threads, load))
        ab(base + "/v1/devices/" + mid, 500, a.conc, RO)  # warm up
        for name, url, n in (("GET /v1/devices/{id}", base + "/v1/devices/" + mid, a.requests),
                             ("GET /v1/devices?limit=100", base + "/v1/devices?limit=100&after=" + mid,
                              a.requests // 10)):
            rps, bad, p50, p99 = ab(url, n, a.conc, RO)
            print("%-34s %8.0f req/s  p50 %s ms  p99 %s ms  non-2xx %d" % (name, rps, p50, p99, bad))
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write('{"body": {"valve": 3, "close": true}, "queue": true, "ttl_s": 3600}')
            body = f.name
        n = a.requests // 4
        # one device: every submission waits for the device's lock (and a COMMIT each)
        rps, bad, p50, p99 = ab(base + "/v1/devices/" + mid + "/commands", n, a.conc, RW, post=body)
        print("%-34s %8.0f req/s  p50 %s ms  p99 %s ms  non-2xx %d" % ("POST .../commands, one device", rps, p50,
                                                                        p99, bad))
        # conc devices, one client each (ab takes one URL: conc ab processes)
        procs = [subprocess.Popen(["ab", "-q", "-k", "-n", str(n // a.conc), "-c", "1", "-H",
                                   "Authorization: Bearer " + RW, "-p", body, "-T", "application/json",
                                   base + "/v1/devices/bench-%06d/commands" % (100 + i)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(a.conc)]
        total = 0.0
        for p in procs:
            out = p.communicate()[0].decode()
            m = re.search(r"Requests per second:\s+([\d.]+)", out)
            total += float(m.group(1)) if m else 0.0
        print("%-34s %8.0f req/s  (%d clients, one device each)" % ("POST .../commands, many devices", total, a.conc))
        os.unlink(body)
        s.sql("UPDATE commands SET state = 'expired'")

        # hello -> first queued command
        delays = []
        for i in range(a.delays):
            dev = "bench-%06d" % (i + 1)
            st, out, _ = api.req("POST", "/v1/devices/%s/commands" % dev, token=RW,
                                 body={"body": {"n": i}, "queue": True}, validate=False)
            assert st == 202, out
            d = s.device(dev, edge=0, login=False)
            t0 = time.monotonic()
            d.hello()
            d.expect("welcome")
            m = d.expect("cmd", timeout=10)
            delays.append((time.monotonic() - t0) * 1000)
            assert m["id"] == out["id"], m
            d.send({"t": "res", "id": m["id"], "ok": True})
            d.close()
        delays.sort()
        print("hello -> first queued command: p50 %.1f ms  p90 %.1f ms  max %.1f ms  (n=%d)" %
              (statistics.median(delays), delays[int(len(delays) * 0.9) - 1], delays[-1], len(delays)))
        print("load average at the end: %.1f" % os.getloadavg()[0])


if __name__ == "__main__":
    main()
