#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""notifier_cmd_kill - what "at most one result" means when a notifier is killed (SIGKILL)
while commands flow: the whole stack on loopback (slstack: PostgreSQL, Mosquitto, persister,
one edge, --notifiers notifiers), devices that answer every command at once, an operator
publishing --rate commands/s (QoS 1) for --seconds, one notifier killed halfway.

Prints how many commands got 0, 1 and 2+ results (2+ must be 0), the ones without a result
beside what the measured routing window predicts (rate x window x 1/notifiers: a command is
lost only if its taker dies between the broker handing it over and the broker acknowledging
its marker), and that window from sluice_notifier_command_route_seconds. Of the single
results, how many were not the device's answer (a `timeout` at the --cmd-timeout-ms
deadline: an answer lost on its way back, e.g. in the dead notifier's socket); it waits for
that deadline after the last command.

usage: bench/notifier_cmd_kill.py [--bin BUILD/bin] [--rate 200] [--seconds 10] [--notifiers 3]
                                  [--cmd-timeout-ms 5000] [--term]
--term stops the notifier with SIGTERM instead (a rolling restart: it stops pulling, flushes, exits).
Run it inside `unshare -n` (ports 25950-25999).
"""
import argparse
import json
import os
import select
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import paho.mqtt.client as mqtt  # noqa: E402

import slstack  # noqa: E402
import wire  # noqa: E402

BASE = 25950


def answerer(devs, stop, answered):
    """Answer every cmd frame at once, from one thread; the ids answered go to answered."""
    by_fd = {d.s.fileno(): d for d in devs}
    while not stop.is_set():
        r, _, _ = select.select(list(by_fd), [], [], 0.1)
        for fd in r:
            d = by_fd[fd]
            try:
                chunk = d.s.recv(65536)
            except OSError:
                continue
            d.buf += chunk
            while len(d.buf) >= 4:
                n = int.from_bytes(d.buf[:4], "big")
                if len(d.buf) < 4 + n:
                    break
                m = wire.msgpack.unpackb(d.buf[4:4 + n], raw=False)
                d.buf = d.buf[4 + n:]
                if m.get("t") == "cmd":
                    d.send({"t": "res", "id": m["id"], "ok": True})
                    answered.add(m["id"])


def quantile(buckets, q):
    """From cumulative Prometheus buckets [(le, count)], the upper bound holding q of them."""
    total = buckets[-1][1]
    for le, c in buckets:
        if total and c >= q * total:
            return le
    return float("inf")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "release", "bin"))
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--notifiers", type=int, default=3)
    ap.add_argument("--cmd-timeout-ms", type=int, default=5000)
    ap.add_argument("--term", action="store_true", help="SIGTERM instead of SIGKILL")
    a = ap.parse_args()
    os.environ["SLUICE_BIN"] = os.path.abspath(a.bin)
    with slstack.Stack(BASE, edges=1, notifiers=a.notifiers, name="cmd-kill",
                       notifier_extra=("--cmd-timeout-ms", str(a.cmd_timeout_ms))) as s:
        s.start()
        ids = ["ntf-%d" % i for i in range(a.notifiers)]
        slstack.wait_for(lambda: "members=" + ",".join(ids) in s.edge(0).output(), "the ring")
        devs = [s.device("ck-%02d" % i) for i in range(20)]
        stop = threading.Event()
        answered = set()
        th = threading.Thread(target=answerer, args=(devs, stop, answered), daemon=True)
        th.start()
        results, not_device = {}, {}
        lock = threading.Lock()

        def on_msg(c, ud, m):
            with lock:
                results[m.topic] = results.get(m.topic, 0) + 1
                r = json.loads(m.payload)
                if r.get("ok") is not True:
                    # the device had answered it (the answer was lost on its way back) or never got it
                    cid = m.topic.rsplit("/", 2)[-2]
                    why = "%s (%s)" % (r.get("error", "?"), "answered" if cid in answered else "not delivered")
                    not_device[why] = not_device.get(why, 0) + 1

        sub = mqtt.Client()
        sub.on_message = on_msg
        sub.connect("127.0.0.1", s.mqtt_port)
        sub.subscribe(slstack.PREFIX + "/+/cmd/+/result", qos=1)
        sub.loop_start()
        pub = mqtt.Client()
        pub.connect("127.0.0.1", s.mqtt_port)
        pub.loop_start()
        time.sleep(1)
        sent, victim = [], s.ntf(1)
        t0 = time.monotonic()
        killed = False
        k = 0
        while time.monotonic() - t0 < a.seconds:
            d = devs[k % len(devs)].dev
            cid = "k%06d" % k
            pub.publish("%s/%s/cmd" % (slstack.PREFIX, d), json.dumps({"id": cid, "body": k}), qos=1)
            sent.append("%s/%s/cmd/%s/result" % (slstack.PREFIX, d, cid))
            k += 1
            if not killed and time.monotonic() - t0 >= a.seconds / 2:
                if a.term:
                    victim.signal(signal.SIGTERM)  # not stop(): it must not hold up the commands
                else:
                    victim.kill9()
                killed = True
            time.sleep(max(0.0, t0 + k / a.rate - time.monotonic()))
        time.sleep(a.cmd_timeout_ms / 1000 + 3)  # answers lost on the way end at the deadline
        stop.set()
        with lock:
            counts = [results.get(t, 0) for t in sent]
        zero, one, more = counts.count(0), counts.count(1), sum(1 for c in counts if c > 1)
        text = []
        for i in range(a.notifiers):
            if i == 1:
                continue
            st, body = s.ntf(i).http("/metrics")
            text += body.splitlines()
        b = {}
        for line in text:
            if line.startswith("sluice_notifier_command_route_seconds_bucket"):
                le = line.split('le="')[1].split('"')[0]
                b[float("inf") if le == "+Inf" else float(le)] = b.get(le, 0) + float(line.rsplit(" ", 1)[1])
        buckets = sorted(b.items())
        p50, p99 = quantile(buckets, 0.5), quantile(buckets, 0.99)
        if a.term:
            victim.wait(30)
        how = "stopped (SIGTERM)" if a.term else "killed"
        print("commands %d at %.0f/s, %s %s at %.1fs: %d results 1, %d none, %d two or more; load average %.2f"
              % (len(sent), a.rate, "ntf-1", how, a.seconds / 2, one, zero, more, os.getloadavg()[0]))
        print("results that are not the device's answer: %s" %
              (", ".join("%d %s" % (n, e) for e, n in sorted(not_device.items())) or "none"))
        print("routing window (survivors' sluice_notifier_command_route_seconds): p50 <= %gs, p99 <= %gs; "
              "predicted losses <= rate x p99 / notifiers = %.1f" % (p50, p99, a.rate * p99 / a.notifiers))
        sub.loop_stop()
        pub.loop_stop()
        for d in devs:
            d.close()
        if more:
            sys.exit("FAIL: %d commands got more than one result" % more)


if __name__ == "__main__":
    main()
