/* SPDX-License-Identifier: Apache-2.0 */
/* test_edge_ntfring.c - one worker's ring of notifiers (edge/ntfring.c):
 * an endpoint joins the ring once a heartbeat answer names it, leaves it
 * when its connection drops or it falls silent, a restarted notifier's new
 * address takes its id over; with no member everything goes to the first
 * connected endpoint (a notifier that never answers: the version before
 * heartbeats); and a device's owner moves only when its owner leaves. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "ntfring.h"

static struct sl_slice S(const char *s) {
    return (struct sl_slice){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static uint64_t
D(int i)
{
    char d[32];
    int n = snprintf(d, sizeof d, "dev-%d", i);
    return ring_key(d, (size_t)n);
}

static void test_members(void **state)
{
    (void)state;
    static struct ntfring r;
    ntfring_init(&r);
    int a = ntfring_add(&r, "tcp://10.0.0.1:7011"), b = ntfring_add(&r, "tcp://10.0.0.2:7011");
    assert_true(a >= 0 && b >= 0 && a != b);
    assert_int_equal(ntfring_owner(&r, D(1)), -1); /* nothing connected: nowhere */
    assert_false(ntfring_update(&r, 1000));

    /* connected, never answered: the fallback takes everything */
    ntfring_conn(&r, b, true, 1000);
    assert_true(ntfring_update(&r, 1000));
    assert_int_equal(r.legacy, b);
    assert_int_equal(ntfring_owner(&r, D(1)), b);
    ntfring_conn(&r, a, true, 1001);
    assert_false(ntfring_update(&r, 1001)); /* still b: the first connected slot */
    assert_int_equal(ntfring_owner(&r, D(2)), b);

    /* answers: a ring of two, in id order, the list heartbeats carry */
    assert_int_equal(ntfring_heard(&r, S("tcp://10.0.0.1:7011"), S("ntf-b"), 1100), a);
    assert_int_equal(ntfring_heard(&r, S("tcp://10.0.0.2:7011"), S("ntf-a"), 1100), b);
    assert_int_equal(ntfring_heard(&r, S("tcp://10.0.0.9:7011"), S("ntf-c"), 1100), -1); /* not ours */
    assert_int_equal(ntfring_heard(&r, S("tcp://10.0.0.1:7011"), S("bad id!"), 1100), -1);
    uint32_t v = r.version;
    assert_true(ntfring_update(&r, 1100));
    assert_true(r.version == v + 1);
    assert_int_equal(r.nm, 2);
    assert_int_equal(r.legacy, -1);
    assert_string_equal(r.list, "ntf-a,ntf-b");
    int count[NTFRING_PEERS] = {0};
    int owner[1000];
    for (int i = 0; i < 1000; i++) {
        owner[i] = ntfring_owner(&r, D(i));
        assert_true(owner[i] == a || owner[i] == b);
        count[owner[i]]++;
    }
    assert_true(count[a] > 400 && count[b] > 400);

    /* a drops its connection: b takes a's devices, keeps its own */
    ntfring_conn(&r, a, false, 1200);
    assert_true(ntfring_update(&r, 1200));
    assert_string_equal(r.list, "ntf-a");
    for (int i = 0; i < 1000; i++)
        assert_int_equal(ntfring_owner(&r, D(i)), b);
    /* connected again while its last answer is fresh: exactly its devices move back */
    ntfring_conn(&r, a, true, 1300);
    assert_true(ntfring_update(&r, 1300));
    assert_string_equal(r.list, "ntf-a,ntf-b");
    for (int i = 0; i < 1000; i++)
        assert_int_equal(ntfring_owner(&r, D(i)), owner[i]);
    assert_false(ntfring_update(&r, 1400)); /* nothing changed: no new version */
}

static void test_timeout_and_move(void **state)
{
    (void)state;
    static struct ntfring r;
    ntfring_init(&r);
    int a = ntfring_add(&r, "tcp://a:7011"), b = ntfring_add(&r, "tcp://b:7011");
    ntfring_conn(&r, a, true, 10);
    ntfring_conn(&r, b, true, 10);
    ntfring_heard(&r, S("tcp://a:7011"), S("n1"), 10);
    ntfring_heard(&r, S("tcp://b:7011"), S("n2"), 10);
    assert_true(ntfring_update(&r, 10));
    assert_int_equal(r.nm, 2);
    int before[500];
    for (int i = 0; i < 500; i++)
        before[i] = ntfring_owner(&r, D(i));
    /* n2 keeps answering, n1 falls silent (frozen: its connection stays up) */
    ntfring_heard(&r, S("tcp://b:7011"), S("n2"), 2000);
    assert_false(ntfring_update(&r, 10 + NTFRING_TIMEOUT_MS - 1));
    ntfring_heard(&r, S("tcp://b:7011"), S("n2"), 3000);
    assert_true(ntfring_update(&r, 10 + NTFRING_TIMEOUT_MS));
    assert_string_equal(r.list, "n2");
    for (int i = 0; i < 500; i++)
        assert_int_equal(ntfring_owner(&r, D(i)), b);

    /* n1 restarted at a new address: the new slot gets the id and exactly
     * n1's devices, the old address loses it */
    int c = ntfring_add(&r, "tcp://c:7011");
    ntfring_conn(&r, c, true, 3100);
    ntfring_heard(&r, S("tcp://c:7011"), S("n1"), 3100);
    assert_true(ntfring_update(&r, 3100));
    assert_string_equal(r.list, "n1,n2");
    for (int i = 0; i < 500; i++)
        assert_int_equal(ntfring_owner(&r, D(i)), before[i] == a ? c : b);
    ntfring_heard(&r, S("tcp://a:7011"), S("n1"), 3200); /* the old address answers again: it takes n1 back */
    assert_true(ntfring_update(&r, 3200));
    assert_int_equal(r.p[c].id[0], '\0');
    for (int i = 0; i < 500; i++)
        assert_int_equal(ntfring_owner(&r, D(i)), before[i]);

    /* removed endpoints are gone from the ring and can be found no more; the
     * version moves at once, so entries routed to the slot are routed again */
    uint32_t v = r.version;
    ntfring_remove(&r, a);
    assert_true(r.version != v);
    assert_int_equal(ntfring_find(&r, "tcp://a:7011", 12), -1);
    assert_true(ntfring_update(&r, 3300));
    assert_string_equal(r.list, "n2");
    assert_int_equal(ntfring_find(&r, "tcp://b:7011", 12), b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_timeout_and_move),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
