/* SPDX-License-Identifier: Apache-2.0 */
/* sl/mp.h - a bounded, allocation-free msgpack reader, and a fixed-buffer
 * writer for msgpack-c's packer.
 *
 * Why a reader of our own: msgpack-c's unpacker allocates whatever a
 * container header declares (a map32 claiming 0xdfdfdfdf entries asks for
 * ~1 GiB) and allocates per object. Untrusted bytes from devices are read
 * only through this cursor, which refuses any declared size that cannot fit
 * in the bytes that remain (an array element or a map key/value needs at
 * least one byte each) and caps nesting depth. It reads in place: strings
 * and bins point into the input.
 *
 * Encoding uses msgpack-c's msgpack_packer writing into a struct mp_buf,
 * a caller-owned fixed buffer that records overflow instead of growing. */
#ifndef SL_MP_H
#define SL_MP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>
#include "sl/slice.h"

enum mp_type {
    MP_NIL = 0,
    MP_BOOL,
    MP_UINT,  /* positive integers (any width) */
    MP_INT,   /* negative integers */
    MP_FLOAT, /* float32 or float64, widened */
    MP_STR,
    MP_BIN,
    MP_ARRAY,
    MP_MAP,
    MP_EXT,
};

struct mp_item {
    enum mp_type type;
    bool b;
    uint64_t u;           /* MP_UINT */
    int64_t i;            /* MP_INT (and MP_UINT values <= INT64_MAX) */
    double f;             /* MP_FLOAT */
    uint32_t n;           /* MP_ARRAY/MP_MAP: element/pair count */
    struct sl_slice data; /* MP_STR/MP_BIN/MP_EXT: payload bytes, in place */
    int8_t ext_type;      /* MP_EXT */
    bool f32;             /* MP_FLOAT: was a float32 on the wire */
};

struct mp_cur {
    const uint8_t *p;
    const uint8_t *end;
};

static inline void mp_cur_init(struct mp_cur *c, const uint8_t *p, size_t n)
{
    c->p = p;
    c->end = p + n;
}

static inline size_t mp_cur_left(const struct mp_cur *c)
{
    return (size_t)(c->end - c->p);
}

/* Read one item header. Str/bin/ext payloads are consumed too (it->data
 * points at them); for arrays and maps only the header is consumed and the
 * caller reads it->n elements (2*n for maps) next. Returns 0, or -1 if the
 * input is truncated, uses the reserved byte 0xc1, or declares a size that
 * cannot fit in what remains. On -1 the cursor is unchanged. */
int mp_next(struct mp_cur *c, struct mp_item *it);

/* Skip one complete object of at most max_depth nested containers, without
 * recursion. Returns 0, or -1 (malformed, oversized or too deep). */
int mp_skip(struct mp_cur *c, unsigned max_depth);

/* Check that p[0..n) is exactly one well-formed object of depth <= max_depth
 * with nothing after it. Returns 0 or -1. Safe on any input. */
int mp_check(const uint8_t *p, size_t n, unsigned max_depth);

/* Fixed-buffer sink for msgpack_packer. Never grows: a write that does not
 * fit sets `overflow` and is dropped, so callers check once at the end. */
struct mp_buf {
    uint8_t *p;
    size_t cap;
    size_t len;
    bool overflow;
};

static inline void mp_buf_init(struct mp_buf *b, uint8_t *p, size_t cap)
{
    b->p = p;
    b->cap = cap;
    b->len = 0;
    b->overflow = false;
}

/* msgpack_packer write callback: msgpack_packer_init(&pk, &buf, mp_buf_write). */
int mp_buf_write(void *data, const char *buf, size_t len);

/* Append bytes that are already msgpack (e.g. a body carried untouched). */
void mp_buf_raw(struct mp_buf *b, const void *p, size_t n);

#endif
