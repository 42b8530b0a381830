# SPDX-License-Identifier: Apache-2.0
"""pgtest - a throwaway PostgreSQL 15 for a test, as root, without systemd.

    import pgtest
    pg = pgtest.Postgres(port=22001, base="/tmp/x")   # base: a fresh temp dir
    dsn = pg.start()        # a fresh cluster (a copy of one initdb per machine) + postgres; a libpq URI once up
    pg.stop()               # fast shutdown; the data directory stays
    pg.restart()            # start again on the same data
    pg.sql("select 1")      # rows of one statement (autocommit)
    pg.check("select 1")    # the same over one kept connection (per-ack checks)
    pg.destroy()            # stop (immediate) and remove everything

The postmaster runs as user postgres in the foreground, a proc.Proc child of
the test with its log in <base>/log (no pg_ctl, which would detach it), so
it goes away with the test. A missing PostgreSQL is an error, never a skip.
See /work/shared/ENV-NOTES.md.
"""
import os
import shutil
import signal
import subprocess
import tempfile

import proc

PG_BIN = os.environ.get("SL_PG_BIN", "/usr/lib/postgresql/15/bin")
# pg_ctl's shutdown modes are these signals to the postmaster
MODES = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


def _as_postgres(args, **kw):
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(args), r.returncode, r.stdout.decode(errors="replace")))
    return r


INITDB_ARGS = ["-U", "postgres", "-A", "trust", "-E", "UTF8"]
# The clusters' locale; a benchmark may set another before the first start
# (bench/persister_e2e.py --locale): each locale has its own template.
LOCALE = "C.UTF-8"


def _template():
    """A fresh cluster's data directory, made by initdb once per machine (and
    per initdb binary) and copied for each test: initdb takes ~0.8 s, a copy
    ~0.07 s, and some sixty tests start a cluster. Built beside its final name
    and renamed, so a test running at the same time never copies half of one."""
    initdb = os.path.join(PG_BIN, "initdb")
    if not os.path.exists(initdb):
        raise RuntimeError("PostgreSQL not installed: %s missing" % initdb)
    st = os.stat(initdb)
    tag = "" if LOCALE == "C.UTF-8" else LOCALE + "-"
    path = os.path.join(tempfile.gettempdir(), "sl-pg-template-%s%d-%d-%d" % (tag, os.geteuid(), st.st_size,
                                                                                int(st.st_mtime)))
    data = os.path.join(path, "data")
    if os.path.exists(os.path.join(data, "PG_VERSION")):
        return data
    work = tempfile.mkdtemp(prefix="sl-pg-template-new-")
    os.chmod(work, 0o711)  # postgres reaches its data directory inside
    if os.geteuid() == 0:
        shutil.chown(work, "postgres", "postgres")
    _as_postgres([initdb, "-D", os.path.join(work, "data"), "--no-sync", "--locale=" + LOCALE] + INITDB_ARGS)
    try:
        os.rename(work, path)
    except OSError:  # another test made it first
        shutil.rmtree(work, ignore_errors=True)
    return data


class Postgres:
    def __init__(self, port, base, ready_text="database system is ready to accept connections"):
        """ready_text: the log line that says it is up (a hot standby says "... read-only connections")."""
        self.port = int(port)
        self.base = os.path.abspath(base)
        self.data = os.path.join(self.base, "data")
        self.log = os.path.join(self.base, "log")
        self._kept = None  # check()'s connection
        root = os.geteuid() == 0
        self.proc = proc.Proc("postgres", [
            os.path.join(PG_BIN, "postgres"), "-D", self.data, "-p", str(self.port), "-k", self.base,
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"], self.log,
            ready=proc.log_line(ready_text), stop_signal=MODES["fast"],
            grace=60, user="postgres" if root else None, group="postgres" if root else None)

    @property
    def dsn(self):
        return "postgresql://postgres@127.0.0.1:%d/postgres" % self.port

    @property
    def running(self):
        return self.proc.alive()

    def prepare(self):
        """The cluster's files (copied from the template once), not started: start() does it too."""
        if not os.path.exists(os.path.join(self.base, "data", "PG_VERSION")):
            os.makedirs(self.base, exist_ok=True)
            # The postgres user must reach base: a tempfile.mkdtemp() parent is 0700.
            parent = os.path.dirname(self.base)
            if os.geteuid() == 0 and os.stat(parent).st_uid == 0 and parent.startswith(tempfile.gettempdir() + "/"):
                os.chmod(parent, os.stat(parent).st_mode | 0o011)
            if os.geteuid() == 0:
                shutil.chown(self.base, "postgres", "postgres")
            os.chmod(self.base, 0o700)
            subprocess.run(["cp", "-a", _template(), self.data], check=True)

    def start(self):
        self.prepare()
        self.proc.start()
        return self.dsn

    def stop(self, mode="fast"):
        if self._kept is not None:
            self._kept.close()
            self._kept = None
        self.proc.stop(sig=MODES[mode])

    def restart(self):
        self.stop()
        return self.start()

    def sql(self, q, args=()):
        """Run one statement in its own autocommit connection; rows if it returns any."""
        c = self._connect()
        try:
            return self._run(c, q, args)
        finally:
            c.close()

    def check(self, q, args=()):
        """sql() over one kept connection (closed by stop()), for a check made
        per ack: a new connection forks a backend (~15 ms), which made the
        per-ack checks most of a test's time."""
        if self._kept is None or self._kept.closed:
            self._kept = self._connect()
        return self._run(self._kept, q, args)

    def _connect(self):
        import psycopg2
        c = psycopg2.connect(self.dsn, connect_timeout=5)
        c.autocommit = True
        return c

    @staticmethod
    def _run(c, q, args):
        cur = c.cursor()
        cur.execute(q, args)
        return cur.fetchall() if cur.description else None

    def destroy(self):
        try:
            self.stop(mode="immediate")
        except Exception:
            pass
        shutil.rmtree(self.base, ignore_errors=True)
