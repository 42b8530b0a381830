#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_19_big_batches: a batch of data rows only is written whole, in one of two forms by its size:
  - over DB_ONESHOT_MAX (128) rows, "BEGIN; COPY keys; COPY rows; COMMIT" as one query string, whose two COPYs
    the server asks for in turn (150-row batches here);
  - up to 128, one prepared statement that inserts the keys, then the rows, from binary arrays, in autocommit
    (45-row batches here).
For each form, each way it can fail ends in the same state as the steps sent one by one:
  - a body PostgreSQL refuses (NUL in jsonb, 22P05): dead-lettered, the rest stored;
  - a row for a day without a partition (23514): the partition is made, the batch stored;
  - a resend of stored rows (23505 on the keys, which go first in both forms): acked again, stored once, the new
    rows stored; resent to a day without a partition, no partition is made for it (the keys are refused before
    any row is routed: the one statement would make that day's partition if its rows went in first).
The COPYs are binary (the statement log shows it, for the staged resend path too): the first batch's values are
read back exactly in both forms (device_ts to the millisecond or NULL, received_at to the microsecond in both
tables, bytes a text COPY would escape), and a ts before year 1 is dead-lettered by the mapper (binary input would
take it as a year BC). Each batch is sent in one message; the rows-per-batch histogram shows each committed as one
batch, and PostgreSQL's statement log shows each batch of data rows only tried in its form. Every ack is checked
to follow a visible row (persister_common.collect)."""
import re
import time

import msgpack

from persister_common import collations, collect, core_persister, partitions, pe

PORT = 22950  # persister_NN: 22000 + 50 * NN (persister.cmake)
DAY_NS = 86400 * 10**9
DB_ONESHOT_MAX = 128  # persister/db.h
N_COPY = 150  # over DB_ONESHOT_MAX: BEGIN, both COPYs and COMMIT as one query string
N_ONE = 45  # at most DB_ONESHOT_MAX: one statement over binary arrays, in autocommit


def batches(p):
    return (p.metric("sluice_persister_batch_rows_count", 0), p.metric("sluice_persister_batch_rows_sum", 0))


def send_one_batch(p, edge, env, ents):
    """Send ents in one message, wait for every ack, and check they were committed as one batch."""
    c0, s0 = batches(p)
    edge.acks.clear()
    edge.send(*ents)
    collect(edge, env, {(e[3], e[5]) for e in ents})
    c1, s1 = batches(p)
    assert (c1 - c0, s1 - s0) == (1, len(ents)), "committed as %d batches of %d rows in all" % (c1 - c0, s1 - s0)


def logged(env, pattern):
    """How many times PostgreSQL's statement log matches pattern: every statement that ends is logged
    ("statement: ..." for a simple query, "execute <name>: ..." for a prepared one), and one that fails is quoted
    after its error ("STATEMENT:  ...")."""
    with open(env.pg.log, errors="replace") as f:
        return len(re.findall(pattern, f.read()))


# A transaction in the one-string COPY form, both COPYs binary.
ONE_STRING = (r"(?:statement: |STATEMENT:  )BEGIN;COPY telemetry_keys \([a-z_, ]+\) FROM STDIN "
              r"\(FORMAT binary\);COPY telemetry \([a-z_, ]+\) FROM STDIN \(FORMAT binary\);COMMIT")
# The small batches' one statement, in autocommit.
ONE_STATEMENT = r"(?:execute rows: |STATEMENT:  )WITH k AS \(INSERT INTO telemetry_keys"
# A COPY into the resend path's staging table, in binary format.
STAGED_BINARY = r"statement: COPY sl_stage \([a-z_, ]+\) FROM STDIN \(FORMAT binary\)"


def forms(env):
    return logged(env, ONE_STATEMENT), logged(env, ONE_STRING)


def scenario(p, edge, env, n, pre):
    """Every way the whole-batch form of batches of n rows can fail, on devices named pre-*."""
    now = time.time_ns()
    at = now // 1000 * 1000 + 123456789 % 1000  # ns; received_at keeps the microseconds
    ts = 1764358200123
    devs = "('%s-0', '%s-1', '%s-2')" % (pre, pre, pre)
    plain = [pe.data("%s-%d" % (pre, i % 3), i, {"i": i, "s": "t\tn\nb\\ é"}, ts=ts + i if i % 2 else None,
                     at_ns=at + i * 1000) for i in range(1, n + 1)]
    send_one_batch(p, edge, env, plain)
    assert env.sql("SELECT count(*) FROM telemetry WHERE device_id IN " + devs)[0][0] == n
    assert env.sql("SELECT count(*) FROM telemetry_keys WHERE device_id IN " + devs)[0][0] == n
    got = env.sql("SELECT seq, device_id, (extract(epoch FROM device_ts) * 1000)::bigint,"
                  " (extract(epoch FROM received_at) * 1000000)::bigint, edge_id, body FROM telemetry"
                  " WHERE device_id IN " + devs + " ORDER BY seq")
    want = [(i, "%s-%d" % (pre, i % 3), ts + i if i % 2 else None, (at + i * 1000) // 1000, edge.edge_id,
             {"i": i, "s": "t\tn\nb\\ é"}) for i in range(1, n + 1)]
    assert got == want, (got[:2], want[:2])
    same = env.sql("SELECT count(*) FROM telemetry t JOIN telemetry_keys k USING (device_id, seq, received_at)"
                   " WHERE device_id IN " + devs)
    assert same[0][0] == n, same
    print("ok: %d new rows in one batch, one transaction, every value as sent" % n)

    nul = msgpack.packb({"s": "a\x00b"}, use_bin_type=True)
    poison = [pe.data(pre + "-p", i, {"i": i}) for i in range(1, n + 1)]
    poison[10] = pe.data(pre + "-p", 11, body_raw=nul)
    poison[30] = pe.data(pre + "-p", 31, body_raw=nul)
    send_one_batch(p, edge, env, poison)
    good = [r[0] for r in env.sql("SELECT seq FROM telemetry WHERE device_id=%s ORDER BY seq", (pre + "-p",))]
    assert good == [i for i in range(1, n + 1) if i not in (11, 31)], good
    rej = env.sql("SELECT seq, error FROM telemetry_rejected WHERE device_id=%s ORDER BY seq", (pre + "-p",))
    assert [r[0] for r in rej] == [11, 31] and all("0000" in r[1] for r in rej), rej
    print("ok: 2 bodies PostgreSQL refuses dead-lettered, %d rows of their batch stored" % len(good))

    # A row the mapper refuses keeps its batch out of the whole-batch form (it goes step by step, still COPY).
    years = [pe.data(pre + "-y", i, {"i": i}) for i in range(1, n + 1)]
    years[20] = pe.data(pre + "-y", 21, {"i": 21}, ts=-62135596800001)  # 0001-01-01 minus 1 ms
    years[22] = pe.data(pre + "-y", 23, {"i": 23}, ts=-62135596800000)  # 0001-01-01: the first taken
    send_one_batch(p, edge, env, years)
    k = env.sql("SELECT count(*) FROM telemetry WHERE device_id=%s", (pre + "-y",))[0][0]
    assert k == n - 1, k
    rej = env.sql("SELECT seq, error FROM telemetry_rejected WHERE device_id=%s", (pre + "-y",))
    assert rej == [(21, "ts out of range")], rej
    first = env.sql("SELECT to_char(device_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS BC')"
                    " FROM telemetry WHERE device_id=%s AND seq=23", (pre + "-y",))
    assert first == [("0001-01-01 00:00:00.000 AD",)], first
    print("ok: a ts before year 1 dead-lettered, one at 0001-01-01 stored, %d rows of their batch stored" % k)

    far = (now // DAY_NS + 500) * DAY_NS + 3600 * 10**9  # 500 days ahead: no partition yet
    nopart = [pe.data(pre + "-n", i, {"i": i}, at_ns=far if i % 9 == 0 else now) for i in range(1, n + 1)]
    send_one_batch(p, edge, env, nopart)
    k = env.sql("SELECT count(*), count(*) FILTER (WHERE received_at > now() + interval '400 days')"
                " FROM telemetry WHERE device_id=%s", (pre + "-n",))[0]
    assert k == (n, n // 9), k
    assert env.sql("SELECT count(*) FROM telemetry_rejected WHERE device_id=%s", (pre + "-n",))[0][0] == 0
    print("ok: %d rows for a day without a partition stored with the rest of their batch" % (n // 9))

    dups0 = p.metric("sluice_persister_rows_duplicate_total", 0)
    resend = [pe.data("%s-%d" % (pre, i % 3), i, {"i": "again"}) for i in range(n - 19, n + 1)]
    new = n - 20  # a batch of n rows, so that it takes the same form
    resend += [pe.data("%s-%d" % (pre, i % 3), i, {"i": i}) for i in range(n + 1, n + 1 + new)]
    send_one_batch(p, edge, env, resend)
    k = env.sql("SELECT count(*), count(DISTINCT (device_id, seq)) FROM telemetry WHERE device_id IN " + devs)
    assert k[0] == (n + new, n + new), k
    assert env.sql("SELECT count(*) FROM telemetry WHERE body->>'i' = 'again'")[0][0] == 0
    dups = p.metric("sluice_persister_rows_duplicate_total", 0) - dups0
    assert dups == 20, dups
    print("ok: 20 resends acked and stored once, %d new rows of their batch stored" % new)


def resend_to_a_day_without_partition(p, edge, env, n, pre):
    """n stored rows resent with a receive time on a day without a partition: their keys are refused first
    (23505), so the resend path finds them stored and nothing is routed to that day. Were the rows inserted
    before their keys, the missing partition (23514) would come first, and the persister would make it."""
    rows = [pe.data(pre + "-r", i, {"i": i}) for i in range(1, n + 1)]
    send_one_batch(p, edge, env, rows)
    far = (time.time_ns() // DAY_NS + 700) * DAY_NS  # 700 days ahead: no partition
    before, dups0 = partitions(env), p.metric("sluice_persister_rows_duplicate_total", 0)
    send_one_batch(p, edge, env, [pe.data(pre + "-r", i, {"i": i}, at_ns=far) for i in range(1, n + 1)])
    assert p.metric("sluice_persister_rows_duplicate_total", 0) - dups0 == n
    assert partitions(env) == before, sorted(partitions(env) - before)
    k = env.sql("SELECT count(*) FROM telemetry WHERE device_id=%s AND received_at < now() + interval '1 day'",
                (pre + "-r",))[0][0]
    assert k == n, k
    print("ok: %d rows resent to a day without a partition: keys refused first, stored once, no partition made" % n)


def main():
    # Each form in a database and persister of its own: a resend leaves its lane on the staged path for the next
    # batches (WRITER_STAGED_AFTER_DUP), which the other form's batches would take.
    for n, pre, port in ((N_ONE, "small", PORT + 10), (N_COPY, "big", PORT)):
        with core_persister(port, batch_max=N_COPY) as (env, p, edge):
            env.sql("ALTER SYSTEM SET log_min_duration_statement = 0")
            env.sql("SELECT pg_reload_conf()")
            scenario(p, edge, env, n, pre)
            # Each of the four batches of data rows only was tried in its whole-batch form first (the step-by-step
            # way sends BEGIN and each COPY as statements of their own): the round trips this form saves are what
            # it is for. Five: those four, and the retry once the missing partition was made.
            got = forms(env)
            assert got == ((5, 0) if n <= DB_ONESHOT_MAX else (0, 5)), got
            assert logged(env, STAGED_BINARY) >= 1, "the resend path's COPY was not logged in binary format"
            print("ok: %d transactions as the one statement, %d in the one-string COPY form" % got)
            # A fresh database compares device ids bytewise (migration 007) in the tables of the hot path, and the
            # partitions made since inherit it.
            coll = collations(env, ["telemetry", "telemetry_keys", "device_sessions"] + sorted(partitions(env)))
            assert len(coll) >= 5 and set(coll.values()) == {"C"}, coll
            print("ok: device_id COLLATE \"C\" in %d tables" % len(coll))
        # In a persister of its own too: the resend leaves its lane on the staged path.
        with core_persister(port + 20, batch_max=N_COPY) as (env, p, edge):
            env.sql("ALTER SYSTEM SET log_min_duration_statement = 0")
            env.sql("SELECT pg_reload_conf()")
            resend_to_a_day_without_partition(p, edge, env, n, pre)
            got = forms(env)
            assert got == ((2, 0) if n <= DB_ONESHOT_MAX else (0, 2)), got
    print("PASS")


if __name__ == "__main__":
    main()
