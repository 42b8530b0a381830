/* SPDX-License-Identifier: Apache-2.0 */
/* test_edge_ntfsent.c - control entries sent to a notifier and not yet
 * confirmed (edge/ntfsent.c): an answer to heartbeat h confirms exactly the
 * entries sent to that notifier before h, not later ones nor another
 * notifier's; a notifier that dies hands on what it had not confirmed, in
 * order, and nothing older than the age bound; a notifier that does not
 * echo confirms everything; full buffers forget the oldest eighth, counted. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "ntfsent.h"

/* What ntfsent_take handed on: how many, and the first 64 of them. */
struct got {
    char s[64][16];
    uint32_t n;
};

static void collect(void *ud, struct sl_slice ent)
{
    struct got *g = ud;
    assert_true(ent.n < 16);
    if (g->n < 64) {
        memcpy(g->s[g->n], ent.p, ent.n);
        g->s[g->n][ent.n] = '\0';
    }
    g->n++;
}

static void add(struct ntfsent *t, int s, const char *v, uint64_t now)
{
    ntfsent_add(t, s, (struct sl_slice){(const uint8_t *)v, (uint32_t)strlen(v)}, now);
}

static void test_confirm_by_heartbeat(void **state)
{
    (void)state;
    static struct ntfsent t;
    assert_int_equal(ntfsent_init(&t), 0);
    add(&t, 0, "a1", 100);
    add(&t, 1, "b1", 100);
    add(&t, 0, "a2", 100);
    ntfsent_mark(&t, 0, 1001); /* after a1, a2 */
    ntfsent_mark(&t, 1, 1002); /* after b1 */
    add(&t, 0, "a3", 200);
    ntfsent_mark(&t, 0, 1003); /* after a3 */
    add(&t, 0, "a4", 300);
    assert_int_equal(ntfsent_live(&t, 0), 4);

    assert_int_equal(ntfsent_confirm(&t, 0, 999), 0);  /* no such heartbeat */
    assert_int_equal(ntfsent_confirm(&t, 0, 1002), 0); /* slot 1's heartbeat, not slot 0's */
    assert_int_equal(ntfsent_confirm(&t, 0, 1001), 2); /* a1, a2 */
    assert_int_equal(ntfsent_live(&t, 0), 2);
    assert_int_equal(ntfsent_live(&t, 1), 1);          /* untouched */
    assert_int_equal(ntfsent_confirm(&t, 0, 1001), 0); /* answered already */

    /* slot 0 dies: a3 and a4 go on, in order; b1 stays */
    struct got g = {0};
    assert_int_equal(ntfsent_take(&t, 0, 400, collect, &g), 2);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.s[0], "a3");
    assert_string_equal(g.s[1], "a4");
    assert_int_equal(ntfsent_live(&t, 0), 0);
    assert_int_equal(ntfsent_confirm(&t, 0, 1003), 0); /* its marks went with it */

    /* the slot comes back (a restarted notifier): numbering goes on */
    add(&t, 0, "a5", 500);
    ntfsent_mark(&t, 0, 1004);
    assert_int_equal(ntfsent_confirm(&t, 0, 1004), 1);
    assert_int_equal(ntfsent_confirm(&t, 1, 1002), 1);
    assert_int_equal(t.n, 0); /* all confirmed: the buffers start over */
    assert_int_equal(t.len, 0);
    assert_int_equal(t.forgotten, 0);
    ntfsent_free(&t);
}

static void test_no_echo_and_age(void **state)
{
    (void)state;
    static struct ntfsent t;
    assert_int_equal(ntfsent_init(&t), 0);
    add(&t, 2, "x1", 0);
    add(&t, 2, "x2", 0);
    ntfsent_mark(&t, 2, 77);
    add(&t, 2, "x3", 0);
    /* a notifier of the version before the echo answers with 0: all of it */
    assert_int_equal(ntfsent_confirm(&t, 2, 0), 3);

    /* only entries younger than the bound are handed on */
    add(&t, 3, "old", 1000);
    add(&t, 3, "new", 1000 + NTFSENT_AGE_MS);
    struct got g = {0};
    assert_int_equal(ntfsent_take(&t, 3, 1000 + NTFSENT_AGE_MS + 1, collect, &g), 1);
    assert_string_equal(g.s[0], "new");
    assert_int_equal(t.forgotten, 1);
    ntfsent_free(&t);
}

static void test_full(void **state)
{
    (void)state;
    static struct ntfsent t;
    assert_int_equal(ntfsent_init(&t), 0);
    /* 600 more entries than the index holds, slots 4 (p) and 5 (q)
     * interleaved; 500 of q confirmed on the way leave holes that the
     * compaction squeezes out; then the oldest go until an eighth is free:
     * 15,884 live - 14,336 = 1,548 forgotten, p0..p998 (no q left there),
     * then p1000..p2046 and q1001..q2047 */
    char v[16];
    uint32_t total = NTFSENT_ENTRIES + 600;
    for (uint32_t i = 0; i < total; i++) {
        snprintf(v, sizeof v, "%c%u", i % 2 ? 'q' : 'p', i);
        add(&t, 4 + (int)(i % 2), v, 1);
        if (i == 1000) {
            ntfsent_mark(&t, 5, 9);
            assert_int_equal(ntfsent_confirm(&t, 5, 9), 500); /* q1..q999 */
        }
    }
    assert_int_equal(t.forgotten, 1548);
    assert_int_equal(ntfsent_live(&t, 4) + ntfsent_live(&t, 5), NTFSENT_ENTRIES - NTFSENT_ENTRIES / 8 + 600);
    struct got c = {0};
    assert_int_equal(ntfsent_take(&t, 4, 2, collect, &c), total / 2 - 1024);
    assert_int_equal(c.n, total / 2 - 1024);
    assert_string_equal(c.s[0], "p2048");
    struct got d = {0};
    assert_int_equal(ntfsent_take(&t, 5, 2, collect, &d), total / 2 - 500 - 524);
    assert_string_equal(d.s[0], "q2049");
    assert_int_equal(t.n, 0);

    /* an entry bigger than everything kept: all of it goes for it */
    add(&t, 6, "small", 1);
    static uint8_t big[NTFSENT_BYTES];
    memset(big, 'b', sizeof big);
    ntfsent_add(&t, 7, (struct sl_slice){big, sizeof big}, 1);
    assert_int_equal(ntfsent_live(&t, 6), 0);
    assert_int_equal(ntfsent_live(&t, 7), 1);
    assert_int_equal(t.forgotten, 1549);
    ntfsent_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_confirm_by_heartbeat),
        cmocka_unit_test(test_no_echo_and_age),
        cmocka_unit_test(test_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
