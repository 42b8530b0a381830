"""Shared setup for the persister integration scenarios: a PostgreSQL and
sluice-persister instances on ports from the persister range (22000-22999)."""
import os
import sys

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

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        for p in self.persisters:
            p.stop()
        self.pg.stop(mode="immediate")
        proc.finish(self.dir, et is None)
        return False
