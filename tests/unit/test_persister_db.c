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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_classify_nopart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
