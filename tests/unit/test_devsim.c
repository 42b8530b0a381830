/* SPDX-License-Identifier: Apache-2.0 */
/* test_devsim.c - sluice-devsim's pure parts: the latency histogram and its
 * quantiles, source address ranges, and the secret file reader. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "devsim.h"

static void test_hist_buckets(void **state)
{
    (void)state;
    /* exact below 64, monotonic, and every value lies in its bucket with
     * under 1/32 relative error */
    uint32_t prev = 0;
    for (uint64_t v = 0; v < 5000000; v += (v < 1000 ? 1 : v / 97)) {
        uint32_t i = hist_idx(v);
        assert_true(i < HIST_N);
        assert_true(i >= prev);
        prev = i;
        assert_true(hist_low(i) <= v);
        if (v < 64)
            assert_int_equal(hist_low(i), v);
        else
            assert_true((double)(v - hist_low(i)) <= (double)v / 32.0);
        if (i + 1 < HIST_N)
            assert_true(hist_low(i + 1) > v);
    }
    assert_int_equal(hist_idx(UINT64_MAX), HIST_N - 1);
}

static void test_hist_quantiles(void **state)
{
    (void)state;
    struct hist *h = calloc(1, sizeof *h);
    assert_int_equal(hist_quantile(h, 0.5), 0);
    for (uint64_t v = 1; v <= 100; v++)
        hist_add(h, v * 10); /* 10, 20, ..., 1000 ms */
    assert_int_equal(hist_total(h), 100);
    uint64_t p50 = hist_quantile(h, 0.5), p99 = hist_quantile(h, 0.99), p100 = hist_quantile(h, 1.0);
    assert_true(p50 >= 480 && p50 <= 500);
    assert_true(p99 >= 960 && p99 <= 990);
    assert_true(p100 >= 970 && p100 <= 1000);
    /* one slow outlier moves p99 and max, not p50 */
    for (int i = 0; i < 100; i++)
        hist_add(h, 5);
    hist_add(h, 60000);
    assert_true(hist_quantile(h, 0.5) <= 10);
    assert_true(hist_quantile(h, 1.0) >= 58000);
    free(h);
}

/* The summary's ramp split: latencies of acks up to the last second in
 * which not every device was connected, and the rest after it, even if a
 * device drops and reconnects later. */
static void test_ramp_split(void **state)
{
    (void)state;
    struct hist *lat = calloc(1, sizeof *lat), *after = calloc(1, sizeof *after);
    struct ramp *r = calloc(1, sizeof *r);
    hist_add(lat, 200000); /* second 1: 4 of 10 connected */
    ramp_second(r, lat, 4, 10);
    hist_add(lat, 150000); /* second 2: 9 of 10 */
    ramp_second(r, lat, 9, 10);
    hist_add(lat, 1000); /* second 3: all in: the ramp ended in second 2 */
    ramp_second(r, lat, 10, 10);
    hist_add(lat, 2000); /* second 4: one dropped; still after the ramp */
    ramp_second(r, lat, 9, 10);
    assert_true(r->over);
    assert_int_equal(hist_total(&r->lat), 2);
    assert_true(hist_quantile(&r->lat, 0.0) >= 145000);
    hist_sub(after, lat, &r->lat);
    assert_int_equal(hist_total(after), 2);
    assert_true(hist_quantile(after, 1.0) <= 2000);
    free(lat);
    free(after);
    free(r);
}

/* A send due within a millisecond waits for the next one: rounding down
 * armed 0 ms timers that spun until the clock ticked (0.65 core of devsim
 * for 200 devices at 5 msgs/s). */
static void test_send_at_ms(void **state)
{
    (void)state;
    assert_int_equal(send_at_ms(0), 0);
    assert_int_equal(send_at_ms(1), 1);
    assert_int_equal(send_at_ms(999), 1);
    assert_int_equal(send_at_ms(1000), 1);
    assert_int_equal(send_at_ms(1001), 2);
    assert_int_equal(send_at_ms(1500), 2);
    assert_int_equal(send_at_ms(UINT64_C(1764760000123456)), UINT64_C(1764760000124));
}

static void test_ip_range(void **state)
{
    (void)state;
    struct ip_range r;
    char out[16];
    assert_int_equal(ip_range_parse("127.0.0.2-127.0.0.250", &r), 0);
    assert_int_equal(ip_range_count(&r), 249);
    ip_range_at(&r, 0, out);
    assert_string_equal(out, "127.0.0.2");
    ip_range_at(&r, 248, out);
    assert_string_equal(out, "127.0.0.250");
    ip_range_at(&r, 249, out); /* wraps */
    assert_string_equal(out, "127.0.0.2");
    assert_int_equal(ip_range_parse("127.0.0.255-127.0.1.1", &r), 0);
    assert_int_equal(ip_range_count(&r), 3);
    ip_range_at(&r, 1, out);
    assert_string_equal(out, "127.0.1.0");
    assert_int_equal(ip_range_parse("10.0.0.7", &r), 0);
    assert_int_equal(ip_range_count(&r), 1);
    assert_int_equal(ip_range_parse("", &r), 0);
    assert_int_equal(ip_range_count(&r), 0);
    ip_range_at(&r, 3, out);
    assert_string_equal(out, "");
    assert_int_equal(ip_range_parse("127.0.0.9-127.0.0.2", &r), -1);
    assert_int_equal(ip_range_parse("127.0.0.2-", &r), -1);
    assert_int_equal(ip_range_parse("localhost", &r), -1);
    assert_int_equal(ip_range_parse("127.0.0.2-127.0.0.300", &r), -1);
}

static void test_secret_read(void **state)
{
    (void)state;
    char path[] = "/tmp/sl-test-devsim-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "demo-fleet-secret\n", 18), 18);
    close(fd);
    uint8_t buf[64];
    assert_int_equal(secret_read(path, buf, sizeof buf), 17);
    assert_memory_equal(buf, "demo-fleet-secret", 17);
    uint8_t tiny[4];
    assert_int_equal(secret_read(path, tiny, sizeof tiny), -1); /* too big: refused, not cut */
    unlink(path);
    assert_int_equal(secret_read(path, buf, sizeof buf), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_buckets), cmocka_unit_test(test_hist_quantiles),
        cmocka_unit_test(test_send_at_ms),   cmocka_unit_test(test_ip_range),
        cmocka_unit_test(test_secret_read),  cmocka_unit_test(test_ramp_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
