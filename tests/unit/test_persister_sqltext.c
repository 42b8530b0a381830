/* SPDX-License-Identifier: Apache-2.0 */
/* test_persister_sqltext.c - SQL literals (persister/sqltext.c), byte by
 * byte: every byte value 1..255 alone and all of them in one string come out
 * as E'...' with exactly ' and \ doubled and every other byte as it is; the
 * empty string, the worst case (all quotes: exactly SQLTEXT_LIT_MAX bytes)
 * and UTF-8; timestamps quoted without a cast, within SQLTEXT_TS_MAX at the
 * ends of the int64 range; and no function writes past what it returns (no
 * NUL, no stray byte: a canary after the output stays). Pure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sqltext.h"

#define CANARY 0x5a

static void fill(char *buf, size_t n)
{
    memset(buf, CANARY, n);
}

/* buf[from..to) all still CANARY. */
static void assert_untouched(const char *buf, size_t from, size_t to)
{
    for (size_t k = from; k < to; k++)
        assert_int_equal((unsigned char)buf[k], CANARY);
}

static void test_lit_each_byte(void **state)
{
    (void)state;
    char out[16];
    for (int b = 1; b < 256; b++) {
        const char in = (char)b;
        fill(out, sizeof out);
        size_t n = sqltext_lit(out, &in, 1);
        const int doubled = b == '\'' || b == '\\';
        assert_int_equal(n, doubled ? 5 : 4);
        assert_true(n <= SQLTEXT_LIT_MAX(1));
        assert_int_equal(out[0], 'E');
        assert_int_equal(out[1], '\'');
        assert_int_equal((unsigned char)out[2], b);
        if (doubled)
            assert_int_equal((unsigned char)out[3], b);
        assert_int_equal(out[n - 1], '\'');
        if ((unsigned char)CANARY != b)
            assert_untouched(out, n, sizeof out);
    }
}

static void test_lit_all_bytes(void **state)
{
    (void)state;
    char in[255];
    for (int k = 0; k < 255; k++)
        in[k] = (char)(k + 1);
    /* What it must be, built the slow way. */
    char want[SQLTEXT_LIT_MAX(255)];
    size_t w = 0;
    want[w++] = 'E';
    want[w++] = '\'';
    for (int k = 0; k < 255; k++) {
        if (in[k] == '\'' || in[k] == '\\')
            want[w++] = in[k];
        want[w++] = in[k];
    }
    want[w++] = '\'';
    assert_int_equal(w, 255 + 3 + 2); /* two bytes doubled */

    char out[SQLTEXT_LIT_MAX(255) + 8];
    fill(out, sizeof out);
    size_t n = sqltext_lit(out, in, sizeof in);
    assert_int_equal(n, w);
    assert_memory_equal(out, want, w);
    assert_untouched(out, n, sizeof out);
}

static void test_lit_edges(void **state)
{
    (void)state;
    char out[64];

    fill(out, sizeof out);
    assert_int_equal(sqltext_lit(out, "", 0), 3);
    assert_memory_equal(out, "E''", 3);
    assert_untouched(out, 3, sizeof out);

    /* The worst case fills the bound exactly. */
    fill(out, sizeof out);
    assert_int_equal(sqltext_lit(out, "''\\\\'", 5), SQLTEXT_LIT_MAX(5));
    assert_memory_equal(out, "E'''''\\\\\\\\'''", SQLTEXT_LIT_MAX(5));
    assert_untouched(out, SQLTEXT_LIT_MAX(5), sizeof out);

    /* As devsum.c and db.c see a device id with both. */
    fill(out, sizeof out);
    assert_int_equal(sqltext_lit(out, "o'k\\", 4), 9);
    assert_memory_equal(out, "E'o''k\\\\'", 9);

    /* UTF-8 (é, €) goes through untouched: only ' and \ are special. */
    static const char utf8[] = "\xc3\xa9\xe2\x82\xac";
    fill(out, sizeof out);
    assert_int_equal(sqltext_lit(out, utf8, 5), 8);
    assert_memory_equal(out, "E'\xc3\xa9\xe2\x82\xac'", 8);
    assert_untouched(out, 8, sizeof out);
}

static void test_put(void **state)
{
    (void)state;
    char out[32];
    fill(out, sizeof out);
    assert_int_equal(sqltext_put(out, "COMMIT"), 6);
    assert_memory_equal(out, "COMMIT", 6);
    assert_untouched(out, 6, sizeof out); /* no NUL */
    assert_int_equal(sqltext_put(out, ""), 0);
    assert_int_equal((unsigned char)out[0], 'C');
}

static void test_ts(void **state)
{
    (void)state;
    static const struct {
        int64_t us;
        const char *want;
    } cases[] = {
        {0, "'1970-01-01 00:00:00.000000+00'"},
        {-1, "'1969-12-31 23:59:59.999999+00'"},
        {1764358202000001, "'2025-11-28 19:30:02.000001+00'"},
    };
    char out[SQLTEXT_TS_MAX + 8];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fill(out, sizeof out);
        size_t n = sqltext_ts(out, cases[i].us);
        assert_int_equal(n, strlen(cases[i].want));
        assert_memory_equal(out, cases[i].want, n);
        assert_untouched(out, n, sizeof out);
    }
    /* The longest years there are stay in the bound. */
    static const int64_t ends[] = {INT64_MAX, INT64_MIN + 1};
    for (size_t i = 0; i < 2; i++) {
        fill(out, sizeof out);
        size_t n = sqltext_ts(out, ends[i]);
        assert_true(n <= SQLTEXT_TS_MAX);
        assert_int_equal(out[0], '\'');
        assert_int_equal(out[n - 1], '\'');
        assert_untouched(out, SQLTEXT_TS_MAX, sizeof out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lit_each_byte),
        cmocka_unit_test(test_lit_all_bytes),
        cmocka_unit_test(test_lit_edges),
        cmocka_unit_test(test_put),
        cmocka_unit_test(test_ts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
