/* SPDX-License-Identifier: Apache-2.0 */
/* pgbin.h - the PostgreSQL binary encodings the persister writes (COPY
 * BINARY tuples in rows.c, binary array parameters in db.c): big-endian
 * integers, and timestamptz as int64 microseconds since 2000-01-01 UTC
 * (integer datetimes, the only kind since PostgreSQL 10). Pure, no I/O. */
#ifndef PERSISTER_PGBIN_H
#define PERSISTER_PGBIN_H
#include <stdint.h>

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

#endif
