/* SPDX-License-Identifier: Apache-2.0 */
/* test_persister_rows.c - the persister's pure mapper (persister/rows.c):
 * envelope entries -> rows, peers, JSON arena limits, COPY binary tuples
 * (rows and keys) and timestamp formatting; and the partition periods
 * (persister/part.c). No database, no sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "part.h"
#include "pgbin_read.h"
#include "rows.h"

static const uint8_t body_a1[] = {0x81, 0xa1, 'a', 0x01}; /* {"a":1} */

static struct sl_slice S(const char *s) {
    return (struct sl_slice){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static struct envelope_hdr
hdr(const char *edge, uint64_t inc, const char *reply)
{
    struct envelope_hdr h = {.v = 1, .edge = S(edge), .incarnation = inc, .reply = S(reply)};
    return h;
}

static struct envelope data(const char *dev, uint64_t seq, const uint8_t *body, uint32_t n)
{
    struct envelope e = {.kind = ENV_DATA,
                         .slot = 3,
                         .gen = 9,
                         .dev = S(dev),
                         .seq = seq,
                         .at_ns = 1764358200000000000ull,
                         .body = {body, n},
                         .has_body = true};
    return e;
}

static void test_fmt_us(void **state)
{
    (void)state;
    char out[48];
    static const struct {
        int64_t us;
        const char *want;
    } cases[] = {
        {0, "1970-01-01 00:00:00.000000+00"},
        {-1, "1969-12-31 23:59:59.999999+00"},
        {1764358200000000, "2025-11-28 19:30:00.000000+00"},
        {951782400123456, "2000-02-29 00:00:00.123456+00"},
        {253402300799999999, "9999-12-31 23:59:59.999999+00"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = rows_fmt_us(out, cases[i].us);
        out[n] = '\0';
        assert_string_equal(out, cases[i].want);
    }
}

/* A COPY binary tuple read back: its field count and each field's length
 * (-1 for NULL) and bytes. */
struct tuple {
    int nf;
    int32_t len[8];
    const uint8_t *val[8];
    size_t size;
};

static struct tuple parse(const char *out, size_t n)
{
    const uint8_t *p = (const uint8_t *)out;
    struct tuple t = {.nf = p[0] << 8 | p[1]};
    assert_in_range(t.nf, 1, 8);
    size_t o = 2;
    for (int f = 0; f < t.nf; f++) {
        assert_true(o + 4 <= n);
        t.len[f] = (int32_t)rd32(p + o);
        o += 4;
        t.val[f] = p + o;
        if (t.len[f] > 0)
            o += (size_t)t.len[f];
    }
    t.size = o;
    return t;
}

/* Row 0's tuple by enc, checked to be exactly bound long, read back. */
static struct tuple encode(size_t (*enc)(const struct batch *, uint32_t, char *, size_t),
                           size_t (*bound)(const struct batch *, uint32_t), const struct batch *b, char *out,
                           size_t cap)
{
    size_t n = enc(b, 0, out, cap);
    assert_int_equal(n, bound(b, 0));
    struct tuple t = parse(out, n);
    assert_int_equal(t.size, n);
    return t;
}

/* PostgreSQL's timestamptz: microseconds since 2000-01-01 UTC. */
#define PG_US(unix_us) ((uint64_t)((unix_us)-946684800000000LL))

static void test_map_data_and_copy_tuple(void **state)
{
    (void)state;
    struct batch b;
    assert_int_equal(batch_init(&b, 8, 4096), 0);
    struct envelope_hdr h = hdr("edge-1:7000", 77, "edge-1:7000/0");
    int pi = batch_peer(&b, &h);
    assert_int_equal(pi, 0);
    struct envelope e = data("pump-1", 42, body_a1, sizeof body_a1);
    e.has_ts = true;
    e.ts = 1764358200123;
    assert_int_equal(batch_add(&b, (uint16_t)pi, &e), SL_OK);
    assert_int_equal(b.nrows, 1);
    assert_int_equal(b.ndata, 1);
    const struct row *r = &b.rows[0];
    assert_int_equal(r->state, ROW_NEW);
    assert_int_equal(r->slot, 3);
    assert_int_equal(r->gen, 9);
    assert_memory_equal(b.json + r->json_off, "{\"a\":1}", r->json_len);

    char out[512];
    struct tuple t = encode(rows_copy_tuple, rows_copy_bound, &b, out, sizeof out);
    assert_int_equal(t.nf, 6);
    assert_int_equal(t.len[0], 6);
    assert_memory_equal(t.val[0], "pump-1", 6);
    assert_int_equal(t.len[1], 8);
    assert_int_equal(rd64(t.val[1]), 42);
    assert_int_equal(t.len[2], 8);
    assert_int_equal(rd64(t.val[2]), PG_US(1764358200123000LL)); /* 2025-11-28 19:30:00.123 */
    assert_int_equal(t.len[3], 8);
    assert_int_equal(rd64(t.val[3]), PG_US(1764358200000000LL));
    assert_int_equal(t.len[4], 11);
    assert_memory_equal(t.val[4], "edge-1:7000", 11);
    /* jsonb: version 1, then the text */
    assert_int_equal(t.len[5], 8);
    assert_memory_equal(t.val[5], "\x01{\"a\":1}", 8);
    /* A tuple that does not fit is refused whole. */
    assert_int_equal(rows_copy_tuple(&b, 0, out, t.size - 1), 0);
    batch_fini(&b);
}

static void test_copy_raw_bytes_and_null_ts(void **state)
{
    (void)state;
    struct batch b;
    assert_int_equal(batch_init(&b, 8, 4096), 0);
    struct envelope_hdr h = hdr("e\\1\t", 1, "r");
    int pi = batch_peer(&b, &h);
    /* "a\b<newline>c<tab>" as a msgpack str: JSON escapes it, and the binary
     * tuple carries that text as it is (text COPY escaped it once more). */
    static const uint8_t s[] = {0xa6, 'a', '\\', 'b', '\n', 'c', '\t'};
    struct envelope e = data("d\n", 1, s, sizeof s);
    assert_int_equal(batch_add(&b, (uint16_t)pi, &e), SL_OK);
    char out[512];
    struct tuple t = encode(rows_copy_tuple, rows_copy_bound, &b, out, sizeof out);
    assert_int_equal(t.nf, 6);
    assert_int_equal(t.len[0], 2);
    assert_memory_equal(t.val[0], "d\n", 2);
    assert_int_equal(t.len[2], -1); /* no ts: NULL */
    assert_int_equal(rd64(t.val[3]), PG_US(1764358200000000LL));
    assert_int_equal(t.len[4], 4);
    assert_memory_equal(t.val[4], "e\\1\t", 4);
    static const char want[] = "\x01\"a\\\\b\\nc\\t\"";
    assert_int_equal(t.len[5], sizeof want - 1);
    assert_memory_equal(t.val[5], want, sizeof want - 1);
    batch_fini(&b);
}

static void test_key_tuple(void **state)
{
    (void)state;
    struct batch b;
    assert_int_equal(batch_init(&b, 8, 4096), 0);
    struct envelope_hdr h = hdr("edge-1:7000", 77, "edge-1:7000/0");
    int pi = batch_peer(&b, &h);
    struct envelope e = data("pump\\1", 42, body_a1, sizeof body_a1);
    e.at_ns = 1764358200123456789ull; /* ns: the key keeps microseconds, as the row does */
    assert_int_equal(batch_add(&b, (uint16_t)pi, &e), SL_OK);
    char out[256];
    struct tuple t = encode(rows_key_tuple, rows_key_bound, &b, out, sizeof out);
    assert_int_equal(t.nf, 3);
    assert_int_equal(t.len[0], 6);
    assert_memory_equal(t.val[0], "pump\\1", 6);
    assert_int_equal(rd64(t.val[1]), 42);
    assert_int_equal(t.len[2], 8);
    assert_int_equal(rd64(t.val[2]), PG_US(1764358200123456LL));
    /* the key's received_at is the row's, byte for byte */
    char row[512];
    struct tuple rt = encode(rows_copy_tuple, rows_copy_bound, &b, row, sizeof row);
    assert_memory_equal(rt.val[3], t.val[2], 8);
    assert_int_equal(rows_key_tuple(&b, 0, out, t.size - 1), 0);
    batch_fini(&b);
}

static void test_copy_header_trailer(void **state)
{
    (void)state;
    char out[32];
    assert_int_equal(rows_copy_header(out), ROWS_COPY_HEADER_LEN);
    /* PostgreSQL's COPY BINARY signature, flags 0, extension length 0 */
    assert_memory_equal(out, "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0", 19);
    assert_int_equal(rows_copy_trailer(out), ROWS_COPY_TRAILER_LEN);
    assert_memory_equal(out, "\xff\xff", 2);
}

static void test_part_periods(void **state)
{
    (void)state;
    const int64_t D = PART_DAY_US;
    /* daily: [midnight, next midnight), a midnight belongs to the day it starts */
    struct part_period p = part_period_of(1764358200000000, 1); /* 2025-11-28 19:30 UTC */
    assert_int_equal(p.lo_us, 1764288000000000);                /* 2025-11-28 00:00 */
    assert_int_equal(p.hi_us, p.lo_us + D);
    p = part_period_of(1764288000000000, 1);
    assert_int_equal(p.lo_us, 1764288000000000);
    p = part_period_of(1764288000000000 - 1, 1);
    assert_int_equal(p.lo_us, 1764288000000000 - D);
    /* before 1970: floor, not truncation toward zero */
    p = part_period_of(-1, 1);
    assert_int_equal(p.lo_us, -D);
    assert_int_equal(p.hi_us, 0);
    /* 7-day periods are aligned on the epoch and contain their instant */
    for (int64_t t = 0; t < 30 * D; t += D / 3) {
        p = part_period_of(1764358200000000 + t, 7);
        assert_int_equal(p.lo_us % (7 * D), 0);
        assert_true(p.lo_us <= 1764358200000000 + t && 1764358200000000 + t < p.hi_us);
        assert_int_equal(p.hi_us - p.lo_us, 7 * D);
    }
    /* out-of-range periods are clamped */
    p = part_period_of(5 * D, 0);
    assert_int_equal(p.hi_us - p.lo_us, D);

    struct part_set set = {0};
    assert_int_equal(part_set_add(&set, 10, 1), 1);
    assert_int_equal(part_set_add(&set, D - 1, 1), 0); /* same day */
    for (unsigned k = 1; k < PART_SET_MAX; k++)
        assert_int_equal(part_set_add(&set, (int64_t)k * D, 1), 1);
    assert_int_equal(set.n, PART_SET_MAX);
    assert_int_equal(set.overflow, 0);
    assert_int_equal(part_set_add(&set, 100 * D, 1), -1);
    assert_int_equal(set.overflow, 1);
    assert_int_equal(part_set_add(&set, 3 * D + 5, 1), 0); /* present ones still found when full */
}

static void test_peers_and_chains(void **state)
{
    (void)state;
    struct batch b;
    assert_int_equal(batch_init(&b, 8, 4096), 0);
    struct envelope_hdr h1 = hdr("e", 1, "e/0"), h2 = hdr("e", 2, "e/0"), h3 = hdr("e", 1, "e/1");
    assert_int_equal(batch_peer(&b, &h1), 0);
    assert_int_equal(batch_peer(&b, &h2), 1);
    assert_int_equal(batch_peer(&b, &h3), 2);
    assert_int_equal(batch_peer(&b, &h1), 0);
    struct envelope e = data("d", 1, body_a1, sizeof body_a1);
    assert_int_equal(batch_add(&b, 0, &e), SL_OK);
    e.seq = 2;
    assert_int_equal(batch_add(&b, 1, &e), SL_OK);
    e.seq = 3;
    assert_int_equal(batch_add(&b, 0, &e), SL_OK);
    struct envelope c = {.kind = ENV_CONNECT, .dev = S("d"), .epoch = 5, .peer = S("1.2.3.4:5")};
    assert_int_equal(batch_add(&b, 0, &c), SL_OK);
    assert_int_equal(b.ndata, 3);
    /* Peer 0's ack chain: data rows 0 and 2, not the connect row. */
    assert_int_equal(b.peers[0].first, 0);
    assert_int_equal(b.rows[0].next, 2);
    assert_int_equal(b.rows[2].next, ROWS_NONE);
    assert_int_equal(b.peers[1].first, 1);
    assert_int_equal(b.peers[2].first, ROWS_NONE);
    /* Too-long or empty edge ids are refused. */
    char longid[300];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    struct envelope_hdr bad = hdr(longid, 1, "r");
    assert_int_equal(batch_peer(&b, &bad), -1);
    struct envelope_hdr empty = hdr("", 1, "r");
    assert_int_equal(batch_peer(&b, &empty), -1);
    batch_reset(&b);
    assert_int_equal(b.nrows, 0);
    assert_int_equal(b.npeers, 0);
    batch_fini(&b);
}

static void test_skips_and_bad_rows(void **state)
{
    (void)state;
    struct batch b;
    assert_int_equal(batch_init(&b, 8, 4096), 0);
    struct envelope_hdr h = hdr("e", 1, "r");
    batch_peer(&b, &h);
    struct envelope hb = {.kind = ENV_HEARTBEAT, .seq = 3};
    assert_int_equal(batch_add(&b, 0, &hb), SL_AGAIN);
    struct envelope e = data("d", (uint64_t)INT64_MAX + 1u, body_a1, sizeof body_a1);
    assert_int_equal(batch_add(&b, 0, &e), SL_AGAIN);
    e = data("", 1, body_a1, sizeof body_a1);
    assert_int_equal(batch_add(&b, 0, &e), SL_AGAIN);
    assert_int_equal(b.nrows, 0);

    static const uint8_t junk[] = {0xc1};
    e = data("d", 1, junk, sizeof junk);
    assert_int_equal(batch_add(&b, 0, &e), SL_OK);
    assert_int_equal(b.rows[0].state, ROW_BAD);
    assert_true(b.rows[0].bad);
    assert_true(b.rows[0].err_len > 0);
    /* Still a data row to acknowledge (it will be dead-lettered). */
    assert_int_equal(b.ndata, 1);
    assert_int_equal(b.peers[0].first, 0);

    e = data("d", 2, body_a1, sizeof body_a1);
    e.has_body = false;
    assert_int_equal(batch_add(&b, 0, &e), SL_OK);
    assert_int_equal(b.rows[1].state, ROW_BAD);

    e = data("d", 3, body_a1, sizeof body_a1);
    e.has_ts = true;
    e.ts = INT64_MAX;
    assert_int_equal(batch_add(&b, 0, &e), SL_OK);
    assert_int_equal(b.rows[2].state, ROW_BAD);
    /* Before 0001-01-01 UTC: PostgreSQL's binary input would take it as a
     * year BC; the mapper refuses it, as the text input did. */
    e = data("d", 4, body_a1, sizeof body_a1);
    e.has_ts = true;
    e.ts = -62135596800001LL;
    assert_int_equal(batch_add(&b, 0, &e), SL_OK);
    assert_int_equal(b.rows[3].state, ROW_BAD);
    assert_memory_equal(b.err + b.rows[3].err_off, "ts out of range", b.rows[3].err_len);
    e = data("d", 5, body_a1, sizeof body_a1);
    e.has_ts = true;
    e.ts = -62135596800000LL; /* 0001-01-01 00:00:00: the first it takes */
    assert_int_equal(batch_add(&b, 0, &e), SL_OK);
    assert_int_equal(b.rows[4].state, ROW_NEW);
    batch_fini(&b);
}

static void test_full(void **state)
{
    (void)state;
    struct batch b;
    /* 2 rows, and a JSON arena that holds two {"a":1} but not three. */
    assert_int_equal(batch_init(&b, 2, 64), 0);
    struct envelope_hdr h = hdr("e", 1, "r");
    batch_peer(&b, &h);
    struct envelope e = data("d", 1, body_a1, sizeof body_a1);
    assert_int_equal(batch_add(&b, 0, &e), SL_OK);
    assert_int_equal(batch_add(&b, 0, &e), SL_OK);
    assert_true(batch_full(&b));
    assert_int_equal(batch_add(&b, 0, &e), SL_NOMEM);
    batch_fini(&b);

    /* JSON arena exhausted with rows in the batch: flush and retry. A body
     * that cannot fit even an empty arena becomes a dead letter. */
    uint8_t big[200];
    big[0] = 0xd9;
    big[1] = 150;
    memset(big + 2, 'x', 150);
    assert_int_equal(batch_init(&b, 8, 100), 0);
    batch_peer(&b, &h);
    assert_int_equal(batch_add(&b, 0, &e), SL_OK);
    struct envelope eb = data("d", 2, big, 152);
    assert_int_equal(batch_add(&b, 0, &eb), SL_NOMEM);
    batch_reset(&b);
    batch_peer(&b, &h);
    assert_int_equal(batch_add(&b, 0, &eb), SL_OK);
    assert_int_equal(b.rows[0].state, ROW_BAD);
    batch_fini(&b);
}

static void test_err_text(void **state)
{
    (void)state;
    struct batch b;
    assert_int_equal(batch_init(&b, 2, 64), 0);
    struct envelope_hdr h = hdr("e", 1, "r");
    batch_peer(&b, &h);
    struct envelope e = data("d", 1, body_a1, sizeof body_a1);
    batch_add(&b, 0, &e);
    batch_set_err(&b, 0, "boom\n", 5);
    assert_int_equal(b.rows[0].err_len, 4);
    assert_memory_equal(b.err + b.rows[0].err_off, "boom", 4);
    char longmsg[1000];
    memset(longmsg, 'y', sizeof longmsg);
    batch_set_err(&b, 0, longmsg, sizeof longmsg);
    assert_int_equal(b.rows[0].err_len, ROWS_ERR_MAX);
    batch_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fmt_us),
        cmocka_unit_test(test_map_data_and_copy_tuple),
        cmocka_unit_test(test_copy_raw_bytes_and_null_ts),
        cmocka_unit_test(test_key_tuple),
        cmocka_unit_test(test_copy_header_trailer),
        cmocka_unit_test(test_part_periods),
        cmocka_unit_test(test_peers_and_chains),
        cmocka_unit_test(test_skips_and_bad_rows),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_err_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
