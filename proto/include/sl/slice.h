/* SPDX-License-Identifier: Apache-2.0 */
/* sl/slice.h - a borrowed run of bytes. Never owns; valid as long as its source. */
#ifndef SL_SLICE_H
#define SL_SLICE_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct sl_slice {
    const uint8_t *p;
    uint32_t n;
};

static inline int sl_slice_eq(struct sl_slice a, struct sl_slice b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static inline int sl_slice_eqs(struct sl_slice a, const char *s)
{
    size_t n = strlen(s);
    return a.n == n && (n == 0 || memcmp(a.p, s, n) == 0);
}

#endif
