/* SPDX-License-Identifier: Apache-2.0 */
/* pgbin.h - the PostgreSQL binary encodings the persister writes (COPY
 * BINARY tuples in rows.c, binary array parameters in db.c and devsum.c):
 * big-endian integers, timestamptz as int64 microseconds since 2000-01-01
 * UTC (integer datetimes, the only kind since PostgreSQL 10), and the
 * one-dimensional array. Pure, no I/O. */
#ifndef PERSISTER_PGBIN_H
#define PERSISTER_PGBIN_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* PostgreSQL timestamps count from 2000-01-01 UTC. */
#define PGBIN_EPOCH_US 946684800000000LL

static inline void pgbin_be16(uint8_t *o, uint16_t v)
{
    o[0] = (uint8_t)(v >> 8);
    o[1] = (uint8_t)v;
}

static inline void pgbin_be32(uint8_t *o, uint32_t v)
{
    o[0] = (uint8_t)(v >> 24);
    o[1] = (uint8_t)(v >> 16);
    o[2] = (uint8_t)(v >> 8);
    o[3] = (uint8_t)v;
}

static inline void pgbin_be64(uint8_t *o, uint64_t v)
{
    pgbin_be32(o, (uint32_t)(v >> 32));
    pgbin_be32(o + 4, (uint32_t)v);
}

/* timestamptz from microseconds since the Unix epoch. */
static inline void pgbin_ts(uint8_t *o, int64_t unix_us)
{
    pgbin_be64(o, (uint64_t)(unix_us - PGBIN_EPOCH_US));
}

/* A field (of a COPY tuple) or an array element: its int32 length, -1 for
 * NULL, then its bytes. Each writer returns the bytes it wrote. */
#define PGBIN_NULL_LEN UINT32_MAX

static inline size_t pgbin_null(uint8_t *o)
{
    pgbin_be32(o, PGBIN_NULL_LEN);
    return 4u;
}

static inline size_t pgbin_field(uint8_t *o, const void *p, size_t n)
{
    pgbin_be32(o, (uint32_t)n);
    if (n)
        memcpy(o + 4, p, n);
    return 4u + n;
}

static inline size_t pgbin_field_i64(uint8_t *o, uint64_t v)
{
    pgbin_be32(o, 8u);
    pgbin_be64(o + 4, v);
    return 12u;
}

static inline size_t pgbin_field_ts(uint8_t *o, int64_t unix_us)
{
    pgbin_be32(o, 8u);
    pgbin_ts(o + 4, unix_us);
    return 12u;
}

/* The binary array (array_recv): ndim, has-null flag, element type OID,
 * then per dimension length and lower bound, then each element as a field
 * (above). */
#define PGBIN_OID_INT8        20u
#define PGBIN_OID_TEXT        25u
#define PGBIN_OID_TIMESTAMPTZ 1184u
#define PGBIN_OID_JSONB       3802u
#define PGBIN_ARR_HDR         20u /* bytes before the first element */

/* Item k's element of column c, written at o (a field, above): returns the
 * bytes written, or 0 when item k has no place in these arrays (the
 * caller's filter: every element takes at least its length word). */
typedef size_t pgbin_elem_fn(const void *ctx, int c, uint32_t k, uint8_t *o);

/* The binary array parameters of one statement: ncol one-dimensional arrays
 * written one after the other at out, column c of type oid[c] with the cnt
 * elements elem writes for items k in [0, n). v[c] and len[c] receive each
 * array's place and size, as libpq takes them. The caller sized out (its
 * bound); nothing is checked here. A NULL element (length -1) sets its
 * array's has-null flag, read from the bytes, so the element's writer alone
 * decides what is NULL. Inline: elem is a constant at each caller, and the
 * rows' arrays are written per batch on the ack path. */
static inline void pgbin_arrays(uint8_t *out, int ncol, const uint32_t *oid, uint32_t n, uint32_t cnt,
                                pgbin_elem_fn *elem, const void *ctx, const char **v, int *len)
{
    uint8_t *o = out;
    for (int c = 0; c < ncol; c++) {
        uint8_t *start = o;
        pgbin_be32(o, 1); /* ndim */
        pgbin_be32(o + 4, 0);
        pgbin_be32(o + 8, oid[c]);
        pgbin_be32(o + 12, cnt);
        pgbin_be32(o + 16, 1); /* lower bound */
        o += PGBIN_ARR_HDR;
        for (uint32_t k = 0; k < n; k++) {
            size_t w = elem(ctx, c, k, o);
            if (w == 4u && memcmp(o, "\xff\xff\xff\xff", 4) == 0) /* PGBIN_NULL_LEN */
                pgbin_be32(start + 4, 1);
            o += w;
        }
        v[c] = (const char *)start;
        len[c] = (int)(o - start);
    }
}

#endif
