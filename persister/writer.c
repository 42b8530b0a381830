/* SPDX-License-Identifier: Apache-2.0 */
/* writer.c - sequences one batch transaction, isolates poison rows, and
 * creates the partitions a batch's rows find missing.
 *
 * Why bisect under savepoints rather than retry rows singly: a batch with
 * one poison row costs ~2*log2(n) small statements instead of n, and the
 * good rows still commit in the same transaction as the dead letters, so
 * acks for the whole batch follow one COMMIT.
 *
 * Why a direct COPY first: with no row stored yet (the normal case) it is the
 * cheapest durable write PostgreSQL offers; duplicates only come from
 * resends, and unique_violation tells us exactly that.
 *
 * Why a missing partition is not a poison row: the row is fine, the table
 * lacks a place for it (an edge clock far off, or maintenance behind). The
 * writer rolls back, creates the partitions of the batch's periods and runs
 * the transaction again, at most WRITER_NOPART_ROUNDS times.
 *
 * Deliberately not here: libpq and what a server error means (db.c says
 * DB_DATA, DB_NOPART or DB_TRANSIENT), reconnect and backoff (lane.c), acks.
 * Calls go one way: writer -> db -> rows. Tests substitute the db_* calls at
 * link time (-Wl,--wrap). */
#include "writer.h"

#include <stdlib.h>
#include <string.h>

#include "part.h"

int writer_init(struct writer *w, struct db *db, uint32_t cap_rows)
{
    w->db = db;
    w->cap = cap_rows;
    w->staged_left = 0;
    w->part_days = 1;
    w->idx = calloc(cap_rows ? cap_rows : 1, sizeof *w->idx);
    return w->idx ? 0 : -1;
}

void writer_fini(struct writer *w)
{
    free(w->idx);
    w->idx = NULL;
}

static void mark(struct batch *b, const uint32_t *idx, uint32_t n, enum row_state s)
{
    for (uint32_t k = 0; k < n; k++)
        b->rows[idx[k]].state = (uint8_t)s;
}

static void set_err_from_db(struct writer *w, struct batch *b, uint32_t i)
{
    const char *e = db_last_error(w->db);
    batch_set_err(b, i, e, strlen(e));
}

/* Data rows idx[0..n) inside the open transaction, under savepoints.
 * Returns DB_OK (each row STORED or REJECT) or DB_TRANSIENT. */
static enum db_rc bisect_rows(struct writer *w, struct batch *b, uint32_t *idx, uint32_t n,
                              struct writer_stats *st)
{
    uint64_t ins = 0;
    st->attempts++;
    enum db_rc rc = db_rows(w->db, b, idx, n, DB_STAGED, true, &ins);
    if (rc == DB_OK) {
        st->inserted += ins;
        mark(b, idx, n, ROW_STORED);
        return DB_OK;
    }
    if (rc != DB_DATA)
        return rc == DB_NOPART ? DB_NOPART : DB_TRANSIENT;
    if (n == 1) {
        b->rows[idx[0]].state = ROW_REJECT;
        set_err_from_db(w, b, idx[0]);
        return DB_OK;
    }
    uint32_t h = n / 2;
    rc = bisect_rows(w, b, idx, h, st);
    if (rc != DB_OK)
        return rc;
    return bisect_rows(w, b, idx + h, n - h, st);
}

/* Session rows: a refused one is dropped (logged by the caller's counters). */
static enum db_rc bisect_sessions(struct writer *w, struct batch *b, uint32_t *idx, uint32_t n,
                                  struct writer_stats *st)
{
    enum db_rc rc = db_sessions(w->db, b, idx, n);
    if (rc == DB_OK) {
        st->sessions += n;
        mark(b, idx, n, ROW_STORED);
        return DB_OK;
    }
    if (rc != DB_DATA)
        return DB_TRANSIENT;
    if (n == 1) {
        b->rows[idx[0]].state = ROW_DROPPED;
        st->dropped++;
        return DB_OK;
    }
    uint32_t h = n / 2;
    rc = bisect_sessions(w, b, idx, h, st);
    if (rc != DB_OK)
        return rc;
    return bisect_sessions(w, b, idx + h, n - h, st);
}

static enum db_rc fail(struct writer *w)
{
    db_rollback(w->db);
    return DB_TRANSIENT;
}

/* Roll back after DB_NOPART (or anything else: transient). */
static enum db_rc fail_rc(struct writer *w, enum db_rc rc)
{
    db_rollback(w->db);
    return rc == DB_NOPART ? DB_NOPART : DB_TRANSIENT;
}

/* One attempt at the whole transaction: DB_OK, DB_NOPART or DB_TRANSIENT,
 * nothing committed unless DB_OK. */
static enum db_rc attempt(struct writer *w, struct batch *b, struct writer_stats *st)
{
    memset(st, 0, sizeof *st);
    uint64_t stale_found, stale_kept;
    db_conflicts(w->db, &stale_found, &stale_kept); /* counted by an attempt rolled back: forget */
    /* A retry starts from the mapper's verdicts: forget what a rolled-back
     * attempt decided, and the error texts it recorded. */
    size_t err_keep = 0;
    uint32_t nd = 0;
    for (uint32_t i = 0; i < b->nrows; i++) {
        struct row *r = &b->rows[i];
        if (r->bad) {
            r->state = ROW_BAD;
            if (r->err_off + r->err_len > err_keep)
                err_keep = r->err_off + r->err_len;
            continue;
        }
        r->state = ROW_NEW;
        if (r->kind == ENV_DATA)
            w->idx[nd++] = i;
    }
    b->err_len = err_keep;

    /* Data rows and nothing else, none known to be stored: the whole
     * transaction at once (one round trip for up to DB_ONESHOT_MAX rows,
     * three for more: db_rows_commit). If it fails, the steps below (which
     * take one round trip each) find out why. */
    bool refused = false;
    if (nd > 0 && nd == b->nrows && !w->staged_left) {
        uint64_t ins = 0;
        st->attempts++;
        enum db_rc rc = db_rows_commit(w->db, b, w->idx, nd, &ins);
        if (rc == DB_OK) {
            st->inserted = ins;
            st->stored = nd;
            mark(b, w->idx, nd, ROW_STORED);
            return DB_OK;
        }
        if (rc != DB_DATA)
            return fail_rc(w, rc);
        db_rollback(w->db);
        if (strcmp(db_last_sqlstate(w->db), "23505") == 0)
            w->staged_left = WRITER_STAGED_AFTER_DUP + 1; /* this batch and the next 16 */
        else
            refused = true; /* a row refused: straight to the bisect */
    }

    if (db_begin(w->db) != DB_OK)
        return fail(w);
    if (nd > 0 && refused) {
        enum db_rc rc = bisect_rows(w, b, w->idx, nd, st);
        if (rc != DB_OK)
            return fail_rc(w, rc);
    } else if (nd > 0) {
        uint64_t ins = 0;
        st->attempts++;
        enum db_path path = w->staged_left ? DB_STAGED : DB_DIRECT;
        if (w->staged_left)
            w->staged_left--;
        enum db_rc rc = db_rows(w->db, b, w->idx, nd, path, false, &ins);
        if (rc == DB_DATA && path == DB_DIRECT && strcmp(db_last_sqlstate(w->db), "23505") == 0) {
            /* A resend: some rows are stored already. Go the idempotent way. */
            w->staged_left = WRITER_STAGED_AFTER_DUP;
            db_rollback(w->db);
            if (db_begin(w->db) != DB_OK)
                return fail(w);
            st->attempts++;
            path = DB_STAGED;
            rc = db_rows(w->db, b, w->idx, nd, path, false, &ins);
        }
        st->staged = path == DB_STAGED;
        if (rc == DB_OK) {
            st->inserted = ins;
            mark(b, w->idx, nd, ROW_STORED);
        } else if (rc == DB_DATA) {
            /* The transaction is aborted: start again and find the culprits. */
            db_rollback(w->db);
            if (db_begin(w->db) != DB_OK)
                return fail(w);
            rc = bisect_rows(w, b, w->idx, nd, st);
            if (rc != DB_OK)
                return fail_rc(w, rc);
        } else {
            return fail_rc(w, rc);
        }
    }

    /* Dead letters: the rows PostgreSQL or the mapper refused. */
    for (uint32_t i = 0; i < b->nrows; i++) {
        struct row *r = &b->rows[i];
        if (r->kind != ENV_DATA)
            continue;
        if (r->state == ROW_STORED)
            st->stored++;
        if (r->state != ROW_REJECT && r->state != ROW_BAD)
            continue;
        enum db_rc rc = db_reject(w->db, b, i);
        if (rc == DB_TRANSIENT)
            return fail(w);
        if (rc == DB_OK) {
            st->dead++; /* becomes ROW_DEAD after the commit */
        } else {
            r->state = ROW_DROPPED;
            st->dropped++;
        }
    }

    uint32_t ns = 0;
    for (uint32_t i = 0; i < b->nrows; i++)
        if (b->rows[i].kind != ENV_DATA)
            w->idx[ns++] = i;
    if (ns > 0 && bisect_sessions(w, b, w->idx, ns, st) != DB_OK)
        return fail(w);

    if (db_commit(w->db) != DB_OK)
        return fail(w);
    db_conflicts(w->db, &st->conflicts, &st->conflicts_kept);

    /* Only now are the verdicts true. */
    for (uint32_t i = 0; i < b->nrows; i++) {
        struct row *r = &b->rows[i];
        if (r->kind == ENV_DATA && (r->state == ROW_REJECT || r->state == ROW_BAD))
            r->state = ROW_DEAD;
    }
    return DB_OK;
}

/* Make every period the batch's data rows fall in routable. The set holds
 * PART_SET_MAX periods: a batch spanning more (edge clocks all over the
 * place) is walked several times, each period asked for once. */
static enum db_rc ensure_partitions(struct writer *w, const struct batch *b, struct writer_stats *st)
{
    uint32_t from = 0;
    while (from < b->nrows) {
        struct part_set set = {0};
        uint32_t next = b->nrows;
        for (uint32_t i = from; i < b->nrows; i++) {
            const struct row *r = &b->rows[i];
            if (r->kind != ENV_DATA || r->bad)
                continue;
            if (part_set_add(&set, rows_at_us(r), w->part_days) < 0) {
                next = i; /* the first row whose period did not fit: start there next */
                break;
            }
        }
        for (unsigned k = 0; k < set.n; k++) {
            int created = 0;
            if (db_partition(w->db, set.p[k].lo_us, set.p[k].hi_us, &created) != DB_OK)
                return DB_TRANSIENT;
            st->partitions += (uint64_t)created;
        }
        from = next;
    }
    return DB_OK;
}

enum db_rc writer_commit(struct writer *w, struct batch *b, struct writer_stats *st)
{
    uint64_t created = 0;
    for (unsigned round = 0;; round++) {
        enum db_rc rc = attempt(w, b, st);
        st->partitions = created;
        if (rc != DB_NOPART)
            return rc;
        if (round >= WRITER_NOPART_ROUNDS)
            return DB_TRANSIENT; /* created, and still missing: dropped meanwhile? retried later */
        if (ensure_partitions(w, b, st) != DB_OK)
            return DB_TRANSIENT;
        created = st->partitions;
    }
}
