/* SPDX-License-Identifier: Apache-2.0 */
/* pgbin_read.h - reading back what persister/pgbin.h writes, for the
 * persister's unit tests: big-endian integers of a field or array. */
#ifndef TESTS_PGBIN_READ_H
#define TESTS_PGBIN_READ_H
#include <stdint.h>

static inline uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) << 32 | rd32(p + 4);
}

#endif
