#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_04_data_ack_resend: a data whose (dev, seq) is already stored is acked again and stored once:
- resent on the same connection after its ack, and back to back before any ack (same batch);
- resent after reconnecting to the other edge;
- seqs out of order and far apart are all stored (seq is unique, not contiguous);
- the first stored body stays (a resend does not overwrite)."""
from slstack import Stack, check, log, main

PORT = 24200  # system_NN: 24000 + 50 * NN (system.cmake)


def scenario():
    with Stack(PORT, edges=2) as s:
        s.start()
        dev = "resend-1"
        d = s.device(dev, edge=0)
        for seq in (10, 3, 1000000, 7):
            d.data(seq, {"v": seq})
        got = d.acks([10, 3, 1000000, 7])
        log("out-of-order seqs acked: %r" % got)
        # resend after ack, 3 times
        for _ in range(3):
            d.data(10, {"v": 10})
            check(d.expect("ack")["seq"] == 10, "resend of 10 not acked")
        # back to back before any ack: every copy acked
        for _ in range(5):
            d.data(20, {"v": 20})
        acks = [d.expect("ack")["seq"] for _ in range(5)]
        check(acks == [20] * 5, "5 back-to-back copies of seq 20: acks %r" % acks)
        # a resend with another body: acked, the first body stays
        d.data(3, {"v": "changed"})
        check(d.expect("ack")["seq"] == 3, "ack 3")
        d.close()
        # reconnect to edge b and resend everything
        d = s.device(dev, edge=1)
        for seq in (10, 3, 1000000, 7, 20):
            d.data(seq, {"v": seq})
        d.acks([10, 3, 1000000, 7, 20])
        rows = s.rows(dev)
        seqs = [r[1] for r in rows]
        check(seqs == [3, 7, 10, 20, 1000000], "stored seqs %r" % seqs)
        check(all(r[4] == "edge-a" for r in rows), "rows rewritten by edge b's resend: %r" % [r[4] for r in rows])
        check(rows[0][5] == {"v": 3}, "body of seq 3 overwritten by its resend: %r" % rows[0][5])
        dup = s.persister.metric("sluice_persister_rows_duplicate_total")
        log("13 resends -> %d rows, each once, first edge and body kept (persister duplicates metric: %s)"
            % (len(rows), dup))
        d.close()


if __name__ == "__main__":
    main(scenario)
