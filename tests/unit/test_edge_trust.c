/* test_edge_trust.c - fleet secrets and the deny list (edge/trust.c) on byte
 * arrays: a secret file of one or two lines (a rotation: tokens of both are
 * good until the previous line goes), refusals that change nothing (short,
 * shipped example, three lines, empty), CRLF; the deny list with comments,
 * blanks and a bad id reported by line. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "sl/limits.h"
#include "sl/token.h"
#include "trust.h"

#define CUR  "current-fleet-secret-0001"
#define PREV "previous-fleet-secret-0000"

static bool ok(struct trust *t, const char *secret, const char *dev)
{
    char tok[SL_TOKEN_HEX + 1];
    token_compute((const uint8_t *)secret, strlen(secret), (const uint8_t *)dev, strlen(dev), tok);
    return trust_token_ok(t, (const uint8_t *)dev, strlen(dev), (const uint8_t *)tok, strlen(tok));
}

static int set(struct trust *t, const char *file, int *count, const char **why)
{
    return trust_set_secrets(t, (const uint8_t *)file, strlen(file), count, why);
}

static void rotation(void **st)
{
    (void)st;
    struct trust *t = trust_new();
    int count = 0;
    const char *why = NULL;
    assert_false(ok(t, CUR, "pump-1")); /* no secret yet: nothing is good */
    assert_int_equal(set(t, PREV "\n", &count, &why), 0);
    assert_int_equal(count, 1);
    assert_true(ok(t, PREV, "pump-1"));
    assert_false(ok(t, CUR, "pump-1"));
    /* the rotation: the new secret first, the old one still accepted */
    assert_int_equal(set(t, CUR "\r\n" PREV "\r\n", &count, &why), 0);
    assert_int_equal(count, 2);
    assert_true(ok(t, CUR, "pump-1"));
    assert_true(ok(t, PREV, "pump-1"));
    assert_false(ok(t, "some-other-secret-xyz", "pump-1"));
    /* the end of the overlap */
    assert_int_equal(set(t, "\n" CUR "\n\n", &count, &why), 0);
    assert_int_equal(count, 1);
    assert_true(ok(t, CUR, "pump-1"));
    assert_false(ok(t, PREV, "pump-1"));
    trust_destroy(&t);
    assert_null(t);
}

static void refusals_change_nothing(void **st)
{
    (void)st;
    struct trust *t = trust_new();
    int count = 0;
    const char *why = NULL;
    assert_int_equal(set(t, CUR, &count, &why), 0);
    static const char *const bad[] = {
        "short-secret",                                    /* 12 bytes */
        "change-me-fleet-secret",                          /* shipped in deploy/ */
        "demo-fleet-secret-but-longer\ndemo-fleet-secret", /* the second line is the shipped demo one */
        CUR "\n" PREV "\nthird-fleet-secret-0002",
        "",
        "\n\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        assert_int_equal(set(t, bad[i], &count, &why), -1);
        assert_non_null(why);
        assert_true(ok(t, CUR, "pump-2")); /* the running secret is kept */
    }
    assert_true(trust_secret_weak((const uint8_t *)"demo-fleet-secret", 17, &why));
    assert_false(trust_secret_weak((const uint8_t *)CUR, strlen(CUR), &why));
    trust_destroy(&t);
}

static int seen;

static void each(void *ud, const char *dev, size_t n)
{
    (void)ud;
    assert_int_equal(strlen(dev), n);
    seen++;
}

static void deny_list(void **st)
{
    (void)st;
    struct trust *t = trust_new();
    const char *why = NULL;
    int line = 0;
    const char *f = "# revoked 2026-12-01\n"
                    "pump-0042\n"
                    "  tank_7:a  # a comment after the id\n"
                    "\n"
                    "\tweather.3\n";
    assert_int_equal(trust_set_denied(t, f, strlen(f), &why, &line), 3);
    assert_true(trust_denied(t, (const uint8_t *)"pump-0042", 9));
    assert_true(trust_denied(t, (const uint8_t *)"tank_7:a", 8));
    assert_true(trust_denied(t, (const uint8_t *)"weather.3", 9));
    assert_false(trust_denied(t, (const uint8_t *)"pump-0043", 9));
    assert_false(trust_denied(t, (const uint8_t *)"pump-004", 8));
    seen = 0;
    trust_each_denied(t, each, NULL);
    assert_int_equal(seen, 3);
    /* a bad id: the whole file refused, the list kept, the line named */
    const char *g = "ok-1\nnot an id\n";
    assert_int_equal(trust_set_denied(t, g, strlen(g), &why, &line), -1);
    assert_int_equal(line, 2);
    assert_true(trust_denied(t, (const uint8_t *)"pump-0042", 9));
    /* an empty file un-revokes everyone */
    assert_int_equal(trust_set_denied(t, "", 0, &why, &line), 0);
    assert_false(trust_denied(t, (const uint8_t *)"pump-0042", 9));
    trust_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rotation),
        cmocka_unit_test(refusals_change_nothing),
        cmocka_unit_test(deny_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
