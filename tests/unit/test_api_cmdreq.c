/* SPDX-License-Identifier: Apache-2.0 */
/* test_api_cmdreq.c - a command submission's body (api/cmdreq.c): the
 * JSON body as msgpack, byte for byte (what the device gets), defaults of
 * queue and ttl_s, and every refusal. Pure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cmdreq.h"

static uint8_t mp[CMDREQ_BODY_MAX];

static void test_ok(void **state)
{
    (void)state;
    struct cmdreq r;
    const char *why;
    const char *t = "{\"body\": {\"valve\": 3, \"on\": true}, \"queue\": true, \"extra\": 1}  \n";
    assert_int_equal(cmdreq_parse(t, strlen(t), mp, &r, &why), 0);
    assert_true(r.queue);
    assert_int_equal(r.ttl_s, CMDREQ_TTL_QUEUED);
    /* map of 2: "valve": 3, "on": true (json-c keeps member order) */
    static const uint8_t want[] = {0x82, 0xa5, 'v', 'a', 'l', 'v', 'e', 0x03, 0xa2, 'o', 'n', 0xc3};
    assert_int_equal(r.mp_len, sizeof want);
    assert_memory_equal(r.mp, want, sizeof want);
    assert_string_equal(r.json, "{\"valve\":3,\"on\":true}");
    cmdreq_fini(&r);

    t = "{\"body\": null}";
    assert_int_equal(cmdreq_parse(t, strlen(t), mp, &r, &why), 0);
    assert_false(r.queue);
    assert_int_equal(r.ttl_s, CMDREQ_TTL_NOW);
    assert_int_equal(r.mp_len, 1);
    assert_int_equal(r.mp[0], 0xc0);
    assert_string_equal(r.json, "null");
    cmdreq_fini(&r);

    t = "{\"body\": [18446744073709551615, -1, 1.5, \"s\"], \"ttl_s\": 31536000}";
    assert_int_equal(cmdreq_parse(t, strlen(t), mp, &r, &why), 0);
    assert_int_equal(r.ttl_s, 31536000);
    static const uint8_t want2[] = {0x94, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xcb, 0x3f, 0xf8, 0,    0,    0,    0,    0,    0,    0xa1, 's'};
    assert_int_equal(r.mp_len, sizeof want2);
    assert_memory_equal(r.mp, want2, sizeof want2);
    cmdreq_fini(&r);
}

static void test_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "{",
        "[1]",
        "{\"queue\": true}",                  /* no body */
        "{\"body\": 1, \"queue\": 1}",        /* queue not a bool */
        "{\"body\": 1, \"ttl_s\": 0}",        /* ttl below 1 */
        "{\"body\": 1, \"ttl_s\": 31536001}", /* above a year */
        "{\"body\": 1, \"ttl_s\": 1.5}",      /* not an integer */
        "{\"body\": 1} x",                    /* trailing */
        "{\"body\": 1}{}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cmdreq r;
        const char *why = NULL;
        assert_int_equal(cmdreq_parse(bad[i], strlen(bad[i]), mp, &r, &why), -1);
        assert_non_null(why);
        cmdreq_fini(&r);
    }
    /* a body too large for a frame */
    size_t n = CMDREQ_BODY_MAX + 100;
    char *big = malloc(n + 32);
    assert_non_null(big);
    strcpy(big, "{\"body\": \"");
    memset(big + 10, 'a', n);
    strcpy(big + 10 + n, "\"}");
    struct cmdreq r;
    const char *why = NULL;
    assert_int_equal(cmdreq_parse(big, strlen(big), mp, &r, &why), -1);
    assert_non_null(strstr(why, "too large"));
    cmdreq_fini(&r);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
