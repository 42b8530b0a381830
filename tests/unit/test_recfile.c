/* SPDX-License-Identifier: Apache-2.0 */
/* test_recfile.c - the recording format (proto/recfile.c) byte by byte:
 * the exact little-endian layout docs/recording.md documents, decoding of
 * truncated, foreign and future files, the payload helpers, the device a
 * first frame names, and --record-devices matching. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "sl/msg.h"
#include "sl/recfile.h"

static void test_header_bytes(void **st)
{
    (void)st;
    struct recfile_header h = {.version = 1,
                               .workers = 2,
                               .max_frame = 65536,
                               .flags = RECFILE_F_FILTERED,
                               .start_real_ns = 0x0102030405060708ull,
                               .start_mono_ns = 0x1112131415161718ull};
    uint8_t b[RECFILE_HDR_SIZE];
    recfile_header_encode(&h, b);
    static const uint8_t want[RECFILE_HDR_SIZE] = {
        'S',  'L',  'R',  'E',  'C',  'O',  'R',  'D',  /* magic */
        0x01, 0x00,                                     /* version */
        0x28, 0x00,                                     /* header size 40 */
        0x18, 0x00,                                     /* record header size 24 */
        0x02, 0x00,                                     /* workers */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* start_real_ns */
        0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, /* start_mono_ns */
        0x00, 0x00, 0x01, 0x00,                         /* max_frame 65536 */
        0x01, 0x00, 0x00, 0x00,                         /* flags */
    };
    assert_memory_equal(b, want, sizeof want);

    struct recfile_header d;
    memset(&d, 0xee, sizeof d);
    assert_int_equal(recfile_header_decode(b, sizeof b, &d), SL_OK);
    assert_int_equal(d.version, 1);
    assert_int_equal(d.workers, 2);
    assert_int_equal(d.max_frame, 65536);
    assert_int_equal(d.flags, RECFILE_F_FILTERED);
    assert_true(d.start_real_ns == h.start_real_ns);
    assert_true(d.start_mono_ns == h.start_mono_ns);
}

static void test_header_refusals(void **st)
{
    (void)st;
    struct recfile_header h = {.version = 1, .workers = 1}, d;
    uint8_t b[RECFILE_HDR_SIZE];
    recfile_header_encode(&h, b);
    for (size_t n = 0; n < sizeof b; n++)
        assert_int_equal(recfile_header_decode(b, n, &d), SL_AGAIN);
    /* A foreign file is known to be foreign from its first 8 bytes. */
    uint8_t x[RECFILE_HDR_SIZE];
    memcpy(x, b, sizeof b);
    x[0] = 'X';
    assert_int_equal(recfile_header_decode(x, 8, &d), SL_DECODE);
    assert_int_equal(recfile_header_decode(x, sizeof x, &d), SL_DECODE);
    /* A later version: SL_VERSION even when its header sizes differ. */
    memcpy(x, b, sizeof b);
    x[8] = 2;
    x[10] = 48;
    assert_int_equal(recfile_header_decode(x, sizeof x, &d), SL_VERSION);
    /* Version 1 with other sizes is corrupt. */
    memcpy(x, b, sizeof b);
    x[10] = 41;
    assert_int_equal(recfile_header_decode(x, sizeof x, &d), SL_DECODE);
    memcpy(x, b, sizeof b);
    x[12] = 25;
    assert_int_equal(recfile_header_decode(x, sizeof x, &d), SL_DECODE);
}

static void test_record_bytes(void **st)
{
    (void)st;
    struct recfile_rec r = {.kind = RECFILE_IN,
                            .worker = 0x0102,
                            .slot = 0x03040506,
                            .gen = 0x0708090a,
                            .t_ns = 0x1122334455667788ull,
                            .len = 3};
    uint8_t b[RECFILE_REC_HDR + 3];
    recfile_rec_encode(&r, b);
    memcpy(b + RECFILE_REC_HDR, "abc", 3);
    static const uint8_t want[RECFILE_REC_HDR] = {
        0x03, 0x00, 0x00, 0x00,                         /* len */
        0x02,                                           /* kind: in */
        0x00,                                           /* flags */
        0x02, 0x01,                                     /* worker */
        0x06, 0x05, 0x04, 0x03,                         /* slot */
        0x0a, 0x09, 0x08, 0x07,                         /* gen */
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, /* t_ns */
    };
    assert_memory_equal(b, want, sizeof want);

    struct recfile_rec d;
    size_t used = 99;
    assert_int_equal(recfile_rec_decode(b, sizeof b, &d, &used), SL_OK);
    assert_int_equal(used, sizeof b);
    assert_int_equal(d.kind, RECFILE_IN);
    assert_int_equal(d.worker, 0x0102);
    assert_int_equal(d.slot, 0x03040506);
    assert_int_equal(d.gen, 0x0708090a);
    assert_true(d.t_ns == r.t_ns);
    assert_int_equal(d.len, 3);
    assert_ptr_equal(d.payload, b + RECFILE_REC_HDR);
    /* Every truncation is "need more", never a half record. */
    for (size_t n = 0; n < sizeof b; n++) {
        used = 99;
        assert_int_equal(recfile_rec_decode(b, n, &d, &used), SL_AGAIN);
        assert_int_equal(used, 0);
    }
}

static void test_record_refusals(void **st)
{
    (void)st;
    struct recfile_rec r = {.kind = RECFILE_OUT, .len = 0}, d;
    uint8_t b[RECFILE_REC_HDR];
    size_t used;
    recfile_rec_encode(&r, b);
    assert_int_equal(recfile_rec_decode(b, sizeof b, &d, &used), SL_OK);
    assert_int_equal(used, RECFILE_REC_HDR);
    b[4] = 0; /* kind 0 */
    assert_int_equal(recfile_rec_decode(b, sizeof b, &d, &used), SL_DECODE);
    b[4] = RECFILE_KIND_MAX + 1;
    assert_int_equal(recfile_rec_decode(b, sizeof b, &d, &used), SL_DECODE);
    /* A length past the limit is corrupt, not "need more" (a reader
     * would otherwise wait for 4 GiB). */
    r.len = RECFILE_MAX_PAYLOAD + 1;
    recfile_rec_encode(&r, b);
    assert_int_equal(recfile_rec_decode(b, sizeof b, &d, &used), SL_DECODE);
    r.len = RECFILE_MAX_PAYLOAD;
    recfile_rec_encode(&r, b);
    assert_int_equal(recfile_rec_decode(b, sizeof b, &d, &used), SL_AGAIN);
}

/* Records laid end to end decode back in order, each from its own offset. */
static void test_record_stream(void **st)
{
    (void)st;
    uint8_t buf[512];
    size_t n = 0;
    for (unsigned k = 1; k <= RECFILE_KIND_MAX; k++) {
        struct recfile_rec r = {.kind = (uint8_t)k,
                                .worker = (uint16_t)k,
                                .slot = k * 10,
                                .gen = k,
                                .t_ns = 1000 + k,
                                .len = k * 3};
        recfile_rec_encode(&r, buf + n);
        memset(buf + n + RECFILE_REC_HDR, (int)k, r.len);
        n += RECFILE_REC_HDR + r.len;
    }
    size_t off = 0;
    for (unsigned k = 1; k <= RECFILE_KIND_MAX; k++) {
        struct recfile_rec d;
        size_t used;
        assert_int_equal(recfile_rec_decode(buf + off, n - off, &d, &used), SL_OK);
        assert_int_equal(d.kind, k);
        assert_int_equal(d.slot, k * 10);
        assert_int_equal(d.len, k * 3);
        for (uint32_t i = 0; i < d.len; i++)
            assert_int_equal(d.payload[i], k);
        off += used;
    }
    assert_int_equal(off, n);
}

static void test_kind_names(void **st)
{
    (void)st;
    assert_string_equal(recfile_kind_name(RECFILE_OPEN), "open");
    assert_string_equal(recfile_kind_name(RECFILE_IN), "in");
    assert_string_equal(recfile_kind_name(RECFILE_OUT), "out");
    assert_string_equal(recfile_kind_name(RECFILE_CLOSE), "close");
    assert_string_equal(recfile_kind_name(RECFILE_GAP), "gap");
    assert_string_equal(recfile_kind_name(RECFILE_END), "end");
    assert_string_equal(recfile_kind_name(0), "?");
    assert_string_equal(recfile_kind_name(200), "?");
}

static void test_open_payload(void **st)
{
    (void)st;
    struct recfile_peer p4 = {.v6 = false, .port = 0x1f90, .ip = {127, 0, 0, 1}};
    uint8_t b[RECFILE_OPEN_SIZE];
    recfile_open_encode(&p4, b);
    static const uint8_t want4[RECFILE_OPEN_SIZE] = {4, 0, 0x90, 0x1f, 127, 0, 0, 1};
    assert_memory_equal(b, want4, sizeof want4);
    struct recfile_rec r = {.kind = RECFILE_OPEN, .len = RECFILE_OPEN_SIZE, .payload = b};
    struct recfile_peer d;
    assert_int_equal(recfile_open_decode(&r, &d), SL_OK);
    assert_false(d.v6);
    assert_int_equal(d.port, 0x1f90);
    assert_memory_equal(d.ip, p4.ip, 4);

    struct recfile_peer p6 = {.v6 = true, .port = 1, .ip = {0x20, 0x01, [15] = 0x42}};
    recfile_open_encode(&p6, b);
    assert_int_equal(b[0], 6);
    assert_memory_equal(b + 4, p6.ip, 16);
    assert_int_equal(recfile_open_decode(&r, &d), SL_OK);
    assert_true(d.v6);
    assert_memory_equal(d.ip, p6.ip, 16);

    b[0] = 5;
    assert_int_equal(recfile_open_decode(&r, &d), SL_DECODE);
    b[0] = 4;
    r.len = RECFILE_OPEN_SIZE - 1;
    assert_int_equal(recfile_open_decode(&r, &d), SL_DECODE);
    r.len = RECFILE_OPEN_SIZE;
    r.kind = RECFILE_IN;
    assert_int_equal(recfile_open_decode(&r, &d), SL_DECODE);
}

static void test_close_payload(void **st)
{
    (void)st;
    uint8_t b[1 + RECFILE_REASON_MAX];
    size_t n = recfile_close_encode(5, "decode", b);
    assert_int_equal(n, 7);
    static const uint8_t want[] = {5, 'd', 'e', 'c', 'o', 'd', 'e'};
    assert_memory_equal(b, want, sizeof want);
    struct recfile_rec r = {.kind = RECFILE_CLOSE, .len = (uint32_t)n, .payload = b};
    uint8_t code = 0;
    struct sl_slice name;
    assert_int_equal(recfile_close_decode(&r, &code, &name), SL_OK);
    assert_int_equal(code, 5);
    assert_true(sl_slice_eqs(name, "decode"));
    /* A long name is cut, never overruns. */
    n = recfile_close_encode(1, "0123456789012345678901234567890123456789", b);
    assert_int_equal(n, 1 + RECFILE_REASON_MAX);
    r.len = 0;
    assert_int_equal(recfile_close_decode(&r, &code, &name), SL_DECODE);
    r.len = 2 + RECFILE_REASON_MAX;
    assert_int_equal(recfile_close_decode(&r, &code, &name), SL_DECODE);
}

static void test_gap_payload(void **st)
{
    (void)st;
    uint8_t b[RECFILE_GAP_SIZE];
    recfile_gap_encode(3, 0x0102, b);
    static const uint8_t want[RECFILE_GAP_SIZE] = {3, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x01, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(b, want, sizeof want);
    struct recfile_rec r = {.kind = RECFILE_GAP, .len = RECFILE_GAP_SIZE, .payload = b};
    uint64_t recs = 0, bytes = 0;
    assert_int_equal(recfile_gap_decode(&r, &recs, &bytes), SL_OK);
    assert_true(recs == 3 && bytes == 0x0102);
    r.len = 8;
    assert_int_equal(recfile_gap_decode(&r, &recs, &bytes), SL_DECODE);
}

static size_t hello_frame(uint8_t *out, size_t cap, const char *dev)
{
    struct msg m = {.t = MSG_HELLO};
    m.u.hello.v = 1;
    m.u.hello.dev.p = (const uint8_t *)dev;
    m.u.hello.dev.n = (uint32_t)strlen(dev);
    m.u.hello.tok.p = (const uint8_t *)"00";
    m.u.hello.tok.n = 2;
    size_t len = 0;
    assert_int_equal(msg_encode_frame(&m, out, cap, &len), SL_OK);
    return len;
}

static void test_hello_dev(void **st)
{
    (void)st;
    uint8_t s[256];
    size_t n = hello_frame(s, sizeof s, "pump-7");
    struct sl_slice dev = {0};
    assert_int_equal(recfile_hello_dev(s, n, 768, &dev), RECFILE_DEV_FOUND);
    assert_true(sl_slice_eqs(dev, "pump-7"));
    assert_true(dev.p > s && dev.p < s + n); /* points into the stream */
    /* Every proper prefix: more needed. */
    for (size_t k = 0; k < n; k++)
        assert_int_equal(recfile_hello_dev(s, k, 768, &dev), RECFILE_DEV_MORE);
    /* Bytes after the first frame do not matter. */
    memcpy(s + n, "\0\0\0\1\xc0", 5);
    assert_int_equal(recfile_hello_dev(s, n + 5, 768, &dev), RECFILE_DEV_FOUND);
    /* A first frame longer than max names no device, even before it is complete. */
    assert_int_equal(recfile_hello_dev(s, 4, n - 1, &dev), RECFILE_DEV_NONE);
    assert_int_equal(recfile_hello_dev(s, n, n, &dev), RECFILE_DEV_FOUND);
    assert_int_equal(recfile_hello_dev(s, 0, 3, &dev), RECFILE_DEV_NONE);

    /* Not a hello, an empty frame, garbage, a bad device id. */
    struct msg ping = {.t = MSG_PING};
    size_t pn = 0;
    assert_int_equal(msg_encode_frame(&ping, s, sizeof s, &pn), SL_OK);
    assert_int_equal(recfile_hello_dev(s, pn, 768, &dev), RECFILE_DEV_NONE);
    assert_int_equal(recfile_hello_dev((const uint8_t *)"\0\0\0\0", 4, 768, &dev), RECFILE_DEV_NONE);
    assert_int_equal(recfile_hello_dev((const uint8_t *)"\0\0\0\2\x91\x01", 6, 768, &dev), RECFILE_DEV_NONE);
    n = hello_frame(s, sizeof s, "bad dev!");
    assert_int_equal(recfile_hello_dev(s, n, 768, &dev), RECFILE_DEV_NONE);
}

static bool match(const char *pat, const char *dev)
{
    return recfile_dev_match(pat, true, (const uint8_t *)dev, strlen(dev));
}

static bool exact(const char *pat, const char *dev)
{
    return recfile_dev_match(pat, false, (const uint8_t *)dev, strlen(dev));
}

static void test_dev_match(void **st)
{
    (void)st;
    assert_true(match("", "anything"));
    assert_true(match(NULL, "anything"));
    /* prefixes */
    assert_true(match("pump-", "pump-0001"));
    assert_true(match("pump-0001", "pump-0001"));
    assert_false(match("pump-00011", "pump-0001"));
    assert_false(match("tank", "pump-0001"));
    /* globs cover the whole id */
    assert_true(match("pump-*", "pump-0001"));
    assert_true(match("*-0001", "pump-0001"));
    assert_false(match("*-000", "pump-0001"));
    assert_true(match("p?mp-*1", "pump-0001"));
    assert_false(match("p?mp-*2", "pump-0001"));
    assert_true(match("*", "x"));
    assert_true(match("a*b*c", "aXXbYbZc"));
    assert_false(match("a*b*c", "aXXbYbZ"));
    assert_true(match("**x", "x"));
    assert_false(match("?", ""));
    /* comma lists */
    assert_true(match("tank-,pump-0001", "pump-0001"));
    assert_true(match("tank-*,pump-*", "pump-0001"));
    assert_false(match("tank-,valve-*", "pump-0001"));
    assert_false(match(",", "pump-0001"));
    assert_true(match(",pump", "pump-0001"));
    /* whole ids (sluice-replay --device): pump-1 is not pump-10 */
    assert_true(exact("pump-1", "pump-1"));
    assert_false(exact("pump-1", "pump-10"));
    assert_false(exact("pump-10", "pump-1"));
    assert_true(exact("pump-1?", "pump-10"));
    assert_true(exact("tank-2,pump-1", "pump-1"));
    assert_true(exact("", "pump-1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_bytes),  cmocka_unit_test(test_header_refusals),
        cmocka_unit_test(test_record_bytes),  cmocka_unit_test(test_record_refusals),
        cmocka_unit_test(test_record_stream), cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_open_payload),  cmocka_unit_test(test_close_payload),
        cmocka_unit_test(test_gap_payload),   cmocka_unit_test(test_hello_dev),
        cmocka_unit_test(test_dev_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
