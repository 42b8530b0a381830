/* SPDX-License-Identifier: Apache-2.0 */
/* test_cmdjson.c - the one command JSON parser (proto/cmdjson.c) that the
 * notifier (MQTT) and sluice-api (HTTP) share: the body as msgpack byte
 * for byte, the id's three outcomes, queue and ttl_s with their defaults
 * and their refusals reported apart from the body's, and the body's
 * refusals. Pure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sl/cmdjson.h"

static uint8_t mp[256];

static enum cmdjson_rc parse(const char *t, size_t cap, bool want_json, struct cmdjson *c)
{
    struct mp_buf b;
    mp_buf_init(&b, mp, cap);
    return cmdjson_parse(t, strlen(t), &b, want_json, c);
}

static void test_body(void **state)
{
    (void)state;
    struct cmdjson c;
    const char *t = "{\"id\":\"c-1.a:B_2\",\"body\":{\"set\":[1,-2,2.5,\"x\",null,true]},\"x\":{}}\r\n ";
    assert_int_equal(parse(t, sizeof mp, true, &c), CMDJSON_OK);
    static const uint8_t want[] = {0x81, 0xa3, 's', 'e', 't', 0x96, 0x01, 0xfe, 0xcb, 0x40, 0x04,
                                   0,    0,    0,   0,   0,   0,    0xa1, 'x',  0xc0, 0xc3};
    assert_int_equal(c.mp_len, sizeof want);
    assert_memory_equal(mp, want, sizeof want);
    assert_int_equal(c.id_state, CMDJSON_ID_OK);
    assert_string_equal(c.id, "c-1.a:B_2");
    assert_string_equal(c.json, "{\"set\":[1,-2,2.5,\"x\",null,true]}");
    assert_false(c.queue);
    assert_false(c.has_ttl);
    assert_int_equal(c.ttl_s, CMDJSON_TTL_NOW);
    assert_null(c.opts_why);
    cmdjson_fini(&c);
    assert_null(c.json);

    /* uint64 above INT64_MAX stays an unsigned integer; no json unless asked */
    t = "{\"body\":[18446744073709551615,-9223372036854775808]}";
    assert_int_equal(parse(t, sizeof mp, false, &c), CMDJSON_OK);
    static const uint8_t want2[] = {0x92, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xd3, 0x80, 0,    0,    0,    0,    0,    0,    0};
    assert_int_equal(c.mp_len, sizeof want2);
    assert_memory_equal(mp, want2, sizeof want2);
    assert_null(c.json);
    assert_int_equal(c.id_state, CMDJSON_ID_NONE);
    cmdjson_fini(&c);

    t = "{\"body\":null}";
    assert_int_equal(parse(t, sizeof mp, true, &c), CMDJSON_OK);
    assert_int_equal(c.mp_len, 1);
    assert_int_equal(mp[0], 0xc0);
    assert_string_equal(c.json, "null");
    cmdjson_fini(&c);
}

static void test_refused(void **state)
{
    (void)state;
    struct {
        const char *t;
        enum cmdjson_rc rc;
        enum cmdjson_id id;
    } cases[] = {
        {"", CMDJSON_NOT_OBJECT, CMDJSON_ID_NONE},
        {"{not json", CMDJSON_NOT_OBJECT, CMDJSON_ID_NONE},
        {"[1,2]", CMDJSON_NOT_OBJECT, CMDJSON_ID_NONE},
        {"{\"id\":\"c\",\"body\":1} trailing", CMDJSON_NOT_OBJECT, CMDJSON_ID_NONE},
        {"{\"body\":1}{}", CMDJSON_NOT_OBJECT, CMDJSON_ID_NONE},
        {"{\"id\":\"c-9\"}", CMDJSON_NO_BODY, CMDJSON_ID_OK},
        {"{\"id\":\"a/b\",\"body\":1}", CMDJSON_OK, CMDJSON_ID_BAD},
        {"{\"id\":\"\",\"body\":1}", CMDJSON_OK, CMDJSON_ID_BAD},
        {"{\"id\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"body\":1}",
         CMDJSON_OK, CMDJSON_ID_BAD},
        {"{\"id\":7,\"body\":1}", CMDJSON_OK, CMDJSON_ID_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cmdjson c;
        assert_int_equal(parse(cases[i].t, sizeof mp, true, &c), cases[i].rc);
        assert_int_equal(c.id_state, cases[i].id);
        if (c.id_state != CMDJSON_ID_OK)
            assert_string_equal(c.id, "");
        cmdjson_fini(&c);
    }
    /* a body over the buffer: TOO_BIG, the id still read */
    struct cmdjson c;
    const char *big = "{\"id\":\"big\",\"body\":\"0123456789012345678901234567890123456789\"}";
    assert_int_equal(parse(big, 16, true, &c), CMDJSON_TOO_BIG);
    assert_string_equal(c.id, "big");
    assert_null(c.json);
    cmdjson_fini(&c);
}

static void test_opts(void **state)
{
    (void)state;
    struct cmdjson c;
    assert_int_equal(parse("{\"body\":1,\"queue\":true}", sizeof mp, false, &c), CMDJSON_OK);
    assert_true(c.queue);
    assert_int_equal(c.ttl_s, CMDJSON_TTL_QUEUED);
    assert_null(c.opts_why);
    assert_int_equal(parse("{\"body\":1,\"queue\":true,\"ttl_s\":31536000}", sizeof mp, false, &c),
                     CMDJSON_OK);
    assert_true(c.has_ttl);
    assert_int_equal(c.ttl_s, CMDJSON_TTL_MAX);
    assert_int_equal(parse("{\"body\":1,\"ttl_s\":1}", sizeof mp, false, &c), CMDJSON_OK);
    assert_false(c.queue);
    assert_int_equal(c.ttl_s, 1);
    /* Refused options are reported apart: the body is still read. */
    const char *bad[] = {
        "{\"body\":1,\"queue\":1}",        "{\"body\":1,\"queue\":\"yes\"}", "{\"body\":1,\"ttl_s\":0}",
        "{\"body\":1,\"ttl_s\":31536001}", "{\"body\":1,\"ttl_s\":1.5}",     "{\"body\":1,\"ttl_s\":\"9\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(bad[i], sizeof mp, false, &c), CMDJSON_OK);
        assert_non_null(c.opts_why);
        assert_false(c.has_ttl);
        assert_int_equal(c.mp_len, 1);
        assert_int_equal(mp[0], 0x01);
    }
    /* the body's problem and the options' together: both reported */
    assert_int_equal(parse("{\"queue\":2}", sizeof mp, false, &c), CMDJSON_NO_BODY);
    assert_non_null(c.opts_why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_opts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
