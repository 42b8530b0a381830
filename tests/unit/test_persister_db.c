/* test_persister_db.c - what a PostgreSQL error means for a batch
 * (persister/db.c, db_classify, db_classify_err): class 22 and 23 refuse the
 * data (the writer bisects and dead-letters), except "no partition of
 * relation telemetry" (the writer creates the partition); everything else is
 * transient (the whole batch is retried). Pure: no database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "db.h"

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

static void test_oneshot_ok(void **state)
{
    (void)state;
    struct batch b;
    assert_int_equal(batch_init(&b, DB_ONESHOT_MAX + 2, 64u * 1024u), 0);
    struct envelope_hdr h = {
        .v = 1, .edge = {(const uint8_t *)"e", 1}, .incarnation = 1, .reply = {(const uint8_t *)"r", 1}};
    assert_int_equal(batch_peer(&b, &h), 0);
    static const uint8_t body[] = {0xa1, 'x'};
    uint32_t idx[DB_ONESHOT_MAX + 2];
    for (uint32_t i = 0; i < DB_ONESHOT_MAX + 1; i++) {
        struct envelope e = {.kind = ENV_DATA,
                             .dev = {(const uint8_t *)"d", 1},
                             .seq = i + 1,
                             .body = {body, sizeof body},
                             .has_body = true};
        assert_int_equal(batch_add(&b, 0, &e), SL_OK);
        idx[i] = i;
    }
    assert_true(db_oneshot_ok(&b, idx, 1));
    assert_true(db_oneshot_ok(&b, idx, DB_ONESHOT_MAX));
    assert_false(db_oneshot_ok(&b, idx, DB_ONESHOT_MAX + 1)); /* big: COPY */
    assert_false(db_oneshot_ok(&b, idx, 0));
    /* a NUL in a device id (only a broken edge sends one) cannot be a literal */
    static const uint8_t nul_dev[] = {'a', 0, 'b'};
    struct envelope e = {
        .kind = ENV_DATA, .dev = {nul_dev, 3}, .seq = 9, .body = {body, sizeof body}, .has_body = true};
    batch_reset(&b);
    assert_int_equal(batch_peer(&b, &h), 0);
    assert_int_equal(batch_add(&b, 0, &e), SL_OK);
    assert_false(db_oneshot_ok(&b, idx, 1));
    /* nor in the edge id */
    static const uint8_t nul_edge[] = {'e', 0};
    struct envelope_hdr h2 = {
        .v = 1, .edge = {nul_edge, 2}, .incarnation = 1, .reply = {(const uint8_t *)"r", 1}};
    batch_reset(&b);
    assert_int_equal(batch_peer(&b, &h2), 0);
    e.dev = (struct sl_slice){(const uint8_t *)"d", 1};
    assert_int_equal(batch_add(&b, 0, &e), SL_OK);
    assert_false(db_oneshot_ok(&b, idx, 1));
    batch_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_classify_nopart),
        cmocka_unit_test(test_oneshot_ok),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
