/* SPDX-License-Identifier: Apache-2.0 */
/* ntfsent.c - control entries sent to a notifier, kept until it confirms
 * (ntfsent.h).
 *
 * One byte buffer and one index for all slots, in send order: entries
 * leave from anywhere (a slot's confirmation), so the index has holes
 * (slot -1) that the front skips and a compaction squeezes out when an
 * append finds no room. Confirmations come about once a second per
 * notifier and walk only the live part. */
#include "ntfsent.h"

#include <stdlib.h>
#include <string.h>

int ntfsent_init(struct ntfsent *t)
{
    memset(t, 0, sizeof *t);
    t->buf = malloc(NTFSENT_BYTES);
    t->e = malloc(NTFSENT_ENTRIES * sizeof *t->e);
    if (!t->buf || !t->e) {
        ntfsent_free(t);
        return -1;
    }
    return 0;
}

void ntfsent_free(struct ntfsent *t)
{
    free(t->buf);
    free(t->e);
    t->buf = NULL;
    t->e = NULL;
}

static void drop(struct ntfsent *t, uint32_t i)
{
    t->live[t->e[i].slot]--;
    t->e[i].slot = -1;
}

/* Skip the dead front; an empty index starts again at offset 0. */
static void trim(struct ntfsent *t)
{
    while (t->head < t->n && t->e[t->head].slot < 0)
        t->head++;
    if (t->head == t->n) {
        t->head = t->n = 0;
        t->len = 0;
    }
}

/* Squeeze the dead entries out; live ones keep their order. */
static void compact(struct ntfsent *t)
{
    uint32_t k = 0;
    size_t off = 0;
    for (uint32_t i = t->head; i < t->n; i++) {
        struct ntfsent_ent x = t->e[i];
        if (x.slot < 0)
            continue;
        memmove(t->buf + off, t->buf + x.off, x.len); /* off <= x.off: offsets grow with i */
        x.off = (uint32_t)off;
        off += x.len;
        t->e[k++] = x;
    }
    t->head = 0;
    t->n = k;
    t->len = off;
}

static bool room(const struct ntfsent *t, size_t n)
{
    return t->n < NTFSENT_ENTRIES && t->len + n <= NTFSENT_BYTES;
}

void ntfsent_add(struct ntfsent *t, int s, struct sl_slice ent, uint64_t now_ms)
{
    if (s < 0 || s >= (int)NTFSENT_SLOTS || ent.n == 0 || ent.n > NTFSENT_BYTES)
        return;
    if (!room(t, ent.n)) {
        compact(t); /* every entry left is live */
        /* Leave an eighth free, or a full buffer (a connect storm faster
         * than the confirmations) would be compacted again at every add.
         * The oldest go: they are the likeliest read. */
        uint32_t k = 0;
        size_t freed = 0;
        while (k < t->n && (t->n - k > NTFSENT_ENTRIES - NTFSENT_ENTRIES / 8 ||
                            t->len - freed + ent.n > NTFSENT_BYTES - NTFSENT_BYTES / 8)) {
            freed += t->e[k].len;
            drop(t, k++);
            t->forgotten++;
        }
        if (k)
            compact(t);
    }
    struct ntfsent_ent *x = &t->e[t->n++];
    x->off = (uint32_t)t->len;
    x->len = ent.n;
    x->slot = s;
    x->num = t->next[s]++;
    x->at_ms = now_ms;
    memcpy(t->buf + t->len, ent.p, ent.n);
    t->len += ent.n;
    t->live[s]++;
}

void ntfsent_mark(struct ntfsent *t, int s, uint64_t hb)
{
    if (s < 0 || s >= (int)NTFSENT_SLOTS || hb == 0)
        return;
    struct ntfsent_mark *m = t->marks[s];
    if (t->nmarks[s] == NTFSENT_MARKS) { /* an answer that never came: its mark goes */
        memmove(m, m + 1, (NTFSENT_MARKS - 1) * sizeof *m);
        t->nmarks[s]--;
    }
    m[t->nmarks[s]++] = (struct ntfsent_mark){.hb = hb, .upto = t->next[s]};
}

uint32_t ntfsent_confirm(struct ntfsent *t, int s, uint64_t hb)
{
    if (s < 0 || s >= (int)NTFSENT_SLOTS)
        return 0;
    uint32_t upto = t->next[s];
    if (hb != 0) {
        struct ntfsent_mark *m = t->marks[s];
        uint32_t k = 0;
        while (k < t->nmarks[s] && m[k].hb != hb)
            k++;
        if (k == t->nmarks[s])
            return 0; /* not a heartbeat we wait on (already answered, or its mark went) */
        upto = m[k].upto;
        t->nmarks[s] -= k + 1; /* this one and any older: their answers are not coming first */
        memmove(m, m + k + 1, t->nmarks[s] * sizeof *m);
    } else {
        t->nmarks[s] = 0;
    }
    uint32_t done = 0;
    for (uint32_t i = t->head; i < t->n && t->live[s]; i++)
        if (t->e[i].slot == s && (int32_t)(upto - t->e[i].num) > 0) {
            drop(t, i);
            done++;
        }
    trim(t);
    return done;
}

uint32_t ntfsent_take(struct ntfsent *t, int s, uint64_t now_ms, void (*fn)(void *ud, struct sl_slice ent),
                      void *ud)
{
    if (s < 0 || s >= (int)NTFSENT_SLOTS)
        return 0;
    uint32_t handed = 0;
    for (uint32_t i = t->head; i < t->n && t->live[s]; i++) {
        struct ntfsent_ent *x = &t->e[i];
        if (x->slot != s)
            continue;
        if (now_ms - x->at_ms < NTFSENT_AGE_MS) {
            fn(ud, (struct sl_slice){t->buf + x->off, x->len});
            handed++;
        } else {
            t->forgotten++;
        }
        drop(t, i);
    }
    t->nmarks[s] = 0;
    trim(t);
    return handed;
}
