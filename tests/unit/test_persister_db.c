/* SPDX-License-Identifier: Apache-2.0 */
/* test_persister_db.c - what a PostgreSQL error means for a batch
 * (persister/db.c, db_classify, db_classify_err): class 22 and 23 refuse the
 * data (the writer bisects and dead-letters), except "no partition of
 * relation telemetry" (the writer creates the partition); everything else is
 * transient (the whole batch is retried). Pure: no database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "db.h"
#include "devsum.h"

static void test_classify(void **state)
{
    (void)state;
    assert_int_equal(db_classify("22P05"), DB_DATA);      /* untranslatable character (NUL in jsonb) */
    assert_int_equal(db_classify("22021"), DB_DATA);      /* bad UTF-8 */
    assert_int_equal(db_classify("22008"), DB_DATA);      /* timestamp out of range */
    assert_int_equal(db_classify("23502"), DB_DATA);      /* not null violation */
    assert_int_equal(db_classify("23505"), DB_DATA);      /* unique violation: the writer's resend path */
    assert_int_equal(db_classify("08006"), DB_TRANSIENT); /* connection failure */
    assert_int_equal(db_classify("57P01"), DB_TRANSIENT); /* admin shutdown */
    assert_int_equal(db_classify("40001"), DB_TRANSIENT); /* serialization failure */
    assert_int_equal(db_classify("53100"), DB_TRANSIENT); /* disk full */
    assert_int_equal(db_classify("21000"), DB_TRANSIENT);
    assert_int_equal(db_classify(NULL), DB_TRANSIENT);
    assert_int_equal(db_classify(""), DB_TRANSIENT);
    assert_int_equal(db_classify("22"), DB_TRANSIENT);
    assert_int_equal(db_classify("220000"), DB_TRANSIENT); /* not a SQLSTATE */
}

static void test_classify_nopart(void **state)
{
    (void)state;
    /* no partition of relation "telemetry" found for row: PostgreSQL names the
     * parent and no constraint */
    assert_int_equal(db_classify_err("23514", "telemetry", NULL), DB_NOPART);
    assert_int_equal(db_classify_err("23514", "telemetry", ""), DB_NOPART);
    /* a real check constraint, or a partition's own constraint: refused data */
    assert_int_equal(db_classify_err("23514", "telemetry", "body_small"), DB_DATA);
    assert_int_equal(db_classify_err("23514", "telemetry_20261203", NULL), DB_DATA);
    assert_int_equal(db_classify_err("23514", NULL, NULL), DB_DATA);
    assert_int_equal(db_classify_err("23514", "telemetry_rejected", NULL), DB_DATA);
    /* other classes are what db_classify says, whatever the fields */
    assert_int_equal(db_classify_err("23505", "telemetry_keys", "telemetry_keys_pkey"), DB_DATA);
    assert_int_equal(db_classify_err("22P05", "telemetry", NULL), DB_DATA);
    assert_int_equal(db_classify_err("57P01", "telemetry", NULL), DB_TRANSIENT);
    assert_int_equal(db_classify_err(NULL, "telemetry", NULL), DB_TRANSIENT);
}

/* The devices summary (devsum.c): per device the highest stored seq and
 * the earliest and latest time, over several batches; rows not stored
 * (dropped, not yet written) and unusable device ids are left out; the SQL
 * is typed, escaped and in one transaction; a full table stops and resumes
 * where it stopped. */
static void test_devsum(void **state)
{
    (void)state;
    struct batch b;
    assert_int_equal(batch_init(&b, 16, 64u * 1024u), 0);
    struct envelope_hdr h = {
        .v = 1, .edge = {(const uint8_t *)"e", 1}, .incarnation = 1, .reply = {(const uint8_t *)"r", 1}};
    assert_int_equal(batch_peer(&b, &h), 0);
    static const uint8_t body[] = {0xa1, 'x'};
    struct devsum sum;
    assert_int_equal(devsum_init(&sum, 4), 0);
    char out[4096];
    uint32_t from = 0;
    assert_true(devsum_add(&sum, &b, &from));
    assert_int_equal(devsum_sql(&sum, 0, UINT32_MAX, 30000, out, sizeof out), 0); /* nothing */

    const uint64_t t0 = 1764358200000000000ull; /* 2025-11-28 19:30:00 UTC */
    struct envelope e = {.kind = ENV_DATA,
                         .dev = {(const uint8_t *)"pump-1", 6},
                         .seq = 42,
                         .at_ns = t0 + 2000000000ull,
                         .body = {body, sizeof body},
                         .has_body = true};
    assert_int_equal(batch_add(&b, 0, &e), SL_OK); /* 0 */
    e.seq = 40;
    e.at_ns = t0;
    assert_int_equal(batch_add(&b, 0, &e), SL_OK); /* 1: older seq, earlier */
    e.dev = (struct sl_slice){(const uint8_t *)"o'k\\", 4};
    e.seq = 7;
    assert_int_equal(batch_add(&b, 0, &e), SL_OK); /* 2 */
    e.dev = (struct sl_slice){(const uint8_t *)"lost", 4};
    assert_int_equal(batch_add(&b, 0, &e), SL_OK); /* 3 */
    static const uint8_t nul_dev[] = {'a', 0, 'b'};
    e.dev = (struct sl_slice){nul_dev, 3};
    assert_int_equal(batch_add(&b, 0, &e), SL_OK); /* 4 */
    struct envelope c = {.kind = ENV_CONNECT,
                         .dev = {(const uint8_t *)"sleepy", 6},
                         .epoch = 5,
                         .at_ns = t0 + 1000000000ull,
                         .peer = {(const uint8_t *)"1.2.3.4:5", 9}};
    assert_int_equal(batch_add(&b, 0, &c), SL_OK); /* 5 */
    b.rows[0].state = ROW_STORED;
    b.rows[1].state = ROW_STORED;
    b.rows[2].state = ROW_DEAD; /* dead-lettered rows are stored too */
    b.rows[3].state = ROW_DROPPED;
    b.rows[4].state = ROW_STORED;
    from = 0;
    assert_true(devsum_add(&sum, &b, &from));
    assert_int_equal(from, b.nrows);
    assert_int_equal(sum.used, 3);
    size_t n = devsum_sql(&sum, 0, UINT32_MAX, 30000, out, sizeof out);
    assert_int_equal(n, strlen(out));
    assert_non_null(strstr(out, "(E'pump-1','2025-11-28 19:30:00.000000+00'::timestamptz,"
                                "'2025-11-28 19:30:02.000000+00'::timestamptz,42::int8)"));
    assert_non_null(strstr(out, "(E'o''k\\\\',")); /* quote and backslash doubled */
    assert_non_null(strstr(out, "(E'sleepy','2025-11-28 19:30:01.000000+00'::timestamptz,"
                                "'2025-11-28 19:30:01.000000+00'::timestamptz,NULL::int8)"));
    assert_null(strstr(out, "lost"));
    assert_null(strstr(out, "E'a"));
    static const char begin[] =
        "BEGIN;SET LOCAL synchronous_commit TO off;SET LOCAL statement_timeout TO 30000;";
    assert_int_equal(strncmp(out, begin, sizeof begin - 1), 0);
    assert_non_null(strstr(out, "ORDER BY i ON CONFLICT(device_id)"));
    assert_int_equal(strcmp(out + n - 7, ";COMMIT"), 0);
    /* the timeout is the caller's: a stop's last write gets what is left of its budget */
    static const char short_timeout[] = "SET LOCAL statement_timeout TO 7;INSERT INTO devices";
    assert_true(devsum_sql(&sum, 0, UINT32_MAX, 7, out, sizeof out) > 0);
    assert_non_null(strstr(out, short_timeout));
    assert_true(devsum_sql(&sum, 0, UINT32_MAX, UINT32_MAX, out, sizeof out) > 0);
    assert_non_null(strstr(out, "statement_timeout TO 4294967295;INSERT"));
    n = devsum_sql(&sum, 0, UINT32_MAX, 30000, out, sizeof out);
    size_t bound = devsum_sql_bound(&sum, 0, UINT32_MAX);
    assert_true(bound >= n);
    assert_int_equal(devsum_sql(&sum, 0, UINT32_MAX, 30000, out, bound), 0); /* no room for the NUL */
    assert_int_equal(devsum_sql(&sum, 0, UINT32_MAX, 30000, out, bound + 1), n);

    /* a second batch: pump-1's seq moves on, sleepy gets a seq */
    batch_reset(&b);
    assert_int_equal(batch_peer(&b, &h), 0);
    e.dev = (struct sl_slice){(const uint8_t *)"pump-1", 6};
    e.seq = 43;
    e.at_ns = t0 + 3000000000ull;
    assert_int_equal(batch_add(&b, 0, &e), SL_OK);
    e.dev = (struct sl_slice){(const uint8_t *)"sleepy", 6};
    e.seq = 1;
    assert_int_equal(batch_add(&b, 0, &e), SL_OK);
    b.rows[0].state = ROW_STORED;
    b.rows[1].state = ROW_STORED;
    from = 0;
    assert_true(devsum_add(&sum, &b, &from));
    assert_int_equal(sum.used, 3);
    devsum_sql(&sum, 0, UINT32_MAX, 30000, out, sizeof out);
    assert_non_null(strstr(out, "'2025-11-28 19:30:03.000000+00'::timestamptz,43::int8)"));
    assert_non_null(strstr(out, "(E'sleepy','2025-11-28 19:30:01.000000+00'::timestamptz,"
                                "'2025-11-28 19:30:03.000000+00'::timestamptz,1::int8)"));

    /* full: room for 16 slots / 2 = 8 devices; the 9th stops the add */
    devsum_reset(&sum);
    assert_int_equal(devsum_sql(&sum, 0, UINT32_MAX, 30000, out, sizeof out), 0);
    batch_reset(&b);
    assert_int_equal(batch_peer(&b, &h), 0);
    char ids[10][4];
    for (int k = 0; k < 10; k++) {
        snprintf(ids[k], sizeof ids[k], "d%d", k);
        e.dev = (struct sl_slice){(const uint8_t *)ids[k], (uint32_t)strlen(ids[k])};
        assert_int_equal(batch_add(&b, 0, &e), SL_OK);
        b.rows[k].state = ROW_STORED;
    }
    from = 0;
    assert_false(devsum_add(&sum, &b, &from));
    assert_int_equal(from, 8);
    assert_int_equal(sum.used, 8);

    /* in chunks (devwriter.c): [0,3) [3,6) [6,8), each device in exactly one,
     * each chunk a whole statement; a range past the end is empty */
    for (uint32_t k = 0; k < 8; k += 3) {
        size_t m = devsum_sql(&sum, k, 3, 30000, out, sizeof out);
        assert_int_equal(m, strlen(out));
        assert_int_equal(strncmp(out, "BEGIN;", 6), 0);
        assert_int_equal(strcmp(out + m - 7, ";COMMIT"), 0);
        for (uint32_t j = 0; j < 8; j++) {
            char lit[16];
            snprintf(lit, sizeof lit, "(E'd%u',", j);
            assert_int_equal(strstr(out, lit) != NULL, j >= k && j < k + 3);
        }
        assert_true(devsum_sql_bound(&sum, k, 3) < devsum_sql_bound(&sum, 0, 8));
    }
    assert_int_equal(devsum_sql(&sum, 8, 3, 30000, out, sizeof out), 0);
    assert_int_equal(devsum_sql(&sum, 2, 0, 30000, out, sizeof out), 0);
    devsum_reset(&sum);
    assert_true(devsum_add(&sum, &b, &from));
    assert_int_equal(sum.used, 2);
    devsum_fini(&sum);
    batch_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_classify_nopart),
        cmocka_unit_test(test_devsum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
