# SPDX-License-Identifier: Apache-2.0
"""pgrepl - a PostgreSQL primary with a streaming standby, for failover tests; and a TCP proxy in front of
the primary that can lose the answer to a COMMIT.

    pair = pgrepl.Pair(22700, 22701, base)    # two pgtest.Postgres in base/primary, base/standby
    pair.start(synchronous=True)              # initdb + primary; pg_basebackup -R; standby; sync replication
    pair.promote()                            # the standby becomes a primary (pg_promote)
    proxy = pgrepl.CommitCutter(22702, 22700) # 127.0.0.1:22702 -> the primary
    proxy.arm()                               # the next COMMIT goes through; its answer never comes back

Synchronous replication (synchronous_standby_names = '*' on the primary only) is what makes "acked means
on the standby too": with asynchronous replication a failover may lose committed, acked transactions.
See /work/shared/ENV-NOTES.md for running PostgreSQL as root.
"""
import os
import re
import shutil
import socket
import threading
import time

import pgtest
import proc

# What commits: a simple-protocol Query "COMMIT" alone or a string ending ";COMMIT" (a big batch's whole
# transaction as one query), or a Bind of the prepared statement "rows" (unnamed portal), which a small
# batch runs in autocommit: its transaction commits at the Sync that follows in the same write.
COMMITS = re.compile(rb"Q\x00\x00\x00\x0bCOMMIT\x00|;COMMIT\x00|B.{4}\x00rows\x00", re.S)


class Pair:
    def __init__(self, primary_port, standby_port, base):
        self.primary = pgtest.Postgres(primary_port, os.path.join(base, "primary"))
        self.standby = pgtest.Postgres(standby_port, os.path.join(base, "standby"),
                                       ready_text="database system is ready to accept read-only connections")

    def start(self, synchronous=True):
        self.primary.start()
        d = self.standby.base
        os.makedirs(d, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(d, "postgres", "postgres")
        os.chmod(d, 0o700)
        pgtest._as_postgres([os.path.join(pgtest.PG_BIN, "pg_basebackup"), "-h", "127.0.0.1", "-p",
                             str(self.primary.port), "-U", "postgres", "-D", self.standby.data, "-R", "-X",
                             "stream", "-c", "fast"])
        self.standby.start()
        if synchronous:
            self.primary.sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
            self.primary.sql("SELECT pg_reload_conf()")
        want = "sync" if synchronous else "async"
        proc.wait_for(lambda: self.primary.sql("SELECT sync_state FROM pg_stat_replication") == [(want,)],
                      "the standby streaming (%s)" % want, 30)

    def promote(self):
        self.standby.sql("SELECT pg_promote(true, 60)")

    def dsn(self, first_port=None):
        """libpq multi-host conninfo: the primary (or first_port, a proxy) first, then the standby."""
        return ("host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres "
                "target_session_attrs=read-write connect_timeout=3" %
                (first_port or self.primary.port, self.standby.port))


class CommitCutter:
    """A TCP proxy to a PostgreSQL server. Once armed, the first connection that commits (COMMITS) has that
    forwarded, but the server's answer is dropped and, after `hold` seconds (the commit is done and
    replicated), the connection is closed and the proxy accepts no more: the client cannot know whether
    its transaction committed. `cut` is set then.

    With `app`, only connections whose startup packet names that application_name are cut: the persister
    also commits on its command-queue connection, and losing that COMMIT's answer is another test."""

    def __init__(self, port, target_port, hold=0.5, app=None):
        self.target = ("127.0.0.1", target_port)
        self.hold = hold
        self.app_tag = None if app is None else b"application_name\x00" + app.encode() + b"\x00"
        self.armed = False
        self.cut = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(64)
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self):
        self.armed = True

    def close(self):
        try:
            self.lsock.close()
        except OSError:
            pass

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if self.cut.is_set():
                c.close()
                continue
            try:
                s = socket.create_connection(self.target, timeout=5)
                s.settimeout(None)
            except OSError:
                c.close()
                continue
            state = {"muted": False, "head": b"", "eligible": self.app_tag is None}
            threading.Thread(target=self._pump, args=(c, s, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(s, c, state, False), daemon=True).start()

    def _pump(self, src, dst, state, upstream):
        tail = b""
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    break
                if not upstream and state["muted"]:
                    continue  # the server's answers to the client are lost from now on
                dst.sendall(b)
                seen, tail = tail + b, (tail + b)[-16:]
                if upstream and not state["eligible"] and len(state["head"]) < 4096:
                    # The startup packet (after an optional SSLRequest) comes before any query.
                    state["head"] += b
                    state["eligible"] = self.app_tag in state["head"]
                if upstream and state["eligible"] and self.armed and COMMITS.search(seen):
                    with self.lock:
                        if self.armed:
                            self.armed = False
                            state["muted"] = True
                            threading.Thread(target=self._sever, args=(src, dst), daemon=True).start()
        except OSError:
            pass
        for sk in (src, dst):
            try:
                sk.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _sever(self, client, server):
        time.sleep(self.hold)
        self.cut.set()
        self.close()  # no new connections through the proxy: the client must find the other host
        for sk in (client, server):
            try:
                sk.shutdown(socket.SHUT_RDWR)
                sk.close()
            except OSError:
                pass
