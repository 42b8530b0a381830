/* SPDX-License-Identifier: Apache-2.0 */
/* test_envelope.c - batches round-trip for every kind, trailing nils are
 * left out, readers skip positions they do not know, refuse other versions
 * and stop on truncation, and a full writer rolls back to a sendable batch.
 * An entry's encoding can be copied into another batch, and batches with one
 * header joined, byte for byte as if written in one go. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "sl/envelope.h"
#include "sl/limits.h"

static struct sl_slice S(const char *s) {
    struct sl_slice x = {(const uint8_t *)s, (uint32_t)strlen(s)};
    return x;
}

static const uint8_t body[] = {0x82, 0xa4, 't', 'e', 'm', 'p',  0xcb, 0x40, 0x35, 0x80,
                               0,    0,    0,   0,   0,   0xa2, 'o',  'n',  0xc3};

static struct envelope_hdr hdr(void)
{
    struct envelope_hdr h = {0};
    h.edge = S("edge-a:7000");
    h.incarnation = 0xfedcba9876543210ULL;
    h.reply = S("edge-a:7000/1");
    return h;
}

/* One entry of every kind, with the fields its kind uses. */
static struct envelope sample(enum envelope_kind k)
{
    struct envelope e = {0};
    e.kind = k;
    e.slot = 17;
    e.gen = 4000000000u;
    e.dev = S("pump-0001");
    e.epoch = 1764358200123456789ULL;
    switch (k) {
    case ENV_DATA:
        e.seq = (uint64_t)INT64_MAX;
        e.ts = 1764358200000LL;
        e.has_ts = true;
        e.at_ns = 1764358200999000000ULL;
        e.body.p = body;
        e.body.n = sizeof body;
        e.has_body = true;
        break;
    case ENV_CONNECT:
        e.at_ns = 1;
        e.peer = S("10.0.0.1:5555");
        break;
    case ENV_DISCONNECT:
        e.at_ns = 2;
        e.peer = S("[::1]:5555");
        e.reason = S("idle");
        break;
    case ENV_RES:
        e.at_ns = 3;
        e.id = S("cmd-7");
        e.ok = true;
        e.has_ok = true;
        e.body.p = body;
        e.body.n = sizeof body;
        e.has_body = true;
        break;
    case ENV_HEARTBEAT:
        e.slot = 0;
        e.gen = 0;
        e.dev = S("");
        e.epoch = 0;
        e.seq = 12;
        e.at_ns = 4;
        break;
    case ENV_UNDELIVERABLE:
        e.id = S("cmd-8");
        e.reason = S("disconnected");
        break;
    case ENV_ACK: e.seq = 42; break;
    case ENV_NOTIFIER_HB:
        e.dev = S("");
        e.epoch = 0;
        e.at_ns = 6;
        e.to = S("tcp://10.0.0.7:7011");
        break;
    case ENV_CMD_SENT:
        e.at_ns = 5;
        e.id = S("cmd-10");
        break;
    case ENV_CMD:
        e.id = S("cmd-9");
        e.body.p = body;
        e.body.n = 1;
        e.has_body = true;
        break;
    default: break;
    }
    return e;
}

static void same(const struct envelope *a, const struct envelope *b)
{
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->slot, b->slot);
    assert_int_equal(a->gen, b->gen);
    assert_true(sl_slice_eq(a->dev, b->dev));
    assert_true(a->epoch == b->epoch);
    assert_true(a->seq == b->seq);
    assert_int_equal(a->has_ts, b->has_ts);
    assert_true(a->ts == b->ts);
    assert_true(a->at_ns == b->at_ns);
    assert_true(sl_slice_eq(a->peer, b->peer));
    assert_true(sl_slice_eq(a->reason, b->reason));
    assert_true(sl_slice_eq(a->id, b->id));
    assert_int_equal(a->ok, b->ok);
    assert_int_equal(a->has_ok, b->has_ok);
    assert_int_equal(a->has_body, b->has_body);
    assert_true(sl_slice_eq(a->body, b->body));
}

static void test_roundtrip_every_kind(void **state)
{
    (void)state;
    static uint8_t buf[4096];
    struct envelope_writer w;
    struct envelope_hdr h = hdr();
    assert_int_equal(envelope_writer_begin(&w, buf, sizeof buf, &h), SL_OK);
    for (int k = ENV_DATA; k <= ENV_CMD_SENT; k++) {
        struct envelope e = sample((enum envelope_kind)k);
        assert_int_equal(envelope_writer_add(&w, &e), SL_OK);
    }
    assert_int_equal(w.count, 11);

    struct envelope_reader r;
    assert_int_equal(envelope_reader_begin(&r, buf, envelope_writer_len(&w)), SL_OK);
    assert_int_equal(r.hdr.v, SL_ENVELOPE_VERSION);
    assert_true(sl_slice_eqs(r.hdr.edge, "edge-a:7000"));
    assert_true(r.hdr.incarnation == 0xfedcba9876543210ULL);
    assert_true(sl_slice_eqs(r.hdr.reply, "edge-a:7000/1"));
    for (int k = ENV_DATA; k <= ENV_CMD_SENT; k++) {
        struct envelope want = sample((enum envelope_kind)k), got;
        assert_int_equal(envelope_reader_next(&r, &got), SL_OK);
        same(&got, &want);
        /* Bodies point into the batch, never copied. */
        if (got.has_body)
            assert_true(got.body.p >= buf && got.body.p < buf + envelope_writer_len(&w));
    }
    struct envelope e;
    assert_int_equal(envelope_reader_next(&r, &e), SL_AGAIN);
    assert_int_equal(envelope_reader_next(&r, &e), SL_AGAIN);
}

static void test_optional_fields(void **state)
{
    (void)state;
    uint8_t buf[512];
    struct envelope_writer w;
    struct envelope_hdr h = hdr();
    struct envelope e = sample(ENV_DATA), got;
    e.has_ts = false; /* ts nil in the middle of the array */
    struct envelope res = sample(ENV_RES);
    res.has_body = false;
    res.ok = false;
    assert_int_equal(envelope_writer_begin(&w, buf, sizeof buf, &h), SL_OK);
    assert_int_equal(envelope_writer_add(&w, &e), SL_OK);
    assert_int_equal(envelope_writer_add(&w, &res), SL_OK);
    struct envelope_reader r;
    assert_int_equal(envelope_reader_begin(&r, buf, envelope_writer_len(&w)), SL_OK);
    assert_int_equal(envelope_reader_next(&r, &got), SL_OK);
    assert_false(got.has_ts);
    assert_true(got.ts == 0);
    assert_true(got.seq == e.seq);
    assert_true(got.has_body);
    assert_int_equal(envelope_reader_next(&r, &got), SL_OK);
    assert_int_equal(got.kind, ENV_RES);
    assert_false(got.has_body);
    assert_true(got.has_ok);
    assert_false(got.ok);
    assert_true(sl_slice_eqs(got.id, "cmd-7"));
    assert_int_equal(envelope_reader_next(&r, &got), SL_AGAIN);
}

static void test_many_entries(void **state)
{
    (void)state;
    static uint8_t buf[1 << 20];
    struct envelope_writer w;
    struct envelope_hdr h = hdr();
    char devs[1000][16];
    assert_int_equal(envelope_writer_begin(&w, buf, sizeof buf, &h), SL_OK);
    for (int i = 0; i < 1000; i++) {
        struct envelope e = sample(i % 2 ? ENV_ACK : ENV_DATA);
        snprintf(devs[i], sizeof devs[i], "dev-%d", i);
        e.dev = S(devs[i]);
        e.seq = (uint64_t)i + 1;
        e.slot = (uint32_t)i;
        assert_int_equal(envelope_writer_add(&w, &e), SL_OK);
    }
    assert_int_equal(w.count, 1000);
    struct envelope_reader r;
    assert_int_equal(envelope_reader_begin(&r, buf, envelope_writer_len(&w)), SL_OK);
    for (int i = 0; i < 1000; i++) {
        struct envelope e;
        assert_int_equal(envelope_reader_next(&r, &e), SL_OK);
        assert_int_equal(e.kind, i % 2 ? ENV_ACK : ENV_DATA);
        assert_true(sl_slice_eqs(e.dev, devs[i]));
        assert_true(e.seq == (uint64_t)i + 1);
        assert_int_equal(e.slot, (uint32_t)i);
    }
    struct envelope e;
    assert_int_equal(envelope_reader_next(&r, &e), SL_AGAIN);
}

static void test_toobig_rollback(void **state)
{
    (void)state;
    uint8_t buf[200];
    struct envelope_writer w;
    struct envelope_hdr h = hdr();
    assert_int_equal(envelope_writer_begin(&w, buf, sizeof buf, &h), SL_OK);
    struct envelope ack = sample(ENV_ACK);
    struct envelope data = sample(ENV_DATA);
    int n = 0;
    size_t before = 0;
    for (;;) {
        before = envelope_writer_len(&w);
        enum sl_err rc = envelope_writer_add(&w, n % 3 == 2 ? &data : &ack);
        if (rc == SL_TOOBIG)
            break;
        assert_int_equal(rc, SL_OK);
        n++;
    }
    assert_true(n >= 2);
    assert_int_equal(w.count, (uint32_t)n);
    assert_int_equal(envelope_writer_len(&w), before);
    assert_false(w.buf.overflow);
    /* A smaller entry may still fit after a refused bigger one. */
    if (n % 3 == 2) {
        size_t len0 = envelope_writer_len(&w);
        if (envelope_writer_add(&w, &ack) == SL_OK) {
            n++;
            assert_true(envelope_writer_len(&w) > len0);
        }
    }
    /* The batch as left is whole: every entry reads back, then the end. */
    struct envelope_reader r;
    assert_int_equal(envelope_reader_begin(&r, buf, envelope_writer_len(&w)), SL_OK);
    for (int i = 0; i < n; i++) {
        struct envelope e;
        assert_int_equal(envelope_reader_next(&r, &e), SL_OK);
    }
    struct envelope e;
    assert_int_equal(envelope_reader_next(&r, &e), SL_AGAIN);

    /* A header that does not fit. */
    assert_int_equal(envelope_writer_begin(&w, buf, 10, &h), SL_TOOBIG);
    /* An unknown kind is a programming error, not a wire one. */
    assert_int_equal(envelope_writer_begin(&w, buf, sizeof buf, &h), SL_OK);
    e = sample(ENV_ACK);
    e.kind = ENV_NONE;
    assert_int_equal(envelope_writer_add(&w, &e), SL_INVAL);
    e.kind = (enum envelope_kind)(ENV_CMD_SENT + 1);
    assert_int_equal(envelope_writer_add(&w, &e), SL_INVAL);
    assert_int_equal(w.count, 0);
}

static void test_version(void **state)
{
    (void)state;
    uint8_t buf[256];
    struct envelope_writer w;
    struct envelope_hdr h = hdr();
    h.v = 2;
    assert_int_equal(envelope_writer_begin(&w, buf, sizeof buf, &h), SL_OK);
    struct envelope e = sample(ENV_ACK);
    assert_int_equal(envelope_writer_add(&w, &e), SL_OK);
    struct envelope_reader r;
    assert_int_equal(envelope_reader_begin(&r, buf, envelope_writer_len(&w)), SL_VERSION);
    /* Filled in for the log line. */
    assert_int_equal(r.hdr.v, 2);
    assert_true(sl_slice_eqs(r.hdr.edge, "edge-a:7000"));
    /* A v2 header of another shape still says VERSION, not DECODE. */
    const uint8_t odd[] = {0x91, 0x02};
    assert_int_equal(envelope_reader_begin(&r, odd, sizeof odd), SL_VERSION);
    const uint8_t v0[] = {0x94, 0x00, 0xa1, 'e', 0x01, 0xa1, 'r'};
    assert_int_equal(envelope_reader_begin(&r, v0, sizeof v0), SL_VERSION);
    const uint8_t v1[] = {0x94, 0x01, 0xa1, 'e', 0x01, 0xa1, 'r'};
    assert_int_equal(envelope_reader_begin(&r, v1, sizeof v1), SL_OK);
    /* A huge version number does not wrap to 1. */
    const uint8_t vbig[] = {0x94, 0xcf, 0, 0, 0, 1, 0, 0, 0, 1, 0xa1, 'e', 0x01, 0xa1, 'r'};
    assert_int_equal(envelope_reader_begin(&r, vbig, sizeof vbig), SL_VERSION);
}

static void test_trailing_nils_omitted(void **state)
{
    (void)state;
    uint8_t buf[256];
    struct envelope_writer w;
    struct envelope_hdr h = hdr();
    assert_int_equal(envelope_writer_begin(&w, buf, sizeof buf, &h), SL_OK);
    size_t hlen = envelope_writer_len(&w);
    struct envelope e = {0};
    e.kind = ENV_ACK;
    e.slot = 3;
    e.gen = 2;
    e.dev = S("d1");
    e.epoch = 5;
    e.seq = 42;
    assert_int_equal(envelope_writer_add(&w, &e), SL_OK);
    /* [7, 3, 2, "d1", 5, 42]: a 6-element array, nothing after seq. */
    const uint8_t want[] = {0x96, 0x07, 0x03, 0x02, 0xa2, 'd', '1', 0x05, 0x2a};
    assert_int_equal(envelope_writer_len(&w) - hlen, sizeof want);
    assert_memory_equal(buf + hlen, want, sizeof want);

    /* A kick is [9, slot, gen, dev, epoch]; a connect stops at peer. */
    hlen = envelope_writer_len(&w);
    e.kind = ENV_KICK;
    assert_int_equal(envelope_writer_add(&w, &e), SL_OK);
    const uint8_t kick[] = {0x95, 0x09, 0x03, 0x02, 0xa2, 'd', '1', 0x05};
    assert_int_equal(envelope_writer_len(&w) - hlen, sizeof kick);
    assert_memory_equal(buf + hlen, kick, sizeof kick);

    hlen = envelope_writer_len(&w);
    e.kind = ENV_CONNECT;
    e.at_ns = 1;
    e.peer = S("p");
    assert_int_equal(envelope_writer_add(&w, &e), SL_OK);
    /* seq (unused by connect) and ts are nil, then at_ns, peer. */
    const uint8_t conn[] = {0x99, 0x02, 0x03, 0x02, 0xa2, 'd', '1', 0x05, 0xc0, 0xc0, 0x01, 0xa1, 'p'};
    assert_int_equal(envelope_writer_len(&w) - hlen, sizeof conn);
    assert_memory_equal(buf + hlen, conn, sizeof conn);

    /* The header: [1, "edge-a:7000", incarnation (uint64), "edge-a:7000/1"]. */
    assert_int_equal(buf[0], 0x94);
    assert_int_equal(buf[1], 0x01);
    /* And a data entry's body is a bin carrying the raw bytes. */
    hlen = envelope_writer_len(&w);
    struct envelope d = sample(ENV_DATA);
    d.dev = S("d1");
    assert_int_equal(envelope_writer_add(&w, &d), SL_OK);
    const uint8_t *end = buf + envelope_writer_len(&w);
    assert_int_equal(end[-(int)sizeof body - 2], 0xc4);
    assert_int_equal(end[-(int)sizeof body - 1], sizeof body);
    assert_memory_equal(end - sizeof body, body, sizeof body);
}

static void test_reader_tolerance(void **state)
{
    (void)state;
    /* Header with an extra position, entries of 4 elements (missing
     * positions are nil) and of 15 (two unknown, one a nested map). */
    const uint8_t in[] = {
        0x95, 0x01, 0xa1, 'e',  0x07, 0xa1, 'r',  0x92, 0x01, 0x02, /* header + [1,2] */
        0x94, 0x07, 0x01, 0x02, 0xa1, 'x',                          /* [7,1,2,"x"] */
        0xdc, 0x00, 0x0f, 0x07, 0x01, 0x02, 0xa1, 'y',  0x09, 0x2a, /* array16 of 15: ack ... */
        0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0,                   /* ts .. body nil */
        0x81, 0xa1, 'k',  0x92, 0x01, 0x90,                         /* extra 13: {"k":[1,[]]} */
        0xa3, 'n',  'e',  'w',                                      /* extra 14 */
        0x93, 0x07, 0x00, 0x00,                                     /* 3 elements: refused */
    };
    struct envelope_reader r;
    struct envelope e;
    assert_int_equal(envelope_reader_begin(&r, in, sizeof in), SL_OK);
    assert_true(sl_slice_eqs(r.hdr.reply, "r"));
    assert_true(r.hdr.incarnation == 7);
    assert_int_equal(envelope_reader_next(&r, &e), SL_OK);
    assert_int_equal(e.kind, ENV_ACK);
    assert_true(sl_slice_eqs(e.dev, "x"));
    assert_true(e.seq == 0 && e.epoch == 0);
    assert_false(e.has_ts || e.has_ok || e.has_body);
    assert_int_equal(envelope_reader_next(&r, &e), SL_OK);
    assert_true(sl_slice_eqs(e.dev, "y"));
    assert_true(e.epoch == 9);
    assert_true(e.seq == 42);
    assert_false(e.has_body);
    assert_int_equal(envelope_reader_next(&r, &e), SL_DECODE);

    /* An unknown kind reads fine (a newer edge); the service skips it. */
    const uint8_t k99[] = {0x94, 0x01, 0xa0, 0x00, 0xa0, 0x94, 0x63, 0x00, 0x00, 0xa0};
    assert_int_equal(envelope_reader_begin(&r, k99, sizeof k99), SL_OK);
    assert_int_equal(envelope_reader_next(&r, &e), SL_OK);
    assert_int_equal(e.kind, 99);
    assert_string_equal(envelope_kind_name(e.kind), "unknown");
    assert_string_equal(envelope_kind_name(ENV_HEARTBEAT), "heartbeat");
    assert_string_equal(envelope_kind_name(ENV_KICK), "kick");
    assert_string_equal(envelope_kind_name(ENV_CMD_SENT), "cmd_sent");
}

static void test_malformed(void **state)
{
    (void)state;
    uint8_t buf[512];
    struct envelope_writer w;
    struct envelope_hdr h = hdr();
    assert_int_equal(envelope_writer_begin(&w, buf, sizeof buf, &h), SL_OK);
    struct envelope e = sample(ENV_DATA);
    assert_int_equal(envelope_writer_add(&w, &e), SL_OK);
    size_t n = envelope_writer_len(&w);
    struct envelope_reader r;

    /* Cut anywhere inside the entry: the reader says DECODE, never OK. */
    assert_int_equal(envelope_reader_begin(&r, buf, n), SL_OK);
    size_t hlen = (size_t)(r.cur.p - buf);
    for (size_t cut = hlen + 1; cut < n; cut++) {
        assert_int_equal(envelope_reader_begin(&r, buf, cut), SL_OK);
        assert_int_equal(envelope_reader_next(&r, &e), SL_DECODE);
    }
    /* Cut inside the header. */
    for (size_t cut = 0; cut < hlen; cut++)
        assert_int_equal(envelope_reader_begin(&r, buf, cut), SL_DECODE);

    /* Wrong types in known positions. */
    const uint8_t hdr_ok[] = {0x94, 0x01, 0xa1, 'e', 0x07, 0xa1, 'r'};
    struct {
        uint8_t b[16];
        size_t n;
    } bad[] = {
        {{0x94, 0xa1, 'x', 0x00, 0x00, 0xa0}, 6},                                         /* kind a string */
        {{0x94, 0xc0, 0x00, 0x00, 0xa0}, 5},                                              /* kind nil */
        {{0x94, 0x07, 0xff, 0x00, 0xa0}, 5},                                              /* slot negative */
        {{0x94, 0x07, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0, 0x00, 0xa0}, 13},                     /* slot > u32 */
        {{0x94, 0x07, 0x00, 0x00, 0x01}, 5},                                              /* dev not a str */
        {{0x96, 0x07, 0x00, 0x00, 0xa0, 0x00, 0xa1, 'x'}, 8},                             /* seq a str */
        {{0x9d, 0x01, 0, 0, 0xa0, 0, 1, 0xc0, 0, 0xc0, 0xc0, 0xc0, 0xc0, 0xa1, 'x'}, 15}, /* body str */
        {{0x9c, 0x04, 0, 0, 0xa0, 0, 0xc0, 0xc0, 0, 0xc0, 0xc0, 0xc0, 0x01}, 13},         /* ok not bool */
        {{0x92, 0x07, 0x00}, 3},                                                          /* fewer than 4 */
        {{0x01}, 1},                                                                      /* not an array */
        {{0xdd, 0xff, 0xff, 0xff, 0xff, 0x07}, 6},                                        /* array32 lie */
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        uint8_t in[64];
        memcpy(in, hdr_ok, sizeof hdr_ok);
        memcpy(in + sizeof hdr_ok, bad[k].b, bad[k].n);
        assert_int_equal(envelope_reader_begin(&r, in, sizeof hdr_ok + bad[k].n), SL_OK);
        if (envelope_reader_next(&r, &e) != SL_DECODE)
            fail_msg("bad entry %zu accepted", k);
    }
    /* Header: not an array, short, wrong types. */
    assert_int_equal(envelope_reader_begin(&r, (const uint8_t *)"\x01", 1), SL_DECODE);
    assert_int_equal(envelope_reader_begin(&r, (const uint8_t *)"\x93\x01\xa0\x00", 4), SL_DECODE);
    assert_int_equal(envelope_reader_begin(&r, (const uint8_t *)"\x94\x01\x01\x00\xa0", 5), SL_DECODE);
    assert_int_equal(envelope_reader_begin(&r,
                                           (const uint8_t *)"\x94\xa1"
                                                            "1\xa0\x00\xa0",
                                           6),
                     SL_DECODE);
    assert_int_equal(envelope_reader_begin(&r, (const uint8_t *)"", 0), SL_DECODE);
}

/* A batch of entries es[0..n) written in one go: the reference. */
/* What a service may trust: every sample kind passes; each bad field is
 * named; an unknown kind is "skip silently"; the header's strings too. */
static void test_check(void **state)
{
    (void)state;
    const char *why = NULL;
    for (int k = ENV_DATA; k <= ENV_CMD_SENT; k++) {
        struct envelope e = sample((enum envelope_kind)k);
        assert_int_equal(envelope_check(&e, &why), SL_OK);
    }
    struct envelope e = sample(ENV_DATA);
    e.dev = S("a\0b"); /* the notifier crash of issue 11: a NUL inside */
    e.dev.n = 3;
    assert_int_equal(envelope_check(&e, &why), SL_INVAL);
    assert_string_equal(why, "dev");
    e.dev = S("");
    assert_int_equal(envelope_check(&e, &why), SL_INVAL);
    e = sample(ENV_DATA);
    e.seq = 0;
    assert_int_equal(envelope_check(&e, &why), SL_INVAL);
    assert_string_equal(why, "seq");
    e = sample(ENV_DATA);
    e.has_body = false;
    assert_int_equal(envelope_check(&e, &why), SL_INVAL);
    assert_string_equal(why, "body");
    e = sample(ENV_CMD);
    e.id = S("has space");
    assert_int_equal(envelope_check(&e, &why), SL_INVAL);
    assert_string_equal(why, "id");
    e = sample(ENV_DISCONNECT);
    e.reason = S("line\nbreak");
    assert_int_equal(envelope_check(&e, &why), SL_INVAL);
    assert_string_equal(why, "reason");
    e = sample(ENV_CONNECT);
    char longpeer[80];
    memset(longpeer, '1', sizeof longpeer - 1);
    longpeer[sizeof longpeer - 1] = 0;
    e.peer = S(longpeer);
    assert_int_equal(envelope_check(&e, &why), SL_INVAL);
    assert_string_equal(why, "peer");
    e = sample(ENV_HEARTBEAT);
    e.dev = S("x");
    assert_int_equal(envelope_check(&e, &why), SL_INVAL);
    e = sample(ENV_HEARTBEAT);
    e.to = S("tcp://10.0.0.7:7011");
    e.ring = S("ntf-0,ntf-1");
    assert_int_equal(envelope_check(&e, &why), SL_OK);
    e.to = S("tcp://x\n");
    assert_int_equal(envelope_check(&e, &why), SL_INVAL);
    assert_string_equal(why, "to");
    e = sample(ENV_HEARTBEAT);
    e.kind = ENV_NOTIFIER_HB;
    e.to = S("tcp://10.0.0.7:7011");
    assert_int_equal(envelope_check(&e, &why), SL_OK);
    e = sample(ENV_ACK);
    e.kind = (enum envelope_kind)200; /* from a later version */
    assert_int_equal(envelope_check(&e, &why), SL_AGAIN);

    struct envelope_hdr h = hdr();
    assert_int_equal(envelope_hdr_check(&h, &why), SL_OK);
    h.reply.p = (const uint8_t *)"a\0b";
    h.reply.n = 3;
    assert_int_equal(envelope_hdr_check(&h, &why), SL_INVAL);
    assert_string_equal(why, "reply");
    h = hdr();
    h.edge = S("");
    assert_int_equal(envelope_hdr_check(&h, &why), SL_INVAL);
    assert_string_equal(why, "edge");
}

static size_t write_all(uint8_t *buf, size_t cap, const struct envelope *es, int n)
{
    struct envelope_writer w;
    struct envelope_hdr h = hdr();
    assert_int_equal(envelope_writer_begin(&w, buf, cap, &h), SL_OK);
    for (int i = 0; i < n; i++)
        assert_int_equal(envelope_writer_add(&w, &es[i]), SL_OK);
    return envelope_writer_len(&w);
}

static void test_copy_encoded_entry(void **state)
{
    (void)state;
    static uint8_t a[1024], b[1024], ref[1024];
    struct envelope_writer wa, wb;
    struct envelope_hdr h = hdr();
    struct envelope es[2] = {sample(ENV_DATA), sample(ENV_CONNECT)};
    assert_int_equal(envelope_writer_begin(&wa, a, sizeof a, &h), SL_OK);
    assert_int_equal(envelope_writer_last(&wa).n, 0);
    assert_int_equal(envelope_writer_entries(&wa).n, 0);
    assert_int_equal(envelope_writer_count(&wa), 0);
    assert_int_equal(envelope_writer_begin(&wb, b, sizeof b, &h), SL_OK);
    for (int i = 0; i < 2; i++) {
        size_t before = envelope_writer_len(&wa);
        assert_int_equal(envelope_writer_add(&wa, &es[i]), SL_OK);
        struct sl_slice e = envelope_writer_last(&wa);
        /* last = exactly the bytes this add appended */
        assert_ptr_equal(e.p, a + before);
        assert_int_equal(e.n, envelope_writer_len(&wa) - before);
        assert_int_equal(envelope_writer_add_encoded(&wb, e), SL_OK);
        assert_true(sl_slice_eq(envelope_writer_last(&wb), e));
    }
    assert_int_equal(envelope_writer_count(&wb), 2);
    size_t n = write_all(ref, sizeof ref, es, 2);
    assert_int_equal(envelope_writer_len(&wb), n);
    assert_memory_equal(b, ref, n);
    assert_true(sl_slice_eq(envelope_writer_entries(&wa), envelope_writer_entries(&wb)));

    /* Refusals leave the batch as it was. */
    static const uint8_t nil[1] = {0xc0};
    assert_int_equal(envelope_writer_add_encoded(&wb, (struct sl_slice){nil, 1}), SL_INVAL);
    assert_int_equal(envelope_writer_add_encoded(&wb, (struct sl_slice){nil, 0}), SL_INVAL);
    uint8_t small[96]; /* room for the header and an ack, not for a data entry */
    struct envelope_writer ws;
    assert_int_equal(envelope_writer_begin(&ws, small, sizeof small, &h), SL_OK);
    size_t len0 = envelope_writer_len(&ws);
    struct sl_slice ents = envelope_writer_entries(&wa); /* the data entry first: too big for small */
    struct sl_slice first = {ents.p, (uint32_t)(envelope_writer_last(&wa).p - ents.p)};
    assert_int_equal(envelope_writer_add_encoded(&ws, first), SL_TOOBIG);
    assert_int_equal(envelope_writer_len(&ws), len0);
    assert_int_equal(envelope_writer_count(&ws), 0);
    assert_int_equal(envelope_writer_last(&ws).n, 0);
    struct envelope ack = sample(ENV_ACK);
    assert_int_equal(envelope_writer_add(&ws, &ack), SL_OK); /* still usable */
    struct envelope_reader r;
    struct envelope got;
    assert_int_equal(envelope_reader_begin(&r, small, envelope_writer_len(&ws)), SL_OK);
    assert_int_equal(envelope_reader_next(&r, &got), SL_OK);
    same(&got, &ack);
    assert_int_equal(envelope_reader_next(&r, &got), SL_AGAIN);
}

/* The positions appended in version 1 (to, ring) and the notifier's
 * heartbeat kind: written only where used, read back; a reader that knows
 * only 13 positions sees the same heartbeat without them (old readers skip
 * what they do not know), and a heartbeat without them is the old one, byte
 * for byte. */
static void test_heartbeat_positions(void **state)
{
    (void)state;
    uint8_t buf[512];
    struct envelope_writer w;
    struct envelope_hdr h = hdr();
    assert_int_equal(envelope_writer_begin(&w, buf, sizeof buf, &h), SL_OK);
    size_t hlen = envelope_writer_len(&w);
    struct envelope hb = sample(ENV_HEARTBEAT);
    assert_int_equal(envelope_writer_add(&w, &hb), SL_OK);
    /* [5, 0, 0, "", 0, 12, nil, 4]: what version 1 always wrote */
    const uint8_t old[] = {0x98, 0x05, 0x00, 0x00, 0xa0, 0x00, 0x0c, 0xc0, 0x04};
    assert_int_equal(envelope_writer_len(&w) - hlen, sizeof old);
    assert_memory_equal(buf + hlen, old, sizeof old);

    hlen = envelope_writer_len(&w);
    hb.to = S("tcp://10.0.0.7:7011");
    hb.ring = S("ntf-0,ntf-1");
    assert_int_equal(envelope_writer_add(&w, &hb), SL_OK);
    assert_int_equal(buf[hlen], 0x9f); /* fixarray of 15 */
    struct envelope nh = {0};
    nh.kind = ENV_NOTIFIER_HB;
    nh.at_ns = 99;
    nh.to = S("tcp://10.0.0.7:7011");
    nh.ring = S("must not be written");
    hlen = envelope_writer_len(&w);
    assert_int_equal(envelope_writer_add(&w, &nh), SL_OK);
    assert_int_equal(buf[hlen], 0x9e); /* 14 positions: ring is not a field of this kind */

    struct envelope_reader r;
    struct envelope e;
    assert_int_equal(envelope_reader_begin(&r, buf, envelope_writer_len(&w)), SL_OK);
    assert_int_equal(envelope_reader_next(&r, &e), SL_OK);
    assert_int_equal(e.to.n, 0);
    assert_int_equal(e.ring.n, 0);
    assert_int_equal(envelope_reader_next(&r, &e), SL_OK);
    assert_int_equal(e.kind, ENV_HEARTBEAT);
    assert_true(e.seq == 12 && e.at_ns == 4);
    assert_true(sl_slice_eqs(e.to, "tcp://10.0.0.7:7011"));
    assert_true(sl_slice_eqs(e.ring, "ntf-0,ntf-1"));
    assert_int_equal(envelope_reader_next(&r, &e), SL_OK);
    assert_int_equal(e.kind, ENV_NOTIFIER_HB);
    assert_true(e.at_ns == 99);
    assert_true(sl_slice_eqs(e.to, "tcp://10.0.0.7:7011"));
    assert_int_equal(e.ring.n, 0);
    assert_string_equal(envelope_kind_name(ENV_NOTIFIER_HB), "notifier_heartbeat");
    assert_int_equal(envelope_reader_next(&r, &e), SL_AGAIN);

    /* Something other than a string at those positions is skipped, not refused. */
    const uint8_t odd[] = {0x94, 0x01, 0xa1, 'e',  0x07, 0xa1, 'r',  0x9f, 0x05, 0x00,
                           0x00, 0xa0, 0x00, 0x01, 0xc0, 0x02, 0xc0, 0xc0, 0xc0, 0xc0,
                           0xc0, 0x92, 0x01, 0x02, 0x81, 0xa1, 'k',  0xc0};
    assert_int_equal(envelope_reader_begin(&r, odd, sizeof odd), SL_OK);
    assert_int_equal(envelope_reader_next(&r, &e), SL_OK);
    assert_int_equal(e.kind, ENV_HEARTBEAT);
    assert_int_equal(e.to.n, 0);
    assert_int_equal(e.ring.n, 0);
    assert_int_equal(envelope_reader_next(&r, &e), SL_AGAIN);
}

static void test_join_batches(void **state)
{
    (void)state;
    static uint8_t ctl[1024], data[1024], out[2048], ref[2048];
    struct envelope_hdr h = hdr();
    struct envelope es[5] = {sample(ENV_CONNECT), sample(ENV_RES), sample(ENV_DATA), sample(ENV_DATA),
                             sample(ENV_DATA)};
    es[3].seq = 7;
    es[4].seq = 8;
    struct envelope_writer wc, wd, wo;
    assert_int_equal(envelope_writer_begin(&wc, ctl, sizeof ctl, &h), SL_OK);
    assert_int_equal(envelope_writer_begin(&wd, data, sizeof data, &h), SL_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(envelope_writer_add(i < 2 ? &wc : &wd, &es[i]), SL_OK);
    size_t need = envelope_writer_len(&wc) + envelope_writer_entries(&wd).n;

    assert_int_equal(envelope_writer_begin(&wo, out, need, &h), SL_OK);
    assert_int_equal(envelope_writer_append(&wo, &wc), SL_OK);
    assert_int_equal(envelope_writer_append(&wo, &wd), SL_OK);
    assert_int_equal(envelope_writer_count(&wo), 5);
    assert_int_equal(envelope_writer_len(&wo), need); /* exactly: one header */
    size_t n = write_all(ref, sizeof ref, es, 5);
    assert_int_equal(n, need);
    assert_memory_equal(out, ref, n);
    /* last: the data part's last entry, now inside out */
    assert_true(sl_slice_eq(envelope_writer_last(&wo), envelope_writer_last(&wd)));
    assert_ptr_equal(envelope_writer_last(&wo).p + envelope_writer_last(&wo).n, out + need);

    /* Full: nothing appended, the batch still whole (and an empty src is fine). */
    assert_int_equal(envelope_writer_append(&wo, &wd), SL_TOOBIG);
    assert_int_equal(envelope_writer_len(&wo), need);
    assert_int_equal(envelope_writer_count(&wo), 5);
    struct envelope_writer we;
    static uint8_t empty[256];
    assert_int_equal(envelope_writer_begin(&we, empty, sizeof empty, &h), SL_OK);
    assert_int_equal(envelope_writer_append(&wo, &we), SL_OK);
    assert_int_equal(envelope_writer_count(&wo), 5);

    /* Another header (incarnation): refused, not mixed in. */
    struct envelope_hdr h2 = hdr();
    h2.incarnation++;
    struct envelope_writer w2;
    static uint8_t other[1024];
    assert_int_equal(envelope_writer_begin(&w2, other, sizeof other, &h2), SL_OK);
    assert_int_equal(envelope_writer_add(&w2, &es[0]), SL_OK);
    assert_int_equal(envelope_writer_begin(&wo, out, sizeof out, &h), SL_OK);
    assert_int_equal(envelope_writer_append(&wo, &w2), SL_INVAL);
    assert_int_equal(envelope_writer_count(&wo), 0);

    struct envelope_reader r;
    assert_int_equal(envelope_reader_begin(&r, out, need), SL_OK);
    for (int i = 0; i < 5; i++) {
        struct envelope got;
        assert_int_equal(envelope_reader_next(&r, &got), SL_OK);
        same(&got, &es[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_kind),
        cmocka_unit_test(test_optional_fields),
        cmocka_unit_test(test_many_entries),
        cmocka_unit_test(test_toobig_rollback),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_trailing_nils_omitted),
        cmocka_unit_test(test_reader_tolerance),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_copy_encoded_entry),
        cmocka_unit_test(test_join_batches),
        cmocka_unit_test(test_heartbeat_positions),
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
