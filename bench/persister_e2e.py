#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_e2e - issue 13's targets, measured through the real stack in one run.

    unshare -n -- sh -c 'ip link set lo up && /usr/bin/python3 bench/persister_e2e.py --bin build/release/bin'

1,000 devices (bench/edge_bench: one epoll thread, raw frames, window 16, 64-byte bodies, each frame stamped
in microseconds when written and again when its ack arrives) -> one sluice-edge -> sluice-persister (default
flags) -> PostgreSQL 15 (a private cluster, default settings: fsync and synchronous_commit on) -> COMMIT ->
ack -> device. No notifier (the edge sheds its copies). Before the phases the cluster gets --warm-wal-mb of WAL
and a CHECKPOINT, so the phases reuse WAL segments as a database that has run a while does (warm_wal). Phases,
each with a fresh edge and persister, after --warmup seconds of the same load:

  1. rate 10,000 msgs/s offered: ack latency p50, p99 (target p50 <= 2 ms, p99 <= 10 ms)
  2. rate 50,000 msgs/s offered: the same targets
  3. saturation: every device keeps 16 frames in flight; acked rows/s
  4. the COPY ceiling: the rows phase 3 stored, exported, the tables emptied, and COPYed back into the same
     table (telemetry, partitioned) by one connection, 5,000 rows a transaction (and, second figure, into
     telemetry and telemetry_keys, what the persister's write path does). Target: 3 >= 0.85 x 4. The same
     two again in COPY's binary format, which the persister sends since session 16, are printed beside them.

Prints each figure beside its target and the load average (the box may be shared: rerun on a quiet one).
Not a test. Ports: --port (default 26950) .. +9 (edge_bench: edge BASE, persister BASE+1/+2/+8, edge
metrics BASE+9), PostgreSQL on --port + 20.
"""
import argparse
import io
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../tests/integration"))
import pgtest  # noqa: E402

COLS = "device_id, seq, device_ts, received_at, edge_id, body"


def load():
    return "%.2f %.2f %.2f" % os.getloadavg()


def cpu_s(pid):
    """utime + stime of a process, seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pg_cpu(postmaster):
    """CPU seconds of the postmaster and every process it forked (backends, WAL writer, ...): the live ones,
    and the exited ones the postmaster has reaped (its cutime + cstime)."""
    total = 0.0
    hz = os.sysconf("SC_CLK_TCK")
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(d) == postmaster:
                total += sum(int(x) for x in fields[11:15]) / hz
            elif int(fields[1]) == postmaster:
                total += (int(fields[11]) + int(fields[12])) / hz
        except (OSError, IndexError, ValueError):
            pass
    return total


def run_bench(a, dsn, mode, rate=None, postmaster=None):
    cmd = [os.path.join(a.bin, "edge_bench"), "--edge-bin", os.path.join(a.bin, "sluice-edge"),
           "--persister-bin", os.path.join(a.bin, "sluice-persister"), "--db", dsn,
           "--mode", mode, "--conns", str(a.devices), "--window", "16", "--body-size", "64",
           "--seconds", str(a.seconds), "--warmup", str(a.warmup), "--port", str(a.port),
           "--workers", str(a.edge_workers), "--nsrc", "16"]
    if rate:
        cmd += ["--rate", str(rate)]
    if a.persister_args:
        cmd += ["--persister-args", a.persister_args]
    lat = None
    if a.slow_windows and mode == "rate":
        lat = tempfile.NamedTemporaryFile(prefix="sl-e2e-lat-", suffix=".txt", delete=False).name
        cmd += ["--lat-out", lat]
    if a.nice:
        cmd = ["nice", "-n", str(a.nice)] + cmd
    la0 = load()
    c0 = pg_cpu(postmaster) if postmaster else 0
    t0 = time.time()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600).stdout.decode()
    wall = time.time() - t0
    pg = (pg_cpu(postmaster) - c0) if postmaster else 0
    la1 = load()
    m = re.search(r"([\d.]+) frames/s acked over [\d.]+ s; latency p50 ([\d.]+) ms p99 ([\d.]+) ms "
                  r"p99.9 ([\d.]+) ms max ([\d.]+) ms", out)
    if not m:
        sys.stdout.write(out)
        raise SystemExit("edge_bench failed (output above)")
    r = {"rate": float(m.group(1)), "p50": float(m.group(2)), "p99": float(m.group(3)),
         "p999": float(m.group(4)), "max": float(m.group(5)), "load": "%s -> %s" % (la0, la1), "out": out,
         "pg_cores": pg / wall if wall else 0}
    if lat:
        r["slow"] = slow_windows(lat)
        os.unlink(lat)
    return r


def slow_windows(path, over_us=10000, window_us=100000, top=12):
    """Where in time the acks over 10 ms were sent, from edge_bench --lat-out (send offset us, latency us a
    line): the 100 ms windows of send time holding the most, in time order. A stall that recurs shows as a
    period (a spike every second was the devices table's upsert on the writer lanes, before session 13)."""
    per = {}
    n = total = 0
    with open(path) as f:
        for line in f:
            sent, us = line.split()
            total += 1
            if int(us) > over_us:
                n += 1
                w = int(sent) // window_us
                per[w] = per.get(w, 0) + 1
    worst = sorted(sorted(per.items(), key=lambda kv: -kv[1])[:top])
    return "%d of %d acks over %d ms; the %d busiest 100 ms windows (s of send time: acks over): %s" % (
        n, total, over_us // 1000, len(worst), " ".join("%.1f:%d" % (w * window_us / 1e6, c) for w, c in worst))


def sql(dsn, q):
    c = psycopg2.connect(dsn)
    c.autocommit = True
    cur = c.cursor()
    cur.execute(q)
    r = cur.fetchall() if cur.description else None
    c.close()
    return r


def empty_tables(dsn):
    sql(dsn, "TRUNCATE telemetry, telemetry_keys")
    sql(dsn, "CHECKPOINT")


def warm_wal(dsn, mb):
    """Leave the WAL as on a database that has been running for a while: write mb MB of WAL, then CHECKPOINT,
    which keeps the old segments for reuse. A fresh cluster has none to reuse: the commit that crosses into a
    new 16 MB segment first creates it, zero-filled and fsynced (wal_init_zero, on by default), and every
    other commit waits for the WAL lock meanwhile. Returns the WAL segment files ready after it."""
    sql(dsn, "CREATE TABLE sl_wal_warm AS SELECT g, repeat(md5(g::text), 30) AS pad"
             " FROM generate_series(1, %d) g" % (mb * 1024))  # ~1 KB of WAL a row: uncompressed, inline
    sql(dsn, "DROP TABLE sl_wal_warm")
    sql(dsn, "CHECKPOINT")
    return sql(dsn, "SELECT count(*) FROM pg_ls_waldir()")[0][0]


def text_chunks(text, per_tx):
    """COPY text, per_tx lines a chunk."""
    lines = text.splitlines(keepends=True)
    return [(io.StringIO("".join(lines[k:k + per_tx])), len(lines[k:k + per_tx])) for k in range(0, len(lines), per_tx)]


def binary_chunks(data, per_tx):
    """A COPY BINARY stream cut into streams of per_tx tuples each (header, tuples, trailer)."""
    head, tuples, o = data[:19], [], 19
    while True:
        nf = struct.unpack_from("!h", data, o)[0]
        if nf < 0:
            break
        start, o = o, o + 2
        for _ in range(nf):
            n = struct.unpack_from("!i", data, o)[0]
            o += 4 + max(n, 0)
        tuples.append(data[start:o])
    return [(io.BytesIO(head + b"".join(tuples[k:k + per_tx]) + b"\xff\xff"), len(tuples[k:k + per_tx]))
            for k in range(0, len(tuples), per_tx)]


def copy_ceiling(dsn, chunks, key_chunks, binary, with_keys):
    """One connection, a transaction per chunk, COPY of the rows (and their keys) into empty tables.
    Returns (rows/s, the backend's CPU us per row, WAL bytes per row)."""
    empty_tables(dsn)
    fmt = " (FORMAT binary)" if binary else ""
    c = psycopg2.connect(dsn)
    cur = c.cursor()
    cur.execute("SELECT pg_backend_pid(), pg_current_wal_lsn() - '0/0'::pg_lsn")
    backend, wal0 = cur.fetchone()
    c.commit()
    cpu0 = cpu_s(backend)
    t0 = time.perf_counter()
    rows = 0
    for k, (chunk, nrows) in enumerate(chunks):
        if with_keys:
            key_chunks[k][0].seek(0)
            cur.copy_expert("COPY telemetry_keys (device_id, seq, received_at) FROM STDIN" + fmt, key_chunks[k][0])
        chunk.seek(0)
        cur.copy_expert("COPY telemetry (%s) FROM STDIN%s" % (COLS, fmt), chunk)
        rows += nrows
        c.commit()
    dt = time.perf_counter() - t0
    us = (cpu_s(backend) - cpu0) / rows * 1e6
    cur.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
    wal = float(cur.fetchone()[0] - wal0) / rows
    c.close()
    return rows / dt, us, wal


def show_cpu(r):
    """A phase's CPU lines: edge_bench's persister and cpu lines, and PostgreSQL's share."""
    for line in r["out"].splitlines():
        if line.startswith("persister:") or line.startswith("cpu:"):
            print("    " + line)
    print("    postgresql: %.0f%% of one core (all its processes, the whole phase)" % (r["pg_cores"] * 100))


def saturation_and_ceiling(a, dsn, postmaster, fresh):
    """Phase 3 (saturation) and 4 (the COPY ceiling of the same rows); True if the ratio meets its target.
    fresh: no phase ran before (--rates ""): the persister creates the schema, there is nothing to empty."""
    if not fresh:
        empty_tables(dsn)
    s = run_bench(a, dsn, "tput", None, postmaster)
    print("saturation (window 16): acked %8.0f rows/s  (p50 %.2f ms, p99 %.2f ms)   [load %s]" %
          (s["rate"], s["p50"], s["p99"], s["load"]))
    show_cpu(s)
    # What a row costs on disk (heap + indexes, telemetry partitions and telemetry_keys).
    sz = sql(dsn, "SELECT (SELECT count(*) FROM telemetry),"
                  " (SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i"
                  "  WHERE i.inhparent = 'telemetry'::regclass),"
                  " pg_total_relation_size('telemetry_keys'), pg_relation_size('telemetry_keys')")[0]
    if sz[0]:
        print("    on disk: telemetry %.0f B/row (heap + primary key + BRIN), telemetry_keys %.0f B/row "
              "(heap %.0f + index)" % (sz[1] / sz[0], sz[2] / sz[0], sz[3] / sz[0]))
    # The same rows, in arrival order, as COPY text and as COPY binary (what the persister sends since session 16).
    c = psycopg2.connect(dsn)
    cur = c.cursor()
    ceil = {}
    for binary in (False, True):
        fmt = " (FORMAT binary)" if binary else ""
        buf, kbuf = (io.BytesIO(), io.BytesIO()) if binary else (io.StringIO(), io.StringIO())
        cur.copy_expert("COPY (SELECT %s FROM telemetry ORDER BY received_at) TO STDOUT%s" % (COLS, fmt), buf)
        cur.copy_expert("COPY (SELECT device_id, seq, received_at FROM telemetry ORDER BY received_at) TO STDOUT"
                        + fmt, kbuf)
        cut = binary_chunks if binary else text_chunks
        ceil[binary] = (cut(buf.getvalue(), 5000), cut(kbuf.getvalue(), 5000))
    c.close()
    n = sz[0]
    la0 = load()
    runs = {}
    for binary in (False, True):
        for keys in (False, True):
            runs[binary, keys] = sorted(copy_ceiling(dsn, *ceil[binary], binary, keys) for _ in range(a.copy_repeat))
    la1 = load()
    med = {k: v[len(v) // 2] for k, v in runs.items()}
    mp, up, wp = med[False, False]
    mb, ub, wb = med[False, True]
    ratio = s["rate"] / mp
    good = ratio >= 0.85
    print("COPY ceiling, the same %d rows into telemetry, 5,000 a transaction, 1 connection: %8.0f rows/s "
          "(runs %s)   [load %s -> %s]" % (n, mp, " ".join("%.0f" % x[0] for x in runs[False, False]), la0, la1))
    print("COPY of the same rows into telemetry + telemetry_keys (the persister's tables): %8.0f rows/s "
          "(runs %s)" % (mb, " ".join("%.0f" % x[0] for x in runs[False, True])))
    print("the same two in COPY's binary format (the persister's): %8.0f and %8.0f rows/s" %
          (med[True, False][0], med[True, True][0]))
    print("backend CPU per row (median run): %.2f us into telemetry, %.2f us with the keys: the keys cost "
          "%.2f us a row; WAL %.0f B/row, %.0f B/row with the keys; binary: %.2f and %.2f us" %
          (up, ub, ub - up, wp, wb, med[True, False][1], med[True, True][1]))
    print("saturation / COPY ceiling: %.2fx   target >= 0.85x: %s   (/ COPY incl. keys: %.2fx; "
          "/ binary COPY: %.2fx, incl. keys %.2fx)" %
          (ratio, "ok" if good else "MISSED", s["rate"] / mb, s["rate"] / med[True, False][0],
           s["rate"] / med[True, True][0]))
    return good


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/release/bin", help="directory of sluice-edge, sluice-persister, "
                    "edge_bench (a Release or RelWithDebInfo build)")
    ap.add_argument("--port", type=int, default=26950)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10, help="measured seconds per phase")
    ap.add_argument("--warmup", type=int, default=3, help="seconds of the same load before each measurement")
    ap.add_argument("--rates", default="10000,50000")
    ap.add_argument("--edge-workers", type=int, default=1)
    ap.add_argument("--persister-args", default="", help="extra flags for sluice-persister")
    ap.add_argument("--copy-repeat", type=int, default=3, help="COPY ceiling runs (median)")
    ap.add_argument("--warm-wal-mb", type=int, default=640,
                    help="MB of WAL written and checkpointed before the phases, so they reuse segments as a "
                    "database that has run a while does (0: a fresh cluster, every segment created on the way)")
    ap.add_argument("--keep", action="store_true", help="keep the PostgreSQL directory")
    ap.add_argument("--nice", type=int, default=0, help="run the whole stack (PostgreSQL included) at this nice "
                    "value, e.g. -10 on a box shared with other work (root only for < 0)")
    ap.add_argument("--rates-only", action="store_true",
                    help="only the fixed-rate phases (no saturation, no COPY ceiling): for A/B runs of the latency")
    ap.add_argument("--pg-set", action="append", default=[], metavar="NAME=VALUE",
                    help="a PostgreSQL setting for the private cluster (repeat), e.g. autovacuum=off")
    ap.add_argument("--slow-windows", action="store_true",
                    help="after each fixed-rate phase, where in time its acks over 10 ms were sent (100 ms windows): "
                    "a stall that recurs shows as a period")
    ap.add_argument("--locale", default=pgtest.LOCALE,
                    help="locale of the private cluster (initdb --locale; default %(default)s, the tests'; e.g."
                         " en_US.UTF-8, once made with locale-gen)")
    ap.add_argument("--wal-segsize", type=int, default=0, metavar="MB",
                    help="WAL segment size of the private cluster (pg_resetwal --wal-segsize; 0 = initdb's 16)")
    a = ap.parse_args()

    base = tempfile.mkdtemp(prefix="sl-e2e-")
    pgtest.LOCALE = a.locale
    pg = pgtest.Postgres(a.port + 20, os.path.join(base, "pg"))
    for kv in a.pg_set:
        pg.proc.argv += ["-c", kv]
    if a.wal_segsize:
        pg.prepare()  # pg_resetwal needs the cluster's files, not started
        pg.proc.argv += ["-c", "min_wal_size=%dMB" % max(80, 2 * a.wal_segsize)]  # PostgreSQL refuses less
        pgtest._as_postgres([os.path.join(pgtest.PG_BIN, "pg_resetwal"), "--wal-segsize", str(a.wal_segsize),
                             pg.data])
    dsn = pg.start()
    if a.nice:
        os.setpriority(os.PRIO_PROCESS, pg.proc.pid, a.nice)  # backends forked later inherit it
        for d in os.listdir("/proc"):  # and the auxiliary processes started already
            try:
                with open("/proc/%s/stat" % d) as f:
                    if d.isdigit() and int(f.read().rsplit(")", 1)[1].split()[1]) == pg.proc.pid:
                        os.setpriority(os.PRIO_PROCESS, int(d), a.nice)
            except (OSError, ValueError, IndexError):
                pass
    print("persister_e2e: %d devices, window 16, 64-byte bodies, %d s measured after %d s warm-up per phase; "
          "edge workers %d; persister flags: %s%s%s" % (a.devices, a.seconds, a.warmup, a.edge_workers,
                                                        a.persister_args or "(defaults)",
                                                        "; nice %d" % a.nice if a.nice else "",
                                                        "; PostgreSQL " + " ".join(a.pg_set) if a.pg_set else ""))
    if a.warm_wal_mb > 0:
        print("WAL: %d MB written and checkpointed first: %d segment files to reuse" %
              (a.warm_wal_mb, warm_wal(dsn, a.warm_wal_mb)))
    else:
        print("WAL: a fresh cluster (--warm-wal-mb 0): each 16 MB segment is created when first needed")
    print("load average at start: %s (2 cores)" % load())
    ok = True
    try:
        # A first run creates the schema (migrations) and the partitions, so every phase starts alike.
        sql_ready = False
        for phase_rate in [int(x) for x in a.rates.split(",") if x]:
            if sql_ready:
                empty_tables(dsn)
            r = run_bench(a, dsn, "rate", phase_rate, pg.proc.pid)
            sql_ready = True
            good = r["p50"] <= 2.0 and r["p99"] <= 10.0
            ok = ok and good
            print("rate %6d msgs/s offered: acked %8.0f/s  p50 %6.3f ms  p99 %7.3f ms  (p99.9 %.3f, max %.3f)"
                  "   target p50 <= 2 ms, p99 <= 10 ms: %s   [load %s]" %
                  (phase_rate, r["rate"], r["p50"], r["p99"], r["p999"], r["max"], "ok" if good else "MISSED",
                   r["load"]))
            show_cpu(r)
            if "slow" in r:
                print("    " + r["slow"])
        if not a.rates_only:
            ok = saturation_and_ceiling(a, dsn, pg.proc.pid, not sql_ready) and ok
        print("load average at end: %s" % load())
        print("RESULT: %s" % ("every target met" if ok else "some target MISSED"))
    finally:
        if a.keep:
            pg.stop()
            print("PostgreSQL data kept in %s" % base)
        else:
            pg.destroy()
            try:
                os.rmdir(base)
            except OSError:
                pass
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
