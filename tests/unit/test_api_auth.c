/* SPDX-License-Identifier: Apache-2.0 */
/* test_api_auth.c - the tokens file and bearer checks (api/auth.c), and the
 * per-client rate limits (api/ratelim.c). Pure: no HTTP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"
#include "ratelim.h"

static const char file[] = "# NAME SCOPE TOKEN\n"
                           "\n"
                           "grafana ro 0123456789abcdef-view\r\n"
                           "  ops\trw   fedcba9876543210-ops  \n"
                           "   # an indented comment\n"
                           "ci rw 0123456789abcdef-ci"; /* no final newline */

static void test_parse_check(void **state)
{
    (void)state;
    char err[160];
    struct auth *a = auth_parse(file, strlen(file), err, sizeof err);
    assert_non_null(a);
    assert_int_equal(auth_count(a), 3);
    const char *name;
    assert_int_equal(auth_check(a, "Bearer 0123456789abcdef-view", false, &name), AUTH_OK);
    assert_string_equal(name, "grafana");
    assert_int_equal(auth_check(a, "bearer   0123456789abcdef-view ", false, &name), AUTH_OK);
    assert_int_equal(auth_check(a, "Bearer 0123456789abcdef-view", true, &name), AUTH_SCOPE);
    assert_string_equal(name, "grafana");
    assert_int_equal(auth_check(a, "Bearer fedcba9876543210-ops", true, &name), AUTH_OK);
    assert_string_equal(name, "ops");
    assert_int_equal(auth_check(a, "Bearer 0123456789abcdef-ci", true, &name), AUTH_OK);
    assert_string_equal(name, "ci");
    /* the carriage return is not part of the token */
    assert_int_equal(auth_check(a, "Bearer 0123456789abcdef-view\r", false, &name), AUTH_BAD);
    assert_int_equal(auth_check(a, NULL, false, &name), AUTH_MISSING);
    assert_null(name);
    assert_int_equal(auth_check(a, "", false, &name), AUTH_MISSING);
    assert_int_equal(auth_check(a, "Bearer ", false, &name), AUTH_MISSING);
    assert_int_equal(auth_check(a, "Basic b3BzOnB3", false, &name), AUTH_MISSING);
    assert_int_equal(auth_check(a, "Bearer 0123456789abcdef-vie", false, &name), AUTH_BAD);
    assert_int_equal(auth_check(a, "Bearer 0123456789abcdef-viewx", false, &name), AUTH_BAD);
    assert_int_equal(auth_check(a, "Bearer grafana", false, &name), AUTH_BAD); /* a name is not a token */
    assert_null(name);
    auth_destroy(&a);
    assert_null(a);
}

static void test_parse_errors(void **state)
{
    (void)state;
    char err[160];
    struct {
        const char *text, *why;
    } bad[] = {
        {"", "no token"},
        {"# only a comment\n", "no token"},
        {"a ro 0123456789abcdef x\n", "line 1"},
        {"a ro\n", "line 1"},
        {"ok ro 0123456789abcdef\nb rx 0123456789abcdef\n", "line 2: SCOPE"},
        {"a rw short\n", "TOKEN"},
        {"a rw 0123456789abcde\xff\n", "TOKEN"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        struct auth *a = auth_parse(bad[i].text, strlen(bad[i].text), err, sizeof err);
        assert_null(a);
        assert_non_null(strstr(err, bad[i].why));
    }
    char longname[200];
    snprintf(longname, sizeof longname, "%065d rw 0123456789abcdef\n", 0);
    assert_null(auth_parse(longname, strlen(longname), err, sizeof err));
    assert_non_null(strstr(err, "NAME"));
}

static void test_ratelim(void **state)
{
    (void)state;
    struct ratelim *r = ratelim_new(2.0, 3.0, 16); /* 2/s, burst 3 */
    assert_non_null(r);
    uint64_t retry = 0, t = 1000000;
    for (int k = 0; k < 3; k++)
        assert_true(ratelim_take(r, "tok:a", t, &retry));
    assert_false(ratelim_take(r, "tok:a", t, &retry));
    assert_int_equal(retry, 500);                     /* one token at 2/s */
    assert_true(ratelim_take(r, "tok:b", t, &retry)); /* its own bucket */
    assert_false(ratelim_take(r, "tok:a", t + 400000, &retry));
    assert_true(retry >= 1 && retry <= 100);
    assert_true(ratelim_take(r, "tok:a", t + 500000, &retry)); /* refilled by then */
    assert_false(ratelim_take(r, "tok:a", t + 500000, &retry));
    /* never above the burst after a long pause */
    t += 100000000;
    for (int k = 0; k < 3; k++)
        assert_true(ratelim_take(r, "tok:a", t, &retry));
    assert_false(ratelim_take(r, "tok:a", t, &retry));
    /* many clients: the table is bounded, old ones are forgotten (start full) */
    char key[32];
    for (int k = 0; k < 1000; k++) {
        snprintf(key, sizeof key, "addr:10.0.%d.%d", k / 256, k % 256);
        assert_true(ratelim_take(r, key, t + 1, &retry));
    }
    ratelim_destroy(&r);
    assert_null(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_check),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_ratelim),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
