/* sl/frame.h - the u32 big-endian length-prefixed frame codec.
 *
 * The decoder is push-style and I/O-free: the caller feeds whatever bytes a
 * read returned, in chunks of any size, and gets the same frames however the
 * input was split. It never allocates and never reads an fd.
 *
 * Zero copy where it can: when a whole frame lies inside the chunk being fed
 * and nothing is pending, the payload points into the caller's chunk. Only a
 * frame whose body spans two feeds is copied, into a buffer the caller lends
 * (d->buf, capacity >= d->max). The decoder asks for it with
 * FRAME_NEED_BUF, so a connection holds a buffer only while a partial frame
 * is pending (docs/internals.md, "read buffers").
 *
 * The length is checked as soon as the 4 header bytes are known: N = 0 gives
 * FRAME_ERR_EMPTY, N > max gives FRAME_ERR_TOOBIG, before any body byte is
 * buffered. After an error the decoder must be reset before further use. */
#ifndef SL_FRAME_H
#define SL_FRAME_H
#include <stddef.h>
#include <stdint.h>
#include "sl/slice.h"

enum frame_rc {
    FRAME_NEED_MORE = 0, /* all input consumed, no complete frame yet */
    FRAME_READY,         /* *payload holds one complete frame */
    FRAME_NEED_BUF,      /* a body spans past this input: set d->buf and feed the rest */
    FRAME_ERR_EMPTY,     /* header said N = 0 */
    FRAME_ERR_TOOBIG,    /* header said N > max */
};

struct frame_dec {
    uint8_t *buf;   /* lent by the caller while a partial body is pending; NULL otherwise */
    uint32_t max;   /* largest accepted N */
    uint32_t len;   /* N of the frame being read; 0 while reading the header */
    uint32_t have;  /* body bytes already copied into buf */
    uint8_t hdr[4]; /* header bytes collected so far */
    uint8_t hdr_n;  /* how many of them */
};

/* Set up a decoder for frames of 1..max bytes. No buffer is lent yet. */
void frame_dec_init(struct frame_dec *d, uint32_t max);

/* Change the largest accepted N: headers completed after this call are
 * checked against max; a frame already announced keeps its length (the
 * edge raises the limit from a pre-hello size to max_frame after hello,
 * possibly in the middle of the frame after it). */
void frame_dec_set_max(struct frame_dec *d, uint32_t max);

/* Forget any partial frame (keeps max; d->buf is left for the caller to take back). */
void frame_dec_reset(struct frame_dec *d);

/* Feed n bytes. *used gets how many were consumed (always set). On
 * FRAME_READY, *payload points at the frame body: into `in` or into d->buf,
 * valid until the next call. Feed the remaining in+*used again until
 * FRAME_NEED_MORE. Never blocks, never allocates. */
enum frame_rc frame_dec_feed(struct frame_dec *d, const uint8_t *in, size_t n, size_t *used,
                             struct sl_slice *payload);

/* True when no partial frame is pending: d->buf may be taken back. */
int frame_dec_idle(const struct frame_dec *d);

/* Write the 4-byte big-endian header for a payload of n bytes. */
void frame_encode_header(uint8_t out[4], uint32_t n);

#endif
