"""pgtest - start a throwaway PostgreSQL 15 for a test, as root, without systemd.

    import pgtest
    pg = pgtest.Postgres(port=22001, base="/tmp/x")   # base: a fresh temp dir
    dsn = pg.start()        # initdb (first time) + pg_ctl start; returns a libpq URI
    pg.stop()               # fast shutdown; the data directory stays
    pg.restart()            # start again on the same data
    pg.destroy()            # stop and remove everything

Module-level helpers start(port, dir) -> dsn, stop(), restart() drive one
default instance, for scripts that need just one. A missing PostgreSQL is an
error (RuntimeError), never a skip. See /work/shared/ENV-NOTES.md.
"""
import os
import shutil
import subprocess
import tempfile
import time

PG_BIN = os.environ.get("SL_PG_BIN", "/usr/lib/postgresql/15/bin")


def _as_postgres(args, **kw):
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(args), r.returncode, r.stdout.decode(errors="replace")))
    return r


class Postgres:
    def __init__(self, port, base):
        self.port = int(port)
        self.base = os.path.abspath(base)
        self.data = os.path.join(self.base, "data")
        self.log = os.path.join(self.base, "log")
        self.running = False

    @property
    def dsn(self):
        return "postgresql://postgres@127.0.0.1:%d/postgres" % self.port

    def _init(self):
        if not os.path.exists(os.path.join(self.base, "data", "PG_VERSION")):
            os.makedirs(self.base, exist_ok=True)
            # The postgres user must reach base: a tempfile.mkdtemp() parent is 0700.
            parent = os.path.dirname(self.base)
            if os.geteuid() == 0 and os.stat(parent).st_uid == 0 and parent.startswith(tempfile.gettempdir() + "/"):
                os.chmod(parent, os.stat(parent).st_mode | 0o011)
            if os.geteuid() == 0:
                shutil.chown(self.base, "postgres", "postgres")
            os.chmod(self.base, 0o700)
            if not os.path.exists(os.path.join(PG_BIN, "initdb")):
                raise RuntimeError("PostgreSQL not installed: %s/initdb missing" % PG_BIN)
            _as_postgres([os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", "postgres", "-A", "trust",
                          "-E", "UTF8", "--locale=C.UTF-8"])

    def start(self):
        self._init()
        opts = "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=on" % (self.port, self.base)
        try:
            _as_postgres([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l", self.log, "-w", "-t", "60",
                          "-o", opts, "start"])
        except RuntimeError as e:
            tail = open(self.log).read()[-2000:] if os.path.exists(self.log) else ""
            raise RuntimeError("%s\n%s" % (e, tail))
        self.running = True
        return self.dsn

    def stop(self, mode="fast"):
        if not self.running:
            return
        _as_postgres([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", mode, "-w", "-t", "60", "stop"])
        self.running = False

    def restart(self):
        self.stop()
        return self.start()

    def destroy(self):
        try:
            self.stop(mode="immediate")
        except Exception:
            pass
        shutil.rmtree(self.base, ignore_errors=True)

    def wait_ready(self, timeout=30):
        import psycopg2
        deadline = time.time() + timeout
        while True:
            try:
                psycopg2.connect(self.dsn).close()
                return
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)


_default = None


def start(port, dir):
    """Start (initdb on first use) a PostgreSQL on 127.0.0.1:port with data under dir; return its DSN."""
    global _default
    if _default is None or _default.port != int(port) or _default.base != os.path.abspath(dir):
        _default = Postgres(port, dir)
    return _default.start()


def stop():
    if _default:
        _default.stop()


def restart():
    return _default.restart()
