/* test_msg.c - every message type round-trips; every rejection has its own
 * code and maps to the right wire error; unknown keys are skipped; the worked
 * examples of docs/protocol.md decode (and re-encode) byte for byte. */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "sl/frame.h"
#include "sl/limits.h"
#include "sl/mp.h"
#include "sl/msg.h"

/* ---- a tiny payload builder on msgpack-c's packer ---- */

static uint8_t pbuf[4096];
static struct mp_buf pb;
static msgpack_packer pk;

static void b_begin(void)
{
    mp_buf_init(&pb, pbuf, sizeof pbuf);
    msgpack_packer_init(&pk, &pb, mp_buf_write);
}
static void b_map(size_t n)
{
    msgpack_pack_map(&pk, n);
}
static void b_arr(size_t n)
{
    msgpack_pack_array(&pk, n);
}
static void b_s(const char *s)
{
    msgpack_pack_str_with_body(&pk, s, strlen(s));
}
static void b_u(uint64_t v)
{
    msgpack_pack_uint64(&pk, v);
}
static void b_i(int64_t v)
{
    msgpack_pack_int64(&pk, v);
}
static void b_nil(void)
{
    msgpack_pack_nil(&pk);
}
static void b_bool(int v)
{
    v ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
}
static void b_raw(const void *p, size_t n)
{
    mp_buf_raw(&pb, p, n);
}

static enum msg_rc dec(struct msg *m)
{
    assert_false(pb.overflow);
    return msg_decode(pbuf, pb.len, m);
}

static enum msg_rc dec_bytes(const void *p, size_t n)
{
    struct msg m;
    return msg_decode(p, n, &m);
}

static const char tok64[] = "2f69869769f64c9cf3b504339d23b608d44ca12a5faa67cc106781be780b0abc";

/* ---- the worked examples of docs/protocol.md §2, byte for byte ---- */

/* clang-format off */
static const uint8_t hello_frame[] = {
    0x00, 0x00, 0x00, 0x60,                                     /* length 96 */
    0x84,                                                       /* map, 4 pairs */
    0xa1, 0x74,  0xa5, 0x68, 0x65, 0x6c, 0x6c, 0x6f,            /* "t": "hello" */
    0xa1, 0x76,  0x01,                                          /* "v": 1 */
    0xa3, 0x64, 0x65, 0x76,  0xa9, 0x70, 0x75, 0x6d, 0x70, 0x2d, 0x30, 0x30, 0x30, 0x31, /* "dev": "pump-0001" */
    0xa3, 0x74, 0x6f, 0x6b,  0xd9, 0x40,                        /* "tok": str8 of 64 bytes */
    /* "2f69869769f64c9cf3b504339d23b608d44ca12a5faa67cc106781be780b0abc" */
    0x32, 0x66, 0x36, 0x39, 0x38, 0x36, 0x39, 0x37, 0x36, 0x39, 0x66, 0x36, 0x34, 0x63, 0x39, 0x63,
    0x66, 0x33, 0x62, 0x35, 0x30, 0x34, 0x33, 0x33, 0x39, 0x64, 0x32, 0x33, 0x62, 0x36, 0x30, 0x38,
    0x64, 0x34, 0x34, 0x63, 0x61, 0x31, 0x32, 0x61, 0x35, 0x66, 0x61, 0x61, 0x36, 0x37, 0x63, 0x63,
    0x31, 0x30, 0x36, 0x37, 0x38, 0x31, 0x62, 0x65, 0x37, 0x38, 0x30, 0x62, 0x30, 0x61, 0x62, 0x63,
};

static const uint8_t data_frame[] = {
    0x00, 0x00, 0x00, 0x31,                                     /* length 49 */
    0x84,                                                       /* map, 4 pairs */
    0xa1, 0x74,  0xa4, 0x64, 0x61, 0x74, 0x61,                  /* "t": "data" */
    0xa3, 0x73, 0x65, 0x71,  0x2a,                              /* "seq": 42 */
    0xa2, 0x74, 0x73,  0xcf, 0x00, 0x00, 0x01, 0x9a, 0xcb, 0xf1, 0x9a, 0xc0, /* "ts": uint64 1764358200000 */
    0xa4, 0x62, 0x6f, 0x64, 0x79,                               /* "body": */
      0x82,  0xa4, 0x74, 0x65, 0x6d, 0x70,  0xcb, 0x40, 0x35, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, /* {"temp": 21.5, */
             0xa2, 0x6f, 0x6e,  0xc3,                           /*  "on": true} */
};
/* clang-format on */

/* Frame-decode a whole example, msg-decode its payload, then encode the
 * message again and get the very same bytes. */
static void example(const uint8_t *fr, size_t n, struct msg *m)
{
    struct frame_dec d;
    size_t used = 0;
    struct sl_slice pl;
    frame_dec_init(&d, SL_MAX_FRAME_DEFAULT);
    assert_int_equal(frame_dec_feed(&d, fr, n, &used, &pl), FRAME_READY);
    assert_int_equal(used, n);
    assert_int_equal(pl.n, n - 4);
    assert_int_equal(msg_decode(pl.p, pl.n, m), MSG_OK);

    uint8_t out[256];
    size_t len = 0;
    assert_int_equal(msg_encode_frame(m, out, sizeof out, &len), SL_OK);
    assert_int_equal(len, n);
    assert_memory_equal(out, fr, n);
}

static void test_worked_hello(void **state)
{
    (void)state;
    assert_int_equal(sizeof hello_frame, 4 + 96);
    struct msg m;
    example(hello_frame, sizeof hello_frame, &m);
    assert_int_equal(m.t, MSG_HELLO);
    assert_int_equal(m.u.hello.v, 1);
    assert_true(sl_slice_eqs(m.u.hello.dev, "pump-0001"));
    assert_true(sl_slice_eqs(m.u.hello.tok, tok64));
    /* In place: the token points into the frame. */
    assert_ptr_equal(m.u.hello.tok.p, hello_frame + 4 + 96 - 64);
}

static void test_worked_data(void **state)
{
    (void)state;
    assert_int_equal(sizeof data_frame, 4 + 49);
    struct msg m;
    example(data_frame, sizeof data_frame, &m);
    assert_int_equal(m.t, MSG_DATA);
    assert_true(m.u.data.seq == 42);
    assert_true(m.u.data.has_ts);
    assert_true(m.u.data.ts == 1764358200000LL);
    /* The body is the raw bytes of {"temp": 21.5, "on": true}. */
    assert_int_equal(m.u.data.body.n, 19);
    assert_ptr_equal(m.u.data.body.p, data_frame + 4 + 30);
    assert_int_equal(m.u.data.body.p[0], 0x82);
    assert_int_equal(mp_check(m.u.data.body.p, m.u.data.body.n, SL_MP_MAX_DEPTH), 0);
}

/* ---- round trips ---- */

static struct sl_slice S(const char *s) {
    struct sl_slice x = {(const uint8_t *)s, (uint32_t)strlen(s)};
    return x;
}

static void
roundtrip(const struct msg *in, struct msg *out)
{
    static uint8_t buf[1024];
    size_t len = 0;
    assert_int_equal(msg_encode(in, buf, sizeof buf, &len), SL_OK);
    assert_true(len > 0);
    assert_int_equal(msg_decode(buf, len, out), MSG_OK);
    assert_int_equal(out->t, in->t);
    /* And as a frame, which is the payload behind a 4-byte header. */
    static uint8_t fr[1024 + 4];
    size_t flen = 0;
    assert_int_equal(msg_encode_frame(in, fr, sizeof fr, &flen), SL_OK);
    assert_int_equal(flen, len + 4);
    assert_memory_equal(fr + 4, buf, len);
    assert_int_equal(((uint32_t)fr[0] << 24 | (uint32_t)fr[1] << 16 | (uint32_t)fr[2] << 8 | fr[3]), len);
    /* Every encoding is exactly one well-formed object. */
    assert_int_equal(mp_check(buf, len, SL_MP_MAX_DEPTH), 0);
}

static const uint8_t body_map[] = {0x81, 0xa1, 0x6b, 0x92, 0x01, 0xc0}; /* {"k":[1,nil]} */

static void test_roundtrip_all(void **state)
{
    (void)state;
    struct msg in, out;

    memset(&in, 0, sizeof in);
    in.t = MSG_HELLO;
    in.u.hello.v = 1;
    in.u.hello.dev = S("dev.A_b:c-9");
    in.u.hello.tok = S(tok64);
    roundtrip(&in, &out);
    assert_int_equal(out.u.hello.v, 1);
    assert_true(sl_slice_eq(out.u.hello.dev, in.u.hello.dev));
    assert_true(sl_slice_eq(out.u.hello.tok, in.u.hello.tok));

    memset(&in, 0, sizeof in);
    in.t = MSG_DATA;
    in.u.data.seq = (uint64_t)INT64_MAX;
    in.u.data.ts = -5;
    in.u.data.has_ts = true;
    in.u.data.body.p = body_map;
    in.u.data.body.n = sizeof body_map;
    roundtrip(&in, &out);
    assert_true(out.u.data.seq == (uint64_t)INT64_MAX);
    assert_true(out.u.data.has_ts);
    assert_true(out.u.data.ts == -5);
    assert_true(sl_slice_eq(out.u.data.body, in.u.data.body));
    /* Without ts. */
    in.u.data.has_ts = false;
    in.u.data.seq = 1;
    roundtrip(&in, &out);
    assert_false(out.u.data.has_ts);
    assert_true(out.u.data.seq == 1);

    memset(&in, 0, sizeof in);
    in.t = MSG_PING;
    roundtrip(&in, &out);

    memset(&in, 0, sizeof in);
    in.t = MSG_RES;
    in.u.res.id = S("cmd-1");
    in.u.res.ok = true;
    in.u.res.has_body = true;
    in.u.res.body.p = body_map;
    in.u.res.body.n = sizeof body_map;
    roundtrip(&in, &out);
    assert_true(sl_slice_eqs(out.u.res.id, "cmd-1"));
    assert_true(out.u.res.ok);
    assert_true(out.u.res.has_body);
    assert_true(sl_slice_eq(out.u.res.body, in.u.res.body));
    in.u.res.ok = false;
    in.u.res.has_body = false;
    roundtrip(&in, &out);
    assert_false(out.u.res.ok);
    assert_false(out.u.res.has_body);

    memset(&in, 0, sizeof in);
    in.t = MSG_WELCOME;
    in.u.welcome.edge = S("edge-1:7000");
    in.u.welcome.hb = 30;
    in.u.welcome.max = 65536;
    roundtrip(&in, &out);
    assert_true(sl_slice_eqs(out.u.welcome.edge, "edge-1:7000"));
    assert_int_equal(out.u.welcome.hb, 30);
    assert_int_equal(out.u.welcome.max, 65536);

    memset(&in, 0, sizeof in);
    in.t = MSG_ACK;
    in.u.ack.seq = 1234567890123ULL;
    roundtrip(&in, &out);
    assert_true(out.u.ack.seq == 1234567890123ULL);

    memset(&in, 0, sizeof in);
    in.t = MSG_PONG;
    roundtrip(&in, &out);

    memset(&in, 0, sizeof in);
    in.t = MSG_ERR;
    in.u.err.code = S("auth");
    in.u.err.msg = S("bad token");
    roundtrip(&in, &out);
    assert_true(sl_slice_eqs(out.u.err.code, "auth"));
    assert_true(sl_slice_eqs(out.u.err.msg, "bad token"));
    assert_int_equal(out.u.err.retry_ms, 0);
    /* retry_ms (0.2) travels when set, and only then: an err without it is
     * the same bytes as before it existed. */
    uint8_t plain[64], with[64];
    size_t np = 0, nw = 0;
    assert_int_equal(msg_encode(&in, plain, sizeof plain, &np), SL_OK);
    assert_null(memmem(plain, np, "retry_ms", 8));
    in.u.err.code = S("busy");
    in.u.err.retry_ms = 120000;
    roundtrip(&in, &out);
    assert_true(sl_slice_eqs(out.u.err.code, "busy"));
    assert_int_equal(out.u.err.retry_ms, 120000);
    assert_int_equal(msg_encode(&in, with, sizeof with, &nw), SL_OK);
    assert_non_null(memmem(with, nw, "retry_ms", 8));

    memset(&in, 0, sizeof in);
    in.t = MSG_CMD;
    in.u.cmd.id = S("c42");
    in.u.cmd.body.p = body_map;
    in.u.cmd.body.n = sizeof body_map;
    roundtrip(&in, &out);
    assert_true(sl_slice_eqs(out.u.cmd.id, "c42"));
    assert_true(sl_slice_eq(out.u.cmd.body, in.u.cmd.body));
    /* An empty body goes out as nil, never as a broken map. */
    in.u.cmd.body.n = 0;
    roundtrip(&in, &out);
    assert_int_equal(out.u.cmd.body.n, 1);
    assert_int_equal(out.u.cmd.body.p[0], 0xc0);
}

static void test_encode_limits(void **state)
{
    (void)state;
    struct msg m;
    uint8_t buf[64];
    size_t len = 99;
    memset(&m, 0, sizeof m);
    m.t = MSG_ERR;
    m.u.err.code = S("decode");
    m.u.err.msg = S("payload is not a map");
    size_t need = 0;
    assert_int_equal(msg_encode(&m, buf, sizeof buf, &need), SL_OK);
    /* One byte short of the payload. */
    assert_int_equal(msg_encode(&m, buf, need - 1, &len), SL_TOOBIG);
    assert_int_equal(len, 0);
    assert_int_equal(msg_encode(&m, buf, need, &len), SL_OK);
    assert_int_equal(len, need);
    /* Frames need 4 more. */
    assert_int_equal(msg_encode_frame(&m, buf, need + 3, &len), SL_TOOBIG);
    assert_int_equal(msg_encode_frame(&m, buf, need + 4, &len), SL_OK);
    assert_int_equal(len, need + 4);
    assert_int_equal(msg_encode_frame(&m, buf, 3, &len), SL_TOOBIG);
    /* No type, no encoding. */
    m.t = MSG_NONE;
    assert_int_equal(msg_encode(&m, buf, sizeof buf, &len), SL_INVAL);
}

/* ---- rejections ---- */

static void test_not_map_malformed_trailing(void **state)
{
    (void)state;
    assert_int_equal(dec_bytes("\x01", 1), MSG_E_NOTMAP);
    assert_int_equal(dec_bytes("\x91\xa1t", 3), MSG_E_NOTMAP);
    assert_int_equal(dec_bytes("\xa4ping", 5), MSG_E_NOTMAP);
    assert_int_equal(dec_bytes("\xc0", 1), MSG_E_NOTMAP);
    assert_int_equal(dec_bytes("", 0), MSG_E_MALFORMED);
    assert_int_equal(dec_bytes("\xc1", 1), MSG_E_MALFORMED);
    assert_int_equal(dec_bytes("\x81\xa1t", 3), MSG_E_MALFORMED);         /* value missing */
    assert_int_equal(dec_bytes("\x81\xa1t\xa4pin", 7), MSG_E_MALFORMED);  /* truncated str */
    assert_int_equal(dec_bytes("\x82\xa1t\xa4ping", 8), MSG_E_MALFORMED); /* 2 pairs, 1 present */
    /* {"t":"ping"} then a byte. */
    assert_int_equal(dec_bytes("\x81\xa1t\xa4ping", 8), MSG_OK);
    assert_int_equal(dec_bytes("\x81\xa1t\xa4ping\x00", 9), MSG_E_TRAILING);
    assert_int_equal(dec_bytes("\x81\xa1t\xa4ping\x81\xa1t\xa4ping", 16), MSG_E_TRAILING);
}

static void test_hostile_payloads(void **state)
{
    (void)state;
    const uint8_t h8[] = {0x09, 0xdf, 0xdf, 0xdf, 0xdf, 0xdf, 0x10, 0x2b};
    assert_int_equal(dec_bytes(h8, sizeof h8), MSG_E_NOTMAP);
    assert_int_equal(dec_bytes(h8 + 1, sizeof h8 - 1), MSG_E_MALFORMED);
    assert_int_equal(dec_bytes("\xdf\xdf\xdf\xdf\xdf", 5), MSG_E_MALFORMED);
    /* The hostile bytes as a value inside an otherwise good map. */
    struct msg m;
    b_begin();
    b_map(2);
    b_s("t");
    b_s("data");
    b_s("body");
    b_raw(h8 + 1, sizeof h8 - 1);
    assert_int_equal(dec(&m), MSG_E_MALFORMED);
    /* ... and as an unknown key's value. */
    b_begin();
    b_map(2);
    b_s("t");
    b_s("ping");
    b_s("zz");
    b_raw(h8 + 1, sizeof h8 - 1);
    assert_int_equal(dec(&m), MSG_E_MALFORMED);
}

static void test_type_key(void **state)
{
    (void)state;
    struct msg m;
    b_begin();
    b_map(1);
    b_s("x");
    b_u(1);
    assert_int_equal(dec(&m), MSG_E_NOTYPE);
    b_begin();
    b_map(1);
    b_s("t");
    b_u(1);
    assert_int_equal(dec(&m), MSG_E_NOTYPE);
    b_begin();
    b_map(0);
    assert_int_equal(dec(&m), MSG_E_NOTYPE);
    b_begin();
    b_map(1);
    b_s("t");
    b_s("nope");
    assert_int_equal(dec(&m), MSG_E_TYPE);
    b_begin();
    b_map(1);
    b_s("t");
    b_s("");
    assert_int_equal(dec(&m), MSG_E_TYPE);
    b_begin();
    b_map(1);
    b_s("t");
    b_s("PING"); /* case matters */
    assert_int_equal(dec(&m), MSG_E_TYPE);
    /* A non-string key, before or after t. */
    b_begin();
    b_map(2);
    b_u(1);
    b_s("x");
    b_s("t");
    b_s("ping");
    assert_int_equal(dec(&m), MSG_E_KEY);
    b_begin();
    b_map(2);
    b_s("t");
    b_s("ping");
    b_bool(1);
    b_nil();
    assert_int_equal(dec(&m), MSG_E_KEY);
    b_begin();
    b_map(2);
    b_s("t");
    b_s("ping");
    b_map(0);
    b_nil();
    assert_int_equal(dec(&m), MSG_E_KEY);
    /* A bin "t" key is not a string either. */
    b_begin();
    b_map(1);
    msgpack_pack_bin_with_body(&pk, "t", 1);
    b_s("ping");
    assert_int_equal(dec(&m), MSG_E_KEY);
}

static void test_unknown_keys_ignored(void **state)
{
    (void)state;
    struct msg m;
    b_begin();
    b_map(5);
    b_s("zz");
    b_map(2);
    b_u(1); /* non-string keys are fine below the top level */
    b_arr(3);
    b_u(1);
    b_map(1);
    b_s("t");
    b_s("hello");
    b_nil();
    b_s("seq");
    b_u(99); /* a nested "seq" is not the field */
    b_s("seq");
    b_u(7);
    b_s("t");
    b_s("ack");
    b_s("extra");
    msgpack_pack_bin_with_body(&pk, "\xc1\xc1", 2);
    b_s("tt");
    msgpack_pack_ext_with_body(&pk, "abcd", 4, 3);
    assert_int_equal(dec(&m), MSG_OK);
    assert_int_equal(m.t, MSG_ACK);
    assert_true(m.u.ack.seq == 7);
    /* Fields that belong to another type are unknown here too. */
    b_begin();
    b_map(3);
    b_s("t");
    b_s("ping");
    b_s("seq");
    b_s("not a number");
    b_s("dev");
    b_u(1);
    assert_int_equal(dec(&m), MSG_OK);
    assert_int_equal(m.t, MSG_PING);
}

static void test_duplicate_last_wins(void **state)
{
    (void)state;
    struct msg m;
    b_begin();
    b_map(4);
    b_s("t");
    b_s("ping");
    b_s("seq");
    b_u(1);
    b_s("t");
    b_s("ack");
    b_s("seq");
    b_u(2);
    assert_int_equal(dec(&m), MSG_OK);
    assert_int_equal(m.t, MSG_ACK);
    assert_true(m.u.ack.seq == 2);
}

static void test_depth(void **state)
{
    (void)state;
    struct msg m;
    uint8_t deep[64];
    /* body nested 31 deep + the top map = 32: accepted. */
    memset(deep, 0x91, 31);
    deep[31] = 0xc0;
    b_begin();
    b_map(3);
    b_s("t");
    b_s("data");
    b_s("seq");
    b_u(1);
    b_s("body");
    b_raw(deep, 32);
    assert_int_equal(dec(&m), MSG_OK);
    assert_int_equal(m.u.data.body.n, 32);
    /* One more: 33. */
    memset(deep, 0x91, 32);
    deep[32] = 0xc0;
    b_begin();
    b_map(3);
    b_s("t");
    b_s("data");
    b_s("seq");
    b_u(1);
    b_s("body");
    b_raw(deep, 33);
    assert_int_equal(dec(&m), MSG_E_MALFORMED);
}

/* {"t": t, k1: v1} with a field value given as raw msgpack bytes. */
static void one(const char *t, const char *k, const char *raw, size_t rn, int npairs_extra)
{
    b_begin();
    b_map((size_t)(1 + npairs_extra));
    b_s("t");
    b_s(t);
    if (npairs_extra) {
        b_s(k);
        b_raw(raw, rn);
    }
}

static void test_hello_fields(void **state)
{
    (void)state;
    struct msg m;
    /* Everything but one field, or one of them ill-typed. */
    /* clang-format off */
    const struct {
        const char *v, *dev, *tok; /* raw msgpack, NULL = absent */
        size_t vn, devn, tokn;
        enum msg_rc rc;
    } cases[] = {
        {"\x01", "\xa3" "abc", "\xa1x", 1, 4, 2, MSG_OK},
        {"\x02", "\xa3" "abc", "\xa1x", 1, 4, 2, MSG_OK}, /* v != 1 is the session's "proto" */
        {"\xff", "\xa3" "abc", "\xa1x", 1, 4, 2, MSG_OK}, /* v = -1: still an int */
        {NULL, "\xa3" "abc", "\xa1x", 0, 4, 2, MSG_E_MISSING},
        {"\xa1" "1", "\xa3" "abc", "\xa1x", 2, 4, 2, MSG_E_FIELD},
        {"\xc0", "\xa3" "abc", "\xa1x", 1, 4, 2, MSG_E_FIELD},
        {"\xcb\x3f\xf0\0\0\0\0\0\0", "\xa3" "abc", "\xa1x", 9, 4, 2, MSG_E_FIELD}, /* 1.0 */
        {"\xcf\xff\xff\xff\xff\xff\xff\xff\xff", "\xa3" "abc", "\xa1x", 9, 4, 2, MSG_E_FIELD},
        {"\x01", NULL, "\xa1x", 1, 0, 2, MSG_E_MISSING},
        {"\x01", "\x01", "\xa1x", 1, 1, 2, MSG_E_FIELD},
        {"\x01", "\xc4\x03" "abc", "\xa1x", 1, 5, 2, MSG_E_FIELD}, /* bin, not str */
        {"\x01", "\xa3" "abc", NULL, 1, 4, 0, MSG_E_MISSING},
        {"\x01", "\xa3" "abc", "\xc0", 1, 4, 1, MSG_E_FIELD},
        {"\x01", "\xa0", "\xa1x", 1, 1, 2, MSG_E_DEV},                 /* empty */
        {"\x01", "\xa6" "pump 1", "\xa1x", 1, 7, 2, MSG_E_DEV},       /* space */
        {"\x01", "\xa5" "p\xc3\xbcmp", "\xa1x", 1, 6, 2, MSG_E_DEV},  /* non-ASCII */
        {"\x01", "\xa4" "a/b\x00", "\xa1x", 1, 5, 2, MSG_E_DEV},      /* slash, NUL */
    };
    /* clang-format on */
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        b_begin();
        b_map((size_t)(1 + (cases[k].v != NULL) + (cases[k].dev != NULL) + (cases[k].tok != NULL)));
        b_s("t");
        b_s("hello");
        if (cases[k].v) {
            b_s("v");
            b_raw(cases[k].v, cases[k].vn);
        }
        if (cases[k].dev) {
            b_s("dev");
            b_raw(cases[k].dev, cases[k].devn);
        }
        if (cases[k].tok) {
            b_s("tok");
            b_raw(cases[k].tok, cases[k].tokn);
        }
        enum msg_rc rc = dec(&m);
        if (rc != cases[k].rc)
            fail_msg("hello case %zu: got %d (%s), want %d", k, rc, msg_rc_str(rc), cases[k].rc);
        if (rc != MSG_OK)
            assert_int_equal(m.t, MSG_NONE);
    }

    /* dev of 64 characters: fine; 65: MSG_E_DEV. */
    char id[66];
    memset(id, 'a', sizeof id);
    for (int n = 63; n <= 65; n++) {
        id[n] = 0;
        b_begin();
        b_map(4);
        b_s("t");
        b_s("hello");
        b_s("v");
        b_u(1);
        b_s("dev");
        b_s(id);
        b_s("tok");
        b_s(tok64);
        assert_int_equal(dec(&m), n <= 64 ? MSG_OK : MSG_E_DEV);
        id[n] = 'a';
    }
    assert_true(msg_valid_id((const uint8_t *)"AZaz09._:-", 10));
    assert_false(msg_valid_id((const uint8_t *)"a+b", 3));
    assert_false(msg_valid_id((const uint8_t *)"", 0));
}

static void data_with(const char *seq, size_t sn, const char *ts, size_t tn, const char *body, size_t bn)
{
    b_begin();
    b_map((size_t)(1 + (seq != NULL) + (ts != NULL) + (body != NULL)));
    b_s("t");
    b_s("data");
    if (seq) {
        b_s("seq");
        b_raw(seq, sn);
    }
    if (ts) {
        b_s("ts");
        b_raw(ts, tn);
    }
    if (body) {
        b_s("body");
        b_raw(body, bn);
    }
}

static void test_data_fields(void **state)
{
    (void)state;
    struct msg m;

    data_with("\x01", 1, NULL, 0, "\xc0", 1);
    assert_int_equal(dec(&m), MSG_OK);
    assert_false(m.u.data.has_ts);
    assert_int_equal(m.u.data.body.n, 1); /* nil is a body */

    data_with("\x01", 1, "\xc0", 1, "\x90", 1); /* ts nil = absent */
    assert_int_equal(dec(&m), MSG_OK);
    assert_false(m.u.data.has_ts);

    data_with("\x01", 1, "\xd3\xff\xff\xff\xff\xff\xff\xff\x00", 9, "\x01", 1); /* ts -256 */
    assert_int_equal(dec(&m), MSG_OK);
    assert_true(m.u.data.has_ts);
    assert_true(m.u.data.ts == -256);

    /* seq: 0 and 2^63 refused, 2^63 - 1 fine, negative and non-int refused. */
    data_with("\x00", 1, NULL, 0, "\x01", 1);
    assert_int_equal(dec(&m), MSG_E_FIELD);
    data_with("\xcf\x80\x00\x00\x00\x00\x00\x00\x00", 9, NULL, 0, "\x01", 1);
    assert_int_equal(dec(&m), MSG_E_FIELD);
    data_with("\xcf\x7f\xff\xff\xff\xff\xff\xff\xff", 9, NULL, 0, "\x01", 1);
    assert_int_equal(dec(&m), MSG_OK);
    assert_true(m.u.data.seq == (uint64_t)INT64_MAX);
    data_with("\xff", 1, NULL, 0, "\x01", 1);
    assert_int_equal(dec(&m), MSG_E_FIELD);
    data_with("\xa1"
              "1",
              2, NULL, 0, "\x01", 1);
    assert_int_equal(dec(&m), MSG_E_FIELD);
    data_with("\xcb\x3f\xf0\0\0\0\0\0\0", 9, NULL, 0, "\x01", 1);
    assert_int_equal(dec(&m), MSG_E_FIELD);
    data_with(NULL, 0, NULL, 0, "\x01", 1);
    assert_int_equal(dec(&m), MSG_E_MISSING);

    /* ts: ill-typed or beyond int64. */
    data_with("\x01", 1,
              "\xa1"
              "x",
              2, "\x01", 1);
    assert_int_equal(dec(&m), MSG_E_FIELD);
    data_with("\x01", 1, "\xcf\x80\x00\x00\x00\x00\x00\x00\x00", 9, "\x01", 1);
    assert_int_equal(dec(&m), MSG_E_FIELD);
    data_with("\x01", 1, "\xca\x3f\x80\x00\x00", 5, "\x01", 1);
    assert_int_equal(dec(&m), MSG_E_FIELD);

    /* body required. */
    data_with("\x01", 1, "\x01", 1, NULL, 0);
    assert_int_equal(dec(&m), MSG_E_MISSING);
}

static void test_res_fields(void **state)
{
    (void)state;
    struct msg m;
    one("res", "id", "\xa1x", 2, 1);
    assert_int_equal(dec(&m), MSG_E_MISSING); /* no ok */
    b_begin();
    b_map(2);
    b_s("t");
    b_s("res");
    b_s("ok");
    b_bool(1);
    assert_int_equal(dec(&m), MSG_E_MISSING); /* no id */
    b_begin();
    b_map(3);
    b_s("t");
    b_s("res");
    b_s("id");
    b_u(5);
    b_s("ok");
    b_bool(1);
    assert_int_equal(dec(&m), MSG_E_FIELD);
    b_begin();
    b_map(3);
    b_s("t");
    b_s("res");
    b_s("id");
    b_s("x");
    b_s("ok");
    b_u(1);
    assert_int_equal(dec(&m), MSG_E_FIELD); /* ok must be a bool */
    b_begin();
    b_map(4);
    b_s("t");
    b_s("res");
    b_s("id");
    b_s("x");
    b_s("ok");
    b_bool(0);
    b_s("body");
    b_nil();
    assert_int_equal(dec(&m), MSG_OK);
    assert_true(m.u.res.has_body);
    assert_false(m.u.res.ok);
}

static void test_edge_to_device_fields(void **state)
{
    (void)state;
    struct msg m;
    /* welcome */
    b_begin();
    b_map(3);
    b_s("t");
    b_s("welcome");
    b_s("edge");
    b_s("e");
    b_s("hb");
    b_u(30);
    assert_int_equal(dec(&m), MSG_E_MISSING);
    b_begin();
    b_map(4);
    b_s("t");
    b_s("welcome");
    b_s("edge");
    b_s("e");
    b_s("hb");
    b_u((uint64_t)UINT32_MAX + 1);
    b_s("max");
    b_u(1);
    assert_int_equal(dec(&m), MSG_E_FIELD);
    b_begin();
    b_map(4);
    b_s("t");
    b_s("welcome");
    b_s("edge");
    b_u(3);
    b_s("hb");
    b_u(1);
    b_s("max");
    b_u(1);
    assert_int_equal(dec(&m), MSG_E_FIELD);
    b_begin();
    b_map(4);
    b_s("t");
    b_s("welcome");
    b_s("edge");
    b_s("e");
    b_s("hb");
    b_i(-1);
    b_s("max");
    b_u(1);
    assert_int_equal(dec(&m), MSG_E_FIELD);
    /* ack */
    one("ack", "seq", "", 0, 0);
    assert_int_equal(dec(&m), MSG_E_MISSING);
    one("ack", "seq", "\x00", 1, 1);
    assert_int_equal(dec(&m), MSG_E_FIELD);
    one("ack", "seq", "\xa1x", 2, 1);
    assert_int_equal(dec(&m), MSG_E_FIELD);
    /* err */
    one("err", "code",
        "\xa4"
        "auth",
        5, 1);
    assert_int_equal(dec(&m), MSG_E_MISSING);
    one("err", "msg", "\xa1x", 2, 1);
    assert_int_equal(dec(&m), MSG_E_MISSING);
    b_begin();
    b_map(3);
    b_s("t");
    b_s("err");
    b_s("code");
    b_nil();
    b_s("msg");
    b_s("m");
    assert_int_equal(dec(&m), MSG_E_FIELD);
    /* cmd */
    one("cmd", "id", "\xa1x", 2, 1);
    assert_int_equal(dec(&m), MSG_E_MISSING);
    one("cmd", "body", "\x01", 1, 1);
    assert_int_equal(dec(&m), MSG_E_MISSING);
    b_begin();
    b_map(3);
    b_s("t");
    b_s("cmd");
    b_s("id");
    b_bool(1);
    b_s("body");
    b_nil();
    assert_int_equal(dec(&m), MSG_E_FIELD);
    /* ping and pong need nothing but t. */
    one("pong", "", "", 0, 0);
    assert_int_equal(dec(&m), MSG_OK);
    assert_int_equal(m.t, MSG_PONG);
}

static void test_rc_mapping(void **state)
{
    (void)state;
    assert_int_equal(msg_rc_err(MSG_OK), SL_OK);
    assert_int_equal(msg_rc_err(MSG_E_MALFORMED), SL_DECODE);
    assert_int_equal(msg_rc_err(MSG_E_NOTMAP), SL_DECODE);
    assert_int_equal(msg_rc_err(MSG_E_TRAILING), SL_DECODE);
    assert_int_equal(msg_rc_err(MSG_E_KEY), SL_DECODE);
    assert_int_equal(msg_rc_err(MSG_E_NOTYPE), SL_DECODE);
    assert_int_equal(msg_rc_err(MSG_E_TYPE), SL_PROTO);
    assert_int_equal(msg_rc_err(MSG_E_MISSING), SL_DECODE);
    assert_int_equal(msg_rc_err(MSG_E_FIELD), SL_DECODE);
    assert_int_equal(msg_rc_err(MSG_E_DEV), SL_AUTH);
    /* Distinct texts, never NULL. */
    for (int a = MSG_OK; a <= MSG_E_DEV; a++) {
        assert_non_null(msg_rc_str((enum msg_rc)a));
        for (int b = a + 1; b <= MSG_E_DEV; b++)
            assert_string_not_equal(msg_rc_str((enum msg_rc)a), msg_rc_str((enum msg_rc)b));
    }
    assert_non_null(msg_rc_str((enum msg_rc)99));
    assert_null(msg_type_name(MSG_NONE));
    assert_string_equal(msg_type_name(MSG_HELLO), "hello");
    assert_string_equal(msg_type_name(MSG_CMD), "cmd");
    assert_null(msg_type_name((enum msg_type)42));
    /* The wire codes and texts of enum sl_err. */
    assert_string_equal(sl_wire_code(SL_FRAME), "frame");
    assert_string_equal(sl_wire_code(SL_DECODE), "decode");
    assert_string_equal(sl_wire_code(SL_PROTO), "proto");
    assert_string_equal(sl_wire_code(SL_AUTH), "auth");
    assert_string_equal(sl_wire_code(SL_REPLACED), "replaced");
    assert_string_equal(sl_wire_code(SL_BUSY), "busy");
    assert_string_equal(sl_wire_code(SL_DRAINING), "draining");
    assert_string_equal(sl_wire_code(SL_TIMEOUT), "timeout");
    assert_null(sl_wire_code(SL_OK));
    assert_null(sl_wire_code(SL_DB));
    assert_null(sl_wire_code(SL_TLS)); /* the device library's, never on the wire */
    assert_null(sl_wire_code((enum sl_err)1000));
    for (int e = SL_OK; e <= SL_TLS; e++)
        assert_string_not_equal(sl_strerror((enum sl_err)e), "unknown error");
    assert_string_equal(sl_strerror((enum sl_err) - 1), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worked_hello),
        cmocka_unit_test(test_worked_data),
        cmocka_unit_test(test_roundtrip_all),
        cmocka_unit_test(test_encode_limits),
        cmocka_unit_test(test_not_map_malformed_trailing),
        cmocka_unit_test(test_hostile_payloads),
        cmocka_unit_test(test_type_key),
        cmocka_unit_test(test_unknown_keys_ignored),
        cmocka_unit_test(test_duplicate_last_wins),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_hello_fields),
        cmocka_unit_test(test_data_fields),
        cmocka_unit_test(test_res_fields),
        cmocka_unit_test(test_edge_to_device_fields),
        cmocka_unit_test(test_rc_mapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
