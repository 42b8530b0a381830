#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_16_pending_cap: the bytes a persister holds (pulled, not yet committed and acked) stay under
--max-pending-bytes (issue 11 item 5), reported in sluice_persister_pending_bytes.

Commits are made to hang by a transaction of the test holding an EXCLUSIVE lock on telemetry (reads go on,
INSERTs wait). Meanwhile an edge keeps sending batches of one ~40 KB row each, far more than the cap: the
rows cap (--max-pending, 20,000 rows by default) would let the persister pull every one of them, so only the
byte cap keeps them in ZeroMQ's queues (and from there back to the edges). Every sample of the gauge stays
<= the cap while the rows held reach close to it; once the lock goes, every row is stored and acked and the
gauge returns to 0. Also: a cap smaller than one message (--zmq-max-msg) is refused at start.
"""
import subprocess
import time

import msgpack
import psycopg2

from persister_common import Env, collect, pe
from proc import binary, check, wait_for

PORT = 22800  # persister_NN: 22000 + 50 * NN (persister.cmake)
MAX_MSG = 65536
CAP = 1024 * 1024
BODY = 40000  # one row's body: a batch is ~40 KB, the cap holds ~24
N = 120  # ~4.8 MB sent while commits hang


def main():
    # A cap that cannot hold one message: refused before anything starts.
    r = subprocess.run([binary("sluice-persister"), "--pull", "tcp://127.0.0.1:%d" % (PORT + 40), "--router",
                        "tcp://127.0.0.1:%d" % (PORT + 41), "--zmq-max-msg", "131072", "--max-pending-bytes",
                        "65536"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 1 and "what=max_pending_bytes" in r.stderr,
          "cap < max msg: rc %r, stderr %r" % (r.returncode, r.stderr[-400:]))
    print("ok: --max-pending-bytes below --zmq-max-msg refused")

    with Env(PORT) as env:
        p = env.persister(0, ["--zmq-max-msg", str(MAX_MSG), "--max-pending-bytes", str(CAP)])
        p.wait_ready()
        edge = pe.Edge([p.pull], [p.router], edge_id="edge-pend:7000")
        body = msgpack.packb("x" * BODY)
        edge.send(pe.data("pend-0", 1, body_raw=body))
        collect(edge, env, {("pend-0", 1)})  # the partition exists, the path is warm

        lock = psycopg2.connect(env.dsn, connect_timeout=5)
        cur = lock.cursor()
        cur.execute("LOCK TABLE telemetry IN EXCLUSIVE MODE")
        peak_bytes = peak_rows = 0

        def sample():
            nonlocal peak_bytes, peak_rows
            b = p.metric("sluice_persister_pending_bytes")
            peak_bytes = max(peak_bytes, b)
            peak_rows = max(peak_rows, p.metric("sluice_persister_pending_messages"))
            check(b <= CAP, "pending bytes %d over the cap %d" % (b, CAP))
            return b

        for i in range(N):
            edge.send(pe.data("pend-1", i + 1, body_raw=body))
            if i % 4 == 0:
                sample()
            time.sleep(0.01)
        end = time.monotonic() + 3  # the persister had every chance to pull more
        while time.monotonic() < end:
            sample()
            time.sleep(0.05)
        check(peak_bytes >= CAP // 2, "the cap never bound: at most %d bytes held" % peak_bytes)
        check(peak_rows < N // 3, "%d rows held of %d sent: pulled past the byte cap" % (peak_rows, N))
        check(p.metric("sluice_persister_rows_committed_total") == 1, "committed under the lock")
        check(not edge.poll_acks(0), "acks under the lock")
        print("ok: %d messages sent under the lock, at most %d bytes (%d rows) held, cap %d" %
              (N, peak_bytes, peak_rows, CAP))

        lock.rollback()
        lock.close()
        edge.acks.clear()
        collect(edge, env, {("pend-1", i + 1) for i in range(N)}, timeout=120)
        got = env.sql("SELECT count(*) FROM telemetry WHERE device_id = 'pend-1'")[0][0]
        check(got == N, "%d rows stored of %d" % (got, N))
        wait_for(lambda: p.metric("sluice_persister_pending_bytes") == 0, "pending bytes back to 0", 10)
        check(p.metric("sluice_persister_rows_committed_total") == N + 1, "committed %r" %
              p.metric("sluice_persister_rows_committed_total"))
        print("ok: lock released, all %d stored and acked, nothing held" % N)
        edge.close()
        check(p.stop() == 0, "persister exit code")
    print("PASS")


if __name__ == "__main__":
    main()
