/* SPDX-License-Identifier: Apache-2.0 */
/* test_notifier_pool.c - what --pool 0 means: one child at QoS 0 whatever the
 * box, half the usable CPUs at QoS 1, never fewer than one nor more than
 * four. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "pubproc.h"

static void qos0_one_child(void **state)
{
    (void)state;
    assert_int_equal(pubproc_default_pool(0, 1), 1);
    assert_int_equal(pubproc_default_pool(0, 2), 1);
    assert_int_equal(pubproc_default_pool(0, 64), 1);
}

static void qos1_half_the_cpus(void **state)
{
    (void)state;
    assert_int_equal(pubproc_default_pool(1, 0), 1); /* never none */
    assert_int_equal(pubproc_default_pool(1, 1), 1);
    assert_int_equal(pubproc_default_pool(1, 2), 1); /* here one costs 32-45 % less than four */
    assert_int_equal(pubproc_default_pool(1, 3), 1);
    assert_int_equal(pubproc_default_pool(1, 4), 2);
    assert_int_equal(pubproc_default_pool(1, 6), 3);
    assert_int_equal(pubproc_default_pool(1, 8), 4);
    /* capped at four, the default before */
    assert_int_equal(pubproc_default_pool(1, 64), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(qos0_one_child),
        cmocka_unit_test(qos1_half_the_cpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
