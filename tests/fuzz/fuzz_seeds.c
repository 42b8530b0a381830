/* fuzz_seeds.c - writes the hand-made seeds of every fuzz target.
 *
 *   fuzz_seeds DIR      -> DIR/fuzz_<target>/seed-<name>
 *
 * The seeds are what the fuzzer mutates from: the worked examples of
 * docs/protocol.md, one valid message of each type, batches made by the
 * envelope writer, a small recording made by the recfile encoders, valid
 * and broken operator commands and statuses, and the edge cases the unit
 * tests name (empty and oversized frames, a map claiming ~1 GiB, 32
 * levels of nesting). They are checked in under tests/fuzz/corpus/; run
 * this again only to change them (docs/fuzzing.md). Built without SL_FUZZ
 * only; it is not a test. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <msgpack.h>

#include "sl/envelope.h"
#include "sl/frame.h"
#include "sl/limits.h"
#include "sl/mp.h"
#include "sl/msg.h"
#include "sl/recfile.h"

static const char *root;

static void put(const char *target, const char *name, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/seed-%s", root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void put_str(const char *target, const char *name, const char *s)
{
    put(target, name, s, strlen(s));
}

static struct sl_slice S(const char *s) {
    return (struct sl_slice){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static const char TOKEN[] = "2f69869769f64c9cf3b504339d23b608d44ca12a5faa67cc106781be780b0abc";

/* The worked example's data body: {"temp": 21.5, "on": true}. */
static const uint8_t BODY[] = {0x82, 0xa4, 't', 'e', 'm', 'p', 0xcb, 0x40, 0x35, 0x80,
                               0,    0,    0,   0,   0,   0,   0xa2, 'o',  'n',  0xc3};

/* A body with one item of every msgpack family, in several widths. */
static size_t every_type(uint8_t *buf, size_t cap)
{
    struct mp_buf b;
    msgpack_packer pk;
    mp_buf_init(&b, buf, cap);
    msgpack_packer_init(&pk, &b, mp_buf_write);
    msgpack_pack_array(&pk, 20);
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_false(&pk);
    msgpack_pack_uint8(&pk, 200);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    msgpack_pack_int8(&pk, -5);
    msgpack_pack_int64(&pk, INT64_MIN);
    msgpack_pack_float(&pk, 0.1f);
    msgpack_pack_double(&pk, -0.0);
    msgpack_pack_double(&pk, 1e300);
    msgpack_pack_str_with_body(&pk, "h\xc3\xa9 \"q\" \\ \n\x01", 13);
    msgpack_pack_str_with_body(&pk, "bad \xff\xc0\xed\xa0\x80 utf8", 14);
    msgpack_pack_bin_with_body(&pk, "\x00\x01\x02\xff", 4);
    msgpack_pack_ext_with_body(&pk, "\x01", 1, 5);
    msgpack_pack_ext_with_body(&pk, "0123456789abcdef", 16, -1);
    msgpack_pack_ext_with_body(&pk, "abc", 3, 7);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_uint8(&pk, 1); /* a non-string key */
    msgpack_pack_str_with_body(&pk, "one", 3);
    msgpack_pack_array(&pk, 1); /* a key that is an array holding a map with a non-string key */
    msgpack_pack_map(&pk, 1);
    msgpack_pack_nil(&pk);
    msgpack_pack_nil(&pk);
    msgpack_pack_nil(&pk);
    msgpack_pack_array(&pk, 0);
    msgpack_pack_map(&pk, 0);
    msgpack_pack_str_with_body(&pk, "", 0);
    return b.overflow ? 0 : b.len;
}

/* n nested one-element arrays around a nil. */
static size_t nested(uint8_t *buf, unsigned n)
{
    memset(buf, 0x91, n);
    buf[n] = 0xc0;
    return n + 1;
}

static size_t enc(const struct msg *m, uint8_t *buf, size_t cap)
{
    size_t len = 0;
    if (msg_encode(m, buf, cap, &len) != SL_OK) {
        fprintf(stderr, "fuzz_seeds: msg_encode failed\n");
        exit(1);
    }
    return len;
}

static size_t enc_frame(const struct msg *m, uint8_t *buf, size_t cap)
{
    size_t len = 0;
    if (msg_encode_frame(m, buf, cap, &len) != SL_OK) {
        fprintf(stderr, "fuzz_seeds: msg_encode_frame failed\n");
        exit(1);
    }
    return len;
}

/* The messages of the contract, one of each type. */
static size_t messages(struct msg *m)
{
    size_t k = 0;
    m[k] = (struct msg){.t = MSG_HELLO};
    m[k].u.hello.v = 1;
    m[k].u.hello.dev = S("pump-0001");
    m[k++].u.hello.tok = S(TOKEN);
    m[k] = (struct msg){.t = MSG_DATA};
    m[k].u.data.seq = 42;
    m[k].u.data.ts = 1764358200000;
    m[k].u.data.has_ts = true;
    m[k++].u.data.body = (struct sl_slice){BODY, sizeof BODY};
    m[k] = (struct msg){.t = MSG_DATA};
    m[k].u.data.seq = (uint64_t)INT64_MAX;
    m[k++].u.data.body = S("\xc0");
    m[k++] = (struct msg){.t = MSG_PING};
    m[k] = (struct msg){.t = MSG_RES};
    m[k].u.res.id = S("c-17");
    m[k].u.res.ok = true;
    m[k].u.res.has_body = true;
    m[k++].u.res.body = (struct sl_slice){BODY, sizeof BODY};
    m[k] = (struct msg){.t = MSG_RES};
    m[k++].u.res.id = S("c-18");
    m[k] = (struct msg){.t = MSG_WELCOME};
    m[k].u.welcome.edge = S("edge-1:7000");
    m[k].u.welcome.hb = 30;
    m[k++].u.welcome.max = 65536;
    m[k] = (struct msg){.t = MSG_ACK};
    m[k++].u.ack.seq = 42;
    m[k++] = (struct msg){.t = MSG_PONG};
    m[k] = (struct msg){.t = MSG_ERR};
    m[k].u.err.code = S("frame");
    m[k++].u.err.msg = S("frame length 0 or above max_frame");
    m[k] = (struct msg){.t = MSG_CMD};
    m[k].u.cmd.id = S("c-17");
    m[k++].u.cmd.body = (struct sl_slice){BODY, sizeof BODY};
    return k;
}

static void seeds_msg(void)
{
    uint8_t buf[4096];
    struct msg m[16];
    size_t nm = messages(m);
    for (size_t i = 0; i < nm; i++) {
        char name[32];
        snprintf(name, sizeof name, "%02zu-%s", i, msg_type_name(m[i].t));
        put("fuzz_msg", name, buf, enc(&m[i], buf, sizeof buf));
    }
    /* The worked example's hello and data payloads (protocol.md §2). */
    size_t n = enc(&m[0], buf, sizeof buf);
    put("fuzz_msg", "protocol-hello", buf, n);
    static const uint8_t data_example[] = {
        0x84, 0xa1, 't',  0xa4, 'd',  'a',  't',  'a',  0xa3, 's', 'e', 'q', 0x2a, 0xa2, 't',  's', 0xcf,
        0x00, 0x00, 0x01, 0x9a, 0xcb, 0xf1, 0x9a, 0xc0, 0xa4, 'b', 'o', 'd', 'y',  0x82, 0xa4, 't', 'e',
        'm',  'p',  0xcb, 0x40, 0x35, 0x80, 0,    0,    0,    0,   0,   0,   0xa2, 'o',  'n',  0xc3};
    put("fuzz_msg", "protocol-data", data_example, sizeof data_example);
    /* Refusals and tolerated oddities. */
    static const uint8_t unknown_key[] = {0x82, 0xa1, 't', 0xa4, 'p', 'i', 'n', 'g', 0xa1, 'x', 0x91, 0x90};
    put("fuzz_msg", "unknown-key", unknown_key, sizeof unknown_key);
    static const uint8_t unknown_t[] = {0x81, 0xa1, 't', 0xa4, 'b', 'o', 'o', 'm'};
    put("fuzz_msg", "unknown-t", unknown_t, sizeof unknown_t);
    static const uint8_t not_map[] = {0x92, 0xa1, 't', 0xa4};
    put("fuzz_msg", "not-a-map", not_map, sizeof not_map);
    static const uint8_t trailing[] = {0x81, 0xa1, 't', 0xa4, 'p', 'i', 'n', 'g', 0xc0};
    put("fuzz_msg", "trailing", trailing, sizeof trailing);
    static const uint8_t key_int[] = {0x82, 0xa1, 't', 0xa4, 'p', 'i', 'n', 'g', 0x01, 0x02};
    put("fuzz_msg", "int-key", key_int, sizeof key_int);
    static const uint8_t dup_t[] = {0x82, 0xa1, 't',  0xa4, 'p', 'i', 'n', 'g',
                                    0xa1, 't',  0xa4, 'p',  'o', 'n', 'g'};
    put("fuzz_msg", "duplicate-t", dup_t, sizeof dup_t);
    static const uint8_t str8_keys[] = {0x81, 0xd9, 0x01, 't', 0xd9, 0x04, 'p', 'i', 'n', 'g'};
    put("fuzz_msg", "str8-keys", str8_keys, sizeof str8_keys);
    struct msg bad = m[0];
    bad.u.hello.dev = S("pump 0001/../x");
    put("fuzz_msg", "hello-bad-dev", buf, enc(&bad, buf, sizeof buf));
    /* A data body nested to the limit: the map, then 31 levels. */
    uint8_t deep[64];
    struct msg d = m[1];
    d.u.data.body = (struct sl_slice){deep, (uint32_t)nested(deep, SL_MP_MAX_DEPTH - 1)};
    put("fuzz_msg", "data-deepest", buf, enc(&d, buf, sizeof buf));
    d.u.data.body.n = (uint32_t)nested(deep, SL_MP_MAX_DEPTH);
    put("fuzz_msg", "data-too-deep", buf, enc(&d, buf, sizeof buf));
}

static void seeds_frame(void)
{
    /* Three control bytes (max_frame, chunk span, chunk seed), then the stream. */
    uint8_t s[8192];
    struct msg m[16];
    size_t nm = messages(m);
    size_t n = 3;
    for (size_t i = 0; i < 2; i++) /* the worked example: hello, data */
        n += enc_frame(&m[i], s + n, sizeof s - n);
    s[0] = 0, s[1] = 0, s[2] = 0;
    put("fuzz_frame", "protocol-example-one-feed", s, n);
    s[1] = 1;
    put("fuzz_frame", "protocol-example-bytewise", s, n);
    s[1] = 7, s[2] = 3;
    put("fuzz_frame", "protocol-example-chunks", s, n);
    for (size_t i = 2; i < nm; i++)
        n += enc_frame(&m[i], s + n, sizeof s - n);
    s[1] = 63, s[2] = 9;
    put("fuzz_frame", "every-type-chunks", s, n);
    s[0] = 4; /* max_frame 32: the hello is refused as too big */
    put("fuzz_frame", "too-big", s, n);
    s[0] = 40, s[1] = 64 | 5; /* max_frame 320, the first frame at most 56: the hello is too big */
    put("fuzz_frame", "hello-over-pre-hello-limit", s, n);
    s[0] = 0; /* the first frame at most 8208, then 65536 */
    put("fuzz_frame", "pre-hello-limit-raised", s, n);
    static const uint8_t empty[] = {0, 5, 1, 0, 0, 0, 1, 0xc0, 0, 0, 0, 0, 0xff};
    put("fuzz_frame", "empty-frame", empty, sizeof empty);
    static const uint8_t partial[] = {0, 2, 2, 0, 0, 0, 9, 0x81, 0xa1, 't'};
    put("fuzz_frame", "partial-body", partial, sizeof partial);
    static const uint8_t prehello[] = {0, 0, 0, 0, 1, 0, 0, 0x78}; /* issue 11: 65,536 announced, 1 sent */
    put("fuzz_frame", "pre-hello-hold", prehello, sizeof prehello);
}

static void seeds_mp(const char *target)
{
    uint8_t buf[4096];
    put(target, "protocol-body", BODY, sizeof BODY);
    put(target, "every-type", buf, every_type(buf, sizeof buf));
    put(target, "deepest", buf, nested(buf, SL_MP_MAX_DEPTH));
    put(target, "too-deep", buf, nested(buf, SL_MP_MAX_DEPTH + 1));
    static const uint8_t gib_map[] = {0x09, 0xdf, 0xdf, 0xdf, 0xdf, 0xdf, 0x10, 0x2b}; /* internals.md */
    put(target, "map32-claims-1gib", gib_map, sizeof gib_map);
    static const uint8_t reserved[] = {0x91, 0xc1};
    put(target, "reserved-c1", reserved, sizeof reserved);
    static const uint8_t nan_inf[] = {0x93, 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0, 0xca, 0xff,
                                      0x80, 0,    0,    0xcb, 0, 0, 0, 0, 0, 0, 0,    1};
    put(target, "nan-inf-subnormal", nan_inf, sizeof nan_inf);
    /* Keys that are not strings, one, two and three levels deep (the third is refused). */
    static const uint8_t keys3[] = {0x81, 0x81, 0x81, 0x01, 0x02, 0x03, 0x04};
    put(target, "key-nesting-3", keys3, sizeof keys3);
    static const uint8_t keys2[] = {0x82, 0x81, 0x91, 0xa1, '"', 0xc3, 0x01, 0xa1, 'k', 0xc2};
    put(target, "key-nesting-2", keys2, sizeof keys2);
    static const uint8_t dup_keys[] = {0x83, 0xa1, 'a', 0x01, 0x01, 0x02, 0xa1, 'a', 0x03};
    put(target, "duplicate-keys", dup_keys, sizeof dup_keys);
    static const uint8_t str_nul[] = {0xa3, 'a', 0, 'b'};
    put(target, "str-with-nul", str_nul, sizeof str_nul);
}

static void seeds_envelope(void)
{
    uint8_t buf[8192];
    struct envelope_writer w;
    struct envelope_hdr h = {
        .edge = S("edge-1:7000"), .incarnation = 0x1234567890abcdefull, .reply = S("edge-1:7000/0")};
    struct envelope e[9] = {
        {.kind = ENV_DATA,
         .slot = 3,
         .gen = 1,
         .dev = S("pump-0001"),
         .epoch = 1764358200000000000ull,
         .seq = 42,
         .ts = 1764358200000,
         .has_ts = true,
         .at_ns = 1764358200123456789ull,
         .body = {BODY, sizeof BODY},
         .has_body = true},
        {.kind = ENV_CONNECT,
         .slot = 3,
         .gen = 1,
         .dev = S("pump-0001"),
         .epoch = 1764358200000000000ull,
         .at_ns = 1764358200000000000ull,
         .peer = S("10.0.0.7:51234")},
        {.kind = ENV_DISCONNECT,
         .slot = 3,
         .gen = 1,
         .dev = S("pump-0001"),
         .epoch = 1764358200000000000ull,
         .at_ns = 1764358260000000000ull,
         .peer = S("10.0.0.7:51234"),
         .reason = S("idle")},
        {.kind = ENV_RES,
         .slot = 3,
         .gen = 1,
         .dev = S("pump-0001"),
         .epoch = 1,
         .at_ns = 5,
         .id = S("c-17"),
         .ok = true,
         .has_ok = true,
         .body = {BODY, sizeof BODY},
         .has_body = true},
        {.kind = ENV_HEARTBEAT, .seq = 12, .at_ns = 1764358200000000000ull},
        {.kind = ENV_UNDELIVERABLE, .dev = S("pump-0002"), .id = S("c-18"), .reason = S("disconnected")},
        {.kind = ENV_ACK, .slot = 3, .gen = 1, .dev = S("pump-0001"), .epoch = 1, .seq = 42},
        {.kind = ENV_CMD,
         .slot = 3,
         .gen = 1,
         .dev = S("pump-0001"),
         .epoch = 1,
         .id = S("c-17"),
         .body = {BODY, sizeof BODY},
         .has_body = true},
        {.kind = ENV_KICK, .slot = 3, .gen = 1, .dev = S("pump-0001"), .epoch = 1},
    };
    /* One batch per kind, then one of everything an edge sends. */
    for (size_t i = 0; i < 9; i++) {
        envelope_writer_begin(&w, buf, sizeof buf, &h);
        envelope_writer_add(&w, &e[i]);
        put("fuzz_envelope", envelope_kind_name(e[i].kind), buf, envelope_writer_len(&w));
    }
    envelope_writer_begin(&w, buf, sizeof buf, &h);
    for (size_t i = 0; i < 6; i++)
        envelope_writer_add(&w, &e[i]);
    /* A session that connects, sends, and a second device with an odd body. */
    struct envelope more = e[0];
    more.dev = S("tank-0001");
    more.has_ts = false;
    uint8_t body[1024];
    more.body = (struct sl_slice){body, (uint32_t)every_type(body, sizeof body)};
    envelope_writer_add(&w, &more);
    put("fuzz_envelope", "edge-batch", buf, envelope_writer_len(&w));
    /* Another version: refused, header still read for the log line. */
    h.v = 2;
    envelope_writer_begin(&w, buf, sizeof buf, &h);
    envelope_writer_add(&w, &e[4]);
    put("fuzz_envelope", "version-2", buf, envelope_writer_len(&w));
    /* A later compatible version's extra positions: [1,"e",7,"r",nil] then
     * [5,0,0,"",0,1,nil,2,nil,nil,nil,nil,nil,"x"]. */
    static const uint8_t extra[] = {0x95, 0x01, 0xa1, 'e',  0x07, 0xa1, 'r',  0xc0, 0x9e, 0x05, 0x00, 0x00,
                                    0xa0, 0x00, 0x01, 0xc0, 0x02, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xa1, 'x'};
    put("fuzz_envelope", "extra-positions", extra, sizeof extra);
    static const uint8_t unknown_kind[] = {0x94, 0x01, 0xa1, 'e',  0x07, 0xa1, 'r',
                                           0x94, 0x63, 0x00, 0x00, 0xa1, 'd'};
    put("fuzz_envelope", "unknown-kind", unknown_kind, sizeof unknown_kind);
}

static void rec(uint8_t *buf, size_t *n, uint8_t kind, uint16_t worker, uint32_t slot, uint64_t t,
                const void *p, uint32_t len)
{
    struct recfile_rec r = {.kind = kind, .worker = worker, .slot = slot, .gen = 1, .t_ns = t, .len = len};
    recfile_rec_encode(&r, buf + *n);
    *n += RECFILE_REC_HDR;
    memcpy(buf + *n, p, len);
    *n += len;
}

static void seeds_recfile(void)
{
    uint8_t f[8192], tmp[1024];
    size_t n = 0;
    struct recfile_header h = {.version = RECFILE_VERSION,
                               .workers = 2,
                               .max_frame = 65536,
                               .start_real_ns = 1764358200000000000ull,
                               .start_mono_ns = 1000000000ull};
    recfile_header_encode(&h, f);
    n = RECFILE_HDR_SIZE;
    struct msg m[16];
    messages(m);
    /* Connection 0.3.1 over IPv4: hello in two reads, welcome, data, ack, close. */
    struct recfile_peer v4 = {.port = 51234, .ip = {10, 0, 0, 7}};
    uint8_t open[RECFILE_OPEN_SIZE];
    recfile_open_encode(&v4, open);
    rec(f, &n, RECFILE_OPEN, 0, 3, 1000000100ull, open, sizeof open);
    size_t hl = enc_frame(&m[0], tmp, sizeof tmp);
    rec(f, &n, RECFILE_IN, 0, 3, 1000000200ull, tmp, 7);
    rec(f, &n, RECFILE_IN, 0, 3, 1000000300ull, tmp + 7, (uint32_t)(hl - 7));
    rec(f, &n, RECFILE_OUT, 0, 3, 1000000400ull, tmp, (uint32_t)enc_frame(&m[6], tmp, sizeof tmp));
    rec(f, &n, RECFILE_IN, 0, 3, 1000000500ull, tmp, (uint32_t)enc_frame(&m[1], tmp, sizeof tmp));
    rec(f, &n, RECFILE_OUT, 0, 3, 1000000600ull, tmp, (uint32_t)enc_frame(&m[7], tmp, sizeof tmp));
    uint8_t close[1 + RECFILE_REASON_MAX];
    rec(f, &n, RECFILE_CLOSE, 0, 3, 1000000700ull, close, (uint32_t)recfile_close_encode(5, "eof", close));
    /* Connection 1.9.1 over IPv6: a garbage frame the edge refused, then a gap. */
    struct recfile_peer v6 = {.v6 = true, .port = 40000, .ip = {0x20, 0x01, 0x0d, 0xb8, [15] = 1}};
    recfile_open_encode(&v6, open);
    rec(f, &n, RECFILE_OPEN, 1, 9, 1000000800ull, open, sizeof open);
    static const uint8_t junk[] = {0x00, 0x01, 0x00, 0x01, 0x78, 0x79};
    rec(f, &n, RECFILE_IN, 1, 9, 1000000900ull, junk, sizeof junk);
    uint8_t gap[RECFILE_GAP_SIZE];
    recfile_gap_encode(3, 300, gap);
    rec(f, &n, RECFILE_GAP, 1, 0, 1000001000ull, gap, sizeof gap);
    rec(f, &n, RECFILE_END, RECFILE_WORKER_NONE, 0, 1000001100ull, "shutdown", 8);
    put("fuzz_recfile", "two-connections", f, n);
    put("fuzz_recfile", "cut-short", f, n - 5);
    h.version = 2;
    recfile_header_encode(&h, f);
    put("fuzz_recfile", "version-2", f, RECFILE_HDR_SIZE);
}

static void seeds_ntf(void)
{
    static const char *const cmds[][2] = {
        {"valve", "{\"id\":\"c-17\",\"body\":{\"valve\":\"open\",\"for_s\":30}}"},
        {"null-body", "{\"id\":\"c-18\",\"body\":null}"},
        {"every-type",
         "{\"id\":\"c.19:x_y-z\",\"body\":[1,-2,2.5,-0.0,1e300,true,false,null,\"h\\u00e9\\n\\u0000\",{},[],"
         "{\"a\":{\"b\":[{}]}},18446744073709551615,-9223372036854775808]} \n"},
        {"no-body", "{\"id\":\"c-20\"}"},
        {"bad-id", "{\"id\":\"no spaces/allowed\",\"body\":1}"},
        {"long-id",
         "{\"id\":\"0123456789012345678901234567890123456789012345678901234567890123456789\",\"body\":1}"},
        {"no-id", "{\"body\":1}"},
        {"id-not-string", "{\"id\":17,\"body\":1}"},
        {"not-object", "[\"c-21\",1]"},
        {"not-json", "open the valve"},
        {"trailing", "{\"id\":\"c-22\",\"body\":1} x"},
        {"nan-inf", "{\"id\":\"c-23\",\"body\":[NaN,Infinity,-Infinity,1e400]}"},
        {"duplicate-keys", "{\"id\":\"c-24\",\"body\":{\"k\":1,\"k\":2},\"id\":\"c-25\"}"},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        put_str("fuzz_ntf_cmd", cmds[i][0], cmds[i][1]);
    static const char *const statuses[][2] = {
        {"online",
         "{\"online\":true,\"edge\":\"edge-1:7000\",\"at\":1764358200000,\"epoch\":1764358200000000000,"
         "\"reply\":\"edge-1:7000/0\",\"inc\":1311768467294899695,\"slot\":3,\"gen\":1}"},
        {"offline",
         "{\"online\":false,\"edge\":\"edge-1:7000\",\"at\":1764358260000,\"epoch\":1764358200000000000,"
         "\"reason\":\"idle\"}"},
        {"online-no-route", "{\"online\":true,\"edge\":\"edge-1:7000\",\"epoch\":1}"},
        {"big-numbers",
         "{\"online\":true,\"edge\":\"e\",\"epoch\":18446744073709551615,\"reply\":\"r\",\"inc\":"
         "18446744073709551615,\"slot\":4294967296,\"gen\":-1}"},
        {"escapes", "{\"online\":false,\"edge\":\"\\u0001\\\"\\\\\",\"epoch\":0,\"reason\":\"a\\u0000b\"}"},
        {"not-json", "online"},
        {"empty", ""},
    };
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
        put_str("fuzz_ntf_status", statuses[i][0], statuses[i][1]);
    /* The longest status there is: every string full of bytes that take 6. */
    char longest[4096];
    size_t n = (size_t)snprintf(longest, sizeof longest, "{\"online\":true,\"edge\":\"");
    for (int i = 0; i < 95; i++)
        n += (size_t)snprintf(longest + n, sizeof longest - n, "\\u0001");
    n += (size_t)snprintf(longest + n, sizeof longest - n, "\",\"reply\":\"");
    for (int i = 0; i < 127; i++)
        n += (size_t)snprintf(longest + n, sizeof longest - n, "\\u001f");
    n += (size_t)snprintf(longest + n, sizeof longest - n, "\",\"reason\":\"");
    for (int i = 0; i < 31; i++)
        n += (size_t)snprintf(longest + n, sizeof longest - n, "\\u0002");
    snprintf(longest + n, sizeof longest - n,
             "\",\"at\":18446744073709551615,\"epoch\":18446744073709551615,\"inc\":18446744073709551615,"
             "\"slot\":4294967295,\"gen\":4294967295}");
    put_str("fuzz_ntf_status", "longest", longest);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seeds DIR\n");
        return 2;
    }
    root = argv[1];
    if (mkdir(root, 0755) != 0 && errno != EEXIST) {
        perror(root);
        return 1;
    }
    seeds_frame();
    seeds_msg();
    seeds_mp("fuzz_mp");
    seeds_mp("fuzz_tojson");
    seeds_envelope();
    seeds_recfile();
    seeds_ntf();
    return 0;
}
