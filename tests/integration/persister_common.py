# SPDX-License-Identifier: Apache-2.0
"""Shared setup for the persister integration scenarios (persister_NN_<what>.py):
a PostgreSQL and sluice-persister instances on the scenario's ports (PORT =
22000 + 50 * NN and the 49 after it, persister.cmake); core_persister() and
collect() for the scenarios of one persister's core behaviour."""
import contextlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pgtest  # noqa: E402
import persister_edge as pe  # noqa: E402,F401  (the scenarios import it from here)
import proc  # noqa: E402


class Env:
    """PostgreSQL at base_port, persister i at base_port+1+3i (pull, router, metrics);
    a context manager: everything stops at its end (proc.finish)."""

    def __init__(self, base_port):
        self.base_port = base_port
        self.dir = proc.workdir("sl-persister-")
        self.pg = pgtest.Postgres(base_port, os.path.join(self.dir, "pg"))
        self.dsn = self.pg.start()
        self.persisters = []

    def persister(self, i=0, extra=()):
        p = pe.Persister(proc.binary("sluice-persister"), self.dsn, self.base_port + 1 + 3 * i,
                         self.base_port + 2 + 3 * i, self.base_port + 3 + 3 * i, extra,
                         log=os.path.join(self.dir, "persister%d.log" % i))
        self.persisters.append(p)
        return p

    def sql(self, q, args=()):
        return self.pg.sql(q, args)

    def check(self, q, args=()):
        return self.pg.check(q, args)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        for p in self.persisters:
            p.stop()
        self.pg.stop(mode="immediate")
        proc.finish(self.dir, et is None)
        return False


@contextlib.contextmanager
def core_persister(base_port, batch_max=50):
    """Env at base_port, persister 0 ready (batches of up to batch_max rows or 30 ms,
    edges lost after 2.5 s of silence) and a test edge "edge-a:7000" on it:
    yields (env, persister, edge). At the end the edge closes and the
    persister must exit 0 on SIGTERM."""
    with Env(base_port) as env:
        p = env.persister(0, ["--batch-max", str(batch_max), "--batch-ms", "30", "--edge-timeout-ms", "2500"])
        p.wait_ready()
        edge = pe.Edge([p.pull], [p.router], edge_id="edge-a:7000", worker=0)
        yield env, p, edge
        edge.close()
        assert p.stop() == 0, "persister exit code"


def check_visible(env, dev, seq):
    r = env.sql("SELECT 1 FROM telemetry WHERE device_id=%s AND seq=%s "
                "UNION ALL SELECT 1 FROM telemetry_rejected WHERE device_id=%s AND seq=%s", (dev, seq, dev, seq))
    assert r, "ack for (%s,%s) arrived before the row was visible" % (dev, seq)


def collect(edge, env, want, timeout=60):
    """Poll acks until `want` (set of (dev, seq)) are all acked; check visibility of each on arrival."""
    seen = set()

    def on_ack(a):
        check_visible(env, a[3], a[4])
        assert a[0] == edge.inc, a
        seen.add((a[3], a[4]))

    deadline = time.time() + timeout
    while not want <= seen:
        assert time.time() < deadline, "missing acks: %s" % sorted(want - seen)[:10]
        edge.poll_acks(100, on_ack)
    return seen


def partitions(env):
    """The names of telemetry's partitions."""
    return {r[0] for r in env.sql("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                                  " WHERE i.inhparent = 'telemetry'::regclass")}


def collations(env, tables):
    """{table: collation name} of the device_id column of each table named (migration 007 makes it "C")."""
    return dict(env.sql("SELECT a.attrelid::regclass::text, c.collname FROM pg_attribute a"
                        " JOIN pg_collation c ON c.oid = a.attcollation WHERE a.attname = 'device_id'"
                        " AND a.attrelid::regclass::text = ANY(%s)", (list(tables),)))
