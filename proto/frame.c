/* frame.c - the u32 big-endian length-prefixed frame codec (sl/frame.h).
 *
 * A push-style state machine in the manner of curl's chunk decoder: the
 * caller feeds whatever a read returned and gets the same frames however the
 * input was split. States, implied by the fields of struct frame_dec:
 *   hdr_n < 4             collecting the 4 header bytes
 *   hdr_n = 4, len = 0    header complete but refused (sticky until reset)
 *   len > 0, have = 0     header accepted, no body byte stored yet
 *   len > 0, have > 0     part of the body copied into the lent d->buf
 *
 * It deliberately does not read fds, allocate, or look at the payload.
 * A body that lies whole inside the chunk being fed is returned in place
 * (zero copy); only a body that spans feeds is copied, into the buffer the
 * caller lends when asked with FRAME_NEED_BUF. Asking only when there are
 * body bytes to store means a connection whose reads end on frame (or
 * header) boundaries never holds a buffer at all. */
#include "sl/frame.h"
#include "sl/limits.h"

#include <assert.h>
#include <string.h>

void frame_dec_init(struct frame_dec *d, uint32_t max)
{
    d->buf = NULL;
    d->max = max;
    frame_dec_reset(d);
}

void frame_dec_set_max(struct frame_dec *d, uint32_t max)
{
    d->max = max;
}

void frame_dec_reset(struct frame_dec *d)
{
    d->len = 0;
    d->have = 0;
    d->hdr_n = 0;
    memset(d->hdr, 0, sizeof d->hdr);
}

int frame_dec_idle(const struct frame_dec *d)
{
    return d->hdr_n == 0 && d->len == 0 && d->have == 0;
}

static uint32_t get_u32be(const uint8_t b[4])
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Back to "collecting a header" after a frame was delivered. d->buf stays
 * lent; frame_dec_idle() now says the caller may take it back. */
static void frame_done(struct frame_dec *d)
{
    d->len = 0;
    d->have = 0;
    d->hdr_n = 0;
}

enum frame_rc frame_dec_feed(struct frame_dec *d, const uint8_t *in, size_t n, size_t *used,
                             struct sl_slice *payload)
{
    size_t pos = 0;

    *used = 0;
    while (d->hdr_n < SL_FRAME_HDR && pos < n)
        d->hdr[d->hdr_n++] = in[pos++];
    if (d->hdr_n < SL_FRAME_HDR) {
        *used = pos;
        return FRAME_NEED_MORE;
    }

    if (d->len == 0) {
        /* Judge the length before any body byte is touched (protocol §1).
         * The state is left as is, so a caller that ignores the error and
         * feeds again gets it again instead of a misaligned stream. */
        uint32_t len = get_u32be(d->hdr);
        *used = pos;
        if (len == 0)
            return FRAME_ERR_EMPTY;
        if (len > d->max)
            return FRAME_ERR_TOOBIG;
        d->len = len;
        d->have = 0;
    }

    size_t left = n - pos;
    uint32_t want = d->len - d->have;

    if (d->have == 0 && left >= want) {
        /* The whole body is in this chunk: lend it out in place. */
        payload->p = in + pos;
        payload->n = d->len;
        *used = pos + want;
        frame_done(d);
        return FRAME_READY;
    }
    if (left == 0) {
        *used = pos;
        return FRAME_NEED_MORE;
    }
    if (d->buf == NULL) {
        /* Taking the buffer back mid-body would lose the bytes copied so
         * far: that is a caller bug, not a device's. */
        assert(d->have == 0);
        *used = pos;
        return FRAME_NEED_BUF;
    }

    size_t take = left < want ? left : want;
    memcpy(d->buf + d->have, in + pos, take);
    d->have += (uint32_t)take;
    pos += take;
    *used = pos;
    if (d->have < d->len)
        return FRAME_NEED_MORE;
    payload->p = d->buf;
    payload->n = d->len;
    frame_done(d);
    return FRAME_READY;
}

void frame_encode_header(uint8_t out[4], uint32_t n)
{
    out[0] = (uint8_t)(n >> 24);
    out[1] = (uint8_t)(n >> 16);
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
}
