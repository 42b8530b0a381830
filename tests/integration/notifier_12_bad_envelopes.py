#!/usr/bin/python3
"""notifier_12_bad_envelopes: the notifier distrusts the wire.

The case of issue 11: a batch whose header `reply` is "a\\0b" (a heartbeat and a
connect) used to kill the notifier with SIGSEGV at the next sweep after
--edge-timeout-ms (the name was hashed over its full length when stored, over
strlen() when freed). Here it is refused whole; so are headers with a NUL in
the edge id or names too long, and entries with a device id outside the
alphabet, a NUL in a command id or a reason, a data entry without a body: each
counted and skipped, the good entries of the same batch still published. An
entry of an unknown kind (a later version) is skipped silently. The notifier
lives through two sweeps and still publishes."""
import time

import msgpack
import zmq

from ntftest import CONNECT, DATA, HEARTBEAT, RES, Env, check, entry, wait_for

BROKER, NTF = 23241, 23242  # notifier_NN: 23000 + 20 * NN (notifier.cmake)


def raw_batch(edge_id, inc, reply, entries):
    return msgpack.packb([1, edge_id, inc, reply]) + b"".join(msgpack.packb(e) for e in entries)


def main():
    with Env(BROKER, NTF) as env:
        env.ntf.argv += ["--edge-timeout-ms", "1000"]
        env.ntf.start()
        sub = env.sub(["devices/#"])
        ctx = zmq.Context.instance()
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(env.ntf.pull)
        t0 = time.time_ns()
        # refused whole: the header's strings are not what an edge writes
        push.send(raw_batch("edge-x", 7, "a\x00b", [entry(HEARTBEAT, at_ns=t0, seq=0),
                                                     entry(CONNECT, 1, 1, "pump-x", epoch=t0, at_ns=t0,
                                                           peer="10.0.0.1:1")]))
        push.send(raw_batch("ed\x00ge", 7, "ed/0", [entry(HEARTBEAT, at_ns=t0, seq=0)]))
        push.send(raw_batch("e" * 300, 7, "e/0", [entry(HEARTBEAT, at_ns=t0, seq=0)]))
        # entries outside the contract among good ones
        body = msgpack.packb({"v": 1})
        push.send(raw_batch("edge-y", 8, "edge-y/0", [
            entry(HEARTBEAT, at_ns=t0, seq=0),
            entry(DATA, 1, 1, "bad dev", epoch=t0, seq=1, at_ns=t0, body=body),
            entry(DATA, 1, 1, "pu\x00mp", epoch=t0, seq=1, at_ns=t0, body=body),
            entry(DATA, 1, 1, "pump-y", epoch=t0, seq=1, at_ns=t0),  # no body
            entry(RES, 1, 1, "pump-y", epoch=t0, at_ns=t0, id="c\x00d", ok=True),
            [99, 1, 1, "pump-y", t0],  # a kind of a later version
            entry(DATA, 1, 1, "pump-y", epoch=t0, seq=2, at_ns=t0, body=body),
        ]))
        d = wait_for(lambda: sub.received("devices/pump-y/data"), "the good entry published", pump=env.pump)
        check(len(d) == 1 and d[0][0]["seq"] == 2, "published %r" % d)
        # two sweeps (--edge-timeout-ms 1000) without a crash
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            env.pump()
            time.sleep(0.1)
        env.ntf.check_alive()
        check(env.ntf.metric('sluice_notifier_bad_batches_total{reason="decode"}') == 3, "bad batches counted")
        check(env.ntf.metric("sluice_notifier_bad_entries_total") == 4, "bad entries counted")
        # and it still works
        push.send(raw_batch("edge-y", 8, "edge-y/0", [entry(DATA, 1, 1, "pump-y", epoch=t0, seq=3, at_ns=t0,
                                                             body=body)]))
        wait_for(lambda: len(sub.received("devices/pump-y/data")) == 2, "published after", pump=env.pump)
        push.close()


if __name__ == "__main__":
    main()
