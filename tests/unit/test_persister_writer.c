/* SPDX-License-Identifier: Apache-2.0 */
/* test_persister_writer.c - the persister's transaction sequencing and
 * poison-row bisect (persister/writer.c), with every db_* step replaced at
 * link time (-Wl,--wrap=db_rows, ...) by a fake executor: rows whose seq is
 * in the poison set fail with a data error, rows of a day without partition
 * fail with DB_NOPART until db_partition creates it, and a transient failure
 * can be injected at the Nth call. No database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "part.h"
#include "writer.h"

/* ---- fake executor ---------------------------------------------------- */

static struct {
    bool poison[1024]; /* by seq */
    bool reject_fails[1024];
    int calls;             /* every db_* step */
    int fail_transient_at; /* the call number that fails transiently; 0 = never */
    bool commit_fails;
    int begins, commits, rollbacks, rows_calls, rejects, sessions;
    bool in_tx;
    char err[128];
    const char *sqlstate;
    bool stored[1024]; /* by seq: already in telemetry (a resend) */
    int direct_calls;
    int64_t missing[8]; /* day starts (us) with no partition */
    int nmissing;
    bool never_created; /* db_partition says it created, the day stays missing */
    int partition_calls, nopart_returns;
    int oneshots;            /* db_rows_commit calls */
    bool conflict[1024];     /* by seq: stored with another body; a staged write finds it */
    uint64_t conflicts_seen; /* found by staged writes since db_conflicts last read them */
} F;

static bool day_missing(int64_t at_us)
{
    int64_t lo = part_period_of(at_us, 1).lo_us;
    for (int k = 0; k < F.nmissing; k++)
        if (F.missing[k] == lo)
            return true;
    return false;
}

static enum db_rc step(void)
{
    F.calls++;
    if (F.fail_transient_at && F.calls == F.fail_transient_at) {
        snprintf(F.err, sizeof F.err, "server closed the connection");
        return DB_TRANSIENT;
    }
    return DB_OK;
}

enum db_rc __wrap_db_begin(struct db *d);
enum db_rc __wrap_db_begin(struct db *d)
{
    (void)d;
    assert_false(F.in_tx);
    F.begins++;
    F.in_tx = true;
    return step();
}

enum db_rc __wrap_db_commit(struct db *d);
enum db_rc __wrap_db_commit(struct db *d)
{
    (void)d;
    assert_true(F.in_tx);
    F.in_tx = false;
    if (F.commit_fails)
        return DB_TRANSIENT;
    enum db_rc rc = step();
    if (rc == DB_OK)
        F.commits++;
    return rc;
}

void __wrap_db_rollback(struct db *d);
void __wrap_db_rollback(struct db *d)
{
    (void)d;
    F.rollbacks++;
    F.in_tx = false;
}

enum db_rc __wrap_db_rows(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n,
                          enum db_path path, bool savepoint, uint64_t *inserted);
enum db_rc __wrap_db_rows(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n,
                          enum db_path path, bool savepoint, uint64_t *inserted)
{
    (void)d;
    (void)savepoint;
    assert_true(F.in_tx);
    F.rows_calls++;
    if (path == DB_DIRECT)
        F.direct_calls++;
    *inserted = 0;
    F.sqlstate = "";
    enum db_rc rc = step();
    if (rc != DB_OK)
        return rc;
    for (uint32_t k = 0; k < n; k++) {
        if (day_missing(rows_at_us(&b->rows[idx[k]]))) {
            F.sqlstate = "23514";
            snprintf(F.err, sizeof F.err, "no partition of relation \"telemetry\" found for row");
            F.nopart_returns++;
            return DB_NOPART;
        }
    }
    uint64_t dups = 0;
    for (uint32_t k = 0; k < n; k++) {
        if (F.stored[b->rows[idx[k]].seq])
            dups++;
    }
    if (dups && path == DB_DIRECT) {
        F.sqlstate = "23505";
        snprintf(F.err, sizeof F.err, "duplicate key value violates unique constraint");
        return DB_DATA;
    }
    for (uint32_t k = 0; k < n; k++) {
        const struct row *r = &b->rows[idx[k]];
        assert_int_equal(r->kind, ENV_DATA);
        assert_false(r->bad); /* mapper-refused rows never reach telemetry */
        if (F.poison[r->seq]) {
            snprintf(F.err, sizeof F.err, "unsupported Unicode escape sequence (seq %llu)",
                     (unsigned long long)r->seq);
            F.sqlstate = "22P05";
            return DB_DATA;
        }
    }
    *inserted = n - dups;
    if (path == DB_STAGED)
        for (uint32_t k = 0; k < n; k++)
            F.conflicts_seen += F.conflict[b->rows[idx[k]].seq];
    return DB_OK;
}

void __wrap_db_conflicts(struct db *d, uint64_t *found, uint64_t *kept);
void __wrap_db_conflicts(struct db *d, uint64_t *found, uint64_t *kept)
{
    (void)d;
    *found = *kept = F.conflicts_seen;
    F.conflicts_seen = 0;
}

/* The one-round-trip transaction: BEGIN, a direct write and COMMIT, as the
 * steps above count them. On failure the transaction stays open (aborted)
 * for the caller's rollback, as the server leaves it. */
enum db_rc __wrap_db_rows_commit(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n,
                                 uint64_t *inserted);
enum db_rc __wrap_db_rows_commit(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n,
                                 uint64_t *inserted)
{
    F.oneshots++;
    enum db_rc rc = __wrap_db_begin(d);
    if (rc != DB_OK)
        return rc;
    rc = __wrap_db_rows(d, b, idx, n, DB_DIRECT, false, inserted);
    if (rc != DB_OK)
        return rc;
    return __wrap_db_commit(d);
}

enum db_rc __wrap_db_sessions(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n);
enum db_rc __wrap_db_sessions(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n)
{
    (void)d;
    (void)b;
    (void)idx;
    F.sessions += (int)n;
    return step();
}

enum db_rc __wrap_db_reject(struct db *d, const struct batch *b, uint32_t i);
enum db_rc __wrap_db_reject(struct db *d, const struct batch *b, uint32_t i)
{
    (void)d;
    assert_true(F.in_tx);
    F.rejects++;
    enum db_rc rc = step();
    if (rc != DB_OK)
        return rc;
    assert_true(b->rows[i].err_len > 0);
    return F.reject_fails[b->rows[i].seq] ? DB_DATA : DB_OK;
}

enum db_rc __wrap_db_partition(struct db *d, int64_t lo_us, int64_t hi_us, int *created);
enum db_rc __wrap_db_partition(struct db *d, int64_t lo_us, int64_t hi_us, int *created)
{
    (void)d;
    assert_false(F.in_tx); /* autocommit, after the rollback */
    assert_int_equal(hi_us - lo_us, PART_DAY_US);
    F.partition_calls++;
    *created = 0;
    for (int k = 0; k < F.nmissing; k++) {
        if (F.missing[k] == lo_us) {
            *created = 1;
            if (!F.never_created)
                F.missing[k] = F.missing[--F.nmissing];
            break;
        }
    }
    return DB_OK;
}

const char *__wrap_db_last_sqlstate(const struct db *d);
const char *__wrap_db_last_sqlstate(const struct db *d)
{
    (void)d;
    return F.sqlstate ? F.sqlstate : "";
}

const char *__wrap_db_last_error(const struct db *d);
const char *__wrap_db_last_error(const struct db *d)
{
    (void)d;
    return F.err;
}

/* ---- helpers ------------------------------------------------------------ */

static const uint8_t body_a1[] = {0x81, 0xa1, 'a', 0x01};

static void fill(struct batch *b, uint32_t n)
{
    assert_int_equal(batch_init(b, n + 4, 64u * 1024u), 0);
    struct envelope_hdr h = {
        .v = 1, .edge = {(const uint8_t *)"e", 1}, .incarnation = 1, .reply = {(const uint8_t *)"e/0", 3}};
    assert_int_equal(batch_peer(b, &h), 0);
    for (uint32_t s = 1; s <= n; s++) {
        struct envelope e = {.kind = ENV_DATA,
                             .dev = {(const uint8_t *)"d", 1},
                             .seq = s,
                             .body = {body_a1, sizeof body_a1},
                             .has_body = true};
        assert_int_equal(batch_add(b, 0, &e), SL_OK);
    }
}

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof F);
    return 0;
}

static void run(struct batch *b, enum db_rc want, struct writer_stats *st)
{
    struct writer w;
    assert_int_equal(writer_init(&w, NULL, b->cap_rows), 0);
    assert_int_equal(writer_commit(&w, b, st), want);
    assert_false(F.in_tx); /* committed or rolled back, never left open */
    writer_fini(&w);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_clean_batch_one_attempt(void **state)
{
    (void)state;
    struct batch b;
    struct writer_stats st;
    fill(&b, 100);
    run(&b, DB_OK, &st);
    assert_int_equal(F.rows_calls, 1);
    assert_int_equal(F.commits, 1);
    assert_int_equal(F.rollbacks, 0);
    assert_int_equal(st.stored, 100);
    assert_int_equal(st.inserted, 100);
    for (uint32_t i = 0; i < b.nrows; i++)
        assert_int_equal(b.rows[i].state, ROW_STORED);
    batch_fini(&b);
}

static void check_poison(uint32_t n, const uint32_t *bad, uint32_t nbad)
{
    memset(&F, 0, sizeof F);
    for (uint32_t k = 0; k < nbad; k++)
        F.poison[bad[k]] = true;
    struct batch b;
    struct writer_stats st;
    fill(&b, n);
    run(&b, DB_OK, &st);
    assert_int_equal(F.commits, 1);
    assert_int_equal(F.rollbacks, 1); /* the failed fast path only */
    assert_int_equal(F.rejects, (int)nbad);
    assert_int_equal(st.dead, nbad);
    assert_int_equal(st.stored, n - nbad);
    for (uint32_t i = 0; i < b.nrows; i++) {
        const struct row *r = &b.rows[i];
        if (F.poison[r->seq]) {
            assert_int_equal(r->state, ROW_DEAD);
            char want[64];
            snprintf(want, sizeof want, "(seq %llu)", (unsigned long long)r->seq);
            assert_non_null(strstr(b.err + r->err_off, want)); /* its own error text */
        } else {
            assert_int_equal(r->state, ROW_STORED);
        }
    }
    batch_fini(&b);
}

static void test_poison_bisect(void **state)
{
    (void)state;
    static const uint32_t one[] = {37};
    check_poison(100, one, 1);
    /* bisect cost is logarithmic: fast path + 2 per level */
    assert_true(F.rows_calls <= 1 + 2 * 7 + 1);
    static const uint32_t edges[] = {1, 100};
    check_poison(100, edges, 2);
    static const uint32_t adjacent[] = {50, 51, 52};
    check_poison(100, adjacent, 3);
    static const uint32_t all[] = {1, 2, 3};
    check_poison(3, all, 3);
    static const uint32_t single[] = {1};
    check_poison(1, single, 1);
}

static void test_mapper_bad_rows(void **state)
{
    (void)state;
    struct batch b;
    struct writer_stats st;
    fill(&b, 10);
    batch_set_err(&b, 4, "body is not valid msgpack", 25);
    b.rows[4].bad = true;
    b.rows[4].state = ROW_BAD;
    run(&b, DB_OK, &st);
    assert_int_equal(F.rows_calls, 1);
    assert_int_equal(F.rejects, 1);
    assert_int_equal(b.rows[4].state, ROW_DEAD);
    assert_int_equal(st.stored, 9);
    assert_int_equal(st.dead, 1);
    batch_fini(&b);
}

static void test_transient_then_retry(void **state)
{
    (void)state;
    F.poison[7] = true;
    struct batch b;
    struct writer_stats st;
    fill(&b, 20);
    /* Fail transiently in the middle of the bisect: nothing may commit. */
    F.fail_transient_at = 6;
    run(&b, DB_TRANSIENT, &st);
    assert_int_equal(F.commits, 0);
    assert_true(F.rollbacks >= 1);
    /* The retry starts from scratch and ends like a clean run. */
    F.fail_transient_at = 0;
    F.calls = 0;
    run(&b, DB_OK, &st);
    assert_int_equal(F.commits, 1);
    assert_int_equal(st.stored, 19);
    assert_int_equal(st.dead, 1);
    assert_int_equal(b.rows[6].state, ROW_DEAD);
    /* the error text was not duplicated in the arena by the retry */
    assert_true(b.err_len < 2u * b.rows[6].err_len + 1u);
    batch_fini(&b);
}

static void test_duplicates_go_staged(void **state)
{
    (void)state;
    F.stored[3] = true;
    struct batch b;
    struct writer_stats st;
    fill(&b, 10);
    struct writer w;
    assert_int_equal(writer_init(&w, NULL, b.cap_rows), 0);
    assert_int_equal(writer_commit(&w, &b, &st), DB_OK);
    /* direct COPY refused (23505), then the staged path, same transaction attempt */
    assert_int_equal(F.direct_calls, 1);
    assert_int_equal(F.rows_calls, 2);
    assert_true(st.staged);
    assert_int_equal(st.stored, 10); /* the duplicate is acked too */
    assert_int_equal(st.inserted, 9);
    assert_int_equal(F.rejects, 0); /* a duplicate is not a poison row */
    /* the next batches skip the doomed direct COPY for a while */
    for (int k = 0; k < WRITER_STAGED_AFTER_DUP; k++) {
        assert_int_equal(writer_commit(&w, &b, &st), DB_OK);
        assert_true(st.staged);
    }
    assert_int_equal(F.direct_calls, 1);
    F.stored[3] = false;
    assert_int_equal(writer_commit(&w, &b, &st), DB_OK);
    assert_false(st.staged);
    assert_int_equal(F.direct_calls, 2);
    writer_fini(&w);
    batch_fini(&b);
}

static void test_commit_failure_is_transient(void **state)
{
    (void)state;
    struct batch b;
    struct writer_stats st;
    fill(&b, 5);
    F.commit_fails = true;
    run(&b, DB_TRANSIENT, &st);
    assert_int_equal(F.commits, 0);
    batch_fini(&b);
}

static void test_unstorable_dead_letter_is_dropped(void **state)
{
    (void)state;
    F.poison[3] = true;
    F.reject_fails[3] = true;
    struct batch b;
    struct writer_stats st;
    fill(&b, 5);
    run(&b, DB_OK, &st);
    assert_int_equal(b.rows[2].state, ROW_DROPPED); /* never acked */
    assert_int_equal(st.dropped, 1);
    assert_int_equal(st.stored, 4);
    batch_fini(&b);
}

static void test_sessions(void **state)
{
    (void)state;
    struct batch b;
    struct writer_stats st;
    fill(&b, 2);
    struct envelope c = {.kind = ENV_CONNECT, .dev = {(const uint8_t *)"d", 1}, .epoch = 9};
    assert_int_equal(batch_add(&b, 0, &c), SL_OK);
    c.kind = ENV_DISCONNECT;
    assert_int_equal(batch_add(&b, 0, &c), SL_OK);
    run(&b, DB_OK, &st);
    assert_int_equal(F.sessions, 2);
    assert_int_equal(st.sessions, 2);
    assert_int_equal(st.stored, 2);
    batch_fini(&b);
}

static void test_conflicts_from_the_staged_path_only(void **state)
{
    (void)state;
    struct batch b;
    struct writer_stats st;
    fill(&b, 10);
    F.stored[3] = F.conflict[3] = true; /* seq 3 is stored with another body */
    struct writer w;
    assert_int_equal(writer_init(&w, NULL, b.cap_rows), 0);
    assert_int_equal(writer_commit(&w, &b, &st), DB_OK);
    assert_true(st.staged);
    assert_int_equal(st.conflicts, 1);
    assert_int_equal(st.conflicts_kept, 1);
    assert_int_equal(b.rows[2].state, ROW_STORED); /* acked: its first version is durable, the second noted */
    /* a rolled-back attempt's count is not reported by the next one */
    F.conflicts_seen = 5;
    F.stored[3] = F.conflict[3] = false;
    w.staged_left = 0;
    assert_int_equal(writer_commit(&w, &b, &st), DB_OK);
    assert_false(st.staged);
    assert_int_equal(st.conflicts, 0);
    writer_fini(&w);
    batch_fini(&b);
}

static void test_one_query_only_for_plain_batches(void **state)
{
    (void)state;
    struct batch b;
    struct writer_stats st;
    fill(&b, 10);
    run(&b, DB_OK, &st);
    assert_int_equal(F.oneshots, 1); /* one query string: BEGIN, keys, rows, COMMIT */
    assert_int_equal(st.stored, 10);
    batch_fini(&b);

    memset(&F, 0, sizeof F);
    fill(&b, DB_ONESHOT_MAX + 1); /* big batches too (db.c picks COPY inside it) */
    run(&b, DB_OK, &st);
    assert_int_equal(F.oneshots, 1);
    assert_int_equal(F.direct_calls, 1);
    assert_int_equal(F.begins, 1); /* the wrapper's: the writer began nothing itself */
    assert_int_equal(st.stored, DB_ONESHOT_MAX + 1);
    batch_fini(&b);

    memset(&F, 0, sizeof F);
    fill(&b, 3); /* sessions to upsert too: the steps */
    struct envelope c = {.kind = ENV_CONNECT, .dev = {(const uint8_t *)"d", 1}, .epoch = 9};
    assert_int_equal(batch_add(&b, 0, &c), SL_OK);
    run(&b, DB_OK, &st);
    assert_int_equal(F.oneshots, 0);
    assert_int_equal(F.sessions, 1);
    batch_fini(&b);

    memset(&F, 0, sizeof F);
    fill(&b, 3); /* a dead letter to write too: the steps */
    b.rows[1].bad = true;
    batch_set_err(&b, 1, "no body", 7);
    run(&b, DB_OK, &st);
    assert_int_equal(F.oneshots, 0);
    assert_int_equal(st.dead, 1);
    batch_fini(&b);
}

/* Rows 1..n/2 received on day 0, the rest on day 3 (2025-11-28 and 12-01). */
static void fill_two_days(struct batch *b, uint32_t n)
{
    fill(b, n);
    for (uint32_t i = 0; i < b->nrows; i++)
        b->rows[i].at_ns = (uint64_t)(1764358200000000000ll + (i < n / 2 ? 0 : 3 * PART_DAY_US * 1000));
}

static void test_missing_partition_created(void **state)
{
    (void)state;
    struct batch b;
    struct writer_stats st;
    fill_two_days(&b, 10);
    F.missing[F.nmissing++] = part_period_of(1764358200000000ll + 3 * PART_DAY_US, 1).lo_us;
    run(&b, DB_OK, &st);
    /* not a poison row: nothing dead-lettered, every row stored and acked */
    assert_int_equal(F.rejects, 0);
    assert_int_equal(st.dead, 0);
    assert_int_equal(st.stored, 10);
    for (uint32_t i = 0; i < b.nrows; i++)
        assert_int_equal(b.rows[i].state, ROW_STORED);
    assert_int_equal(st.partitions, 1);
    assert_int_equal(F.partition_calls, 2); /* each day of the batch asked once */
    assert_int_equal(F.nopart_returns, 1);
    assert_int_equal(F.commits, 1);
    assert_int_equal(F.rollbacks, 1);
    batch_fini(&b);
}

static void test_missing_partition_while_bisecting(void **state)
{
    (void)state;
    struct batch b;
    struct writer_stats st;
    fill_two_days(&b, 20);
    F.poison[4] = true;
    F.missing[F.nmissing++] = part_period_of(1764358200000000ll + 3 * PART_DAY_US, 1).lo_us;
    run(&b, DB_OK, &st);
    assert_int_equal(st.dead, 1);
    assert_int_equal(b.rows[3].state, ROW_DEAD);
    assert_int_equal(st.stored, 19);
    assert_int_equal(st.partitions, 1);
    assert_int_equal(F.commits, 1);
    batch_fini(&b);
}

static void test_partition_never_appears(void **state)
{
    (void)state;
    struct batch b;
    struct writer_stats st;
    fill_two_days(&b, 6);
    F.missing[F.nmissing++] = part_period_of(1764358200000000ll, 1).lo_us;
    F.never_created = true;
    run(&b, DB_TRANSIENT, &st); /* the lane backs off and retries the whole batch */
    assert_int_equal(F.commits, 0);
    assert_int_equal(F.rejects, 0);
    assert_int_equal(F.nopart_returns, WRITER_NOPART_ROUNDS + 1);
    for (uint32_t i = 0; i < b.nrows; i++)
        assert_int_not_equal(b.rows[i].state, ROW_DEAD);
    batch_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_clean_batch_one_attempt, setup),
        cmocka_unit_test_setup(test_poison_bisect, setup),
        cmocka_unit_test_setup(test_mapper_bad_rows, setup),
        cmocka_unit_test_setup(test_transient_then_retry, setup),
        cmocka_unit_test_setup(test_duplicates_go_staged, setup),
        cmocka_unit_test_setup(test_commit_failure_is_transient, setup),
        cmocka_unit_test_setup(test_unstorable_dead_letter_is_dropped, setup),
        cmocka_unit_test_setup(test_sessions, setup),
        cmocka_unit_test_setup(test_one_query_only_for_plain_batches, setup),
        cmocka_unit_test_setup(test_conflicts_from_the_staged_path_only, setup),
        cmocka_unit_test_setup(test_missing_partition_created, setup),
        cmocka_unit_test_setup(test_missing_partition_while_bisecting, setup),
        cmocka_unit_test_setup(test_partition_never_appears, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
