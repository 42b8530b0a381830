#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""--coalesce-ms: after a wake-up that pulled edge batches the notifier waits the window
before pulling again, so that batches arriving meanwhile share one pipe write, one publisher
wake-up and one broker write. With a window of 400 ms (the default is 1 ms; a long one makes
the rule visible on a loaded machine):
  - after a quiet spell, the first batch is published at once (no window to wait for);
  - batches sent right after it wait for the window's end (>= 400 ms after the first was sent),
    then all go out together, in order;
  - a quiet spell later, the first batch is again published at once."""
import sys
import time

import msgpack

from ntftest import CONNECT, DATA, Env, check, entry, wait_for

BROKER, NTF = 23421, 23422  # notifier_NN: 23000 + 20 * NN (notifier.cmake)
W_MS = 400
LATER = 6  # batches sent inside the first one's window


def arrivals(sub, topic):
    """seq -> monotonic arrival time of each data message on topic."""
    with sub.lock:
        return {p["seq"]: t for (t, tp, p, _) in sub.msgs if tp == topic}


def main():
    with Env(BROKER, NTF) as env:
        env.ntf.argv += ["--coalesce-ms", str(W_MS)]
        env.ntf.start()
        sub = env.sub(["devices/#"])
        a = env.edge("edge-a:7000")
        a.heartbeat()
        t0 = time.time_ns()
        a.send(entry(CONNECT, 1, 1, "co", epoch=t0, at_ns=t0, peer="p"))
        wait_for(lambda: (sub.last("devices/co/status") or {}).get("online") is True, "co online")
        topic = "devices/co/data"

        def data(seq):
            return entry(DATA, 1, 1, "co", epoch=t0, seq=seq, at_ns=time.time_ns(), body=msgpack.packb({"n": seq}))

        # No pump() from here on: it would send heartbeats, which are batches too.
        time.sleep(2 * W_MS / 1000)
        sent_first = time.monotonic()
        a.send(data(1))
        got = wait_for(lambda: arrivals(sub, topic).get(1), "the first batch after a quiet spell")
        first_ms = (got - sent_first) * 1000
        for s in range(2, 2 + LATER):
            a.send(data(s))
        last = 1 + LATER
        wait_for(lambda: last in arrivals(sub, topic), "the batches sent inside the window")
        arr = arrivals(sub, topic)
        waited_ms = (min(arr[s] for s in range(2, last + 1)) - sent_first) * 1000
        check(first_ms < W_MS * 0.75,
              "after a quiet spell the first batch waited %.0f ms: it should not wait for a window" % first_ms)
        check(waited_ms >= W_MS - 15,
              "batches sent inside the window came out %.0f ms after the first was sent, before the "
              "window of %d ms ended" % (waited_ms, W_MS))
        check([p["seq"] for p in sub.on(topic)] == list(range(1, last + 1)), "data out of order or missing")
        print("first after quiet: %.0f ms; the %d inside the window: from %.0f ms after the first" %
              (first_ms, LATER, waited_ms))

        time.sleep(2 * W_MS / 1000)
        sent_again = time.monotonic()
        a.send(data(last + 1))
        got = wait_for(lambda: arrivals(sub, topic).get(last + 1), "the first batch after the second quiet spell")
        again_ms = (got - sent_again) * 1000
        check(again_ms < W_MS * 0.75, "after the second quiet spell the first batch waited %.0f ms" % again_ms)
        check(env.ntf.metric("sluice_notifier_lost_total") == 0, "lost")
        print("first after the second quiet spell: %.0f ms" % again_ms)
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
