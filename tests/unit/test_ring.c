/* SPDX-License-Identifier: Apache-2.0 */
/* test_ring.c - rendezvous hashing of devices over notifier ids: the same
 * answer whatever the members' order, an even spread, and the property the
 * design rests on: adding or removing a member moves only that member's
 * devices. Plus the id-list parser heartbeats use. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "sl/ring.h"

#define NDEV 30000

static uint64_t K(const char *s)
{
    return ring_key(s, strlen(s));
}

static uint64_t dev_key(int i)
{
    char d[32];
    int n = snprintf(d, sizeof d, "pump-%05d", i);
    return ring_key(d, (size_t)n);
}

static void test_spread_and_order(void **state)
{
    (void)state;
    uint64_t m[3] = {K("ntf-0"), K("ntf-1"), K("ntf-2")};
    uint64_t r[3] = {m[2], m[0], m[1]}; /* the same set in another order */
    int count[3] = {0, 0, 0};
    for (int i = 0; i < NDEV; i++) {
        uint64_t d = dev_key(i);
        uint32_t a = ring_pick(d, m, 3), b = ring_pick(d, r, 3);
        assert_true(m[a] == r[b]);
        count[a]++;
    }
    for (int k = 0; k < 3; k++) /* 10,000 each, give or take a few percent */
        assert_true(count[k] > NDEV / 3 - 600 && count[k] < NDEV / 3 + 600);
    assert_int_equal(ring_pick(dev_key(1), m, 1), 0);
}

static void test_minimal_movement(void **state)
{
    (void)state;
    uint64_t three[3] = {K("ntf-0"), K("ntf-1"), K("ntf-2")};
    uint64_t two[2] = {K("ntf-0"), K("ntf-2")}; /* ntf-1 gone */
    int moved = 0, had = 0;
    for (int i = 0; i < NDEV; i++) {
        uint64_t d = dev_key(i);
        uint64_t before = three[ring_pick(d, three, 3)], after = two[ring_pick(d, two, 2)];
        if (before == K("ntf-1")) {
            had++;
            continue; /* its devices go somewhere */
        }
        if (before != after)
            moved++;
    }
    assert_int_equal(moved, 0); /* nobody else's device moves */
    assert_true(had > 9000);
    /* ... and when it comes back, exactly its devices move back */
    for (int i = 0; i < NDEV; i++) {
        uint64_t d = dev_key(i);
        uint64_t b = two[ring_pick(d, two, 2)], a = three[ring_pick(d, three, 3)];
        assert_true(a == b || a == K("ntf-1"));
    }
}

static void test_parse(void **state)
{
    (void)state;
    uint64_t k[RING_MAX];
    const char *l = "ntf-0,,ntf-1,";
    assert_int_equal(ring_parse(l, strlen(l), k), 2);
    assert_true(k[0] == K("ntf-0") && k[1] == K("ntf-1"));
    assert_int_equal(ring_parse("", 0, k), 0);
    assert_int_equal(ring_parse("a", 1, k), 1);
    char big[RING_MAX * 4 + 16];
    size_t n = 0;
    for (unsigned i = 0; i < RING_MAX + 3; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s%u", i ? "," : "", i % 10);
    assert_int_equal(ring_parse(big, n, k), RING_MAX);
    assert_true(K("ntf-0") != K("ntf-1"));
    assert_true(ring_key("", 0) != 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spread_and_order),
        cmocka_unit_test(test_minimal_movement),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
