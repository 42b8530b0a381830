/* SPDX-License-Identifier: Apache-2.0 */
/* test_persister_db.c - what a PostgreSQL error means for a batch
 * (persister/db.c, db_classify, db_classify_err): class 22 and 23 refuse the
 * data (the writer bisects and dead-letters), except "no partition of
 * relation telemetry" (the writer creates the partition); everything else is
 * transient (the whole batch is retried). Pure: no database. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "db.h"
#include "devsum.h"
#include "pgbin.h"
#include "pgbin_read.h"

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

/* A binary array parameter (pgbin.h) read back: one dimension, lower bound
 * 1, each element's bytes (NULL for a NULL one); every byte accounted for. */
struct arr {
    uint32_t cnt;
    bool hasnull;
    const uint8_t *el[16];
    uint32_t len[16];
};

static void read_arr(const char *arr, int n, uint32_t oid, struct arr *a)
{
    const uint8_t *p = (const uint8_t *)arr;
    assert_true(n >= (int)PGBIN_ARR_HDR);
    assert_int_equal(rd32(p), 1); /* ndim */
    a->hasnull = rd32(p + 4) != 0;
    assert_int_equal(rd32(p + 8), oid);
    a->cnt = rd32(p + 12);
    assert_int_equal(rd32(p + 16), 1); /* lower bound */
    assert_true(a->cnt <= 16);
    const uint8_t *o = p + PGBIN_ARR_HDR;
    bool any_null = false;
    for (uint32_t k = 0; k < a->cnt; k++) {
        uint32_t len = rd32(o);
        o += 4;
        a->el[k] = len == UINT32_MAX ? NULL : o;
        a->len[k] = len == UINT32_MAX ? 0 : len;
        any_null |= len == UINT32_MAX;
        o += a->len[k];
    }
    assert_int_equal(o - p, n);
    assert_int_equal(a->hasnull, any_null);
}

/* The four arrays of one devices statement, read back and checked against
 * each other: as many elements in each, typed as the statement says. */
struct devrows {
    struct arr id, first, last, seq;
};

static uint32_t read_devrows(const struct devsum_arrays *a, struct devrows *r)
{
    read_arr(a->v[DEVSUM_ID], a->len[DEVSUM_ID], PGBIN_OID_TEXT, &r->id);
    read_arr(a->v[DEVSUM_FIRST], a->len[DEVSUM_FIRST], PGBIN_OID_TIMESTAMPTZ, &r->first);
    read_arr(a->v[DEVSUM_LAST], a->len[DEVSUM_LAST], PGBIN_OID_TIMESTAMPTZ, &r->last);
    read_arr(a->v[DEVSUM_SEQ], a->len[DEVSUM_SEQ], PGBIN_OID_INT8, &r->seq);
    assert_false(r->id.hasnull || r->first.hasnull || r->last.hasnull);
    assert_int_equal(r->first.cnt, r->id.cnt);
    assert_int_equal(r->last.cnt, r->id.cnt);
    assert_int_equal(r->seq.cnt, r->id.cnt);
    return r->id.cnt;
}

/* The element index of device id, or -1. */
static int dev_at(const struct devrows *r, const char *id)
{
    for (uint32_t k = 0; k < r->id.cnt; k++)
        if (r->id.len[k] == strlen(id) && memcmp(r->id.el[k], id, r->id.len[k]) == 0)
            return (int)k;
    return -1;
}

/* Device id's row: first and last time in Unix microseconds, seq (-1: NULL). */
static void assert_dev(const struct devrows *r, const char *id, int64_t first_us, int64_t last_us,
                       int64_t seq)
{
    int k = dev_at(r, id);
    assert_true(k >= 0);
    assert_int_equal(r->first.len[k], 8);
    assert_int_equal((int64_t)rd64(r->first.el[k]) + PGBIN_EPOCH_US, first_us);
    assert_int_equal(r->last.len[k], 8);
    assert_int_equal((int64_t)rd64(r->last.el[k]) + PGBIN_EPOCH_US, last_us);
    if (seq < 0) {
        assert_null(r->seq.el[k]);
        return;
    }
    assert_int_equal(r->seq.len[k], 8);
    assert_int_equal((int64_t)rd64(r->seq.el[k]), seq);
}

/* The devices summary (devsum.c): per device the highest stored seq and
 * the earliest and latest time, over several batches; rows not stored
 * (dropped, not yet written) and unusable device ids are left out; the
 * arrays carry ids byte for byte, times and a NULL seq for a device that
 * only connected; a full table stops and resumes where it stopped. */
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
    uint8_t out[4096];
    struct devsum_arrays a;
    struct devrows r;
    uint32_t from = 0;
    assert_true(devsum_add(&sum, &b, &from));
    assert_int_equal(devsum_arrays(&sum, 0, UINT32_MAX, out, sizeof out, &a), 0); /* nothing */

    const uint64_t t0 = 1764358200000000000ull; /* 2025-11-28 19:30:00 UTC */
    const int64_t t0_us = (int64_t)(t0 / 1000u);
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
    assert_int_equal(devsum_arrays(&sum, 0, UINT32_MAX, out, sizeof out, &a), 3);
    assert_int_equal(read_devrows(&a, &r), 3);
    assert_dev(&r, "pump-1", t0_us, t0_us + 2000000, 42);
    assert_dev(&r, "o'k\\", t0_us, t0_us, 7); /* as it came: nothing to quote */
    assert_dev(&r, "sleepy", t0_us + 1000000, t0_us + 1000000, -1);
    assert_true(r.seq.hasnull);
    assert_int_equal(dev_at(&r, "lost"), -1);
    /* the bound holds what was written (a NULL seq takes less) and is the
     * room asked for: one byte less is refused */
    size_t bound = devsum_arrays_bound(&sum, 0, UINT32_MAX);
    assert_int_equal(a.len[0] + a.len[1] + a.len[2] + a.len[3], bound - 8u);
    assert_int_equal(devsum_arrays(&sum, 0, UINT32_MAX, out, bound - 1, &a), 0);
    assert_int_equal(devsum_arrays(&sum, 0, UINT32_MAX, out, bound, &a), 3);

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
    assert_int_equal(devsum_arrays(&sum, 0, UINT32_MAX, out, sizeof out, &a), 3);
    read_devrows(&a, &r);
    assert_dev(&r, "pump-1", t0_us, t0_us + 3000000, 43);
    assert_dev(&r, "sleepy", t0_us + 1000000, t0_us + 3000000, 1);
    assert_false(r.seq.hasnull);

    /* full: room for 16 slots / 2 = 8 devices; the 9th stops the add */
    devsum_reset(&sum);
    assert_int_equal(devsum_arrays(&sum, 0, UINT32_MAX, out, sizeof out, &a), 0);
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
     * in order of first use; a range past the end is empty */
    for (uint32_t k = 0; k < 8; k += 3) {
        uint32_t m = devsum_arrays(&sum, k, 3, out, sizeof out, &a);
        assert_int_equal(m, k < 6 ? 3 : 2);
        assert_int_equal(read_devrows(&a, &r), m);
        for (uint32_t j = 0; j < 8; j++)
            assert_int_equal(dev_at(&r, ids[j]), j >= k && j < k + 3 ? (int)(j - k) : -1);
        assert_true(devsum_arrays_bound(&sum, k, 3) < devsum_arrays_bound(&sum, 0, 8));
    }
    assert_int_equal(devsum_arrays(&sum, 8, 3, out, sizeof out, &a), 0);
    assert_int_equal(devsum_arrays(&sum, 2, 0, out, sizeof out, &a), 0);
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
