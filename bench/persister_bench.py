#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_bench - durable rows/s through sluice-persister alone (a Python
edge, acks after COMMIT) against the ceiling: a plain COPY of the same rows
into tables of the same shape as telemetry (partitioned by received_at, a
partition with primary key (device_id, seq) and a BRIN index) and
telemetry_keys, in the same run, on the same PostgreSQL. Also measures, at
the SQL level with the same rows and batch size (into the partitioned shape,
without keys), the two candidate idempotent write paths: (a) COPY into a
TEMP staging table + INSERT ... SELECT ... ON CONFLICT DO NOTHING, and (b)
one INSERT ... SELECT FROM unnest($1::text[], ...) ON CONFLICT DO NOTHING.
bench/persister_e2e.py measures the whole path (devices, edge) instead.

    /usr/bin/python3 bench/persister_bench.py --bin build/bin/sluice-persister [--rows 200000]

Starts its own PostgreSQL (tests/integration/pgtest.py) on --port (default
26900) and the persister on the next ports. Not a test: prints figures.
"""
import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time

import msgpack
import psycopg2
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../tests/integration"))
import pgtest  # noqa: E402
import persister_edge as pe  # noqa: E402
import wire  # noqa: E402

SHAPE = """(device_id text NOT NULL, seq bigint NOT NULL, device_ts timestamptz NULL,
           received_at timestamptz NOT NULL, edge_id text NOT NULL, body jsonb NOT NULL)
           PARTITION BY RANGE (received_at)"""


def make_rows(n, devices):
    base_ms = 1764358200000
    rows = []
    for i in range(n):
        body = {"temp": 21.5 + (i % 100) / 10, "hum": 40.25, "on": i % 2 == 0, "n": i, "site": "plant-7",
                "tags": ["a", "b"], "volt": 229.87}
        rows.append(("dev-%05d" % (i % devices), i // devices + 1, base_ms + i, time.time_ns(), body))
    return rows


def ts_text(us):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(us // 1000000)) + ".%06d+00" % (us % 1000000)


def copy_text(rows, edge):
    out = io.StringIO()
    for dev, seq, ts, at, body in rows:
        out.write("%s\t%d\t%s\t%s\t%s\t%s\n" % (dev, seq, ts_text(ts * 1000), ts_text(at // 1000), edge,
                                                json.dumps(body, separators=(",", ":"))))
    return out.getvalue()


def fresh_table(cur, name):
    """name: telemetry's shape (one partition, as a day of rows would have); name_keys: telemetry_keys's."""
    cur.execute("DROP TABLE IF EXISTS %s, %s_keys" % (name, name))
    cur.execute("CREATE TABLE %s %s" % (name, SHAPE))
    cur.execute("CREATE TABLE %s_p PARTITION OF %s FOR VALUES FROM (MINVALUE) TO (MAXVALUE)" % (name, name))
    cur.execute("ALTER TABLE %s_p ADD PRIMARY KEY (device_id, seq)" % name)
    cur.execute("CREATE INDEX ON %s_p USING brin (received_at)" % name)
    cur.execute("CREATE TABLE %s_keys (device_id text NOT NULL, seq bigint NOT NULL, received_at timestamptz "
                "NOT NULL, PRIMARY KEY (device_id, seq))" % name)
    cur.execute("CREATE INDEX ON %s_keys USING brin (received_at)" % name)
    cur.execute("CHECKPOINT")


def bench_copy_ceiling(dsn, rows, edge):
    c = psycopg2.connect(dsn)
    cur = c.cursor()
    fresh_table(cur, "ceiling")
    c.commit()
    text = copy_text(rows, edge)
    keys = "".join("\t".join(line.split("\t")[i] for i in (0, 1, 3)) + "\n" for line in text.splitlines())
    t0 = time.perf_counter()
    cur.copy_expert("COPY ceiling_keys FROM STDIN", io.StringIO(keys))
    cur.copy_expert("COPY ceiling FROM STDIN", io.StringIO(text))
    c.commit()
    dt = time.perf_counter() - t0
    c.close()
    return len(rows) / dt


def bench_stage(dsn, rows, edge, batch):
    c = psycopg2.connect(dsn)
    cur = c.cursor()
    fresh_table(cur, "via_stage")
    cur.execute("CREATE TEMP TABLE stage (LIKE via_stage) ON COMMIT DELETE ROWS")
    c.commit()
    chunks = [copy_text(rows[i:i + batch], edge) for i in range(0, len(rows), batch)]
    t0 = time.perf_counter()
    for ch in chunks:
        cur.copy_expert("COPY stage FROM STDIN", io.StringIO(ch))
        cur.execute("INSERT INTO via_stage SELECT * FROM stage ON CONFLICT DO NOTHING")
        c.commit()
    dt = time.perf_counter() - t0
    c.close()
    return len(rows) / dt


def bench_direct(dsn, rows, edge, batch):
    c = psycopg2.connect(dsn)
    cur = c.cursor()
    fresh_table(cur, "via_direct")
    c.commit()
    chunks = [copy_text(rows[i:i + batch], edge) for i in range(0, len(rows), batch)]
    t0 = time.perf_counter()
    for ch in chunks:
        cur.copy_expert("COPY via_direct FROM STDIN", io.StringIO(ch))
        c.commit()
    dt = time.perf_counter() - t0
    c.close()
    return len(rows) / dt


def arr(vals):
    def q(v):
        if v is None:
            return "NULL"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "{" + ",".join(q(v) for v in vals) + "}"


def bench_unnest(dsn, rows, edge, batch):
    c = psycopg2.connect(dsn)
    cur = c.cursor()
    fresh_table(cur, "via_unnest")
    c.commit()
    params = []
    for i in range(0, len(rows), batch):
        ch = rows[i:i + batch]
        params.append((arr(r[0] for r in ch), arr(r[1] for r in ch), arr(ts_text(r[2] * 1000) for r in ch),
                       arr(ts_text(r[3] // 1000) for r in ch), arr(edge for _ in ch),
                       arr(json.dumps(r[4], separators=(",", ":")) for r in ch)))
    sql = ("INSERT INTO via_unnest SELECT * FROM unnest(%s::text[], %s::int8[], %s::timestamptz[],"
           " %s::timestamptz[], %s::text[], %s::jsonb[]) ON CONFLICT DO NOTHING")
    t0 = time.perf_counter()
    for p in params:
        cur.execute(sql, p)
        c.commit()
    dt = time.perf_counter() - t0
    c.close()
    return len(rows) / dt


def bench_persister(binary, dsn, port, rows, edge_id, per_msg, batch_max, batch_ms):
    p = pe.Persister(binary, dsn, port + 1, port + 2, port + 3,
                     ["--batch-max", str(batch_max), "--batch-ms", str(batch_ms), "--log-level", "warn"])
    try:
        p.wait_ready()
        edge = pe.Edge([p.pull], [p.router], edge_id=edge_id)
        edge.push.setsockopt(zmq.SNDHWM, 100000)
        msgs = []
        for i in range(0, len(rows), per_msg):
            ents = [wire.entry(wire.DATA, 1, 1, dev, 1, seq, ts, at, body=msgpack.packb(body))
                    for dev, seq, ts, at, body in rows[i:i + per_msg]]
            msgs.append(wire.batch(edge_id, edge.inc, edge.reply, ents))
        time.sleep(0.3)
        nacks = 0
        unp = msgpack.Unpacker(raw=False)
        t0 = time.perf_counter()
        k = 0
        while nacks < len(rows):
            while k < len(msgs):
                try:
                    edge.push.send(msgs[k], zmq.NOBLOCK)
                    k += 1
                except zmq.Again:
                    break
            if edge.dealer.poll(5 if k < len(msgs) else 1000):
                while True:
                    try:
                        buf = edge.dealer.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    # entries after the header: count them
                    unp.feed(buf)
                    n = sum(1 for _ in unp) - 1
                    nacks += n
            elif k >= len(msgs) and time.perf_counter() - t0 > 600:
                raise RuntimeError("acks stalled at %d" % nacks)
        dt = time.perf_counter() - t0
        # keys without the sluice_persister_ prefix, to keep the report lines short
        metrics = {m: p.metric("sluice_persister_" + m)
                   for m in ("rows_committed_total", "db_retries_total", "batch_rows_count", "commit_seconds_sum")}
        edge.close()
        return len(rows) / dt, metrics
    finally:
        p.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "../build/bin/sluice-persister"))
    ap.add_argument("--rows", type=int, default=200000)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--per-msg", type=int, default=100, help="entries per edge batch message")
    ap.add_argument("--batch-max", type=int, default=2000)
    ap.add_argument("--batch-ms", type=int, default=0)
    ap.add_argument("--port", type=int, default=26900)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-sql", action="store_true", help="only persister vs ceiling")
    a = ap.parse_args()

    d = tempfile.mkdtemp(prefix="sl-pbench-")
    pg = pgtest.Postgres(a.port, os.path.join(d, "pg"))
    dsn = pg.start()
    try:
        rows = make_rows(a.rows, a.devices)
        edge = "bench-edge:7000"
        print("rows=%d devices=%d per_msg=%d batch_max=%d batch_ms=%d repeat=%d" %
              (a.rows, a.devices, a.per_msg, a.batch_max, a.batch_ms, a.repeat))
        e2es, ceils = [], []
        for r in range(a.repeat):
            c = psycopg2.connect(dsn)
            c.autocommit = True
            cur = c.cursor()
            cur.execute("SELECT to_regclass('telemetry') IS NOT NULL")
            if cur.fetchone()[0]:
                cur.execute("TRUNCATE telemetry, telemetry_keys")
            cur.execute("CHECKPOINT")
            c.close()
            # alternate the order so background load and checkpoints hit both sides alike
            if r % 2:
                ceils.append(bench_copy_ceiling(dsn, rows, edge))
            e2e, m = bench_persister(a.bin, dsn, a.port, rows, edge, a.per_msg, a.batch_max, a.batch_ms)
            e2es.append(e2e)
            c = psycopg2.connect(dsn)
            cur = c.cursor()
            cur.execute("SELECT count(*) FROM telemetry")
            stored = cur.fetchone()[0]
            c.close()
            assert stored == len(rows), stored
            if not r % 2:
                ceils.append(bench_copy_ceiling(dsn, rows, edge))
            print("run %d: persister %8.0f rows/s (commit_s=%.2f batches=%d)  COPY ceiling %8.0f rows/s  -> %5.1f %%" %
                  (r + 1, e2e, m["commit_seconds_sum"], m["batch_rows_count"], ceils[-1], 100.0 * e2e / ceils[-1]))
        me, mc = statistics.median(e2es), statistics.median(ceils)
        print("median: persister end-to-end (acked, durable) %8.0f rows/s" % me)
        print("median: plain COPY ceiling (keys + rows, 1 tx) %8.0f rows/s" % mc)
        print("median ratio: %.1f %%" % (100.0 * me / mc))
        if not a.skip_sql:
            st = bench_stage(dsn, rows, edge, a.batch_max)
            un = bench_unnest(dsn, rows, edge, a.batch_max)
            dc = bench_direct(dsn, rows, edge, a.batch_max)
            print("SQL direct COPY into the table, %d/tx:                 %8.0f rows/s" % (a.batch_max, dc))
            print("SQL (a) COPY->temp stage + INSERT ON CONFLICT, %d/tx: %8.0f rows/s" % (a.batch_max, st))
            print("SQL (b) INSERT ... unnest(text[]...) ON CONFLICT, %d/tx: %8.0f rows/s" % (a.batch_max, un))
    finally:
        pg.destroy()


if __name__ == "__main__":
    main()
