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

/* The header of a one-dimensional array of cnt elements of type oid;
 * returns where its has-null flag is, for pgbin_arr_elem_done to set. */
static inline uint8_t *pgbin_arr_head(uint8_t *o, uint32_t oid, uint32_t cnt)
{
    pgbin_be32(o, 1);
    pgbin_be32(o + 4, 0);
    pgbin_be32(o + 8, oid);
    pgbin_be32(o + 12, cnt);
    pgbin_be32(o + 16, 1);
    return o + 4;
}

/* After the element written at e: a NULL one (length -1) sets its array's
 * has-null flag. Read from the bytes, so the writer of the element alone
 * decides what is NULL. */
static inline void pgbin_arr_elem_done(uint8_t *hasnull, const uint8_t *e)
{
    if (((uint32_t)e[0] << 24 | (uint32_t)e[1] << 16 | (uint32_t)e[2] << 8 | e[3]) == PGBIN_NULL_LEN)
        pgbin_be32(hasnull, 1);
}

#endif
