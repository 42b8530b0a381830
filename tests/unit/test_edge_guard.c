/* test_edge_guard.c - who may connect (edge/guard.c), with a hand-driven
 * clock: per-source connection and early caps, the connect-rate bucket
 * (which a connect/close churn cannot reset), failed hellos leading to a
 * growing ban, device flapping counted only through guard_device_ended,
 * the allow list, IPv6 /64 grouping, the edge-wide accept bucket, the sweep
 * freeing what has nothing left to remember, and a full pool failing open. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>
#include "guard.h"

static struct addr v4(const char *s)
{
    struct addr a = {.port = 1};
    assert_int_equal(inet_pton(AF_INET, s, a.ip), 1);
    return a;
}

static struct addr v6(const char *s)
{
    struct addr a = {.port = 1, .v6 = true};
    assert_int_equal(inet_pton(AF_INET6, s, a.ip), 1);
    return a;
}

static struct guard_cfg base(void)
{
    struct guard_cfg c = {
        .slots = 100,
        .source_conns = 3,
        .source_early = 2,
        .source_rate = 0,
        .source_burst = 1,
        .source_fails = 2,
        .device_ends = 3,
        .ban_min_ms = 1000,
        .ban_max_ms = 4000,
    };
    return c;
}

#define T0 1000000u /* any monotonic start */

static void source_caps(void **st)
{
    (void)st;
    struct guard_cfg c = base();
    struct guard *g = guard_new(&c);
    struct addr a = v4("192.0.2.1"), b = v4("192.0.2.2");
    uint32_t retry;
    assert_int_equal(guard_connect(g, &a, T0, &retry), GUARD_OK);
    assert_int_equal(guard_connect(g, &a, T0, &retry), GUARD_OK);
    /* two early: the third waits for a hello */
    assert_int_equal(guard_connect(g, &a, T0, &retry), GUARD_SOURCE_EARLY);
    assert_true(retry > 0);
    guard_hello_ok(g, &a);
    assert_int_equal(guard_connect(g, &a, T0, &retry), GUARD_OK);
    /* three open: the cap */
    guard_hello_ok(g, &a);
    assert_int_equal(guard_connect(g, &a, T0, &retry), GUARD_SOURCE_CONNS);
    /* another address is not affected */
    assert_int_equal(guard_connect(g, &b, T0, &retry), GUARD_OK);
    guard_closed(g, &a, false);
    assert_int_equal(guard_connect(g, &a, T0, &retry), GUARD_OK);
    assert_int_equal(stat_get(&guard_counts(g)->refused[GUARD_SOURCE_EARLY]), 1);
    assert_int_equal(stat_get(&guard_counts(g)->refused[GUARD_SOURCE_CONNS]), 1);
    guard_destroy(&g);
    assert_null(g);
}

static void connect_rate_survives_churn(void **st)
{
    (void)st;
    struct guard_cfg c = base();
    c.source_rate = 2; /* per second */
    c.source_burst = 3;
    c.source_early = 0;
    c.source_conns = 0;
    struct guard *g = guard_new(&c);
    struct addr a = v4("198.51.100.7");
    uint32_t retry;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(guard_connect(g, &a, T0, &retry), GUARD_OK);
        guard_closed(g, &a, true); /* connect, drop: churn */
    }
    guard_sweep(g, T0); /* the bucket is not full: the entry must stay */
    assert_int_equal(guard_connect(g, &a, T0, &retry), GUARD_SOURCE_RATE);
    assert_true(retry >= 400 && retry <= 501); /* one token at 2/s */
    assert_int_equal(guard_connect(g, &a, T0 + 500, &retry), GUARD_OK);
    guard_closed(g, &a, true);
    /* once the bucket is full again and nothing else is remembered, the sweep frees it */
    assert_int_equal(guard_sources(g), 1);
    guard_sweep(g, T0 + 10000);
    assert_int_equal(guard_sources(g), 0);
    guard_destroy(&g);
}

static void failed_hellos_ban_and_grow(void **st)
{
    (void)st;
    struct guard_cfg c = base();
    c.source_early = 0;
    c.source_conns = 0;
    struct guard *g = guard_new(&c);
    struct addr a = v4("203.0.113.9");
    uint32_t retry, ban = 0;
    uint64_t t = T0;
    /* three failures in a minute with source_fails 2: the third bans */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(guard_connect(g, &a, t, &retry), GUARD_OK);
        ban = guard_hello_failed(g, &a, t);
        guard_closed(g, &a, false);
    }
    assert_int_equal(ban, 1000);
    assert_int_equal(stat_get(&guard_counts(g)->bans_source), 1);
    assert_int_equal(guard_connect(g, &a, t, &retry), GUARD_SOURCE_BANNED);
    assert_true(retry >= 1000);
    /* after the ban: allowed again; the next ban is twice as long */
    t += 2000;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(guard_connect(g, &a, t, &retry), GUARD_OK);
        ban = guard_hello_failed(g, &a, t);
        guard_closed(g, &a, false);
    }
    assert_int_equal(ban, 2000);
    t += 3000;
    for (int k = 0; k < 3; k++) { /* 4000, then capped at ban_max 4000 */
        for (int i = 0; i < 3; i++) {
            assert_int_equal(guard_connect(g, &a, t, &retry), GUARD_OK);
            ban = guard_hello_failed(g, &a, t);
            guard_closed(g, &a, false);
        }
        assert_int_equal(ban, 4000);
        t += 5000;
    }
    /* the failures of a minute ago do not count: two more do not ban */
    t += 61000;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(guard_connect(g, &a, t, &retry), GUARD_OK);
        assert_int_equal(guard_hello_failed(g, &a, t), 0);
        guard_closed(g, &a, false);
    }
    guard_destroy(&g);
}

static void device_flapping(void **st)
{
    (void)st;
    struct guard_cfg c = base();
    struct guard *g = guard_new(&c);
    uint64_t t = T0;
    assert_int_equal(guard_device_check(g, "pump-1", 6, t), 0);
    /* checks alone (hellos) never ban: only ended authenticated sessions count */
    for (int i = 0; i < 20; i++)
        assert_int_equal(guard_device_check(g, "pump-1", 6, t), 0);
    uint32_t ban = 0;
    for (int i = 0; i < 4; i++)
        ban = guard_device_ended(g, "pump-1", 6, t);
    assert_int_equal(ban, 1000);
    assert_true(guard_device_check(g, "pump-1", 6, t) >= 1000);
    assert_int_equal(guard_device_check(g, "pump-2", 6, t), 0); /* another device */
    assert_int_equal(guard_device_check(g, "pump-1", 6, t + 1000), 0);
    assert_int_equal(stat_get(&guard_counts(g)->bans_device), 1);
    assert_int_equal(stat_get(&guard_counts(g)->refused[GUARD_DEVICE_BANNED]), 1);
    guard_sweep(g, t + 200000);
    assert_int_equal(guard_devices(g), 0);
    guard_destroy(&g);
}

static void allow_list_and_v6(void **st)
{
    (void)st;
    struct guard_cfg c = base();
    const char *bad;
    c.nallow = cidr_parse_list("10.0.0.0/8, 2001:db8:aaaa::/48", c.allow, GUARD_ALLOW_MAX, &bad);
    assert_int_equal(c.nallow, -1); /* a space is not part of an address */
    c.nallow = cidr_parse_list("10.0.0.0/8,2001:db8:aaaa::/48,192.0.2.5", c.allow, GUARD_ALLOW_MAX, &bad);
    assert_int_equal(c.nallow, 3);
    assert_int_equal(cidr_parse_list("10.0.0.0/33", c.allow + 3, 1, &bad), -1);
    assert_string_equal(bad, "10.0.0.0/33");
    struct guard *g = guard_new(&c);
    uint32_t retry;
    struct addr nat = v4("10.1.2.3");
    for (int i = 0; i < 50; i++) /* far above every per-source limit */
        assert_int_equal(guard_connect(g, &nat, T0, &retry), GUARD_OK);
    struct addr lb = v4("192.0.2.5"), other = v4("192.0.2.6");
    for (int i = 0; i < 10; i++)
        assert_int_equal(guard_connect(g, &lb, T0, &retry), GUARD_OK);
    assert_int_equal(guard_connect(g, &other, T0, &retry), GUARD_OK);
    assert_int_equal(guard_connect(g, &other, T0, &retry), GUARD_OK);
    assert_int_equal(guard_connect(g, &other, T0, &retry), GUARD_SOURCE_EARLY);
    /* an IPv6 source is its /64: two addresses of one /64 share limits */
    struct addr x1 = v6("2001:db8:1:2::1"), x2 = v6("2001:db8:1:2:ffff::9"), y = v6("2001:db8:1:3::1");
    assert_int_equal(guard_connect(g, &x1, T0, &retry), GUARD_OK);
    assert_int_equal(guard_connect(g, &x2, T0, &retry), GUARD_OK);
    assert_int_equal(guard_connect(g, &x1, T0, &retry), GUARD_SOURCE_EARLY);
    assert_int_equal(guard_connect(g, &y, T0, &retry), GUARD_OK);
    struct addr in48 = v6("2001:db8:aaaa:77::1");
    for (int i = 0; i < 10; i++)
        assert_int_equal(guard_connect(g, &in48, T0, &retry), GUARD_OK);
    guard_destroy(&g);
}

static void accept_bucket(void **st)
{
    (void)st;
    struct guard_cfg c = base();
    c.accept_rate = 100;
    c.accept_burst = 5;
    struct guard *g = guard_new(&c);
    for (int i = 0; i < 5; i++)
        assert_int_equal(guard_accept(g, T0), 0);
    uint32_t wait = guard_accept(g, T0);
    assert_true(wait >= 10 && wait <= 11); /* one token at 100/s */
    assert_int_equal(guard_accept(g, T0 + 10), 0);
    guard_destroy(&g);
}

static void full_pool_fails_open(void **st)
{
    (void)st;
    struct guard_cfg c = base();
    c.slots = 4; /* the pool holds slots + slots/4 + 64 = 69 sources */
    struct guard *g = guard_new(&c);
    uint32_t retry;
    char ip[32];
    for (int i = 0; i < 69; i++) {
        snprintf(ip, sizeof ip, "198.18.0.%d", i + 1);
        struct addr a = v4(ip);
        assert_int_equal(guard_connect(g, &a, T0, &retry), GUARD_OK);
    }
    struct addr z = v4("198.18.1.1");
    for (int i = 0; i < 5; i++) /* untracked: admitted under the global limits only */
        assert_int_equal(guard_connect(g, &z, T0, &retry), GUARD_OK);
    assert_int_equal(stat_get(&guard_counts(g)->untracked), 5);
    guard_closed(g, &z, true); /* closing an untracked one is harmless */
    guard_destroy(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(source_caps),
        cmocka_unit_test(connect_rate_survives_churn),
        cmocka_unit_test(failed_hellos_ban_and_grow),
        cmocka_unit_test(device_flapping),
        cmocka_unit_test(allow_list_and_v6),
        cmocka_unit_test(accept_bucket),
        cmocka_unit_test(full_pool_fails_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
