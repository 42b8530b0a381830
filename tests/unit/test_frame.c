/* SPDX-License-Identifier: Apache-2.0 */
/* test_frame.c - the frame decoder gives the same frames however the input
 * is split, judges the length from the header alone, and lends payloads in
 * place when it can. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "sl/frame.h"
#include "sl/limits.h"

#define MAXF 64u

struct got {
    int frames;
    uint8_t data[64][MAXF]; /* copies of each payload */
    uint32_t len[64];
    int need_buf;  /* times the decoder asked for a buffer */
    int zero_copy; /* payloads that pointed into the fed chunk */
};

static uint8_t lend[MAXF];

/* Feed one chunk, lending the buffer on demand and taking it back whenever
 * the decoder is idle, as conn.c does. Returns the last rc. */
static enum frame_rc feed_chunk(struct frame_dec *d, const uint8_t *in, size_t n, struct got *g)
{
    size_t off = 0;
    for (;;) {
        size_t used = 0;
        struct sl_slice pl = {0};
        enum frame_rc rc = frame_dec_feed(d, in + off, n - off, &used, &pl);
        assert_true(used <= n - off);
        off += used;
        switch (rc) {
        case FRAME_READY:
            assert_true(g->frames < 64);
            assert_true(pl.n >= 1 && pl.n <= MAXF);
            if (pl.p >= in && pl.p < in + n)
                g->zero_copy++;
            memcpy(g->data[g->frames], pl.p, pl.n);
            g->len[g->frames++] = pl.n;
            if (frame_dec_idle(d))
                d->buf = NULL;
            break;
        case FRAME_NEED_BUF:
            assert_null(d->buf);
            g->need_buf++;
            d->buf = lend;
            break;
        case FRAME_NEED_MORE: assert_int_equal(off, n); return rc;
        default: return rc;
        }
    }
}

/* Three frames of lengths 1, 5 and 3. */
static const uint8_t stream3[] = {
    0, 0, 0, 1, 'a', 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o', 0, 0, 0, 3, 0x00, 0xff, 0x7f,
};

static void check3(const struct got *g)
{
    assert_int_equal(g->frames, 3);
    assert_int_equal(g->len[0], 1);
    assert_memory_equal(g->data[0], "a", 1);
    assert_int_equal(g->len[1], 5);
    assert_memory_equal(g->data[1], "hello", 5);
    assert_int_equal(g->len[2], 3);
    assert_memory_equal(g->data[2], "\x00\xff\x7f", 3);
}

static void test_whole(void **state)
{
    (void)state;
    struct frame_dec d;
    struct got g = {0};
    frame_dec_init(&d, MAXF);
    assert_int_equal(feed_chunk(&d, stream3, sizeof stream3, &g), FRAME_NEED_MORE);
    check3(&g);
    assert_int_equal(g.zero_copy, 3);
    assert_int_equal(g.need_buf, 0);
    assert_true(frame_dec_idle(&d));
}

static void test_split_every_offset(void **state)
{
    (void)state;
    for (size_t i = 0; i <= sizeof stream3; i++) {
        struct frame_dec d;
        struct got g = {0};
        frame_dec_init(&d, MAXF);
        /* Copy each chunk into its own array so "in place" is checkable. */
        uint8_t a[sizeof stream3], b[sizeof stream3];
        memcpy(a, stream3, i);
        memcpy(b, stream3 + i, sizeof stream3 - i);
        assert_int_equal(feed_chunk(&d, a, i, &g), FRAME_NEED_MORE);
        assert_int_equal(feed_chunk(&d, b, sizeof stream3 - i, &g), FRAME_NEED_MORE);
        check3(&g);
        assert_true(frame_dec_idle(&d));
    }
}

static void test_split_every_pair(void **state)
{
    (void)state;
    const size_t n = sizeof stream3;
    for (size_t i = 0; i <= n; i++) {
        for (size_t j = i; j <= n; j++) {
            struct frame_dec d;
            struct got g = {0};
            frame_dec_init(&d, MAXF);
            assert_int_equal(feed_chunk(&d, stream3, i, &g), FRAME_NEED_MORE);
            assert_int_equal(feed_chunk(&d, stream3 + i, j - i, &g), FRAME_NEED_MORE);
            assert_int_equal(feed_chunk(&d, stream3 + j, n - j, &g), FRAME_NEED_MORE);
            check3(&g);
            assert_true(frame_dec_idle(&d));
        }
    }
}

static void test_one_byte_at_a_time(void **state)
{
    (void)state;
    struct frame_dec d;
    struct got g = {0};
    frame_dec_init(&d, MAXF);
    for (size_t i = 0; i < sizeof stream3; i++) {
        assert_int_equal(feed_chunk(&d, stream3 + i, 1, &g), FRAME_NEED_MORE);
        /* Between frames the decoder is idle and holds no buffer. */
        if (i == 4 || i == 13)
            assert_true(frame_dec_idle(&d));
        if (i == 3 || i == 5)
            assert_false(frame_dec_idle(&d));
    }
    check3(&g);
    /* Only the frames with a body longer than one byte needed a buffer;
     * a 1-byte body fed alone lies whole in its chunk. */
    assert_int_equal(g.need_buf, 2);
    assert_int_equal(g.zero_copy, 1);
}

static void test_50_coalesced(void **state)
{
    (void)state;
    uint8_t s[50 * (4 + MAXF)];
    size_t n = 0;
    for (int k = 0; k < 50; k++) {
        uint32_t len = (uint32_t)(k % (int)MAXF) + 1;
        frame_encode_header(s + n, len);
        n += 4;
        for (uint32_t i = 0; i < len; i++)
            s[n++] = (uint8_t)(k + (int)i);
    }
    struct frame_dec d;
    struct got *g = test_calloc(1, sizeof *g);
    /* struct got holds 64 frames; 50 fit. */
    frame_dec_init(&d, MAXF);
    assert_int_equal(feed_chunk(&d, s, n, g), FRAME_NEED_MORE);
    assert_int_equal(g->frames, 50);
    assert_int_equal(g->zero_copy, 50);
    for (int k = 0; k < 50; k++) {
        assert_int_equal(g->len[k], (uint32_t)(k % (int)MAXF) + 1);
        for (uint32_t i = 0; i < g->len[k]; i++)
            assert_int_equal(g->data[k][i], (uint8_t)(k + (int)i));
    }
    test_free(g);
}

static void test_empty(void **state)
{
    (void)state;
    struct frame_dec d;
    frame_dec_init(&d, MAXF);
    const uint8_t in[] = {0, 0, 0, 0, 'x'};
    size_t used = 99;
    struct sl_slice pl = {0};
    assert_int_equal(frame_dec_feed(&d, in, sizeof in, &used, &pl), FRAME_ERR_EMPTY);
    assert_int_equal(used, 4);
    /* Sticky until reset. */
    assert_int_equal(frame_dec_feed(&d, in + 4, 1, &used, &pl), FRAME_ERR_EMPTY);
    assert_int_equal(used, 0);
}

static void test_max_ok(void **state)
{
    (void)state;
    static uint8_t in[4 + SL_MAX_FRAME_DEFAULT];
    frame_encode_header(in, SL_MAX_FRAME_DEFAULT);
    for (size_t i = 0; i < SL_MAX_FRAME_DEFAULT; i++)
        in[4 + i] = (uint8_t)(i * 7);
    struct frame_dec d;
    frame_dec_init(&d, SL_MAX_FRAME_DEFAULT);
    size_t used = 0;
    struct sl_slice pl = {0};
    assert_int_equal(frame_dec_feed(&d, in, sizeof in, &used, &pl), FRAME_READY);
    assert_int_equal(used, sizeof in);
    assert_int_equal(pl.n, SL_MAX_FRAME_DEFAULT);
    assert_ptr_equal(pl.p, in + 4);

    /* And split in two, through a lent buffer. */
    static uint8_t buf[SL_MAX_FRAME_DEFAULT];
    frame_dec_reset(&d);
    assert_int_equal(frame_dec_feed(&d, in, 1000, &used, &pl), FRAME_NEED_BUF);
    assert_int_equal(used, 4);
    d.buf = buf;
    assert_int_equal(frame_dec_feed(&d, in + 4, 996, &used, &pl), FRAME_NEED_MORE);
    assert_int_equal(used, 996);
    assert_int_equal(frame_dec_feed(&d, in + 1000, sizeof in - 1000, &used, &pl), FRAME_READY);
    assert_int_equal(used, sizeof in - 1000);
    assert_ptr_equal(pl.p, buf);
    assert_int_equal(pl.n, SL_MAX_FRAME_DEFAULT);
    assert_memory_equal(pl.p, in + 4, SL_MAX_FRAME_DEFAULT);
    assert_true(frame_dec_idle(&d));
}

static void test_toobig_header_only(void **state)
{
    (void)state;
    uint8_t hdr[4];
    frame_encode_header(hdr, SL_MAX_FRAME_DEFAULT + 1);
    assert_memory_equal(hdr, "\x00\x01\x00\x01", 4);
    struct frame_dec d;
    frame_dec_init(&d, SL_MAX_FRAME_DEFAULT);
    size_t used = 0;
    struct sl_slice pl = {0};
    /* Three header bytes are not enough to judge ... */
    assert_int_equal(frame_dec_feed(&d, hdr, 3, &used, &pl), FRAME_NEED_MORE);
    assert_int_equal(used, 3);
    /* ... the fourth is, with no body byte and no buffer. */
    assert_int_equal(frame_dec_feed(&d, hdr + 3, 1, &used, &pl), FRAME_ERR_TOOBIG);
    assert_int_equal(used, 1);
    assert_null(d.buf);

    /* A header saying 4 GiB - 1 too. */
    frame_dec_reset(&d);
    assert_int_equal(frame_dec_feed(&d, (const uint8_t *)"\xff\xff\xff\xff", 4, &used, &pl),
                     FRAME_ERR_TOOBIG);
}

static void test_need_buf_flow(void **state)
{
    (void)state;
    const uint8_t in[] = {0, 0, 0, 6, 'a', 'b', 'c', 'd', 'e', 'f', 0, 0, 0, 1, 'z'};
    uint8_t buf[8];
    struct frame_dec d;
    frame_dec_init(&d, 8);
    size_t used = 0;
    struct sl_slice pl = {0};

    /* Header alone: no buffer asked for yet. */
    assert_int_equal(frame_dec_feed(&d, in, 4, &used, &pl), FRAME_NEED_MORE);
    assert_int_equal(used, 4);
    assert_false(frame_dec_idle(&d));
    /* Part of the body: now it asks, consuming nothing. */
    assert_int_equal(frame_dec_feed(&d, in + 4, 2, &used, &pl), FRAME_NEED_BUF);
    assert_int_equal(used, 0);
    d.buf = buf;
    assert_int_equal(frame_dec_feed(&d, in + 4, 2, &used, &pl), FRAME_NEED_MORE);
    assert_int_equal(used, 2);
    assert_false(frame_dec_idle(&d));
    /* The rest and the next frame in one chunk. */
    assert_int_equal(frame_dec_feed(&d, in + 6, sizeof in - 6, &used, &pl), FRAME_READY);
    assert_int_equal(used, 4);
    assert_ptr_equal(pl.p, buf);
    assert_int_equal(pl.n, 6);
    assert_memory_equal(pl.p, "abcdef", 6);
    assert_true(frame_dec_idle(&d));
    d.buf = NULL;
    assert_int_equal(frame_dec_feed(&d, in + 10, sizeof in - 10, &used, &pl), FRAME_READY);
    assert_int_equal(used, 5);
    assert_ptr_equal(pl.p, in + 14);
    assert_int_equal(pl.n, 1);
    /* Nothing left: NEED_MORE with used 0. */
    assert_int_equal(frame_dec_feed(&d, in + 15, 0, &used, &pl), FRAME_NEED_MORE);
    assert_int_equal(used, 0);
}

static void test_zero_copy_after_split_header(void **state)
{
    (void)state;
    /* The header spans two feeds but the body lies whole in the second:
     * still returned in place. */
    const uint8_t in[] = {0, 0, 0, 3, 'x', 'y', 'z'};
    struct frame_dec d;
    frame_dec_init(&d, 8);
    size_t used = 0;
    struct sl_slice pl = {0};
    assert_int_equal(frame_dec_feed(&d, in, 2, &used, &pl), FRAME_NEED_MORE);
    assert_int_equal(frame_dec_feed(&d, in + 2, 5, &used, &pl), FRAME_READY);
    assert_int_equal(used, 5);
    assert_ptr_equal(pl.p, in + 4);
    assert_null(d.buf);
}

static void test_reset(void **state)
{
    (void)state;
    uint8_t buf[8];
    struct frame_dec d;
    frame_dec_init(&d, 8);
    size_t used = 0;
    struct sl_slice pl = {0};
    /* Leave a partial body pending. */
    assert_int_equal(frame_dec_feed(&d, (const uint8_t *)"\0\0\0\5ab", 6, &used, &pl), FRAME_NEED_BUF);
    d.buf = buf;
    assert_int_equal(frame_dec_feed(&d, (const uint8_t *)"ab", 2, &used, &pl), FRAME_NEED_MORE);
    frame_dec_reset(&d);
    assert_true(frame_dec_idle(&d));
    assert_ptr_equal(d.buf, buf); /* left for the caller */
    assert_int_equal(d.max, 8);
    /* A fresh frame decodes cleanly. */
    assert_int_equal(frame_dec_feed(&d, (const uint8_t *)"\0\0\0\2hi", 6, &used, &pl), FRAME_READY);
    assert_int_equal(pl.n, 2);
    assert_memory_equal(pl.p, "hi", 2);
    /* Reset clears an error too. */
    assert_int_equal(frame_dec_feed(&d, (const uint8_t *)"\0\0\0\0", 4, &used, &pl), FRAME_ERR_EMPTY);
    frame_dec_reset(&d);
    assert_int_equal(frame_dec_feed(&d, (const uint8_t *)"\0\0\0\1q", 5, &used, &pl), FRAME_READY);
    assert_memory_equal(pl.p, "q", 1);
}

static void test_encode_header(void **state)
{
    (void)state;
    uint8_t h[4];
    frame_encode_header(h, 0x01020304u);
    assert_memory_equal(h, "\x01\x02\x03\x04", 4);
    frame_encode_header(h, 96);
    assert_memory_equal(h, "\x00\x00\x00\x60", 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole),
        cmocka_unit_test(test_split_every_offset),
        cmocka_unit_test(test_split_every_pair),
        cmocka_unit_test(test_one_byte_at_a_time),
        cmocka_unit_test(test_50_coalesced),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_max_ok),
        cmocka_unit_test(test_toobig_header_only),
        cmocka_unit_test(test_need_buf_flow),
        cmocka_unit_test(test_zero_copy_after_split_header),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_encode_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
