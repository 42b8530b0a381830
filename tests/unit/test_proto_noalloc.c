/* SPDX-License-Identifier: Apache-2.0 */
/* test_proto_noalloc.c - the decoder's steady state never touches the heap.
 *
 * This executable is linked with -Wl,--wrap=malloc,--wrap=calloc,
 * --wrap=realloc (tests/unit/proto.cmake), so every call to those from the
 * test and from the statically linked sl_proto objects lands in the
 * counters below. A loop decodes frames (whole, split, byte by byte),
 * decodes messages (good and hostile), encodes replies and writes and reads
 * envelope batches, all between counting_on() and counting_off(); the test
 * asserts zero calls. A positive control first proves the wrapping works.
 *
 * Limit: --wrap only reaches calls linked into this executable. A call
 * made from inside a shared library (msgpack-c's unpacker) would not be
 * seen, so proto.cmake also has a test that no proto object references
 * malloc, calloc, realloc or msgpack-c's unpacker/zone at all. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "sl/envelope.h"
#include "sl/frame.h"
#include "sl/limits.h"
#include "sl/mp.h"
#include "sl/msg.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);

/* volatile: compilers assume malloc touches no program memory, and would
 * otherwise fold "allocs" to the 0 stored before the loop (clang does). */
static volatile int counting;
static volatile unsigned long allocs;

void *__wrap_malloc(size_t n)
{
    if (counting)
        allocs++;
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    if (counting)
        allocs++;
    return __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
    if (counting)
        allocs++;
    return __real_realloc(p, n);
}

static void counting_on(void)
{
    allocs = 0;
    counting = 1;
}

static unsigned long counting_off(void)
{
    counting = 0;
    return allocs;
}

static void *volatile keep;

static void test_wrap_works(void **state)
{
    (void)state;
    counting_on();
    keep = malloc(16);
    free(keep);
    keep = calloc(1, 16);
    keep = realloc(keep, 32);
    free(keep);
    assert_int_equal(counting_off(), 3);
}

static uint8_t stream[1 << 16];
static uint8_t lend[SL_MAX_FRAME_DEFAULT];
static uint8_t out[1 << 12];
static uint8_t batch[1 << 15];
static uint8_t copy[1 << 15], joined[1 << 16];

/* A stream of data frames with seq 1..n, plus a ping, hello and res. */
static size_t build_stream(int n)
{
    static const uint8_t body[] = {0x82, 0xa4, 't', 'e', 'm', 'p',  0xcb, 0x40, 0x35, 0x80,
                                   0,    0,    0,   0,   0,   0xa2, 'o',  'n',  0xc3};
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        struct msg m = {0};
        size_t k = 0;
        m.t = MSG_DATA;
        m.u.data.seq = (uint64_t)i + 1;
        m.u.data.ts = 1764358200000LL + i;
        m.u.data.has_ts = true;
        m.u.data.body.p = body;
        m.u.data.body.n = sizeof body;
        assert_int_equal(msg_encode_frame(&m, stream + len, sizeof stream - len, &k), SL_OK);
        len += k;
    }
    struct msg p = {.t = MSG_PING};
    size_t k = 0;
    assert_int_equal(msg_encode_frame(&p, stream + len, sizeof stream - len, &k), SL_OK);
    len += k;
    return len;
}

/* Decode everything in `in`, chunked by `step`, answering each data with
 * an ack frame and writing each into an envelope batch, and its encoding
 * into a second batch (as the edge feeds two services); at the end the two
 * are joined into a third. Returns frames. */
static int pump(const uint8_t *in, size_t n, size_t step)
{
    struct frame_dec d;
    struct envelope_writer w, w2, wj;
    struct envelope_hdr h = {
        .edge = {(const uint8_t *)"e", 1}, .incarnation = 9, .reply = {(const uint8_t *)"e/0", 3}};
    int frames = 0;

    frame_dec_init(&d, SL_MAX_FRAME_DEFAULT);
    assert_int_equal(envelope_writer_begin(&w, batch, sizeof batch, &h), SL_OK);
    assert_int_equal(envelope_writer_begin(&w2, copy, sizeof copy, &h), SL_OK);
    for (size_t off = 0; off < n;) {
        size_t chunk = n - off < step ? n - off : step;
        const uint8_t *c = in + off;
        size_t left = chunk;
        for (;;) {
            size_t used = 0;
            struct sl_slice pl;
            enum frame_rc rc = frame_dec_feed(&d, c, left, &used, &pl);
            c += used;
            left -= used;
            if (rc == FRAME_NEED_MORE)
                break;
            if (rc == FRAME_NEED_BUF) {
                d.buf = lend;
                continue;
            }
            assert_int_equal(rc, FRAME_READY);
            frames++;
            struct msg m;
            assert_int_equal(msg_decode(pl.p, pl.n, &m), MSG_OK);
            if (m.t == MSG_DATA) {
                struct msg ack = {.t = MSG_ACK};
                ack.u.ack.seq = m.u.data.seq;
                size_t k = 0;
                assert_int_equal(msg_encode_frame(&ack, out, sizeof out, &k), SL_OK);
                struct envelope e = {0};
                e.kind = ENV_DATA;
                e.dev = h.reply;
                e.seq = m.u.data.seq;
                e.ts = m.u.data.ts;
                e.has_ts = m.u.data.has_ts;
                e.body = m.u.data.body;
                e.has_body = true;
                if (envelope_writer_add(&w, &e) == SL_TOOBIG) {
                    assert_int_equal(envelope_writer_begin(&w, batch, sizeof batch, &h), SL_OK);
                    assert_int_equal(envelope_writer_begin(&w2, copy, sizeof copy, &h), SL_OK);
                    assert_int_equal(envelope_writer_add(&w, &e), SL_OK);
                }
                assert_int_equal(envelope_writer_add_encoded(&w2, envelope_writer_last(&w)), SL_OK);
            } else {
                struct msg pong = {.t = MSG_PONG};
                size_t k = 0;
                assert_int_equal(msg_encode_frame(&pong, out, sizeof out, &k), SL_OK);
            }
            if (frame_dec_idle(&d))
                d.buf = NULL;
        }
        off += chunk;
    }
    /* Read the last batch back, and the two joined. */
    struct envelope_reader r;
    struct envelope e;
    assert_int_equal(envelope_reader_begin(&r, batch, envelope_writer_len(&w)), SL_OK);
    while (envelope_reader_next(&r, &e) == SL_OK)
        assert_true(mp_check(e.body.p, e.body.n, SL_MP_MAX_DEPTH) == 0);
    assert_int_equal(envelope_writer_count(&w2), envelope_writer_count(&w));
    assert_int_equal(envelope_writer_begin(&wj, joined, sizeof joined, &h), SL_OK);
    assert_int_equal(envelope_writer_append(&wj, &w), SL_OK);
    assert_int_equal(envelope_writer_append(&wj, &w2), SL_OK);
    assert_int_equal(envelope_writer_count(&wj), 2 * envelope_writer_count(&w));
    assert_int_equal(envelope_reader_begin(&r, joined, envelope_writer_len(&wj)), SL_OK);
    while (envelope_reader_next(&r, &e) == SL_OK)
        assert_true(mp_check(e.body.p, e.body.n, SL_MP_MAX_DEPTH) == 0);
    return frames;
}

static void test_steady_state(void **state)
{
    (void)state;
    size_t n = build_stream(200);
    counting_on();
    int frames = 0;
    const size_t steps[] = {n, 4096, 1000, 77, 13, 5, 1};
    for (int round = 0; round < 3; round++)
        for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++)
            frames += pump(stream, n, steps[s]);
    unsigned long seen = counting_off();
    assert_int_equal(frames, 3 * 7 * 201);
    assert_int_equal(seen, 0);
}

static void test_hostile_no_alloc(void **state)
{
    (void)state;
    const uint8_t h8[] = {0x09, 0xdf, 0xdf, 0xdf, 0xdf, 0xdf, 0x10, 0x2b};
    static uint8_t deep[60 * 1024];
    memset(deep, 0x91, sizeof deep);
    struct msg m;
    counting_on();
    assert_int_equal(msg_decode(h8, sizeof h8, &m), MSG_E_NOTMAP);
    assert_int_equal(msg_decode(h8 + 1, sizeof h8 - 1, &m), MSG_E_MALFORMED);
    assert_int_equal(mp_check(h8 + 1, 5, SL_MP_MAX_DEPTH), -1);
    assert_int_equal(msg_decode(deep, sizeof deep, &m), MSG_E_NOTMAP);
    deep[0] = 0x81; /* {"<60 KB of nesting>" ... } */
    assert_int_equal(msg_decode(deep, sizeof deep, &m), MSG_E_KEY);
    deep[1] = 0xa1;
    deep[2] = 't';
    assert_int_equal(msg_decode(deep, sizeof deep, &m), MSG_E_MALFORMED);
    struct envelope_reader r;
    assert_int_equal(envelope_reader_begin(&r, h8 + 1, sizeof h8 - 1), SL_DECODE);
    assert_int_equal(counting_off(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrap_works),
        cmocka_unit_test(test_steady_state),
        cmocka_unit_test(test_hostile_no_alloc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
