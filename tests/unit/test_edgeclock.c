/* SPDX-License-Identifier: Apache-2.0 */
/* test_edgeclock.c - the per-edge clock skew windows (sl/edgeclock.h): the
 * first heartbeat shows at once, a window's largest difference becomes the
 * value when it rolls (not before), negative skew, microsecond units, one
 * series per edge id (the newest incarnation), a full table, forget, and
 * silent edges disappearing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "sl/edgeclock.h"
#include "sl/metrics.h"

#define WALL 1700000000000000000u /* local wall clock, ns */
#define S    1000000000           /* ns per second */

static struct edgeclock ec; /* ~110 KB: not on the stack */
static struct metrics_sample out[EDGECLOCK_EDGES + 1];

static bool beat(const char *id, uint64_t inc, int64_t skew_ns, uint64_t now_ms)
{
    return edgeclock_sample(&ec, (const uint8_t *)id, strlen(id), inc, (uint64_t)((int64_t)WALL + skew_ns),
                            WALL, now_ms);
}

/* The published sample of id, or NULL. */
static const struct metrics_sample *find(const char *id)
{
    size_t n = edgeclock_collect(&ec, out, EDGECLOCK_EDGES + 1);
    for (size_t i = 0; i < n; i++)
        if (strcmp(out[i].value, id) == 0)
            return &out[i];
    return NULL;
}

static bool present(const char *id)
{
    return find(id) != NULL;
}

/* The published value of id in seconds; fails if there is none. */
static double value(const char *id)
{
    const struct metrics_sample *m = find(id);
    if (!m)
        fail_msg("no series for %s", id);
    return m->v;
}

static int setup(void **state)
{
    (void)state;
    edgeclock_init(&ec, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    edgeclock_fini(&ec);
    return 0;
}

static void test_nothing_until_published(void **state)
{
    (void)state;
    assert_int_equal(edgeclock_collect(&ec, out, 4), 0);
    assert_true(beat("edge-a", 1, 5 * (int64_t)S, 1000));
    assert_int_equal(edgeclock_collect(&ec, out, 4), 0); /* the metrics thread sees published values only */
    edgeclock_publish(&ec, 1000);
    assert_int_equal(edgeclock_collect(&ec, out, 4), 1);
    assert_string_equal(out[0].value, "edge-a");
    assert_true(out[0].v == 5.0); /* seconds, from ns: a unit slip shows */
}

static void test_negative_and_sub_second(void **state)
{
    (void)state;
    beat("behind", 1, -3 * (int64_t)S - 250000000, 0);
    beat("close", 1, -1500000, 0); /* 1.5 ms behind */
    edgeclock_publish(&ec, 0);
    assert_true(value("behind") == -3.25);
    assert_true(value("close") == -0.0015);
}

static void test_window_max_rolls(void **state)
{
    (void)state;
    beat("e", 1, 1 * (int64_t)S, 0); /* first: shows at once */
    edgeclock_publish(&ec, 0);
    assert_true(value("e") == 1.0);
    /* a window of 2 s, 7 s (the largest: transit only makes edges look behind) and 3 s */
    beat("e", 1, 2 * (int64_t)S, 2000);
    beat("e", 1, 7 * (int64_t)S, 4000);
    beat("e", 1, 3 * (int64_t)S, 6000);
    edgeclock_publish(&ec, EDGECLOCK_WINDOW_MS - 1);
    assert_true(value("e") == 1.0); /* the window is not over: the value stays */
    edgeclock_publish(&ec, EDGECLOCK_WINDOW_MS);
    assert_true(value("e") == 7.0);
    /* the next window's samples are all smaller: its largest replaces 7 */
    beat("e", 1, -2 * (int64_t)S, EDGECLOCK_WINDOW_MS + 1000);
    beat("e", 1, -4 * (int64_t)S, EDGECLOCK_WINDOW_MS + 3000);
    edgeclock_publish(&ec, 2 * EDGECLOCK_WINDOW_MS - 1);
    assert_true(value("e") == 7.0);
    edgeclock_publish(&ec, 2 * EDGECLOCK_WINDOW_MS);
    assert_true(value("e") == -2.0); /* the max of negatives, not the min, not 0 */
    /* a window with no heartbeat keeps the value (silent_ms 0) */
    edgeclock_publish(&ec, 3 * EDGECLOCK_WINDOW_MS);
    edgeclock_publish(&ec, 4 * EDGECLOCK_WINDOW_MS);
    assert_true(value("e") == -2.0);
}

static void test_incarnations_one_series(void **state)
{
    (void)state;
    beat("e", 1, 5 * (int64_t)S, 0);
    beat("other", 1, 0, 0);
    beat("e", 2, 0, 100); /* restarted, in step */
    edgeclock_publish(&ec, 100);
    assert_int_equal(edgeclock_collect(&ec, out, 8), 2);
    assert_true(value("e") == 0.0); /* the newest incarnation's */
    /* the old one heard again (a late batch) is now the newest */
    beat("e", 1, 5 * (int64_t)S, 200);
    edgeclock_publish(&ec, 200);
    assert_true(value("e") == 5.0);
    /* the old one forgotten: the new one's value, still one series */
    edgeclock_forget(&ec, (const uint8_t *)"e", 1, 1);
    edgeclock_publish(&ec, 300);
    assert_int_equal(edgeclock_collect(&ec, out, 8), 2);
    assert_true(value("e") == 0.0);
    edgeclock_forget(&ec, (const uint8_t *)"e", 1, 2);
    edgeclock_publish(&ec, 400);
    assert_false(present("e"));
    assert_true(present("other"));
}

static void test_ids_compared_by_bytes(void **state)
{
    (void)state;
    beat("edge-1", 1, 1 * (int64_t)S, 0);
    beat("edge-10", 1, 2 * (int64_t)S, 0); /* a prefix match would merge these */
    edgeclock_publish(&ec, 0);
    assert_true(value("edge-1") == 1.0);
    assert_true(value("edge-10") == 2.0);
}

static void test_ignored_inputs(void **state)
{
    (void)state;
    char longid[EDGECLOCK_ID_MAX + 2];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_true(edgeclock_sample(&ec, (const uint8_t *)"", 0, 1, WALL, WALL, 0));
    assert_true(edgeclock_sample(&ec, (const uint8_t *)longid, EDGECLOCK_ID_MAX + 1, 1, WALL, WALL, 0));
    assert_true(edgeclock_sample(&ec, (const uint8_t *)"e", 1, 1, 0, WALL, 0)); /* no at_ns */
    assert_true(edgeclock_sample(&ec, (const uint8_t *)"e", 1, 1, (uint64_t)INT64_MAX + 1, WALL, 0));
    edgeclock_publish(&ec, 0);
    assert_int_equal(edgeclock_collect(&ec, out, 8), 0);
    /* the longest id is kept whole */
    assert_true(edgeclock_sample(&ec, (const uint8_t *)longid, EDGECLOCK_ID_MAX, 1, WALL, WALL, 0));
    edgeclock_publish(&ec, 0);
    assert_int_equal(edgeclock_collect(&ec, out, 8), 1);
    assert_int_equal(strlen(out[0].value), EDGECLOCK_ID_MAX);
}

static void test_table_full(void **state)
{
    (void)state;
    char id[32];
    for (uint32_t i = 0; i < EDGECLOCK_SLOTS; i++) {
        snprintf(id, sizeof id, "e%u", i);
        assert_true(beat(id, 1, 0, 0));
    }
    assert_false(beat("late", 1, 0, 0)); /* no slot for a new incarnation */
    assert_false(beat("e0", 2, 0, 0));   /* nor a new incarnation of a known id */
    assert_true(beat("e0", 1, S, 1));    /* known ones still sample */
    edgeclock_publish(&ec, 1);
    /* only EDGECLOCK_EDGES ids published, the first ones in table order */
    assert_int_equal(edgeclock_collect(&ec, out, EDGECLOCK_EDGES + 1), EDGECLOCK_EDGES);
    assert_false(present("late"));
    assert_true(value("e0") == 0.0); /* first heartbeat: 0; the 1 s one waits for the window */
    /* a forgotten slot is free again */
    edgeclock_forget(&ec, (const uint8_t *)"e5", 2, 1);
    assert_true(beat("late", 1, 0, 2));
    assert_false(beat("later", 1, 0, 2));
}

static void test_silent_edge_disappears(void **state)
{
    (void)state;
    edgeclock_fini(&ec);
    edgeclock_init(&ec, 2500);
    beat("quiet", 1, S, 0);
    beat("chatty", 1, -(int64_t)S, 0);
    for (uint64_t t = 1000; t <= 3000; t += 1000) {
        beat("chatty", 1, -(int64_t)S, t);
        edgeclock_publish(&ec, t);
        if (t < 2500)
            assert_true(present("quiet"));
    }
    assert_false(present("quiet")); /* 2.5 s without a heartbeat */
    assert_true(value("chatty") == -1.0);
    /* and its slot is free: back with the same incarnation, it starts over */
    beat("quiet", 1, 4 * (int64_t)S, 3500);
    edgeclock_publish(&ec, 3500);
    assert_true(value("quiet") == 4.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nothing_until_published, setup, teardown),
        cmocka_unit_test_setup_teardown(test_negative_and_sub_second, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_max_rolls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incarnations_one_series, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_compared_by_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ignored_inputs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_edge_disappears, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
