/* test_notifier_topics.c - the notifier's pure mappers: data / status /
 * result JSON checked field by field with json-c, retained status read
 * back, operator command parsing and topic classification. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "topics.h"

static struct sl_slice S(const char *s) {
    return (struct sl_slice){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static struct json_object *
parse(const struct tojson_buf *b)
{
    struct json_tokener *t = json_tokener_new();
    struct json_object *o = json_tokener_parse_ex(t, b->p, (int)b->len);
    assert_int_equal(json_tokener_get_error(t), json_tokener_success);
    assert_int_equal(t->char_offset, (int)b->len);
    json_tokener_free(t);
    assert_non_null(o);
    return o;
}

static struct json_object *get(struct json_object *o, const char *k)
{
    struct json_object *m = NULL;
    assert_true(json_object_object_get_ex(o, k, &m));
    return m;
}

/* {"temp": 21.5, "on": true} */
static const uint8_t body[] = {0x82, 0xa4, 't', 'e', 'm', 'p',  0xcb, 0x40, 0x35, 0x80,
                               0,    0,    0,   0,   0,   0xa2, 'o',  'n',  0xc3};

static void test_data_json(void **state)
{
    (void)state;
    struct envelope e = {0};
    e.kind = ENV_DATA;
    e.dev = S("pump-0001");
    e.seq = 42;
    e.ts = 1764358200000;
    e.has_ts = true;
    e.at_ns = 1764358200123456789ULL;
    e.body = (struct sl_slice){body, sizeof body};
    e.has_body = true;
    char buf[512];
    struct tojson_buf b;
    tojson_buf_init(&b, buf, sizeof buf);
    assert_int_equal(topics_data_json(&b, S("edge\"a"), &e), SL_OK);
    struct json_object *o = parse(&b);
    assert_int_equal(json_object_object_length(o), 6);
    assert_string_equal(json_object_get_string(get(o, "dev")), "pump-0001");
    assert_int_equal(json_object_get_int64(get(o, "seq")), 42);
    assert_int_equal(json_object_get_int64(get(o, "ts")), 1764358200000);
    assert_int_equal(json_object_get_int64(get(o, "rx")), 1764358200123);
    assert_string_equal(json_object_get_string(get(o, "edge")), "edge\"a");
    struct json_object *bd = get(o, "body");
    assert_true(json_object_get_double(get(bd, "temp")) == 21.5);
    assert_true(json_object_get_boolean(get(bd, "on")));
    json_object_put(o);

    /* no ts, no body -> nulls */
    e.has_ts = false;
    e.has_body = false;
    tojson_buf_init(&b, buf, sizeof buf);
    assert_int_equal(topics_data_json(&b, S("e"), &e), SL_OK);
    o = parse(&b);
    assert_true(json_object_is_type(get(o, "ts"), json_type_null));
    assert_true(json_object_is_type(get(o, "body"), json_type_null));
    json_object_put(o);

    /* malformed body -> SL_DECODE; too small a buffer -> SL_TOOBIG */
    static const uint8_t bad[] = {0x92, 0x01};
    e.body = (struct sl_slice){bad, sizeof bad};
    e.has_body = true;
    tojson_buf_init(&b, buf, sizeof buf);
    assert_int_equal(topics_data_json(&b, S("e"), &e), SL_DECODE);
    e.has_body = false;
    tojson_buf_init(&b, buf, 20);
    assert_int_equal(topics_data_json(&b, S("e"), &e), SL_TOOBIG);
}

static void test_status_roundtrip(void **state)
{
    (void)state;
    struct topics_status s = {0}, r;
    s.online = true;
    s.at_ms = 1764358200000;
    s.epoch = 1764358200000000001ULL;
    s.inc = 0xfedcba9876543210ULL; /* above INT64_MAX: must survive */
    s.slot = 12;
    s.gen = 4000000000u;
    strcpy(s.edge, "edge-a:7000");
    strcpy(s.reply, "edge-a:7000/1");
    char buf[512];
    struct tojson_buf b;
    tojson_buf_init(&b, buf, sizeof buf);
    topics_status_json(&b, &s);
    struct json_object *o = parse(&b);
    assert_true(json_object_get_boolean(get(o, "online")));
    assert_string_equal(json_object_get_string(get(o, "edge")), "edge-a:7000");
    assert_int_equal(json_object_get_int64(get(o, "at")), 1764358200000);
    assert_int_equal(json_object_get_int64(get(o, "epoch")), (int64_t)1764358200000000001ULL);
    assert_string_equal(json_object_get_string(get(o, "reply")), "edge-a:7000/1");
    assert_true(json_object_get_uint64(get(o, "inc")) == 0xfedcba9876543210ULL);
    assert_int_equal(json_object_get_int64(get(o, "slot")), 12);
    assert_int_equal(json_object_get_int64(get(o, "gen")), 4000000000LL);
    json_object_put(o);

    assert_int_equal(topics_status_parse(b.p, b.len, &r), SL_OK);
    assert_true(r.online);
    assert_true(r.epoch == s.epoch && r.inc == s.inc && r.slot == 12 && r.gen == 4000000000u);
    assert_string_equal(r.edge, s.edge);
    assert_string_equal(r.reply, s.reply);

    /* offline: no routing fields, reason kept */
    s.online = false;
    strcpy(s.reason, "edge_lost");
    tojson_buf_init(&b, buf, sizeof buf);
    topics_status_json(&b, &s);
    o = parse(&b);
    struct json_object *m;
    assert_false(json_object_object_get_ex(o, "reply", &m));
    assert_string_equal(json_object_get_string(get(o, "reason")), "edge_lost");
    json_object_put(o);
    assert_int_equal(topics_status_parse(b.p, b.len, &r), SL_OK);
    assert_false(r.online);

    const char *bad[] = {"",
                         "[]",
                         "{\"online\":true,\"edge\":\"e\",\"epoch\":1}", /* no routing */
                         "{\"online\":1,\"edge\":\"e\",\"epoch\":1}",
                         "{\"online\":false,\"epoch\":1}",
                         "{\"online\":false,\"edge\":\"e\",\"epoch\":-1}",
                         "{\"online\":false,\"edge\":\"e\",\"epoch\":1} x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(topics_status_parse(bad[i], strlen(bad[i]), &r), SL_DECODE);
}

/* A status we publish reads back the same after a restart: only UTF-8
 * strings are accepted (json-c does not check), since the writer repairs
 * anything else into longer text the reader would refuse
 * (fuzz_ntf_status regress-invalid-utf8-edge, regress-overlong-utf8-edge). */
static void test_status_utf8(void **state)
{
    (void)state;
    struct topics_status r;
    const char ok[] = "{\"online\":false,\"edge\":\"k\xc3\xb6ln:7000\",\"epoch\":1}";
    assert_int_equal(topics_status_parse(ok, strlen(ok), &r), SL_OK);
    assert_string_equal(r.edge, "k\xc3\xb6ln:7000");
    const char *bad[] = {"{\"online\":false,\"edge\":\"e\xff\",\"epoch\":1}",
                         "{\"online\":false,\"edge\":\"e\xc0\xa0\",\"epoch\":1}",         /* overlong */
                         "{\"online\":false,\"edge\":\"e\xf4\x90\x80\x80\",\"epoch\":1}", /* > U+10FFFF */
                         "{\"online\":true,\"edge\":\"e\",\"epoch\":1,\"reply\":\"\xed\xa0\x80\",\"inc\":1,"
                         "\"slot\":1,\"gen\":1}"}; /* a surrogate */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(topics_status_parse(bad[i], strlen(bad[i]), &r), SL_DECODE);
    /* A reason that is not UTF-8 is dropped, like one too long. */
    const char reason[] = "{\"online\":false,\"edge\":\"e\",\"epoch\":1,\"reason\":\"\xfe\"}";
    assert_int_equal(topics_status_parse(reason, strlen(reason), &r), SL_OK);
    assert_string_equal(r.reason, "");
}

/* The longest status (every string full, each byte escaped to 6) is exactly
 * TOPICS_STATUS_JSON_MAX bytes and reads back. The notifier once wrote
 * statuses into 1 KiB and published the cut JSON, retained
 * (fuzz_envelope regress-status-overflow). */
static void test_status_longest(void **state)
{
    (void)state;
    struct topics_status s = {.online = true,
                              .at_ms = UINT64_MAX,
                              .epoch = UINT64_MAX,
                              .inc = UINT64_MAX,
                              .slot = UINT32_MAX,
                              .gen = UINT32_MAX},
                         r;
    memset(s.edge, 0x01, TOPICS_EDGE_MAX);
    memset(s.reply, 0x1f, TOPICS_REPLY_MAX);
    memset(s.reason, 0x02, TOPICS_REASON_MAX);
    char buf[TOPICS_STATUS_JSON_MAX];
    struct tojson_buf b;
    tojson_buf_init(&b, buf, sizeof buf);
    topics_status_json(&b, &s);
    assert_false(b.overflow);
    assert_int_equal(b.len, TOPICS_STATUS_JSON_MAX);
    assert_int_equal(topics_status_parse(b.p, b.len, &r), SL_OK);
    assert_true(r.online && r.at_ms == UINT64_MAX && r.epoch == UINT64_MAX && r.inc == UINT64_MAX);
    assert_true(r.slot == UINT32_MAX && r.gen == UINT32_MAX);
    assert_string_equal(r.edge, s.edge);
    assert_string_equal(r.reply, s.reply);
    assert_string_equal(r.reason, s.reason);
}

static void test_result_json(void **state)
{
    (void)state;
    char buf[256];
    struct tojson_buf b;
    tojson_buf_init(&b, buf, sizeof buf);
    assert_int_equal(topics_result_json(&b, false, NULL, "offline"), SL_OK);
    struct json_object *o = parse(&b);
    assert_int_equal(json_object_object_length(o), 2);
    assert_false(json_object_get_boolean(get(o, "ok")));
    assert_string_equal(json_object_get_string(get(o, "error")), "offline");
    json_object_put(o);

    struct sl_slice bd = {body, sizeof body};
    tojson_buf_init(&b, buf, sizeof buf);
    assert_int_equal(topics_result_json(&b, true, &bd, NULL), SL_OK);
    o = parse(&b);
    assert_true(json_object_get_boolean(get(o, "ok")));
    assert_true(json_object_get_boolean(get(get(o, "body"), "on")));
    json_object_put(o);

    static const uint8_t bad[] = {0xc1};
    bd = (struct sl_slice){bad, 1};
    tojson_buf_init(&b, buf, sizeof buf);
    assert_int_equal(topics_result_json(&b, true, &bd, NULL), SL_DECODE);
    o = parse(&b); /* still a complete result, body null */
    assert_true(json_object_is_type(get(o, "body"), json_type_null));
    json_object_put(o);
}

static void test_cmd_parse(void **state)
{
    (void)state;
    char id[SL_CMD_ID_MAX + 1];
    uint8_t mp[256];
    struct mp_buf b;
    const char *ok = "{\"id\":\"c-1.a:B_2\",\"body\":{\"set\":[1,-2,2.5,\"x\",null,true]}}";
    mp_buf_init(&b, mp, sizeof mp);
    assert_int_equal(topics_cmd_parse(ok, strlen(ok), id, &b), TOPICS_CMD_OK);
    assert_string_equal(id, "c-1.a:B_2");
    static const uint8_t want[] = {0x81, 0xa3, 's', 'e', 't', 0x96, 0x01, 0xfe, 0xcb, 0x40, 0x04,
                                   0,    0,    0,   0,   0,   0,    0xa1, 'x',  0xc0, 0xc3};
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(mp, want, sizeof want);

    const char *nullbody = "{\"id\":\"c\",\"body\":null}";
    mp_buf_init(&b, mp, sizeof mp);
    assert_int_equal(topics_cmd_parse(nullbody, strlen(nullbody), id, &b), TOPICS_CMD_OK);
    assert_int_equal(b.len, 1);
    assert_int_equal(mp[0], 0xc0);

    struct {
        const char *j;
        enum topics_cmd_rc rc;
    } cases[] = {
        {"{\"id\":\"c-9\"}", TOPICS_CMD_BAD},               /* no body */
        {"{\"id\":\"a/b\",\"body\":1}", TOPICS_CMD_BAD_ID}, /* not a topic level */
        {"{\"id\":\"\",\"body\":1}", TOPICS_CMD_BAD_ID},
        {"{\"id\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"body\":1}",
         TOPICS_CMD_BAD_ID},
        {"{\"id\":\"+\",\"body\":1}", TOPICS_CMD_BAD_ID},
        {"{\"id\":7,\"body\":1}", TOPICS_CMD_NO_ID},
        {"{not json", TOPICS_CMD_NO_ID},
        {"[1,2]", TOPICS_CMD_NO_ID},
        {"{\"id\":\"c\",\"body\":1} trailing", TOPICS_CMD_NO_ID},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mp_buf_init(&b, mp, sizeof mp);
        assert_int_equal(topics_cmd_parse(cases[i].j, strlen(cases[i].j), id, &b), cases[i].rc);
    }
    /* a body that does not fit -> BAD (answerable: the id was read) */
    const char *big = "{\"id\":\"big\",\"body\":\"0123456789012345678901234567890123456789\"}";
    mp_buf_init(&b, mp, 16);
    assert_int_equal(topics_cmd_parse(big, strlen(big), id, &b), TOPICS_CMD_BAD);
    assert_string_equal(id, "big");
}

static void test_topics(void **state)
{
    (void)state;
    struct sl_slice dev;
    const char *t = "devices/pump-1/cmd";
    assert_int_equal(topics_parse("devices", t, strlen(t), &dev), TOPICS_CMD);
    assert_true(sl_slice_eqs(dev, "pump-1"));
    t = "a/b/d.2/status";
    assert_int_equal(topics_parse("a/b", t, strlen(t), &dev), TOPICS_STATUS);
    assert_true(sl_slice_eqs(dev, "d.2"));
    const char *other[] = {"devices/pump-1/data", "devices/pump-1/cmd/x/result",
                           "devicesX/p/cmd",      "devices//cmd",
                           "devices/p",           "other/p/cmd",
                           "devices/p q/cmd"};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        assert_int_equal(topics_parse("devices", other[i], strlen(other[i]), &dev), TOPICS_OTHER);

    char buf[128];
    struct tojson_buf b;
    tojson_buf_init(&b, buf, sizeof buf);
    topics_result_topic(&b, "devices", S("p-1"), S("c-9"));
    assert_int_equal(b.len, strlen("devices/p-1/cmd/c-9/result"));
    assert_memory_equal(buf, "devices/p-1/cmd/c-9/result", b.len);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_json),      cmocka_unit_test(test_status_roundtrip),
        cmocka_unit_test(test_result_json),    cmocka_unit_test(test_cmd_parse),
        cmocka_unit_test(test_topics),         cmocka_unit_test(test_status_utf8),
        cmocka_unit_test(test_status_longest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
