/* fuzz_frame.c - the frame decoder (proto/frame.c) fed a TCP stream in
 * chunks of varying size, as the edge's conn_read does.
 *
 * Input: byte 0 picks max_frame (0 -> 65536, else 8 * byte), byte 1 the
 * largest chunk (bits 0-5: 0 -> the whole stream in one feed, else 1..63
 * bytes) and whether the first frame has a lower limit (bit 6: max/8 + 16,
 * raised with frame_dec_set_max once it is read, as the edge does after
 * hello), byte 2 seeds the sequence of chunk sizes (empty feeds included);
 * the rest is the stream.
 *
 * Properties, against a one-pass reference reading of the whole stream:
 * - the same frames, byte for byte, in order, however the stream is split;
 *   the same final state (refused length 0 or > max, partial, or idle);
 * - an error repeats on the next feed and consumes nothing (sticky);
 * - `used` never exceeds the chunk, NEED_MORE only once the chunk is used up;
 * - a buffer is asked for (NEED_BUF) only with body bytes left to store and
 *   none lent; a payload is in place (inside the current chunk) unless its
 *   body began in an earlier feed, and then it is in the lent buffer;
 * - the lent buffer is a heap block of exactly max bytes, taken back as
 *   soon as the decoder is idle: ASan sees any write past max. */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "sl/frame.h"
#include "sl/limits.h"

enum ref_end { REF_IDLE, REF_PARTIAL, REF_EMPTY, REF_TOOBIG };

struct ref_frame {
    size_t off; /* body offset in the stream */
    uint32_t len;
};

/* The stream read in one pass, straight from protocol.md §1; the first
 * frame is judged against first_max. */
static enum ref_end reference(const uint8_t *s, size_t n, uint32_t first_max, uint32_t max,
                              struct ref_frame *fr, size_t *nfr)
{
    size_t pos = 0;
    *nfr = 0;
    for (;;) {
        if (n - pos < SL_FRAME_HDR)
            return pos == n ? REF_IDLE : REF_PARTIAL;
        uint32_t len =
            (uint32_t)s[pos] << 24 | (uint32_t)s[pos + 1] << 16 | (uint32_t)s[pos + 2] << 8 | s[pos + 3];
        if (len == 0)
            return REF_EMPTY;
        if (len > (*nfr == 0 ? first_max : max))
            return REF_TOOBIG;
        if (n - pos - SL_FRAME_HDR < len)
            return REF_PARTIAL;
        fr[*nfr].off = pos + SL_FRAME_HDR;
        fr[*nfr].len = len;
        (*nfr)++;
        pos += SL_FRAME_HDR + len;
    }
}

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint32_t max = data[0] == 0 ? SL_MAX_FRAME_DEFAULT : 8u * data[0];
    uint32_t first_max = data[1] & 64u ? max / 8u + 16u : max;
    if (first_max > max)
        first_max = max;
    size_t span = data[1] & 63u; /* 0: one feed */
    uint32_t rng = 0x9e3779b9u ^ data[2];
    const uint8_t *s = data + 3;
    size_t n = size - 3;

    struct ref_frame *fr = malloc((n / (SL_FRAME_HDR + 1) + 1) * sizeof *fr);
    uint8_t *lend = malloc(max);
    FUZZ_CHECK(fr && lend);
    size_t nfr;
    enum ref_end end = reference(s, n, first_max, max, fr, &nfr);

    struct frame_dec d;
    frame_dec_init(&d, first_max);
    size_t got = 0, off = 0;
    enum frame_rc err = FRAME_NEED_MORE;
    while (off < n && err == FRAME_NEED_MORE) {
        size_t chunk = span == 0 ? n - off : xorshift(&rng) % (span + 1);
        if (chunk > n - off)
            chunk = n - off;
        const uint8_t *c = s + off;
        size_t left = chunk;
        for (;;) {
            size_t used = (size_t)-1;
            struct sl_slice pl = {0};
            enum frame_rc rc = frame_dec_feed(&d, c, left, &used, &pl);
            FUZZ_CHECK(used <= left);
            c += used;
            left -= used;
            if (rc == FRAME_NEED_MORE) {
                FUZZ_CHECK(left == 0);
                break;
            }
            if (rc == FRAME_NEED_BUF) {
                FUZZ_CHECK(d.buf == NULL && left > 0 && d.have == 0);
                d.buf = lend;
                continue;
            }
            if (rc != FRAME_READY) {
                FUZZ_CHECK(rc == FRAME_ERR_EMPTY || rc == FRAME_ERR_TOOBIG);
                /* Sticky: fed again, the same error and nothing consumed. */
                size_t again = (size_t)-1;
                FUZZ_CHECK(frame_dec_feed(&d, c, left, &again, &pl) == rc && again == 0);
                err = rc;
                break;
            }
            FUZZ_CHECK(got < nfr);
            FUZZ_CHECK(pl.n == fr[got].len && pl.n >= 1 && pl.n <= (got == 0 ? first_max : max));
            FUZZ_CHECK(memcmp(pl.p, s + fr[got].off, pl.n) == 0);
            bool in_place = fuzz_within(pl, s + off, chunk);
            if (fr[got].off >= off)
                FUZZ_CHECK(in_place); /* the body lies in this chunk: zero copy */
            else
                FUZZ_CHECK(!in_place && pl.p == lend);
            if (got++ == 0)
                frame_dec_set_max(&d, max); /* the hello is read: the full limit from now on */
            FUZZ_CHECK(frame_dec_idle(&d));
            d.buf = NULL; /* taken back at once, as the edge does */
        }
        off += chunk;
    }

    FUZZ_CHECK(got == nfr);
    switch (end) {
    case REF_IDLE: FUZZ_CHECK(err == FRAME_NEED_MORE && frame_dec_idle(&d)); break;
    case REF_PARTIAL: FUZZ_CHECK(err == FRAME_NEED_MORE && !frame_dec_idle(&d)); break;
    case REF_EMPTY: FUZZ_CHECK(err == FRAME_ERR_EMPTY); break;
    case REF_TOOBIG: FUZZ_CHECK(err == FRAME_ERR_TOOBIG); break;
    }
    /* A partial header or body holds a buffer only if body bytes came. */
    if (end == REF_PARTIAL && d.have == 0)
        FUZZ_CHECK(d.buf == NULL);
    free(fr);
    free(lend);
    return 0;
}
