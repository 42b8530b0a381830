#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_09_msgcap: the persister's message size cap (--zmq-max-msg, docs/common.md "zmqx_socket"):
 - a batch just under the cap is stored and acked;
 - a batch over it is dropped before decoding (not stored, not acked, not
   counted as refused) and its sender disconnected;
 - the same edge gets through again right after (its PUSH reconnects);
 - a DEALER that sends the ROUTER an oversized message is disconnected.
"""
import time

import msgpack
import zmq
import zmq.utils.monitor

from persister_common import Env, pe
from proc import check, wait_for

PORT = 22450  # persister_NN: 22000 + 50 * NN (persister.cmake)
CAP = 65536


def acked(edge, want, timeout=30):
    deadline = time.time() + timeout
    while not want <= {(a[3], a[4]) for a in edge.acks}:
        check(time.time() < deadline, "missing acks: %s" % sorted(want - {(a[3], a[4]) for a in edge.acks}))
        edge.poll_acks(100)


def main():
    with Env(PORT) as env:
        p = env.persister(0, ["--batch-ms", "20", "--zmq-max-msg", str(CAP)])
        p.wait_ready()
        edge = pe.Edge([p.pull], [p.router], edge_id="edge-cap:7000")

        near = msgpack.packb(b"n" * (CAP - 1024))
        edge.send(pe.data("cap-dev", 1, body_raw=near))
        acked(edge, {("cap-dev", 1)})

        big = msgpack.packb(b"b" * (CAP + 1024))
        edge.send(pe.data("cap-dev", 2, body_raw=big))
        time.sleep(0.5)
        edge.send(pe.data("cap-dev", 3, {"t": 1}))
        acked(edge, {("cap-dev", 3)})
        edge.poll_acks(300)
        seqs = sorted(a[4] for a in edge.acks)
        check(seqs == [1, 3], "acked seqs %r (2 is over the cap)" % seqs)
        rows = [r[0] for r in env.sql("SELECT seq FROM telemetry WHERE device_id='cap-dev' ORDER BY seq")]
        check(rows == [1, 3], "stored seqs %r" % rows)
        rej = env.sql("SELECT count(*) FROM telemetry_rejected WHERE device_id='cap-dev'")[0][0]
        check(rej == 0, "rejected %r" % rej)
        check(p.metric("sluice_persister_batches_refused_total") == 0, "refused %r" %
              p.metric("sluice_persister_batches_refused_total"))

        # The ROUTER: a message under the cap is drained and dropped quietly,
        # one over it disconnects the DEALER.
        mon = edge.dealer.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        edge.dealer.send(b"x" * (CAP - 1024))
        check(not mon.poll(1000), "a DEALER under the cap was disconnected")
        edge.dealer.send(b"x" * (CAP + 1))
        check(mon.poll(10000), "no disconnect after an oversized message to the ROUTER")
        ev = zmq.utils.monitor.recv_monitor_message(mon)
        check(ev["event"] == zmq.EVENT_DISCONNECTED, "monitor event %r" % ev)
        edge.dealer.disable_monitor()
        mon.close()
        # Acks reach it again once it has reconnected (an ack sent before
        # that is unroutable: the device resends, as here).
        deadline = time.time() + 30
        while ("cap-dev", 4) not in {(a[3], a[4]) for a in edge.acks}:
            check(time.time() < deadline, "no ack after the DEALER's reconnect")
            edge.send(pe.data("cap-dev", 4, {"t": 2}))
            edge.poll_acks(1000)
        edge.close()
        check(p.stop() == 0, "persister exit code")
        print("ok: message size cap")
    print("PASS")


if __name__ == "__main__":
    main()
