#!/usr/bin/python3
"""edge_20_device_rate: a device sending faster than --device-rate is slowed,
never cut off and never loses a frame: the edge stops reading its socket for
a while, so all 120 data frames it sends at 200/s reach the persister and are
acked, at about the allowed rate (40/s) rather than at once. The pauses do not
count as silence (the idle timeout here is shorter than the whole run), and
another device's acks are not slowed meanwhile. (What a device has already
sent when it is held, up to its socket buffer, is delivered: the limit is
enforced on the average, not per frame.)"""
import threading
import time

from edgetest import main
from proc import check
from wire import DATA

PORT = 21400  # edge_NN: 21000 + 20 * NN (edge.cmake)
RATE, BURST, N = 40, 10, 120


def scenario(e):
    fast, calm = e.dev(), e.dev()
    fast.login("fast-1")
    calm.login("calm-1")
    t0 = time.monotonic()

    def send():
        for seq in range(1, N + 1):
            fast.data(seq, seq)
            time.sleep(0.005)

    sender = threading.Thread(target=send)
    sender.start()
    seen = set()
    calm_worst = 0.0
    calm_seq = 0
    while len(seen) < N:
        got = e.pers.find(DATA, "fast-1")
        new = [x for x in got if x[5] not in seen]
        if new:
            e.pers.ack(new)
            seen.update(x[5] for x in new)
        # meanwhile the calm device's data is acked at once
        calm_seq += 1
        t1 = time.monotonic()
        calm.data(calm_seq, 0)
        c = e.pers.wait(DATA, "calm-1", pred=lambda x, s=calm_seq: x[5] == s)
        e.pers.ack(c[-1:])
        check(calm.expect("ack")["seq"] == calm_seq, "calm ack")
        calm_worst = max(calm_worst, time.monotonic() - t1)
        check(time.monotonic() - t0 < 30, "only %d of %d frames arrived" % (len(seen), N))
    took = time.monotonic() - t0
    sender.join()
    acked = fast.acks(range(1, N + 1))
    check(sorted(acked) == list(range(1, N + 1)), "every frame acked once")
    # (N - BURST) frames at RATE per second: about 2.75 s; without the limit, milliseconds.
    check(took >= (N - BURST) / RATE * 0.8, "took %.2f s: the rate was not applied" % took)
    check(e.metric("sluice_edge_device_rate_holds_total") >= 1, "holds counted")
    check(e.metric("sluice_edge_device_rate_held_seconds_total") > 1.0, "held time counted")
    check(calm_worst < 2.0, "the calm device waited %.2f s for an ack" % calm_worst)
    # the fast device is still connected (the holds were not silence)
    fast.send({"t": "ping"})
    check(fast.expect("pong", skip=("ack",)) == {"t": "pong"}, "fast device still open")


if __name__ == "__main__":
    main(scenario, PORT, ["--device-rate", str(RATE), "--device-burst", str(BURST), "--device-hold-max-ms", "1000",
                          "--idle-timeout-ms", "2000"])
