"""Shared setup for the persister integration scenarios: a PostgreSQL and
sluice-persister instances on ports from the persister range (22000-22999)."""
import os
import shutil
import sys
import tempfile

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pgtest  # noqa: E402
import persister_edge as pe  # noqa: E402


def binary():
    b = os.environ.get("SLUICE_PERSISTER_BIN")
    if not b:
        b = os.path.join(os.path.dirname(__file__), "../../build/bin/sluice-persister")
    if not os.path.exists(b):
        raise RuntimeError("sluice-persister binary not found: %s (set SLUICE_PERSISTER_BIN)" % b)
    return b


class Env:
    """PostgreSQL at base_port, persister i at base_port+1+3i (pull, router, metrics)."""

    def __init__(self, base_port):
        self.base_port = base_port
        self.dir = tempfile.mkdtemp(prefix="sl-persister-")
        self.pg = pgtest.Postgres(base_port, os.path.join(self.dir, "pg"))
        self.dsn = self.pg.start()
        self.persisters = []

    def persister(self, i=0, extra=()):
        p = pe.Persister(binary(), self.dsn, self.base_port + 1 + 3 * i, self.base_port + 2 + 3 * i,
                         self.base_port + 3 + 3 * i, extra, log=os.path.join(self.dir, "persister%d.log" % i))
        self.persisters.append(p)
        return p

    def sql(self, q, args=()):
        c = psycopg2.connect(self.dsn)
        c.autocommit = True
        try:
            cur = c.cursor()
            cur.execute(q, args)
            return cur.fetchall() if cur.description else None
        finally:
            c.close()

    def close(self, ok):
        for p in self.persisters:
            try:
                p.stop()
            except Exception:
                pass
        if not ok:
            for i, p in enumerate(self.persisters):
                lp = os.path.join(self.dir, "persister%d.log" % i)
                if os.path.exists(lp):
                    sys.stderr.write("---- persister%d log (tail)\n" % i)
                    sys.stderr.write(open(lp, errors="replace").read()[-6000:])
        self.pg.destroy()
        shutil.rmtree(self.dir, ignore_errors=True)
