#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_30_ntf_window: --notifier-window-ms. Data copies for the notifier wait
for the window to share one message: five frames sent 30 ms apart, inside a
300 ms window, reach the notifier in one message, not before the window is
over, while the persister gets them at once (acked, the device sees its acks
before the notifier has any). A control entry does not wait and takes the
waiting data along, in the order the device made them: data, then the
disconnect of the connection that sent it."""
import time

import msgpack

import wire
from edgetest import main
from wire import CONNECT, DATA, DISCONNECT

PORT = 21600  # edge_NN: 21000 + 20 * NN (edge.cmake)
WINDOW_S = 0.3


def messages(peer, dev, want, timeout=10.0):
    """Read the notifier's PULL directly: (arrival time, [entries]) per message naming dev, until `want`
    of its entries came."""
    got, n, end = [], 0, time.monotonic() + timeout
    while n < want:
        assert time.monotonic() < end, "notifier got %d of %d entries of %s: %r" % (n, want, dev, got)
        if not peer.pull.poll(50):
            continue
        at = time.monotonic()
        _, ents = wire.parse_batch(peer.pull.recv())
        mine = [e for e in ents if len(e) > 3 and e[3] == dev and e[0] in (CONNECT, DATA, DISCONNECT)]
        if mine:
            got.append((at, mine))
            n += len(mine)
    return got


def scenario(e):
    d = e.dev()
    d.login("win-1")
    (_, first), = messages(e.noti, "win-1", 1)  # the connect: a control entry, sent at once
    assert first[0][0] == CONNECT, first
    t0 = time.monotonic()
    for seq in range(1, 6):
        d.data(seq, {"n": seq})
        time.sleep(0.03)
    e.pers.ack(e.pers.wait(DATA, "win-1", count=5))
    d.acks(range(1, 6))
    got = messages(e.noti, "win-1", 5)
    assert len(got) == 1, "5 data copies in %d notifier messages, expected 1" % len(got)
    at, ents = got[0]
    assert [x[5] for x in ents] == [1, 2, 3, 4, 5], ents
    assert at - t0 >= WINDOW_S - 0.02, "sent %.3f s after the first frame, inside the window" % (at - t0)

    d.data(6, {"n": 6})
    e.pers.ack(e.pers.wait(DATA, "win-1", pred=lambda x: x[5] == 6))
    d.acks([6])
    d.close()
    got = messages(e.noti, "win-1", 2)
    kinds = [(x[0], x[5] if x[0] == DATA else None) for _, ents in got for x in ents]
    assert kinds == [(DATA, 6), (DISCONNECT, None)], kinds
    print("ok: 5 copies in one message after %.0f ms; data 6 before its disconnect, in %d message(s)" %
          ((at - t0) * 1000, len(got)))


if __name__ == "__main__":
    main(scenario, PORT, ["--notifier-window-ms", str(int(WINDOW_S * 1000))])
