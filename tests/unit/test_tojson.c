/* SPDX-License-Identifier: Apache-2.0 */
/* test_tojson.c - msgpack -> JSON (proto/tojson.c).
 *
 * Inputs are built with msgpack-c's own packer, outputs are parsed by json-c
 * in strict mode and checked value by value: integers exactly, strings byte
 * for byte, floats bit for bit (also through strtod on the raw text), base64
 * decoded back. Plus: depth limits, trailing bytes, every too-small buffer
 * with a canary behind it, and tojson_bound() against random and
 * worst-case inputs. */
#define _POSIX_C_SOURCE 200809L /* rand_r */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <float.h>
#include <math.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <msgpack.h>

#include "sl/limits.h"
#include "sl/tojson.h"

/* ---- helpers ---- */

struct pk {
    msgpack_sbuffer sb;
    msgpack_packer p;
};

static void pk_init(struct pk *k)
{
    msgpack_sbuffer_init(&k->sb);
    msgpack_packer_init(&k->p, &k->sb, msgpack_sbuffer_write);
}

static void pk_fini(struct pk *k)
{
    msgpack_sbuffer_destroy(&k->sb);
}

static void pk_str(struct pk *k, const char *s, size_t n)
{
    msgpack_pack_str(&k->p, n);
    msgpack_pack_str_body(&k->p, s, n);
}

static void pk_cstr(struct pk *k, const char *s)
{
    pk_str(k, s, strlen(s));
}

static void pk_bin(struct pk *k, const void *s, size_t n)
{
    msgpack_pack_bin(&k->p, n);
    msgpack_pack_bin_body(&k->p, s, n);
}

static void pk_ext(struct pk *k, int8_t type, const void *s, size_t n)
{
    msgpack_pack_ext(&k->p, n, type);
    msgpack_pack_ext_body(&k->p, s, n);
}

/* Convert mp[0..n) with a buffer of exactly tojson_bound(n) bytes; return a
 * malloc'd NUL-terminated copy of the JSON (caller frees) and its length. */
static char *conv(const uint8_t *mp, size_t n, size_t *outlen)
{
    size_t cap = tojson_bound(n);
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    struct tojson_buf b;
    tojson_buf_init(&b, buf, cap);
    enum sl_err rc = tojson_encode(&b, mp, n);
    if (rc != SL_OK)
        print_error("tojson_encode rc=%d\n", rc);
    assert_int_equal(rc, SL_OK);
    assert_false(b.overflow);
    assert_true(b.len <= cap);
    buf[b.len] = '\0';
    if (outlen != NULL)
        *outlen = b.len;
    return buf;
}

static char *conv_pk(struct pk *k, size_t *outlen)
{
    return conv((const uint8_t *)k->sb.data, k->sb.size, outlen);
}

static enum sl_err conv_rc(const uint8_t *mp, size_t n)
{
    size_t cap = tojson_bound(n) + 64;
    char *buf = malloc(cap);
    assert_non_null(buf);
    struct tojson_buf b;
    tojson_buf_init(&b, buf, cap);
    enum sl_err rc = tojson_encode(&b, mp, n);
    if (rc != SL_OK)
        assert_int_equal(b.len, 0); /* nothing half-written is left behind */
    free(buf);
    return rc;
}

/* Parse strictly (the whole text, valid UTF-8, deep nesting allowed). The
 * text is wrapped in [ ] because json-c cannot tell that a bare top-level
 * number or literal has ended ("1" might go on as "12"). */
static json_object *parse(const char *s, size_t n)
{
    char *w = malloc(n + 2);
    assert_non_null(w);
    w[0] = '[';
    memcpy(w + 1, s, n);
    w[n + 1] = ']';
    json_tokener *t = json_tokener_new_ex(200);
    assert_non_null(t);
    json_tokener_set_flags(t, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(t, w, (int)(n + 2));
    enum json_tokener_error e = json_tokener_get_error(t);
    if (e != json_tokener_success)
        print_error("json-c: %s in <%.*s>\n", json_tokener_error_desc(e), (int)n, s);
    assert_int_equal(e, json_tokener_success);
    assert_int_equal(json_tokener_get_parse_end(t), n + 2);
    json_tokener_free(t);
    free(w);
    assert_true(json_object_is_type(o, json_type_array));
    assert_int_equal(json_object_array_length(o), 1);
    json_object *v = json_object_get(json_object_array_get_idx(o, 0));
    json_object_put(o);
    return v;
}

static json_object *get(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v))
        print_error("missing key <%s>\n", key);
    assert_true(json_object_object_get_ex(o, key, &v));
    return v;
}

static void expect_str(json_object *o, const void *want, size_t n)
{
    assert_true(json_object_is_type(o, json_type_string));
    assert_int_equal((size_t)json_object_get_string_len(o), n);
    assert_memory_equal(json_object_get_string(o), want, n);
}

static void expect_i64(json_object *o, int64_t v)
{
    assert_true(json_object_is_type(o, json_type_int));
    assert_true(json_object_get_int64(o) == v);
}

static void expect_double(json_object *o, double v)
{
    assert_true(json_object_is_type(o, json_type_double));
    double got = json_object_get_double(o);
    assert_memory_equal(&got, &v, sizeof v); /* bit-exact: -0.0 != 0.0 here */
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* An independent strict RFC 4648 decoder; returns the length or -1. */
static long b64dec(const char *s, size_t n, uint8_t *out)
{
    if (n % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int j = 0; j < 4; j++) {
            if (s[i + j] == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                pad++;
            } else {
                if (pad)
                    return -1;
                v[j] = b64val(s[i + j]);
                if (v[j] < 0)
                    return -1;
            }
        }
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(x >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(x >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)x;
    }
    return (long)o;
}

static void expect_b64(json_object *o, const void *want, size_t n)
{
    assert_true(json_object_is_type(o, json_type_string));
    uint8_t dec[256];
    size_t sl = (size_t)json_object_get_string_len(o);
    assert_true(sl <= 300);
    long dn = b64dec(json_object_get_string(o), sl, dec);
    assert_int_equal(dn, (long)n);
    if (n > 0)
        assert_memory_equal(dec, want, n);
}

/* ---- the corpus ---- */

static const uint8_t BIN2[] = {0x00, 0xff};
static const uint8_t BIN4[] = {0xde, 0xad, 0xbe, 0xef};

static void pack_corpus(struct pk *k)
{
    msgpack_packer *p = &k->p;
    msgpack_pack_map(p, 10);

    pk_cstr(k, "nil");
    msgpack_pack_nil(p);
    pk_cstr(k, "t");
    msgpack_pack_true(p);
    pk_cstr(k, "f");
    msgpack_pack_false(p);

    pk_cstr(k, "ints");
    msgpack_pack_array(p, 14);
    msgpack_pack_int64(p, 0);
    msgpack_pack_int64(p, 1);
    msgpack_pack_int64(p, -1);
    msgpack_pack_int64(p, 127);
    msgpack_pack_int64(p, 128);
    msgpack_pack_int64(p, -32);
    msgpack_pack_int64(p, -33);
    msgpack_pack_int64(p, 65536);
    msgpack_pack_int64(p, -32769);
    msgpack_pack_int64(p, INT64_MIN);
    msgpack_pack_int64(p, INT64_MAX);
    msgpack_pack_uint64(p, UINT64_MAX);
    msgpack_pack_uint64(p, (uint64_t)INT64_MAX + 1);
    msgpack_pack_int8(p, 5); /* a signed encoding of a positive value */

    pk_cstr(k, "floats");
    msgpack_pack_array(p, 10);
    msgpack_pack_double(p, 0.1);
    msgpack_pack_double(p, 1e300);
    msgpack_pack_double(p, -0.0);
    msgpack_pack_double(p, 5e-324);
    msgpack_pack_double(p, 2.0);
    msgpack_pack_double(p, -1.7976931348623157e308);
    msgpack_pack_float(p, 0.1f);
    msgpack_pack_float(p, 3.4028234663852886e38f);
    msgpack_pack_float(p, 1.5f);
    msgpack_pack_double(p, 123456789012345680.0);

    pk_cstr(k, "special");
    msgpack_pack_array(p, 4);
    msgpack_pack_double(p, NAN);
    msgpack_pack_double(p, INFINITY);
    msgpack_pack_double(p, -INFINITY);
    msgpack_pack_float(p, -INFINITY);

    pk_cstr(k, "bin");
    msgpack_pack_array(p, 4);
    pk_bin(k, "", 0);
    pk_bin(k, BIN2, 2);
    pk_bin(k, "abc", 3);
    pk_bin(k, BIN4, 4);

    pk_cstr(k, "str");
    msgpack_pack_array(p, 8);
    pk_str(k, "", 0);
    pk_cstr(k, "h\xc3\xa9llo");     /* é, 2 bytes */
    pk_cstr(k, "\xf0\x9f\x98\x80"); /* 😀, 4 bytes */
    pk_cstr(k, "\"\\/");            /* quote, backslash, slash */
    pk_str(k, "\x00\x01\x1f\n\t\r\b\f", 8);
    pk_cstr(k, "\x7f~");
    pk_cstr(k, "\xe2\x82\xac\xf4\x8f\xbf\xbf"); /* € and U+10FFFF */
    pk_cstr(k, "ok\xff");                       /* invalid tail */

    pk_cstr(k, "ext");
    msgpack_pack_array(p, 3);
    pk_ext(k, 5, "abc", 3);
    pk_ext(k, -1, BIN4, 4); /* the timestamp ext type */
    pk_ext(k, -128, "", 0);

    pk_cstr(k, "nested");
    msgpack_pack_map(p, 3);
    pk_cstr(k, "a");
    msgpack_pack_array(p, 3);
    msgpack_pack_array(p, 0);
    msgpack_pack_map(p, 0);
    msgpack_pack_array(p, 1);
    msgpack_pack_array(p, 1);
    msgpack_pack_array(p, 0);
    pk_cstr(k, "m");
    msgpack_pack_map(p, 1);
    pk_cstr(k, "x");
    msgpack_pack_map(p, 1);
    pk_cstr(k, "y");
    msgpack_pack_int64(p, -7);
    pk_cstr(k, "");
    pk_cstr(k, "empty key");
}

static void test_corpus(void **state)
{
    (void)state;
    struct pk k;
    pk_init(&k);
    pack_corpus(&k);
    size_t n;
    char *js = conv_pk(&k, &n);
    json_object *o = parse(js, n);
    assert_true(json_object_is_type(o, json_type_object));
    assert_int_equal(json_object_object_length(o), 10);

    assert_true(json_object_is_type(get(o, "nil"), json_type_null));
    assert_true(json_object_is_type(get(o, "t"), json_type_boolean));
    assert_true(json_object_get_boolean(get(o, "t")));
    assert_false(json_object_get_boolean(get(o, "f")));

    json_object *a = get(o, "ints");
    assert_int_equal(json_object_array_length(a), 14);
    const int64_t iv[] = {0, 1, -1, 127, 128, -32, -33, 65536, -32769, INT64_MIN, INT64_MAX};
    for (size_t i = 0; i < 11; i++)
        expect_i64(json_object_array_get_idx(a, i), iv[i]);
    assert_true(json_object_get_uint64(json_object_array_get_idx(a, 11)) == UINT64_MAX);
    assert_true(json_object_get_uint64(json_object_array_get_idx(a, 12)) == (uint64_t)INT64_MAX + 1);
    expect_i64(json_object_array_get_idx(a, 13), 5);
    /* and the text itself, where json-c could round */
    assert_non_null(strstr(js,
                           "[0,1,-1,127,128,-32,-33,65536,-32769,-9223372036854775808,9223372036854775807,"
                           "18446744073709551615,9223372036854775808,5]"));

    a = get(o, "floats");
    const double fv[] = {0.1,          1e300,
                         -0.0,         5e-324,
                         2.0,          -1.7976931348623157e308,
                         (double)0.1f, (double)3.4028234663852886e38f,
                         1.5,          123456789012345680.0};
    for (size_t i = 0; i < 10; i++)
        expect_double(json_object_array_get_idx(a, i), fv[i]);
    /* integer-valued floats keep ".0", -0 keeps its sign, exponents as printf */
    assert_non_null(strstr(js, "\"floats\":[0.1,1e+300,-0.0,"));
    assert_non_null(strstr(js, ",2.0,-1.7976931348623157e+308,0.10000000149011612,"));
    assert_non_null(strstr(js, ",1.5,1.2345678901234568e+17]"));

    a = get(o, "special");
    expect_str(json_object_array_get_idx(a, 0), "NaN", 3);
    expect_str(json_object_array_get_idx(a, 1), "Infinity", 8);
    expect_str(json_object_array_get_idx(a, 2), "-Infinity", 9);
    expect_str(json_object_array_get_idx(a, 3), "-Infinity", 9);

    a = get(o, "bin");
    expect_b64(json_object_array_get_idx(a, 0), "", 0);
    expect_b64(json_object_array_get_idx(a, 1), BIN2, 2);
    expect_b64(json_object_array_get_idx(a, 2), "abc", 3);
    expect_b64(json_object_array_get_idx(a, 3), BIN4, 4);
    assert_non_null(strstr(js, "\"bin\":[\"\",\"AP8=\",\"YWJj\",\"3q2+7w==\"]"));

    a = get(o, "str");
    expect_str(json_object_array_get_idx(a, 0), "", 0);
    expect_str(json_object_array_get_idx(a, 1), "h\xc3\xa9llo", 6);
    expect_str(json_object_array_get_idx(a, 2), "\xf0\x9f\x98\x80", 4);
    expect_str(json_object_array_get_idx(a, 3), "\"\\/", 3);
    expect_str(json_object_array_get_idx(a, 4), "\x00\x01\x1f\n\t\r\b\f", 8);
    expect_str(json_object_array_get_idx(a, 5), "\x7f~", 2);
    expect_str(json_object_array_get_idx(a, 6), "\xe2\x82\xac\xf4\x8f\xbf\xbf", 7);
    expect_str(json_object_array_get_idx(a, 7), "ok\xef\xbf\xbd", 5);
    assert_non_null(strstr(js, "\"\\\"\\\\/\",\"\\u0000\\u0001\\u001f\\n\\t\\r\\b\\f\""));

    a = get(o, "ext");
    const struct {
        int t;
        const void *d;
        size_t n;
    } ev[] = {{5, "abc", 3}, {-1, BIN4, 4}, {-128, "", 0}};
    for (size_t i = 0; i < 3; i++) {
        json_object *e = json_object_array_get_idx(a, i);
        assert_true(json_object_is_type(e, json_type_object));
        assert_int_equal(json_object_object_length(e), 2);
        expect_i64(get(e, "ext"), ev[i].t);
        expect_b64(get(e, "data"), ev[i].d, ev[i].n);
    }
    assert_non_null(strstr(js, "{\"ext\":5,\"data\":\"YWJj\"}"));

    json_object *nest = get(o, "nested");
    assert_string_equal(json_object_to_json_string_ext(get(nest, "a"), JSON_C_TO_STRING_PLAIN),
                        "[[],{},[[[]]]]");
    expect_i64(get(get(get(nest, "m"), "x"), "y"), -7);
    expect_str(get(nest, ""), "empty key", 9);

    json_object_put(o);
    free(js);
    pk_fini(&k);
}

/* Scalars at the top level, exact text. */
static void test_scalars_text(void **state)
{
    (void)state;
    static const struct {
        const char *mp;
        size_t n;
        const char *json;
    } cases[] = {
        {"\xc0", 1, "null"},
        {"\xc3", 1, "true"},
        {"\xc2", 1, "false"},
        {"\x00", 1, "0"},
        {"\xff", 1, "-1"},
        {"\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9, "-9223372036854775808"},
        {"\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9, "18446744073709551615"},
        {"\xd0\x80", 2, "-128"},
        {"\xa0", 1, "\"\""},
        {"\x90", 1, "[]"},
        {"\x80", 1, "{}"},
        {"\xc4\x00", 2, "\"\""},
        {"\xc7\x00\x01", 3, "{\"ext\":1,\"data\":\"\"}"},
        {"\xd4\xff\x41", 3, "{\"ext\":-1,\"data\":\"QQ==\"}"},
        {"\xcb\x3f\xb9\x99\x99\x99\x99\x99\x9a", 9, "0.1"},
        {"\xcb\x40\x00\x00\x00\x00\x00\x00\x00", 9, "2.0"},
        {"\xcb\x80\x00\x00\x00\x00\x00\x00\x00", 9, "-0.0"},
        {"\xca\x7f\xc0\x00\x00", 5, "\"NaN\""},
        {"\xca\x7f\x80\x00\x00", 5, "\"Infinity\""},
        {"\x92\x01\xa1\x61", 4, "[1,\"a\"]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        char *js = conv((const uint8_t *)cases[i].mp, cases[i].n, &n);
        if (strcmp(js, cases[i].json) != 0)
            print_error("case %zu: got <%s> want <%s>\n", i, js, cases[i].json);
        assert_string_equal(js, cases[i].json);
        json_object_put(parse(js, n));
        free(js);
    }
}

/* Random doubles (random bit patterns, so every exponent and denormal) and
 * float32 values: the text is valid JSON, strtod reads it back bit-exact,
 * and no shorter precision would have done. */
static void check_float_text(double d, bool f32)
{
    struct pk k;
    pk_init(&k);
    if (f32)
        d = (double)(float)d; /* the value the float32 really holds */
    if (f32)
        msgpack_pack_float(&k.p, (float)d);
    else
        msgpack_pack_double(&k.p, d);
    size_t n;
    char *js = conv_pk(&k, &n);
    if (isnan(d)) {
        assert_string_equal(js, "\"NaN\"");
    } else if (isinf(d)) {
        assert_string_equal(js, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    } else {
        char *end;
        double back = strtod(js, &end);
        assert_ptr_equal(end, js + n);
        assert_memory_equal(&back, &d, sizeof d);
        json_object *o = parse(js, n);
        expect_double(o, d);
        json_object_put(o);
        /* shortest: count significant digits, one fewer must not round-trip */
        int digits = 0;
        for (const char *c = js; *c && *c != 'e'; c++)
            digits += *c >= '0' && *c <= '9';
        if (digits > 15 && strchr(js, 'e') != NULL) {
            char shorter[400];
            snprintf(shorter, sizeof shorter, "%.*g", digits - 1, d);
            assert_true(strtod(shorter, NULL) != d);
        }
    }
    free(js);
    pk_fini(&k);
}

static void test_floats_random(void **state)
{
    (void)state;
    srand(12345);
    for (int i = 0; i < 20000; i++) {
        uint64_t bits = 0;
        for (int j = 0; j < 4; j++)
            bits = bits << 16 | (uint64_t)(rand() & 0xffff);
        double d;
        memcpy(&d, &bits, sizeof d);
        check_float_text(d, false);
        uint32_t b32 = (uint32_t)bits;
        float f;
        memcpy(&f, &b32, sizeof f);
        check_float_text((double)f, true);
    }
    const double fixed[] = {0.1,
                            1e300,
                            -0.0,
                            0.0,
                            5e-324,
                            2.2250738585072014e-308,
                            1.7976931348623157e308,
                            1e16,
                            1e15,
                            123456789.0,
                            9007199254740993.0,
                            0.3,
                            1.0 / 3.0};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        check_float_text(fixed[i], false);
        check_float_text(-fixed[i], false);
        if (fabs(fixed[i]) <= FLT_MAX) /* out of float range the cast is undefined */
            check_float_text(fixed[i], true);
    }
}

/* The rule docs/protocol.md states, written the slow way: the shortest of
 * %.15g, %.16g, %.17g that strtod reads back to d, ".0" appended to an
 * integer-looking text. tojson prints short decimals without printf; its
 * text must be this one, byte for byte. */
static void expect_float_rule(double d)
{
    char want[40];
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(want, 32, "%.*g", prec, d);
        if (prec == 17 || strtod(want, NULL) == d)
            break;
    }
    if (strspn(want, "-0123456789") == (size_t)n)
        strcpy(want + n, ".0");
    struct pk k;
    pk_init(&k);
    msgpack_pack_double(&k.p, d);
    size_t len;
    char *js = conv_pk(&k, &len);
    if (strcmp(js, want) != 0)
        print_error("%.17g: got <%s> want <%s>\n", d, js, want);
    assert_string_equal(js, want);
    free(js);
    pk_fini(&k);
}

/* Decimals as devices send them (m / 10^k: sensor readings, prices,
 * coordinates), at every scale around the fast path's bounds, and random
 * ones: the text is the printf rule's. */
static void test_floats_decimal(void **state)
{
    (void)state;
    static const double p10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8};
    const double fixed[] = {21.5,
                            0.25,
                            1013.2,
                            0.1,
                            0.2,
                            0.3,
                            0.7,
                            1.1,
                            2.675,
                            1e-4,
                            9.9999e-5,
                            0.00011,
                            1e15,
                            999999999999999.0,
                            99999999999999.9,
                            1e14 + 0.5,
                            123456.789012,
                            40.0,
                            4503599627370496.5,
                            9007199254740991.0,
                            0.000123456,
                            3.14159,
                            2.5e-3};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        expect_float_rule(fixed[i]);
        expect_float_rule(-fixed[i]);
    }
    srand(4242);
    for (int i = 0; i < 200000; i++) {
        uint64_t m = 0;
        for (int j = 0; j < 4; j++)
            m = m << 16 | (uint64_t)(rand() & 0xffff);
        /* every magnitude of m, from 1 digit to 17 */
        m %= (uint64_t)1 << (1 + rand() % 57);
        double d = (double)m / p10[rand() % 9];
        expect_float_rule(rand() & 1 ? -d : d);
    }
}

/* One str item in, its exact JSON out. */
static void expect_str_json(const char *in, size_t n, const char *want)
{
    struct pk k;
    pk_init(&k);
    pk_str(&k, in, n);
    size_t len;
    char *js = conv_pk(&k, &len);
    if (strcmp(js, want) != 0)
        print_error("got <%s> want <%s>\n", js, want);
    assert_string_equal(js, want);
    json_object_put(parse(js, len));
    free(js);
    pk_fini(&k);
}

#define R "\xef\xbf\xbd" /* U+FFFD */

static void test_utf8_invalid(void **state)
{
    (void)state;
    /* bad lead bytes */
    expect_str_json("\x80", 1, "\"" R "\"");
    expect_str_json("a\xff"
                    "b",
                    3, "\"a" R "b\"");
    expect_str_json("\xf5\x80", 2, "\"" R R "\"");
    expect_str_json("\xfe\xfe", 2, "\"" R R "\"");
    /* overlongs */
    expect_str_json("\xc0\x80", 2, "\"" R R "\"");
    expect_str_json("\xc1\xbf", 2, "\"" R R "\"");
    expect_str_json("\xe0\x80\x80", 3, "\"" R R R "\"");
    expect_str_json("\xe0\x9f\xbf", 3, "\"" R R R "\"");
    expect_str_json("\xf0\x8f\xbf\xbf", 4, "\"" R R R R "\"");
    /* surrogates D800-DFFF, encoded directly */
    expect_str_json("\xed\xa0\x80", 3, "\"" R R R "\"");
    expect_str_json("\xed\xbf\xbf", 3, "\"" R R R "\"");
    /* above U+10FFFF */
    expect_str_json("\xf4\x90\x80\x80", 4, "\"" R R R R "\"");
    /* truncated: at the end, and cut by an ASCII byte (which is kept) */
    expect_str_json("\xe2\x82", 2, "\"" R "\"");
    expect_str_json("\xf0\x9f\x98", 3, "\"" R "\"");
    expect_str_json("\xe2\x82"
                    "A",
                    3, "\"" R "A\"");
    expect_str_json("\xf0\x9f\x98\"", 4, "\"" R "\\\"\"");
    expect_str_json("\xc3", 1, "\"" R "\"");
    /* a lone continuation after a valid char */
    expect_str_json("\xc3\xa9\xa9", 3, "\"\xc3\xa9" R "\"");
    /* the edges that ARE valid stay untouched */
    expect_str_json("\xc2\x80", 2, "\"\xc2\x80\"");
    expect_str_json("\xed\x9f\xbf", 3, "\"\xed\x9f\xbf\"");
    expect_str_json("\xee\x80\x80", 3, "\"\xee\x80\x80\"");
    expect_str_json("\xf0\x90\x80\x80", 4, "\"\xf0\x90\x80\x80\"");
    expect_str_json("\xf4\x8f\xbf\xbf", 4, "\"\xf4\x8f\xbf\xbf\"");
    expect_str_json(R, 3, "\"" R "\"");
    /* controls and escapes */
    expect_str_json("\x01", 1, "\"\\u0001\"");
    expect_str_json("\x1f\x7f", 2, "\"\\u001f\x7f\"");
    expect_str_json("\x00", 1, "\"\\u0000\"");
    expect_str_json("a\"b\\c/d", 7, "\"a\\\"b\\\\c/d\"");
}

/* Random byte strings: the output always parses as a valid UTF-8 JSON
 * string, and valid input comes back byte-exact. */
static void test_utf8_random(void **state)
{
    (void)state;
    srand(777);
    static const uint8_t pool[] = {0x00, 0x01, 0x22, 0x5c, 0x41, 0x7f, 0x80, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1,
                                   0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 0x8f, 0x90};
    for (int i = 0; i < 5000; i++) {
        char s[24];
        size_t n = (size_t)(rand() % 24);
        for (size_t j = 0; j < n; j++)
            s[j] = (char)pool[rand() % (int)sizeof pool];
        struct pk k;
        pk_init(&k);
        pk_str(&k, s, n);
        size_t len;
        char *js = conv_pk(&k, &len);
        json_object *o = parse(js, len); /* VALIDATE_UTF8 is on */
        assert_true(json_object_is_type(o, json_type_string));
        json_object_put(o);
        free(js);
        pk_fini(&k);
    }
}

/* Non-string keys of every type become their JSON text, as a string. */
static void test_nonstring_keys(void **state)
{
    (void)state;
    struct pk k;
    pk_init(&k);
    msgpack_packer *p = &k.p;
    msgpack_pack_map(p, 15);
    msgpack_pack_nil(p);
    msgpack_pack_int64(p, 1);
    msgpack_pack_true(p);
    msgpack_pack_int64(p, 2);
    msgpack_pack_false(p);
    msgpack_pack_int64(p, 3);
    msgpack_pack_int64(p, 1);
    msgpack_pack_int64(p, 4);
    msgpack_pack_int64(p, INT64_MIN);
    msgpack_pack_int64(p, 5);
    msgpack_pack_double(p, 1.5);
    msgpack_pack_int64(p, 6);
    msgpack_pack_double(p, NAN);
    msgpack_pack_int64(p, 7);
    pk_bin(&k, "ab", 2);
    msgpack_pack_int64(p, 8);
    pk_ext(&k, 1, "a", 1);
    msgpack_pack_int64(p, 9);
    msgpack_pack_array(p, 2);
    msgpack_pack_int64(p, 1);
    pk_cstr(&k, "a");
    msgpack_pack_int64(p, 10);
    msgpack_pack_map(p, 0);
    msgpack_pack_int64(p, 11);
    msgpack_pack_map(p, 1);
    pk_cstr(&k, "k");
    pk_cstr(&k, "v\"q\\");
    msgpack_pack_int64(p, 12);
    /* level 2: a non-string key inside a non-string key */
    msgpack_pack_map(p, 1);
    msgpack_pack_array(p, 1);
    msgpack_pack_int64(p, 1);
    msgpack_pack_int64(p, 2);
    msgpack_pack_int64(p, 13);
    msgpack_pack_map(p, 1);
    msgpack_pack_map(p, 1);
    pk_cstr(&k, "a");
    pk_cstr(&k, "\"\\\x01");
    msgpack_pack_int64(p, 3);
    msgpack_pack_int64(p, 14);
    pk_cstr(&k, "\x80");
    msgpack_pack_int64(p, 15); /* a str key is repaired like any str */

    size_t n;
    char *js = conv_pk(&k, &n);
    json_object *o = parse(js, n);
    assert_int_equal(json_object_object_length(o), 15);
    static const struct {
        const char *key;
        int64_t v;
    } want[] = {
        {"null", 1},
        {"true", 2},
        {"false", 3},
        {"1", 4},
        {"-9223372036854775808", 5},
        {"1.5", 6},
        {"\"NaN\"", 7},
        {"\"YWI=\"", 8},
        {"{\"ext\":1,\"data\":\"YQ==\"}", 9},
        {"[1,\"a\"]", 10},
        {"{}", 11},
        {"{\"k\":\"v\\\"q\\\\\"}", 12},
        {"{\"[1]\":2}", 13},
        {"{\"{\\\"a\\\":\\\"\\\\\\\"\\\\\\\\\\\\u0001\\\"}\":3}", 14},
        {R, 15},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        expect_i64(get(o, want[i].key), want[i].v);
        /* a container or string key's text is itself JSON */
        if (want[i].key[0] == '{' || want[i].key[0] == '[' || want[i].key[0] == '"') {
            json_object *inner = parse(want[i].key, strlen(want[i].key));
            json_object_put(inner);
        }
    }
    /* the key-of-a-key really nests: parse key 14, then its own key */
    json_object *k14 = parse(want[13].key, strlen(want[13].key));
    json_object_object_foreach(k14, kk, vv)
    {
        expect_i64(vv, 3);
        json_object *kin = parse(kk, strlen(kk));
        expect_str(get(kin, "a"), "\"\\\x01", 3);
        json_object_put(kin);
    }
    json_object_put(k14);
    /* and the exact outer text for a simple one */
    assert_non_null(strstr(js, "\"[1,\\\"a\\\"]\":10"));
    json_object_put(o);
    free(js);
    pk_fini(&k);
}

/* A third level of non-string keys is refused (the output would double again). */
static void test_key_nest_limit(void **state)
{
    (void)state;
    /* {{{1:2}:3}:4}: key 1 would be written inside three levels of keys */
    static const uint8_t deep3[] = {0x81, 0x81, 0x81, 0x01, 0x02, 0x03, 0x04};
    assert_int_equal(conv_rc(deep3, sizeof deep3), SL_DECODE);
    /* {{{"s":1}:2}:3}: two levels of non-string keys, string key inside: fine */
    static const uint8_t ok2[] = {0x81, 0x81, 0x81, 0xa1, 's', 0x01, 0x02, 0x03};
    size_t n;
    char *js = conv(ok2, sizeof ok2, &n);
    assert_string_equal(js, "{\"{\\\"{\\\\\\\"s\\\\\\\":1}\\\":2}\":3}");
    json_object_put(parse(js, n));
    free(js);
}

static void test_depth(void **state)
{
    (void)state;
    const size_t big = 60 * 1024;
    uint8_t *in = malloc(big + 1);
    assert_non_null(in);
    /* 60 KB of nested one-element arrays, then nil: refused, no crash */
    memset(in, 0x91, big);
    in[big] = 0xc0;
    assert_int_equal(conv_rc(in, big + 1), SL_DECODE);
    /* same with maps {"":{"":...}} (a map needs 2 bytes a level) */
    for (size_t i = 0; i + 1 < big; i += 2) {
        in[i] = 0x81;
        in[i + 1] = 0xa0;
    }
    assert_int_equal(conv_rc(in, big + 1), SL_DECODE);

    /* exactly SL_MP_MAX_DEPTH nested arrays: fine */
    const unsigned d = SL_MP_MAX_DEPTH;
    memset(in, 0x91, d);
    in[d] = 0xc0;
    size_t n;
    char *js = conv(in, d + 1, &n);
    assert_int_equal(n, 2 * d + 4);
    assert_memory_equal(js + d, "null", 4);
    json_object_put(parse(js, n));
    free(js);
    /* one more: refused */
    memset(in, 0x91, d + 1);
    in[d + 1] = 0xc0;
    assert_int_equal(conv_rc(in, d + 2), SL_DECODE);
    /* max depth with an ext object innermost (JSON depth max + 1): fine */
    memset(in, 0x91, d);
    memcpy(in + d, "\xd4\x01\x41", 3);
    js = conv(in, d + 3, &n);
    json_object_put(parse(js, n));
    free(js);
    /* and containers declaring more than the input holds */
    assert_int_equal(conv_rc((const uint8_t *)"\xdd\xdf\xdf\xdf\xdf\xc0", 6), SL_DECODE);
    assert_int_equal(conv_rc((const uint8_t *)"\x09\xdf\xdf\xdf\xdf\xdf\x10\x2b", 8), SL_DECODE);
    free(in);
}

static void test_malformed(void **state)
{
    (void)state;
    /* trailing bytes after the object */
    assert_int_equal(conv_rc((const uint8_t *)"\xc0\xc0", 2), SL_DECODE);
    assert_int_equal(conv_rc((const uint8_t *)"\x81\xa1t\x01\x00", 5), SL_DECODE);
    assert_int_equal(conv_rc((const uint8_t *)"\x90\x90", 2), SL_DECODE);
    /* empty, truncated, reserved byte */
    assert_int_equal(conv_rc((const uint8_t *)"", 0), SL_DECODE);
    assert_int_equal(conv_rc((const uint8_t *)"\x92\x01", 2), SL_DECODE);
    assert_int_equal(conv_rc((const uint8_t *)"\x81\xa1t", 3), SL_DECODE);
    assert_int_equal(conv_rc((const uint8_t *)"\xa5"
                                              "abc",
                             4),
                     SL_DECODE);
    assert_int_equal(conv_rc((const uint8_t *)"\xcb\x00\x00", 3), SL_DECODE);
    assert_int_equal(conv_rc((const uint8_t *)"\xc1", 1), SL_DECODE);
    assert_int_equal(conv_rc((const uint8_t *)"\x91\xc1", 2), SL_DECODE);
    /* every strict prefix of the corpus is malformed; the whole is fine */
    struct pk k;
    pk_init(&k);
    pack_corpus(&k);
    for (size_t i = 0; i < k.sb.size; i++)
        assert_int_equal(conv_rc((const uint8_t *)k.sb.data, i), SL_DECODE);
    assert_int_equal(conv_rc((const uint8_t *)k.sb.data, k.sb.size), SL_OK);
    pk_fini(&k);
}

/* Every buffer shorter than the output: SL_TOOBIG, len restored, overflow
 * recorded, and not one byte written past cap (canary). */
static void test_toobig_every_prefix(void **state)
{
    (void)state;
    struct pk k;
    pk_init(&k);
    pack_corpus(&k);
    size_t full;
    char *want = conv_pk(&k, &full);
    enum { CANARY = 32 };
    char *buf = malloc(full + CANARY);
    assert_non_null(buf);
    for (size_t cap = 0; cap <= full; cap++) {
        memset(buf, 0xa5, full + CANARY);
        struct tojson_buf b;
        tojson_buf_init(&b, buf, cap);
        enum sl_err rc = tojson_encode(&b, (const uint8_t *)k.sb.data, k.sb.size);
        for (size_t j = cap; j < full + CANARY; j++)
            assert_int_equal((uint8_t)buf[j], 0xa5);
        if (cap < full) {
            assert_int_equal(rc, SL_TOOBIG);
            assert_true(b.overflow);
            assert_int_equal(b.len, 0);
        } else {
            assert_int_equal(rc, SL_OK);
            assert_int_equal(b.len, full);
            assert_memory_equal(buf, want, full);
        }
    }
    /* appending after existing text, and refusing once overflowed */
    struct tojson_buf b;
    tojson_buf_init(&b, buf, full + 1);
    tojson_raw(&b, "[", 1);
    assert_int_equal(tojson_encode(&b, (const uint8_t *)k.sb.data, k.sb.size), SL_OK);
    assert_int_equal(b.len, full + 1);
    assert_memory_equal(buf + 1, want, full);
    tojson_raw(&b, "]", 1);
    assert_true(b.overflow);
    assert_int_equal(tojson_encode(&b, (const uint8_t *)"\xc0", 1), SL_TOOBIG);
    free(buf);
    free(want);
    pk_fini(&k);
}

/* ---- tojson_bound ---- */

/* Random msgpack biased to what costs the most output per input byte:
 * tiny ext, empty str/bin, control chars and quotes, non-string keys
 * (including keys of keys), nil keys. */
static void gen(struct pk *k, int depth, unsigned *seed)
{
    msgpack_packer *p = &k->p;
    int r = rand_r(seed) % (depth < 6 ? 16 : 11);
    switch (r) {
    case 0: msgpack_pack_nil(p); break;
    case 1: msgpack_pack_false(p); break;
    case 2: msgpack_pack_int64(p, (int64_t)rand_r(seed) * (rand_r(seed) % 2 ? -1 : 1) * 4099); break;
    case 3: msgpack_pack_int64(p, rand_r(seed) % 2 ? INT64_MIN : -33); break;
    case 4: msgpack_pack_double(p, rand_r(seed) % 2 ? -1.2345678901234567e-300 : -INFINITY); break;
    case 5: msgpack_pack_float(p, rand_r(seed) % 2 ? -1.17549435e-38f : NAN); break;
    case 6: {
        static const char nasty[] = "\x01\"\\\x1f\xff\xc3";
        char s[40];
        size_t n = (size_t)(rand_r(seed) % 40);
        for (size_t i = 0; i < n; i++)
            s[i] = nasty[rand_r(seed) % 6];
        pk_str(k, s, rand_r(seed) % 3 ? n : 0);
        break;
    }
    case 7: pk_bin(k, "\x01\x02", (size_t)(rand_r(seed) % 3)); break;
    case 8:
    case 9: pk_ext(k, -128, "\x01\x02\x03\x04", rand_r(seed) % 2 ? 1 : 2); break;
    case 10: pk_ext(k, 127, "", 0); break;
    case 11:
    case 12: {
        int n = rand_r(seed) % 6;
        msgpack_pack_array(p, (size_t)n);
        for (int i = 0; i < n; i++)
            gen(k, depth + 1, seed);
        break;
    }
    default: {
        int n = rand_r(seed) % 6;
        msgpack_pack_map(p, (size_t)n);
        for (int i = 0; i < n; i++) {
            gen(k, depth + 1, seed); /* any type as key, nested keys too */
            gen(k, depth + 1, seed);
        }
        break;
    }
    }
}

static double check_bound(const uint8_t *mp, size_t n)
{
    size_t cap = tojson_bound(n);
    /* a generous buffer, so an output past the bound shows instead of TOOBIG */
    size_t big = cap * 4 + 1024;
    char *buf = malloc(big);
    assert_non_null(buf);
    struct tojson_buf b;
    tojson_buf_init(&b, buf, big);
    enum sl_err rc = tojson_encode(&b, mp, n);
    double ratio = 0;
    if (rc == SL_OK) {
        if (b.len > cap)
            print_error("bound broken: %zu bytes in, %zu out, bound %zu\n", n, b.len, cap);
        assert_true(b.len <= cap);
        ratio = (double)b.len / (double)n;
        json_object_put(parse(buf, b.len));
    } else {
        assert_int_equal(rc, SL_DECODE); /* key nesting beyond the limit */
    }
    free(buf);
    return ratio;
}

static void test_bound_random(void **state)
{
    (void)state;
    unsigned seed = 4242;
    double worst = 0;
    int ok = 0;
    for (int i = 0; i < 20000; i++) {
        struct pk k;
        pk_init(&k);
        gen(&k, 0, &seed);
        double r = check_bound((const uint8_t *)k.sb.data, k.sb.size);
        ok += r > 0;
        if (r > worst)
            worst = r;
        /* mutate a few bytes: mostly malformed, must never break the bound */
        for (int m = 0; m < 4 && k.sb.size > 0; m++) {
            k.sb.data[rand_r(&seed) % k.sb.size] = (char)rand_r(&seed);
            (void)check_bound((const uint8_t *)k.sb.data, k.sb.size);
        }
        pk_fini(&k);
    }
    print_message("bound: %d random bodies converted, worst ratio %.2f (bound factor %.0f)\n", ok, worst,
                  (double)tojson_bound(1000) / 1000.0);
    assert_true(ok > 5000);
}

/* Hand-built worst cases: every one must stay within the bound. */
static void test_bound_worst(void **state)
{
    (void)state;
    uint8_t in[4096];
    size_t n;
    /* a key {K2:nil} whose key K2 is an array of fixext1: every ext at escape level 2 */
    n = 0;
    in[n++] = 0x81; /* outer map, 1 pair */
    in[n++] = 0x81; /* key K1: map 1 pair */
    in[n++] = 0xdc; /* key K2: array16 */
    in[n++] = 0x01;
    in[n++] = 0x00; /* 256 elements */
    for (int i = 0; i < 256; i++) {
        in[n++] = 0xd4;
        in[n++] = 0x80; /* type -128 */
        in[n++] = 0x00;
    }
    in[n++] = 0xc0; /* K1's value */
    in[n++] = 0xc0; /* outer value */
    double r = check_bound(in, n);
    print_message("ext at level 2: ratio %.2f\n", r);
    assert_true(r > 14.0); /* it is a real worst case */

    /* fixext1 keys of K1 (each its own key at level 1 -> content at 2) */
    n = 0;
    in[n++] = 0x81;
    in[n++] = 0xde;
    in[n++] = 0x00;
    in[n++] = 0xff; /* K1: map16, 255 pairs */
    for (int i = 0; i < 255; i++) {
        in[n++] = 0xd4;
        in[n++] = 0x80;
        in[n++] = 0x00;
        in[n++] = 0xc0;
    }
    in[n++] = 0xc0;
    check_bound(in, n);

    /* strings of 0x01 and quotes at level 2 */
    n = 0;
    in[n++] = 0x81;
    in[n++] = 0x81;
    in[n++] = 0xdc;
    in[n++] = 0x01;
    in[n++] = 0x00;
    for (int i = 0; i < 256; i++) {
        in[n++] = 0xa1;
        in[n++] = i % 2 ? 0x01 : '"';
    }
    in[n++] = 0xc0;
    in[n++] = 0xc0;
    check_bound(in, n);
    /* empty strings and nil keys */
    n = 0;
    in[n++] = 0x81;
    in[n++] = 0x81;
    in[n++] = 0xdc;
    in[n++] = 0x04;
    in[n++] = 0x00;
    for (int i = 0; i < 1024; i++)
        in[n++] = 0xa0;
    in[n++] = 0xc0;
    in[n++] = 0xc0;
    check_bound(in, n);
    /* a long str of one control byte at level 0 */
    n = 0;
    in[n++] = 0xda;
    in[n++] = 0x0f;
    in[n++] = 0x00;
    memset(in + n, 0x01, 0x0f00);
    n += 0x0f00;
    check_bound(in, n);
    /* single items */
    check_bound((const uint8_t *)"\xd4\x80\x00", 3);
    check_bound((const uint8_t *)"\xc7\x00\x80", 3);
    check_bound((const uint8_t *)"\xc0", 1);
    check_bound((const uint8_t *)"\xa0", 1);
    check_bound((const uint8_t *)"\xcb\x80\x10\x00\x00\x00\x00\x00\x01", 9);
    /* overflow safety of the bound itself */
    assert_true(tojson_bound(SIZE_MAX / 2) == SIZE_MAX);
    assert_true(tojson_bound(0) == 0);
}

/* ---- builder pieces ---- */

static void test_base64(void **state)
{
    (void)state;
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char o[16];
        size_t n = tojson_base64(o, (const uint8_t *)in[i], strlen(in[i]));
        assert_int_equal(n, strlen(out[i]));
        assert_memory_equal(o, out[i], n);
    }
    uint8_t all[256], dec[256];
    char enc[344];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    for (size_t len = 0; len <= 256; len += 1) {
        size_t n = tojson_base64(enc, all + 256 - len, len);
        assert_int_equal(n, 4 * ((len + 2) / 3));
        assert_int_equal(b64dec(enc, n, dec), (long)len);
        assert_memory_equal(dec, all + 256 - len, len);
    }
}

static void test_builder(void **state)
{
    (void)state;
    char buf[256];
    struct tojson_buf b;
    tojson_buf_init(&b, buf, sizeof buf);
    tojson_raw(&b, "{\"dev\":", 7);
    tojson_str(&b, (const uint8_t *)"p\"1\\\n\xff", 6);
    tojson_raw(&b, ",\"seq\":", 7);
    tojson_u64(&b, UINT64_MAX);
    tojson_raw(&b, ",\"ts\":", 6);
    tojson_i64(&b, INT64_MIN);
    tojson_raw(&b, ",\"z\":", 5);
    tojson_i64(&b, 0);
    tojson_raw(&b, ",\"m\":", 5);
    tojson_i64(&b, -1);
    tojson_raw(&b, ",\"u\":", 5);
    tojson_u64(&b, 0);
    tojson_raw(&b, "}", 1);
    assert_false(b.overflow);
    buf[b.len] = '\0';
    assert_string_equal(buf, "{\"dev\":\"p\\\"1\\\\\\n" R "\",\"seq\":18446744073709551615,"
                             "\"ts\":-9223372036854775808,\"z\":0,\"m\":-1,\"u\":0}");
    json_object *o = parse(buf, b.len);
    expect_str(get(o, "dev"), "p\"1\\\n" R, 8);
    assert_true(json_object_get_uint64(get(o, "seq")) == UINT64_MAX);
    expect_i64(get(o, "ts"), INT64_MIN);
    json_object_put(o);

    /* the builder never writes past cap */
    char small[8];
    memset(small, 0x5a, sizeof small);
    tojson_buf_init(&b, small, 4);
    tojson_raw(&b, "abc", 3);
    tojson_u64(&b, 12345);
    tojson_str(&b, (const uint8_t *)"x", 1);
    assert_true(b.overflow);
    assert_int_equal(b.len, 3);
    for (int i = 3; i < 8; i++)
        assert_int_equal((uint8_t)small[i], 0x5a);

    /* A nil slice (a batch header's edge may be nil): "", and no pointer
     * arithmetic on NULL (UBSan; fuzz_envelope regress-nil-edge-data-json). */
    tojson_buf_init(&b, buf, sizeof buf);
    tojson_str(&b, NULL, 0);
    assert_int_equal(b.len, 2);
    assert_memory_equal(buf, "\"\"", 2);
}

/* tojson_utf8_valid: exactly the text tojson_str passes through unrepaired. */
static void test_utf8_valid(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool valid;
    } cases[] = {
        {"", true},
        {"plain ascii \x7f", true},
        {"k\xc3\xb6ln \xe2\x82\xac \xf0\x9f\x92\xa7 \xf4\x8f\xbf\xbf", true}, /* up to U+10FFFF */
        {"\xff", false},
        {"\xc3", false},                 /* truncated */
        {"\xc0\xaf", false},             /* overlong '/' */
        {"\xe0\x80\xaf", false},         /* overlong, 3 bytes */
        {"\xed\xa0\x80", false},         /* surrogate D800 */
        {"\xf4\x90\x80\x80", false},     /* U+110000 */
        {"\xf8\x88\x80\x80\x80", false}, /* 5-byte form */
        {"ok\x80", false},               /* lone continuation */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const uint8_t *s = (const uint8_t *)cases[i].s;
        size_t n = strlen(cases[i].s);
        assert_int_equal(tojson_utf8_valid(s, n), cases[i].valid);
        /* and tojson_str copies it as is exactly when it is valid (no case
         * holds a byte JSON escapes) */
        char buf[64];
        struct tojson_buf b;
        tojson_buf_init(&b, buf, sizeof buf);
        tojson_str(&b, s, n);
        bool unchanged = b.len == n + 2 && memcmp(buf + 1, s, n) == 0;
        assert_int_equal(unchanged, cases[i].valid);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_scalars_text),
        cmocka_unit_test(test_floats_random),
        cmocka_unit_test(test_floats_decimal),
        cmocka_unit_test(test_utf8_invalid),
        cmocka_unit_test(test_utf8_random),
        cmocka_unit_test(test_nonstring_keys),
        cmocka_unit_test(test_key_nest_limit),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_toobig_every_prefix),
        cmocka_unit_test(test_bound_random),
        cmocka_unit_test(test_bound_worst),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_builder),
        cmocka_unit_test(test_utf8_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
