/* SPDX-License-Identifier: Apache-2.0 */
/* mp.c - the bounded msgpack cursor (sl/mp.h) and the fixed-buffer sink
 * for msgpack-c's packer.
 *
 * Every byte from a device is read through mp_next(): it decodes one item
 * header in place and refuses a declared size that cannot fit in the bytes
 * that remain (an array element needs at least one byte, a map pair two, a
 * str/bin/ext exactly its length). So a 5-byte map32 claiming 3.7 billion
 * pairs is rejected at its header, and nothing is ever sized from a number
 * the input chose. mp_skip() walks nested containers with a fixed stack of
 * remaining counts instead of recursion, so 60 KB of nested arrays costs a
 * depth check, not a stack overflow.
 *
 * It deliberately does not allocate, build a tree, validate UTF-8 (tojson.c
 * does that where it matters), or encode: encoding goes through msgpack-c's
 * own packer, which only writes to the sink below. */
#include "sl/mp.h"

#include <string.h>

/* The deepest nesting mp_skip() can track. max_depth arguments above it are
 * clamped to it; the protocol's own cap (SL_MP_MAX_DEPTH, 32) is well below. */
#define SKIP_STACK 64u

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* Big-endian unsigned of w bytes (1, 2, 4 or 8). */
static uint64_t beu(const uint8_t *p, unsigned w)
{
    switch (w) {
    case 1: return p[0];
    case 2: return be16(p);
    case 4: return be32(p);
    default: return be64(p);
    }
}

/* Two's complement of w bytes, sign-extended. */
static int64_t bei(const uint8_t *p, unsigned w)
{
    switch (w) {
    case 1: return (int8_t)p[0];
    case 2: return (int16_t)be16(p);
    case 4: return (int32_t)be32(p);
    default: return (int64_t)be64(p);
    }
}

static void set_uint(struct mp_item *it, uint64_t u)
{
    it->type = MP_UINT;
    it->u = u;
    it->i = u <= (uint64_t)INT64_MAX ? (int64_t)u : 0;
}

/* A signed encoding of a non-negative value is a positive integer, as in
 * msgpack-c: callers then see one type per value, whatever width the
 * sender chose. */
static void set_int(struct mp_item *it, int64_t i)
{
    if (i >= 0) {
        set_uint(it, (uint64_t)i);
        return;
    }
    it->type = MP_INT;
    it->i = i;
}

int mp_next(struct mp_cur *c, struct mp_item *it)
{
    const uint8_t *p = c->p;
    const uint8_t *end = c->end;
    size_t left;
    uint64_t len = 0;   /* str/bin/ext payload length */
    uint64_t count = 0; /* array/map element count (items, not pairs) */
    unsigned w;

    memset(it, 0, sizeof *it);
    if (p >= end)
        return -1;
    uint8_t b = *p++;
    left = (size_t)(end - p);

/* Need n more header bytes. */
#define NEED(n)                                                                                              \
    do {                                                                                                     \
        if (left < (size_t)(n))                                                                              \
            return -1;                                                                                       \
    } while (0)

    if (b <= 0x7f) {
        set_uint(it, b);
        goto done;
    }
    if (b >= 0xe0) {
        set_int(it, (int8_t)b);
        goto done;
    }
    if (b >= 0x80 && b <= 0x8f) {
        it->type = MP_MAP;
        it->n = b & 0x0fu;
        count = 2u * (uint64_t)it->n;
        goto container;
    }
    if (b >= 0x90 && b <= 0x9f) {
        it->type = MP_ARRAY;
        it->n = b & 0x0fu;
        count = it->n;
        goto container;
    }
    if (b >= 0xa0 && b <= 0xbf) {
        it->type = MP_STR;
        len = b & 0x1fu;
        goto payload;
    }

    switch (b) {
    case 0xc0: it->type = MP_NIL; goto done;
    case 0xc2:
    case 0xc3:
        it->type = MP_BOOL;
        it->b = b == 0xc3;
        goto done;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        it->type = MP_BIN;
        w = 1u << (b - 0xc4);
        NEED(w);
        len = beu(p, w);
        p += w;
        left -= w;
        goto payload;
    case 0xc7:
    case 0xc8:
    case 0xc9:
        it->type = MP_EXT;
        w = 1u << (b - 0xc7);
        NEED(w + 1);
        len = beu(p, w);
        it->ext_type = (int8_t)p[w];
        p += w + 1;
        left -= w + 1;
        goto payload;
    case 0xca: {
        NEED(4);
        uint32_t u = be32(p);
        float f;
        memcpy(&f, &u, sizeof f);
        it->type = MP_FLOAT;
        it->f = (double)f;
        it->f32 = true;
        p += 4;
        goto done;
    }
    case 0xcb: {
        NEED(8);
        uint64_t u = be64(p);
        memcpy(&it->f, &u, sizeof it->f);
        it->type = MP_FLOAT;
        p += 8;
        goto done;
    }
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        w = 1u << (b - 0xcc);
        NEED(w);
        set_uint(it, beu(p, w));
        p += w;
        goto done;
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
        w = 1u << (b - 0xd0);
        NEED(w);
        set_int(it, bei(p, w));
        p += w;
        goto done;
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        it->type = MP_EXT;
        NEED(1);
        len = 1u << (b - 0xd4);
        it->ext_type = (int8_t)p[0];
        p += 1;
        left -= 1;
        goto payload;
    case 0xd9:
    case 0xda:
    case 0xdb:
        it->type = MP_STR;
        w = 1u << (b - 0xd9);
        NEED(w);
        len = beu(p, w);
        p += w;
        left -= w;
        goto payload;
    case 0xdc:
    case 0xdd:
        it->type = MP_ARRAY;
        w = 2u << (b - 0xdc);
        NEED(w);
        it->n = (uint32_t)beu(p, w);
        count = it->n;
        p += w;
        left -= w;
        goto container;
    case 0xde:
    case 0xdf:
        it->type = MP_MAP;
        w = 2u << (b - 0xde);
        NEED(w);
        it->n = (uint32_t)beu(p, w);
        count = 2u * (uint64_t)it->n;
        p += w;
        left -= w;
        goto container;
    default: /* 0xc1: reserved, never valid */ return -1;
    }
#undef NEED

payload:
    if (len > left)
        return -1;
    it->data.p = p;
    it->data.n = (uint32_t)len;
    p += len;
    goto done;

container:
    /* Every element takes at least one byte: a count beyond the bytes left
     * is a lie, refused before anyone sizes anything from it. */
    if (count > left)
        return -1;

done:
    c->p = p;
    return 0;
}

int mp_skip(struct mp_cur *c, unsigned max_depth)
{
    const uint8_t *start = c->p;
    uint64_t rem[SKIP_STACK + 1]; /* items left at each open level; rem[0] is the object itself */
    unsigned d = 0;
    struct mp_item it;

    if (max_depth > SKIP_STACK)
        max_depth = SKIP_STACK;
    rem[0] = 1;
    for (;;) {
        if (rem[d] == 0) {
            if (d == 0)
                return 0;
            d--;
            continue;
        }
        rem[d]--;
        if (mp_next(c, &it) != 0)
            goto fail;
        if (it.type == MP_ARRAY || it.type == MP_MAP) {
            /* This container sits at depth d + 1. */
            if (d + 1 > max_depth)
                goto fail;
            rem[++d] = it.type == MP_MAP ? 2u * (uint64_t)it.n : it.n;
        }
    }
fail:
    c->p = start;
    return -1;
}

int mp_check(const uint8_t *p, size_t n, unsigned max_depth)
{
    struct mp_cur c;
    mp_cur_init(&c, p, n);
    if (mp_skip(&c, max_depth) != 0)
        return -1;
    return mp_cur_left(&c) == 0 ? 0 : -1;
}

int mp_buf_write(void *data, const char *buf, size_t len)
{
    struct mp_buf *b = data;
    /* Once a write was dropped, drop the rest too: a batch with a hole in
     * it would be worse than none. */
    if (b->overflow || len > b->cap - b->len) {
        b->overflow = true;
        return -1;
    }
    if (len > 0)
        memcpy(b->p + b->len, buf, len);
    b->len += len;
    return 0;
}

void mp_buf_raw(struct mp_buf *b, const void *p, size_t n)
{
    (void)mp_buf_write(b, p, n);
}
