#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""deploy/rebalance.py - spread devices evenly over a fleet of edges again, after a rolling restart.

An edge that restarts comes back empty (its devices reconnected to the others and stay there). This
script reads sluice_edge_connections_open on each edge's metrics listener, takes the mean, and asks
every edge above it to shed down to it (POST /admin/shed?target=MEAN&rate=R with the admin token:
the edge closes that many devices with err{draining}, R a second, and they reconnect through the
balancer, which sends them to the emptier edges). It then waits until the shedding is over and the
devices are back (the fleet's total is what it was, or has stopped moving for --settle seconds), and
starts again, until every edge is within --tolerance of the mean or --rounds is used up. One round
is enough behind a leastconn balancer; a device library failing over along its own list of edges
moves devices one edge further a round, so a few rounds may be needed.

    deploy/rebalance.py --token-file deploy/secrets/admin.token http://10.89.77.5:9100 http://10.89.77.6:9100

URL: an edge's metrics listener (http://HOST:PORT; "HOST:PORT" works too). Standard library only.
Exit: 0 when balanced, 1 when still unbalanced after the last round, 2 on a usage error, an edge
that cannot be read, or a refused token."""
import argparse
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request

SERIES = "sluice_edge_connections_open"


class Fatal(Exception):
    """An edge that cannot be read or refuses us: retrying the round would not help."""


def say(msg):
    print("rebalance: " + msg, flush=True)


def base_url(u):
    u = u.rstrip("/")
    return u if "://" in u else "http://" + u


def scrape(url, timeout):
    """The edge's sluice_edge_connections_open (an int); raises Fatal if it cannot be read."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=timeout) as r:
            text = r.read().decode("utf-8", "replace")
    except (OSError, urllib.error.URLError) as e:
        raise Fatal("%s: cannot read /metrics: %s" % (url, e))
    for line in text.splitlines():
        f = line.split()
        if len(f) == 2 and f[0] == SERIES:
            return int(float(f[1]))
    raise Fatal("%s: no %s in /metrics (not an edge?)" % (url, SERIES))


def shed(url, token, target, rate, timeout):
    """POST /admin/shed; the edge's JSON reply, or None if it is draining (409: it is leaving anyway)."""
    req = urllib.request.Request("%s/admin/shed?target=%d&rate=%d" % (url, target, rate), data=b"",
                                 method="POST", headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        if e.code == 409:
            return None
        if e.code in (401, 404):
            raise Fatal("%s: shed refused (%d): %s" % (url, e.code, "wrong admin token" if e.code == 401 else
                                                       "the edge has no --admin-token-file"))
        raise Fatal("%s: shed answered %d: %s" % (url, e.code, e.read()[:200]))
    except (OSError, ValueError) as e:
        raise Fatal("%s: shed failed: %s" % (url, e))


class Fleet:
    def __init__(self, urls, timeout):
        self.urls = urls
        self.timeout = timeout
        # short names for the progress lines: host:port
        self.names = [u.split("://", 1)[1] for u in urls]

    def counts(self):
        return [scrape(u, self.timeout) for u in self.urls]

    def show(self, counts):
        return " ".join("%s=%d" % (n, c) for n, c in zip(self.names, counts))


def balanced(counts, tolerance):
    mean = sum(counts) / len(counts)
    return all(abs(c - mean) <= tolerance * mean for c in counts)


def settle(fleet, shedding, target, total, deadline, quiet_s):
    """Wait until the edges in `shedding` are down to target and the fleet holds `total` devices
    again (the shed ones reconnected), or the total has not moved for quiet_s seconds once the
    shedding ended (some devices went away for good); False at the deadline. A line every 2 s."""
    last_total, since, next_line = None, time.monotonic(), 0.0
    while True:
        counts = fleet.counts()
        now = time.monotonic()
        done = all(counts[i] <= target for i in shedding)
        t = sum(counts)
        if t != last_total:
            last_total, since = t, now
        if done and (t >= total or now - since >= quiet_s):
            return counts
        if now >= deadline:
            say("  settle: gave up waiting (%s, total %d of %d)" % (fleet.show(counts), t, total))
            return counts
        if now >= next_line:
            say("  waiting: %s (total %d of %d%s)" % (fleet.show(counts), t, total,
                                                      "" if done else ", shedding"))
            next_line = now + 2.0
        time.sleep(0.25)


def run(a):
    token = open(a.token_file).read().strip()
    if not token:
        raise Fatal("%s is empty" % a.token_file)
    fleet = Fleet([base_url(u) for u in a.urls], a.timeout)
    for rnd in range(1, a.rounds + 2):
        counts = fleet.counts()
        total = sum(counts)
        mean = total / len(counts)
        worst = max(abs(c - mean) for c in counts) / mean * 100 if mean else 0.0
        say("round %d: %s (mean %.1f, worst %.1f %% off)" % (rnd, fleet.show(counts), mean, worst))
        if balanced(counts, a.tolerance / 100.0):
            say("balanced: every edge within %g %% of the mean" % a.tolerance)
            return 0
        if rnd > a.rounds:
            break
        # Every edge above the mean sheds to it: the ones just above shed a few, which keeps the
        # round from stalling when the deficit of one edge is spread thinly over many.
        target = math.ceil(mean)
        shedding, excess = [], 0
        for i, c in enumerate(counts):
            if c <= target:
                continue
            reply = shed(fleet.urls[i], token, target, a.rate, a.timeout)
            if reply is None:
                say("  %s is draining: left alone" % fleet.names[i])
                continue
            say("  %s: shed %d -> %d at %d/s" % (fleet.names[i], reply.get("open", c), target, a.rate))
            shedding.append(i)
            excess = max(excess, c - target)
        if not shedding:
            break
        deadline = time.monotonic() + excess / a.rate + a.settle + a.wait
        settle(fleet, shedding, target, total, deadline, a.settle)
    say("NOT balanced after %d rounds" % a.rounds)
    return 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split(" - ", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("urls", nargs="+", metavar="URL", help="metrics listener of each edge, http://HOST:PORT")
    p.add_argument("--token-file", default=os.environ.get("SLUICE_ADMIN_TOKEN_FILE"),
                   help="file holding the edges' admin token (their --admin-token-file; "
                        "default $SLUICE_ADMIN_TOKEN_FILE)")
    p.add_argument("--rate", type=int, default=100,
                   help="devices a second each edge closes (default 100: well below what the other edges "
                        "accept and the persisters take in hellos)")
    p.add_argument("--tolerance", type=float, default=10.0, help="percent off the mean that counts as "
                   "balanced (default 10)")
    p.add_argument("--rounds", type=int, default=5, help="shed rounds at most (default 5)")
    p.add_argument("--settle", type=float, default=5.0, help="seconds the fleet's total must stand still "
                   "to count as settled when some devices do not come back (default 5)")
    p.add_argument("--wait", type=float, default=30.0, help="seconds a round waits for the devices beyond "
                   "the shedding time and --settle (default 30)")
    p.add_argument("--timeout", type=float, default=5.0, help="HTTP timeout in seconds (default 5)")
    a = p.parse_args()
    if not a.token_file:
        p.error("--token-file (or SLUICE_ADMIN_TOKEN_FILE) is required")
    if a.rate < 1 or a.rate > 1000000 or a.rounds < 1 or not 0 < a.tolerance < 100:
        p.error("--rate 1..1000000, --rounds >= 1, --tolerance between 0 and 100")
    try:
        return run(a)
    except (Fatal, OSError) as e:
        say("error: %s" % e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
