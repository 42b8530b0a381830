/* SPDX-License-Identifier: Apache-2.0 */
/* test_sysres.c - cpu.max parsing (every shape the kernel writes, and
 * garbage), the CPU count against the affinity mask as this test narrows it,
 * and the fd limit raised to the hard limit. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sched.h>
#include <sys/resource.h>

#include "sl/sysres.h"

static void cpu_max_shapes(void **state)
{
    (void)state;
    unsigned n = 99;
    assert_int_equal(sysres_cpu_max_parse("max 100000\n", &n), 0);
    assert_int_equal(n, 0); /* no quota */
    assert_int_equal(sysres_cpu_max_parse("200000 100000\n", &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(sysres_cpu_max_parse("150000 100000", &n), 0);
    assert_int_equal(n, 2); /* 1.5 CPUs: rounded up, a worker for the half */
    assert_int_equal(sysres_cpu_max_parse("50000 100000", &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(sysres_cpu_max_parse("1 1000000", &n), 0);
    assert_int_equal(n, 1);
}

static void cpu_max_garbage(void **state)
{
    (void)state;
    unsigned n = 7;
    assert_int_equal(sysres_cpu_max_parse("", &n), -1);
    assert_int_equal(sysres_cpu_max_parse("max", &n), -1);
    assert_int_equal(sysres_cpu_max_parse("100000 0", &n), -1);
    assert_int_equal(sysres_cpu_max_parse("0 100000", &n), -1);
    assert_int_equal(sysres_cpu_max_parse("12x 100000", &n), -1);
    assert_int_equal(sysres_cpu_max_parse("-5 100000", &n), -1);
    assert_int_equal(n, 7); /* untouched on error */
}

static void cpus_follow_affinity(void **state)
{
    (void)state;
    cpu_set_t all, one;
    assert_int_equal(sched_getaffinity(0, sizeof all, &all), 0);
    unsigned full = sysres_cpus();
    assert_true(full >= 1 && full <= (unsigned)CPU_COUNT(&all));
    /* Narrowed to the first CPU of the mask, exactly one is usable. */
    CPU_ZERO(&one);
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &all)) {
            CPU_SET(i, &one);
            break;
        }
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
    assert_int_equal(sysres_cpus(), 1);
    assert_int_equal(sched_setaffinity(0, sizeof all, &all), 0);
    assert_int_equal(sysres_cpus(), full);
}

static void nofile_raised_to_hard(void **state)
{
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max > 64) {
        struct rlimit low = {64, rl.rlim_max};
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    }
    assert_int_equal(sysres_raise_nofile(), rl.rlim_max);
    struct rlimit now;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &now), 0);
    assert_int_equal(now.rlim_cur, rl.rlim_max);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cpu_max_shapes),
        cmocka_unit_test(cpu_max_garbage),
        cmocka_unit_test(cpus_follow_affinity),
        cmocka_unit_test(nofile_raised_to_hard),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
