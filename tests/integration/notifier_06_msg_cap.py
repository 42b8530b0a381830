#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The notifier's ZeroMQ sockets carry a message size cap (--zmq-max-msg,
docs/common.md "zmqx_socket"): an edge batch over it is dropped and its
sender disconnected, so it is never decoded, counted or published; a batch
just under it is published, and the same edge gets through again right after
(its PUSH reconnects). The ROUTER has the cap too: a DEALER that sends it an
oversized message is disconnected and cmds then reach it again once it
reconnects. The notifier stays up and exits 0 on SIGTERM."""
import json
import sys
import time

import msgpack
import zmq
import zmq.utils.monitor

from ntftest import CMD, CONNECT, DATA, Env, check, entry, publish, wait_for

BROKER, NTF = 23121, 23122  # notifier_NN: 23000 + 20 * NN (notifier.cmake)
CAP = 65536


def data(dev, seq, body):
    return entry(DATA, 1, 1, dev, epoch=1, seq=seq, at_ns=time.time_ns(), body=body)


def main():
    with Env(BROKER, NTF) as env:
        env.ntf.argv += ["--zmq-max-msg", str(CAP)]
        env.ntf.start()
        sub = env.sub(["devices/#"])
        a = env.edge("edge-a:7000")
        a.heartbeat()
        t0 = time.time_ns()
        a.send(entry(CONNECT, 1, 1, "pump-1", epoch=t0, at_ns=t0, peer="10.0.0.1:5000"))
        wait_for(lambda: sub.received("devices/pump-1/status"), "online status", pump=env.pump)
        batches0 = env.ntf.metric("sluice_notifier_batches_total")

        # Just under the cap (the batch header and entry fields take < 1 KiB).
        near = msgpack.packb(b"n" * (CAP - 1024))
        a.send(data("pump-1", 1, near))
        d = wait_for(lambda: sub.received("devices/pump-1/data"), "batch under the cap", pump=env.pump)
        check(d[0][0]["seq"] == 1, "first data %r" % d[0][0])

        # Over the cap: dropped before decoding. The next small batch of the
        # same edge arrives (the PUSH reconnects and resends what it queued).
        big = msgpack.packb(b"b" * (CAP + 1024))
        a.send(data("pump-1", 2, big))
        time.sleep(0.5)
        a.send(data("pump-1", 3, msgpack.packb({"t": 1})))
        d = wait_for(lambda: [m for m, _ in sub.received("devices/pump-1/data") if m["seq"] == 3],
                     "small batch after the oversized one", pump=env.pump)
        seqs = [m["seq"] for m, _ in sub.received("devices/pump-1/data")]
        check(seqs == [1, 3], "published seqs %r (2 is over the cap)" % seqs)
        # The oversized batch was never decoded or counted: data_total counts
        # the two published ones (metrics follow within a 50 ms tick), and no
        # batch was refused as malformed.
        wait_for(lambda: env.ntf.metric("sluice_notifier_data_total") >= 2, "data_total", pump=env.pump)
        check(env.ntf.metric("sluice_notifier_data_total") == 2, "data_total %r" %
              env.ntf.metric("sluice_notifier_data_total"))
        check(env.ntf.metric('sluice_notifier_bad_batches_total{reason="decode"}') == 0, "bad batches")
        batches = env.ntf.metric("sluice_notifier_batches_total")
        check(batches >= batches0 + 2, "batches %r -> %r" % (batches0, batches))

        # The ROUTER is capped as well: an oversized message from a DEALER
        # disconnects it (seen by a monitor on the DEALER: a message under
        # the cap would just sit unread); after its reconnect, commands reach
        # it again.
        mon = a.dealer.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        a.dealer.send(b"x" * (CAP - 1024))
        check(not mon.poll(1000), "a DEALER under the cap was disconnected")
        a.dealer.send(b"x" * (CAP + 1))
        check(mon.poll(10000), "no disconnect after an oversized message to the ROUTER")
        ev = zmq.utils.monitor.recv_monitor_message(mon)
        check(ev["event"] == zmq.EVENT_DISCONNECTED, "monitor event %r" % ev)
        a.dealer.disable_monitor()
        mon.close()
        publish(BROKER, "devices/pump-1/cmd", json.dumps({"id": "c-1", "body": 1}))
        wait_for(lambda: a.received(CMD, id="c-1"), "cmd after the DEALER's oversized message", pump=env.pump)
        env.ntf.check_alive()
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
