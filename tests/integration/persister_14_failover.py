#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_14_failover: PostgreSQL fails over while devices send. Two local clusters in synchronous
streaming replication; the persister has a multi-host conninfo (target_session_attrs=read-write) whose
first host is a proxy to the primary. Mid-stream the proxy forwards one batch's COMMIT and loses the answer
(the persister cannot know whether it committed: it did, and the standby has it), then the primary dies and
the standby is promoted. The persister resumes on the new primary and retries that batch, which must not
store anything twice; the test edge goes on sending and resends what was not acked, as devices do.

At the end: every acked message is on the new primary exactly once, every message sent got acked, nothing
was dead-lettered, and the retried batch was recognized (duplicates counted)."""
import os
import time

import pgrepl
from persister_common import check_visible, pe  # noqa: F401
import proc
from proc import wait_for

PORT = 22700  # persister_NN: 22000 + 50 * NN (persister.cmake): primary, standby, proxy, persister +3..+5
PER_BATCH = 20


def main():
    d = proc.workdir("sl-persister-failover-")
    ok = False
    try:
        pair = pgrepl.Pair(PORT, PORT + 1, os.path.join(d, "pg"))
        pair.start(synchronous=True)
        proxy = pgrepl.CommitCutter(PORT + 2, PORT, app="sluice-persister")  # a batch lane, not cmdq
        p = pe.Persister(proc.binary("sluice-persister"), pair.dsn(PORT + 2), PORT + 3, PORT + 4, PORT + 5,
                         ["--batch-ms", "5"], log=os.path.join(d, "persister.log"))
        p.wait_ready()
        edge = pe.Edge([p.pull], [p.router], edge_id="edge-fo:7000")
        sent, acked, last_sent = {}, set(), {}
        seq = [0]

        def on_ack(a):
            acked.add((a[3], a[4]))

        def send_batch():
            ents = []
            for _ in range(PER_BATCH):
                seq[0] += 1
                e = pe.data("fo-%d" % (seq[0] % 17), seq[0], {"n": seq[0]})
                sent[(e[3], e[5])] = e
                ents.append(e)
            edge.send(*ents, timeout=60)

        def resend_unacked(older_than):
            now = time.time()
            todo = [e for k, e in sent.items() if k not in acked and now - last_sent.get(k, 0) > older_than]
            for k in range(0, len(todo), PER_BATCH):
                edge.send(*todo[k:k + PER_BATCH], timeout=60)
            for e in todo:
                last_sent[(e[3], e[5])] = now

        t0 = time.time()
        promoted_at, armed = None, False
        while promoted_at is None or time.time() < promoted_at + 3:
            send_batch()
            for k in sent:
                last_sent.setdefault(k, time.time())
            edge.poll_acks(20, on_ack)
            if time.time() > t0 + 1.5 and not armed:
                proxy.arm()
                armed = True
                print("armed after %d messages, %d acked" % (len(sent), len(acked)))
            if proxy.cut.is_set() and promoted_at is None:
                n_before = len(acked)
                pair.primary.stop(mode="immediate")  # the old primary is gone for good
                pair.promote()
                promoted_at = time.time()
                print("COMMIT answer lost; primary stopped; standby promoted (%d acked before)" % n_before)
            assert time.time() < t0 + 60, "the proxy never saw a COMMIT"
            if promoted_at is not None:
                resend_unacked(2.0)  # devices resend what was not acked, after their ack timeout
        deadline = time.time() + 90
        while not set(sent) <= acked:
            assert time.time() < deadline, "%d of %d messages never acked" % (len(set(sent) - acked), len(sent))
            resend_unacked(2.0)
            edge.poll_acks(100, on_ack)

        new = pair.standby
        n = new.sql("SELECT count(*), count(DISTINCT (device_id, seq)) FROM telemetry")[0]
        assert n == (len(sent), len(sent)), "stored %r, sent %d" % (n, len(sent))
        stored = {(r[0], r[1]) for r in new.sql("SELECT device_id, seq FROM telemetry")}
        assert acked <= stored, "acked and lost: %r" % sorted(acked - stored)[:5]
        assert new.sql("SELECT count(*) FROM telemetry_rejected")[0][0] == 0
        dups = p.metric("sluice_persister_rows_duplicate_total")
        assert dups and dups >= 1, "the batch whose COMMIT answer was lost was not retried: %r" % dups
        print("ok: %d messages, each stored once on the promoted standby; %d duplicates recognized, retries %s" %
              (len(sent), dups, p.metric("sluice_persister_db_retries_total")))
        edge.close()
        assert p.stop() == 0
        proxy.close()
        ok = True
    finally:
        proc.kill_all()
        proc.finish(d, ok)
    print("PASS")


if __name__ == "__main__":
    main()
