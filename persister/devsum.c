/* SPDX-License-Identifier: Apache-2.0 */
/* devsum.c - per-device summary of committed batches for the devices table
 * (devsum.h), and the binary array parameters that write it.
 *
 * Deliberately not here: when to write (devwriter.c), the statement and
 * running it (db.c). */
#include "devsum.h"

#include <stdlib.h>
#include <string.h>

#include "pgbin.h"

int devsum_init(struct devsum *s, uint32_t devices)
{
    memset(s, 0, sizeof *s);
    uint32_t cap = 16;
    while (cap < 2u * devices && cap < (1u << 30))
        cap *= 2u;
    s->tab = calloc(cap, sizeof *s->tab);
    s->used_idx = calloc(cap / 2u, sizeof *s->used_idx);
    if (!s->tab || !s->used_idx) {
        devsum_fini(s);
        return -1;
    }
    s->cap = cap;
    return 0;
}

void devsum_fini(struct devsum *s)
{
    free(s->tab);
    free(s->used_idx);
    memset(s, 0, sizeof *s);
}

void devsum_reset(struct devsum *s)
{
    for (uint32_t k = 0; k < s->used; k++)
        s->tab[s->used_idx[k]].n = 0;
    s->used = 0;
}

static uint32_t hash(const uint8_t *p, uint32_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (uint32_t k = 0; k < n; k++)
        h = (h ^ p[k]) * 16777619u;
    return h;
}

static bool counted(const struct row *r)
{
    if (r->dev.n == 0 || r->dev.n > SL_DEV_MAX || memchr(r->dev.p, 0, r->dev.n))
        return false;
    if (r->kind == ENV_DATA)
        return r->state == ROW_STORED || r->state == ROW_DEAD;
    return r->kind == ENV_CONNECT || r->kind == ENV_DISCONNECT;
}

bool devsum_add(struct devsum *s, const struct batch *b, uint32_t *from)
{
    for (uint32_t i = *from; i < b->nrows; i++) {
        const struct row *r = &b->rows[i];
        if (!counted(r))
            continue;
        uint32_t h = hash(r->dev.p, r->dev.n) & (s->cap - 1u);
        struct devsum_entry *e = &s->tab[h];
        while (e->n && !(e->n == r->dev.n && memcmp(e->dev, r->dev.p, e->n) == 0)) {
            h = (h + 1u) & (s->cap - 1u);
            e = &s->tab[h];
        }
        int64_t at = rows_at_us(r);
        if (!e->n) {
            if (s->used >= s->cap / 2u) {
                *from = i;
                return false;
            }
            memcpy(e->dev, r->dev.p, r->dev.n);
            e->n = (uint8_t)r->dev.n;
            e->has_seq = false;
            e->seq = 0;
            e->first_us = e->last_us = at;
            s->used_idx[s->used++] = h;
        }
        if (at < e->first_us)
            e->first_us = at;
        if (at > e->last_us)
            e->last_us = at;
        if (r->kind == ENV_DATA && (!e->has_seq || r->seq > e->seq)) {
            e->seq = r->seq;
            e->has_seq = true;
        }
    }
    *from = b->nrows;
    return true;
}

/* [from, end) of the used entries: n cut at the end of the sum. */
static uint32_t range_end(const struct devsum *s, uint32_t from, uint32_t n)
{
    if (from >= s->used)
        return from;
    return n < s->used - from ? from + n : s->used;
}

/* Per device: four length words, three 8-byte values, the id. */
#define ENTRY_FIXED (4u * 4u + 3u * 8u)

size_t devsum_arrays_bound(const struct devsum *s, uint32_t from, uint32_t n)
{
    size_t bytes = (size_t)DEVSUM_NCOL * PGBIN_ARR_HDR;
    for (uint32_t k = from, end = range_end(s, from, n); k < end; k++)
        bytes += ENTRY_FIXED + s->tab[s->used_idx[k]].n;
    return bytes;
}

/* Entry k of the range as an array element at o (a device with no stored
 * seq has a NULL one), for pgbin_arrays. */
struct range {
    const struct devsum *s;
    uint32_t from;
};

static size_t element(const void *ctx, int c, uint32_t k, uint8_t *o)
{
    const struct range *r = ctx;
    const struct devsum_entry *e = &r->s->tab[r->s->used_idx[r->from + k]];
    switch ((enum devsum_col)c) {
    case DEVSUM_ID: return pgbin_field(o, e->dev, e->n);
    case DEVSUM_FIRST: return pgbin_field_ts(o, e->first_us);
    case DEVSUM_LAST: return pgbin_field_ts(o, e->last_us);
    default: return e->has_seq ? pgbin_field_i64(o, e->seq) : pgbin_null(o);
    }
}

uint32_t devsum_arrays(const struct devsum *s, uint32_t from, uint32_t n, uint8_t *out, size_t cap,
                       struct devsum_arrays *a)
{
    static const uint32_t oid[DEVSUM_NCOL] = {PGBIN_OID_TEXT, PGBIN_OID_TIMESTAMPTZ, PGBIN_OID_TIMESTAMPTZ,
                                              PGBIN_OID_INT8};
    uint32_t end = range_end(s, from, n);
    if (end == from || devsum_arrays_bound(s, from, n) > cap)
        return 0;
    const struct range r = {s, from};
    pgbin_arrays(out, DEVSUM_NCOL, oid, end - from, end - from, element, &r, a->v, a->len);
    return end - from;
}
