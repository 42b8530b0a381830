#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_19_big_batches: a batch of data rows too big for SQL literals (over DB_ONESHOT_MAX, 32 rows) is
written as one query string, "BEGIN; COPY keys; COPY rows; COMMIT", whose two COPYs the server asks for in
turn. Each way that string can fail mid-way ends in the same state as the steps sent one by one:
  - a body PostgreSQL refuses (NUL in jsonb, 22P05, in the second COPY): dead-lettered, the rest stored;
  - a row for a day without a partition (23514 in the second COPY): the partition is made, the batch stored;
  - a resend of stored rows (23505 in the first COPY): acked again, stored once, the new rows stored.
The COPYs are binary (the statement log shows it, for the staged resend path too): the first batch's values
are read back exactly (device_ts to the millisecond or NULL, received_at to the microsecond in both tables, bytes
a text COPY would escape), and a ts before year 1 is dead-lettered by the mapper (binary input would take it as a
year BC). Every batch here is 45 rows, sent in one message; the rows-per-batch histogram shows each committed as
one batch, and PostgreSQL's statement log shows each batch of data rows only tried in that form. Every ack is
checked to follow a visible row (persister_common.collect)."""
import re
import time

import msgpack

from persister_common import collations, collect, core_persister, pe

PORT = 22950  # persister_NN: 22000 + 50 * NN (persister.cmake)
DAY_NS = 86400 * 10**9
N = 45


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


def one_string_commits(env):
    """How many transactions PostgreSQL logged in the one-string COPY form, both COPYs binary: every statement
    that ends is logged ("statement: ..."), and one that fails is quoted after its error ("STATEMENT:  ...")."""
    with open(env.pg.log, errors="replace") as f:
        return len(re.findall(r"(?:statement: |STATEMENT:  )BEGIN;COPY telemetry_keys \([a-z_, ]+\) FROM STDIN "
                              r"\(FORMAT binary\);COPY telemetry \([a-z_, ]+\) FROM STDIN \(FORMAT binary\);COMMIT",
                              f.read()))


def staged_binary_copies(env):
    """How many COPYs into the resend path's staging table PostgreSQL logged, in binary format."""
    with open(env.pg.log, errors="replace") as f:
        return len(re.findall(r"statement: COPY sl_stage \([a-z_, ]+\) FROM STDIN \(FORMAT binary\)", f.read()))


def main():
    with core_persister(PORT) as (env, p, edge):
        env.sql("ALTER SYSTEM SET log_min_duration_statement = 0")
        env.sql("SELECT pg_reload_conf()")
        now = time.time_ns()
        at = now // 1000 * 1000 + 123456789 % 1000  # ns; received_at keeps the microseconds
        ts = 1764358200123
        plain = [pe.data("big-%d" % (i % 3), i, {"i": i, "s": "t\tn\nb\\ é"}, ts=ts + i if i % 2 else None,
                         at_ns=at + i * 1000) for i in range(1, N + 1)]
        send_one_batch(p, edge, env, plain)
        assert env.sql("SELECT count(*) FROM telemetry")[0][0] == N
        assert env.sql("SELECT count(*) FROM telemetry_keys")[0][0] == N
        got = env.sql("SELECT seq, device_id, (extract(epoch FROM device_ts) * 1000)::bigint,"
                      " (extract(epoch FROM received_at) * 1000000)::bigint, edge_id, body FROM telemetry"
                      " ORDER BY seq")
        want = [(i, "big-%d" % (i % 3), ts + i if i % 2 else None, (at + i * 1000) // 1000, edge.edge_id,
                 {"i": i, "s": "t\tn\nb\\ é"}) for i in range(1, N + 1)]
        assert got == want, (got[:2], want[:2])
        same = env.sql("SELECT count(*) FROM telemetry t JOIN telemetry_keys k USING (device_id, seq, received_at)")
        assert same[0][0] == N, same
        print("ok: %d new rows in one batch, one transaction, every value as sent" % N)

        nul = msgpack.packb({"s": "a\x00b"}, use_bin_type=True)
        poison = [pe.data("big-p", i, {"i": i}) for i in range(1, N + 1)]
        poison[10] = pe.data("big-p", 11, body_raw=nul)
        poison[30] = pe.data("big-p", 31, body_raw=nul)
        send_one_batch(p, edge, env, poison)
        good = [r[0] for r in env.sql("SELECT seq FROM telemetry WHERE device_id='big-p' ORDER BY seq")]
        assert good == [i for i in range(1, N + 1) if i not in (11, 31)], good
        rej = env.sql("SELECT seq, error FROM telemetry_rejected WHERE device_id='big-p' ORDER BY seq")
        assert [r[0] for r in rej] == [11, 31] and all("0000" in r[1] for r in rej), rej
        print("ok: 2 bodies PostgreSQL refuses dead-lettered, %d rows of their batch stored" % len(good))

        # A row the mapper refuses keeps its batch out of the one-string form (it goes step by step, still COPY).
        years = [pe.data("big-y", i, {"i": i}) for i in range(1, N + 1)]
        years[20] = pe.data("big-y", 21, {"i": 21}, ts=-62135596800001)  # 0001-01-01 minus 1 ms
        years[22] = pe.data("big-y", 23, {"i": 23}, ts=-62135596800000)  # 0001-01-01: the first taken
        send_one_batch(p, edge, env, years)
        n = env.sql("SELECT count(*) FROM telemetry WHERE device_id='big-y'")[0][0]
        assert n == N - 1, n
        rej = env.sql("SELECT seq, error FROM telemetry_rejected WHERE device_id='big-y'")
        assert rej == [(21, "ts out of range")], rej
        first = env.sql("SELECT to_char(device_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS BC')"
                        " FROM telemetry WHERE device_id='big-y' AND seq=23")
        assert first == [("0001-01-01 00:00:00.000 AD",)], first
        print("ok: a ts before year 1 dead-lettered, one at 0001-01-01 stored, %d rows of their batch stored" % n)

        far = (now // DAY_NS + 500) * DAY_NS + 3600 * 10**9  # 500 days ahead: no partition yet
        nopart = [pe.data("big-n", i, {"i": i}, at_ns=far if i % 9 == 0 else now) for i in range(1, N + 1)]
        send_one_batch(p, edge, env, nopart)
        n = env.sql("SELECT count(*), count(*) FILTER (WHERE received_at > now() + interval '400 days')"
                    " FROM telemetry WHERE device_id='big-n'")[0]
        assert n == (N, N // 9), n
        assert env.sql("SELECT count(*) FROM telemetry_rejected WHERE device_id='big-n'")[0][0] == 0
        print("ok: %d rows for a day without a partition stored with the rest of their batch" % (N // 9))

        dups0 = p.metric("sluice_persister_rows_duplicate_total", 0)
        resend = [pe.data("big-%d" % (i % 3), i, {"i": "again"}) for i in range(N - 19, N + 1)]
        resend += [pe.data("big-%d" % (i % 3), i, {"i": i}) for i in range(N + 1, N + 26)]
        send_one_batch(p, edge, env, resend)
        n = env.sql("SELECT count(*), count(DISTINCT (device_id, seq)) FROM telemetry"
                    " WHERE device_id IN ('big-0', 'big-1', 'big-2')")
        assert n[0] == (N + 25, N + 25), n
        assert env.sql("SELECT count(*) FROM telemetry WHERE body->>'i' = 'again'")[0][0] == 0
        dups = p.metric("sluice_persister_rows_duplicate_total", 0) - dups0
        assert dups == 20, dups
        assert staged_binary_copies(env) >= 1, "the resend path's COPY was not logged in binary format"
        print("ok: 20 resends acked and stored once, 25 new rows of their batch stored")
        # Each of the four batches of data rows only was tried in the one-string form first (the step-by-step way
        # sends BEGIN and each COPY as statements of their own): the round trips this form saves are what it is
        # for. Five: those four, and the retry once the missing partition was made.
        assert one_string_commits(env) == 5, one_string_commits(env)
        print("ok: %d transactions in the one-string COPY form" % one_string_commits(env))

        # A fresh database compares device ids bytewise (migration 007) in the tables of the hot path, and the
        # partitions made since inherit it.
        parts = [r[0] for r in env.sql("SELECT inhrelid::regclass::text FROM pg_inherits"
                                       " WHERE inhparent = 'telemetry'::regclass")]
        coll = collations(env, ["telemetry", "telemetry_keys", "device_sessions"] + parts)
        assert len(coll) >= 5 and set(coll.values()) == {"C"}, coll
        print("ok: device_id COLLATE \"C\" in %d tables" % len(coll))
    print("PASS")


if __name__ == "__main__":
    main()
