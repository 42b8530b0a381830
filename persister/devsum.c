/* SPDX-License-Identifier: Apache-2.0 */
/* devsum.c - per-device summary of committed batches for the devices table
 * (devsum.h), and the SQL text that writes it.
 *
 * The statement goes as literals in one simple query (BEGIN, SET LOCAL,
 * INSERT, COMMIT: one round trip): a prepared statement could not lower
 * synchronous_commit for itself alone.
 * Device ids reaching here passed the envelope check ([A-Za-z0-9._:-]), and
 * are quoted all the same (sqltext_lit).
 *
 * Deliberately not here: when to write (devwriter.c), running it (db.c). */
#include "devsum.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqltext.h"

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

/* head0 <timeout_ms> head1 rows tail. The ON CONFLICT's WHERE skips the
 * write (a new row version and its WAL) when nothing would move; the typed
 * first row fixes the VALUES types (a list of only NULL seqs would be text
 * otherwise). */
static const char head0[] = "BEGIN;SET LOCAL synchronous_commit TO off;SET LOCAL statement_timeout TO ";
static const char head1[] = ";INSERT INTO devices AS d(device_id,first_seen,last_seen,last_seq)"
                            "SELECT*FROM(VALUES";
#define TIMEOUT_DIGITS 10u /* a uint32_t in decimal */
static const char tail[] =
    ")v(i,f,l,s)ORDER BY i ON CONFLICT(device_id)DO UPDATE SET "
    "first_seen=least(d.first_seen,EXCLUDED.first_seen),last_seen=greatest(d.last_seen,EXCLUDED.last_seen),"
    "last_seq=greatest(d.last_seq,EXCLUDED.last_seq)WHERE EXCLUDED.last_seen>d.last_seen OR "
    "EXCLUDED.first_seen<d.first_seen OR EXCLUDED.last_seq>d.last_seq OR "
    "(d.last_seq IS NULL AND EXCLUDED.last_seq IS NOT NULL);COMMIT";
/* Per device besides its id: "(E''," ts "::timestamptz," ts "::timestamptz," int8 "::int8)," */
#define ROW_FIXED 160u

/* [from, end) of the used entries: n cut at the end of the sum. */
static uint32_t range_end(const struct devsum *s, uint32_t from, uint32_t n)
{
    if (from >= s->used)
        return from;
    return n < s->used - from ? from + n : s->used;
}

size_t devsum_sql_bound(const struct devsum *s, uint32_t from, uint32_t n)
{
    size_t bytes = sizeof head0 + TIMEOUT_DIGITS + sizeof head1 + sizeof tail;
    for (uint32_t k = from, end = range_end(s, from, n); k < end; k++)
        bytes += 2u * s->tab[s->used_idx[k]].n + ROW_FIXED;
    return bytes;
}

static size_t ts(char *out, int64_t us)
{
    size_t o = sqltext_ts(out, us);
    return o + sqltext_put(out + o, "::timestamptz");
}

size_t devsum_sql(const struct devsum *s, uint32_t from, uint32_t n, uint32_t timeout_ms, char *out,
                  size_t cap)
{
    uint32_t end = range_end(s, from, n);
    if (end == from || devsum_sql_bound(s, from, n) + 1u > cap)
        return 0;
    char *o = out;
    o += sqltext_put(o, head0);
    o += (size_t)sprintf(o, "%u", (unsigned)timeout_ms);
    o += sqltext_put(o, head1);
    for (uint32_t k = from; k < end; k++) {
        const struct devsum_entry *e = &s->tab[s->used_idx[k]];
        o += sqltext_put(o, k > from ? ",(" : "(");
        o += sqltext_lit(o, e->dev, e->n);
        *o++ = ',';
        o += ts(o, e->first_us);
        *o++ = ',';
        o += ts(o, e->last_us);
        if (e->has_seq)
            o += (size_t)sprintf(o, ",%llu::int8)", (unsigned long long)e->seq);
        else
            o += sqltext_put(o, ",NULL::int8)");
    }
    o += sqltext_put(o, tail);
    *o = '\0';
    return (size_t)(o - out);
}
