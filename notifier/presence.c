/* SPDX-License-Identifier: Apache-2.0 */
/* presence.c - the device -> connection table with session-epoch fencing.
 *
 * Two fixed tables, allocated once: devices (chained hash over an entry
 * array, with a free list and a list of offline entries, oldest first, to
 * recycle from) and edge workers (same shape, small). Index links instead
 * of pointers keep entries compact and let a lookup cost one hash and a
 * short chain.
 *
 * Deliberately not here: publishing, commands, sockets. The caller turns
 * each presence_change into a status message or a kick. */
#include "presence.h"

#include <stdlib.h>
#include <string.h>

struct presence {
    struct presence_dev *devs;
    uint32_t ndev, dev_mask;
    uint32_t *dev_heads;
    uint32_t off_head, off_tail; /* offline devices, oldest first */
    /* Entries [0, used) have held a device; the rest are calloc's untouched
     * pages, so a table sized for a million devices costs memory and start-up
     * time only as it fills (linking them all up front took 0.6 s). */
    uint32_t used, online;

    struct presence_worker *ws;
    uint32_t nw, w_mask;
    uint32_t *w_heads;
    uint32_t w_last; /* cache: batches come in runs from one worker */
};

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n && p < (1u << 31))
        p <<= 1;
    return p;
}

struct presence *presence_new(uint32_t max_devices, uint32_t max_workers)
{
    if (max_devices == 0 || max_workers == 0)
        return NULL;
    struct presence *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->ndev = max_devices;
    p->dev_mask = pow2_at_least(max_devices) - 1;
    p->devs = calloc(max_devices, sizeof *p->devs);
    p->dev_heads = malloc(((size_t)p->dev_mask + 1) * sizeof *p->dev_heads);
    p->nw = max_workers;
    p->w_mask = pow2_at_least(max_workers) - 1;
    p->ws = calloc(max_workers, sizeof *p->ws);
    p->w_heads = malloc(((size_t)p->w_mask + 1) * sizeof *p->w_heads);
    if (!p->devs || !p->dev_heads || !p->ws || !p->w_heads) {
        presence_destroy(&p);
        return NULL;
    }
    memset(p->dev_heads, 0xff, ((size_t)p->dev_mask + 1) * sizeof *p->dev_heads);
    memset(p->w_heads, 0xff, ((size_t)p->w_mask + 1) * sizeof *p->w_heads);
    p->off_head = p->off_tail = PRESENCE_NONE;
    p->w_last = PRESENCE_NONE;
    return p;
}

void presence_destroy(struct presence **pp)
{
    struct presence *p = *pp;
    if (!p)
        return;
    free(p->devs);
    free(p->dev_heads);
    free(p->ws);
    free(p->w_heads);
    free(p);
    *pp = NULL;
}

int presence_cmp(uint64_t ea, struct sl_slice edge_a, uint64_t eb, const char *edge_b)
{
    if (ea != eb)
        return ea < eb ? -1 : 1;
    size_t nb = strlen(edge_b);
    size_t n = edge_a.n < nb ? edge_a.n : nb;
    int c = n ? memcmp(edge_a.p, edge_b, n) : 0;
    if (c != 0)
        return c < 0 ? -1 : 1;
    if (edge_a.n == nb)
        return 0;
    return edge_a.n < nb ? -1 : 1;
}

static uint32_t hash(const uint8_t *s, size_t n)
{
    return topics_hash(s, n);
}

/* ---- workers ---- */

static uint32_t w_hash(struct sl_slice reply, uint64_t inc)
{
    return hash(reply.p, reply.n) ^ (uint32_t)(inc ^ (inc >> 32));
}

static bool w_match(const struct presence_worker *w, struct sl_slice edge, uint64_t inc,
                    struct sl_slice reply)
{
    return w->used && w->inc == inc && sl_slice_eqs(reply, w->reply) && sl_slice_eqs(edge, w->edge);
}

/* "<edge-id>/<worker>/<secret>" -> "<edge-id>/<worker>": ids hold no '/'
 * (the id alphabet), so the secret is whatever follows the second one. An
 * identity without a secret (edges before it) is its own public part. */
static struct sl_slice public_part(struct sl_slice reply)
{
    const uint8_t *a = memchr(reply.p, '/', reply.n);
    const uint8_t *b = a ? memchr(a + 1, '/', reply.n - (size_t)(a + 1 - reply.p)) : NULL;
    if (b)
        reply.n = (uint32_t)(b - reply.p);
    return reply;
}

/* heard: reply is the identity a batch of the worker carried, the one its
 * DEALER has now (ROUTER handover: the latest connection holds it). Not
 * heard (a status or marker read back): a public part, kept as the best
 * guess only while nothing better is known (it is the identity itself for
 * edges without a secret). */
static void heard_at(struct presence_worker *w, struct sl_slice reply, uint64_t now_ms, bool heard)
{
    if (heard) {
        w->last_ms = now_ms;
        w->lost = false;
    }
    if ((heard && !sl_slice_eqs(reply, w->ident)) || !w->ident[0]) {
        memcpy(w->ident, reply.p, reply.n);
        w->ident[reply.n] = '\0';
    }
}

uint32_t presence_worker(struct presence *p, struct sl_slice edge, uint64_t inc, struct sl_slice reply,
                         uint64_t now_ms, bool heard)
{
    if (edge.n == 0 || edge.n > TOPICS_EDGE_MAX || reply.n == 0 || reply.n > TOPICS_REPLY_MAX)
        return PRESENCE_NONE;
    /* Both are kept as C strings (and w_free hashes strlen(reply)): a NUL
     * inside would make the stored name differ from the one looked up. */
    if (memchr(edge.p, 0, edge.n) || memchr(reply.p, 0, reply.n))
        return PRESENCE_NONE;
    struct sl_slice key = public_part(reply);
    if (p->w_last != PRESENCE_NONE && w_match(&p->ws[p->w_last], edge, inc, key)) {
        heard_at(&p->ws[p->w_last], reply, now_ms, heard);
        return p->w_last;
    }
    uint32_t b = w_hash(key, inc) & p->w_mask;
    for (uint32_t i = p->w_heads[b]; i != PRESENCE_NONE; i = p->ws[i].hnext) {
        if (w_match(&p->ws[i], edge, inc, key)) {
            heard_at(&p->ws[i], reply, now_ms, heard);
            p->w_last = i;
            return i;
        }
    }
    uint32_t i;
    for (i = 0; i < p->nw && p->ws[i].used; i++)
        ;
    if (i == p->nw)
        return PRESENCE_NONE;
    struct presence_worker *w = &p->ws[i];
    memset(w, 0, sizeof *w);
    memcpy(w->edge, edge.p, edge.n);
    memcpy(w->reply, key.p, key.n);
    memcpy(w->ident, reply.p, reply.n);
    w->inc = inc;
    w->last_ms = now_ms;
    w->used = true;
    w->hnext = p->w_heads[b];
    p->w_heads[b] = i;
    p->w_last = i;
    return i;
}

const struct presence_worker *presence_worker_get(const struct presence *p, uint32_t w)
{
    return w < p->nw && p->ws[w].used ? &p->ws[w] : NULL;
}

struct presence_worker *presence_worker_mut(struct presence *p, uint32_t w)
{
    return w < p->nw && p->ws[w].used ? &p->ws[w] : NULL;
}

uint32_t presence_worker_find(const struct presence *p, struct sl_slice edge, uint64_t inc,
                              struct sl_slice reply)
{
    if (reply.n == 0 || reply.n > TOPICS_REPLY_MAX)
        return PRESENCE_NONE;
    struct sl_slice key = public_part(reply);
    uint32_t b = w_hash(key, inc) & p->w_mask;
    for (uint32_t i = p->w_heads[b]; i != PRESENCE_NONE; i = p->ws[i].hnext)
        if (w_match(&p->ws[i], edge, inc, key))
            return i;
    return PRESENCE_NONE;
}

uint32_t presence_each(const struct presence *p, uint32_t *cursor, uint32_t max, presence_each_cb *cb,
                       void *ud)
{
    uint32_t k = 0, i = *cursor;
    for (; i < p->used && k < max; i++)
        if (p->devs[i].used) {
            cb(ud, &p->devs[i]);
            k++;
        }
    *cursor = i < p->used ? i : 0;
    return k;
}

static void w_free(struct presence *p, uint32_t i)
{
    struct presence_worker *w = &p->ws[i];
    struct sl_slice r = {(const uint8_t *)w->reply, (uint32_t)strlen(w->reply)};
    uint32_t *link = &p->w_heads[w_hash(r, w->inc) & p->w_mask];
    while (*link != i)
        link = &p->ws[*link].hnext;
    *link = w->hnext;
    w->used = false;
    if (p->w_last == i)
        p->w_last = PRESENCE_NONE;
}

/* ---- devices ---- */

static void off_unlink(struct presence *p, uint32_t i)
{
    struct presence_dev *d = &p->devs[i];
    if (d->lprev != PRESENCE_NONE)
        p->devs[d->lprev].lnext = d->lnext;
    else
        p->off_head = d->lnext;
    if (d->lnext != PRESENCE_NONE)
        p->devs[d->lnext].lprev = d->lprev;
    else
        p->off_tail = d->lprev;
    d->lprev = d->lnext = PRESENCE_NONE;
}

static void off_append(struct presence *p, uint32_t i)
{
    struct presence_dev *d = &p->devs[i];
    d->lnext = PRESENCE_NONE;
    d->lprev = p->off_tail;
    if (p->off_tail != PRESENCE_NONE)
        p->devs[p->off_tail].lnext = i;
    else
        p->off_head = i;
    p->off_tail = i;
}

static uint32_t dev_bucket(const struct presence *p, struct sl_slice dev)
{
    return hash(dev.p, dev.n) & p->dev_mask;
}

static uint32_t dev_find(const struct presence *p, struct sl_slice dev)
{
    for (uint32_t i = p->dev_heads[dev_bucket(p, dev)]; i != PRESENCE_NONE; i = p->devs[i].hnext)
        if (sl_slice_eqs(dev, p->devs[i].dev))
            return i;
    return PRESENCE_NONE;
}

static void dev_unhash(struct presence *p, uint32_t i)
{
    struct presence_dev *d = &p->devs[i];
    struct sl_slice s = {(const uint8_t *)d->dev, (uint32_t)strlen(d->dev)};
    uint32_t *link = &p->dev_heads[dev_bucket(p, s)];
    while (*link != i)
        link = &p->devs[*link].hnext;
    *link = d->hnext;
}

/* A new entry (offline, epoch 0), recycling the oldest offline one if needed
 * and allowed (never one the caller still holds commands for). */
static uint32_t dev_add(struct presence *p, struct sl_slice dev)
{
    if (dev.n == 0 || dev.n > SL_DEV_MAX)
        return PRESENCE_NONE;
    uint32_t i;
    if (p->used < p->ndev) {
        i = p->used++;
    } else {
        for (i = p->off_head; i != PRESENCE_NONE && p->devs[i].pending; i = p->devs[i].lnext)
            ;
        if (i == PRESENCE_NONE)
            return PRESENCE_NONE;
        off_unlink(p, i);
        dev_unhash(p, i);
    }
    struct presence_dev *d = &p->devs[i];
    memset(d, 0, sizeof *d);
    memcpy(d->dev, dev.p, dev.n);
    d->used = true;
    d->worker = PRESENCE_NONE;
    d->lprev = d->lnext = PRESENCE_NONE;
    uint32_t b = dev_bucket(p, dev);
    d->hnext = p->dev_heads[b];
    p->dev_heads[b] = i;
    off_append(p, i); /* offline until a connect says otherwise */
    return i;
}

struct presence_dev *presence_get(struct presence *p, struct sl_slice dev)
{
    uint32_t i = dev_find(p, dev);
    return i == PRESENCE_NONE ? NULL : &p->devs[i];
}

static void set_session(struct presence_dev *d, const struct presence_session *s)
{
    d->epoch = s->epoch;
    size_t n = s->edge.n > TOPICS_EDGE_MAX ? TOPICS_EDGE_MAX : s->edge.n;
    if (n > 0) /* a batch header's edge may be nil: p is NULL then */
        memcpy(d->edge, s->edge.p, n);
    d->edge[n] = '\0';
}

static void go_offline(struct presence *p, uint32_t i)
{
    struct presence_dev *d = &p->devs[i];
    if (!d->online)
        return;
    if (d->worker != PRESENCE_NONE && p->ws[d->worker].online > 0)
        p->ws[d->worker].online--;
    d->online = false;
    d->worker = PRESENCE_NONE;
    p->online--;
    off_append(p, i);
}

static void go_online(struct presence *p, uint32_t i, const struct presence_session *s)
{
    struct presence_dev *d = &p->devs[i];
    if (!d->online) {
        off_unlink(p, i);
        p->online++;
    } else if (d->worker != PRESENCE_NONE && p->ws[d->worker].online > 0) {
        p->ws[d->worker].online--;
    }
    d->online = true;
    d->worker = s->worker;
    d->slot = s->slot;
    d->gen = s->gen;
    if (s->worker != PRESENCE_NONE)
        p->ws[s->worker].online++;
}

static void remember_old(struct presence_change *c, const struct presence_dev *d)
{
    c->was_online = d->online;
    c->old_worker = d->worker;
    c->old_slot = d->slot;
    c->old_gen = d->gen;
    c->old_epoch = d->epoch;
}

/* Find or create; leaves out->verdict FULL when neither works. */
static uint32_t lookup(struct presence *p, struct sl_slice dev, struct presence_change *out, bool *fresh)
{
    memset(out, 0, sizeof *out);
    out->old_worker = PRESENCE_NONE;
    *fresh = false;
    uint32_t i = dev_find(p, dev);
    if (i == PRESENCE_NONE) {
        i = dev_add(p, dev);
        if (i == PRESENCE_NONE) {
            out->verdict = PRESENCE_FULL;
            return i;
        }
        *fresh = true;
    }
    out->d = &p->devs[i];
    return i;
}

/* Find (or add) dev and order s against its stored session: *cmp > 0 newer
 * (a device seen for the first time counts as newer), 0 the same session,
 * < 0 older (verdict STALE). Returns the index, or PRESENCE_NONE when the
 * table is full (verdict FULL). */
static uint32_t fence(struct presence *p, struct sl_slice dev, const struct presence_session *s,
                      struct presence_change *out, int *cmp)
{
    bool fresh;
    uint32_t i = lookup(p, dev, out, &fresh);
    if (i == PRESENCE_NONE)
        return i;
    const struct presence_dev *d = &p->devs[i];
    *cmp = fresh ? 1 : presence_cmp(s->epoch, s->edge, d->epoch, d->edge);
    if (*cmp < 0)
        out->verdict = PRESENCE_STALE;
    return i;
}

void presence_connect(struct presence *p, struct sl_slice dev, const struct presence_session *s,
                      struct presence_change *out)
{
    int c;
    uint32_t i = fence(p, dev, s, out, &c);
    if (i == PRESENCE_NONE || c < 0)
        return;
    struct presence_dev *d = &p->devs[i];
    if (c == 0) {
        /* The stored session itself: a duplicate connect, or the connect of
         * a session whose disconnect came first. Either way nothing moves. */
        out->verdict = PRESENCE_DUP;
        return;
    }
    remember_old(out, d);
    out->kick = d->online && (d->worker != s->worker || d->slot != s->slot || d->gen != s->gen);
    set_session(d, s);
    go_online(p, i, s);
    out->verdict = PRESENCE_APPLIED;
}

void presence_disconnect(struct presence *p, struct sl_slice dev, const struct presence_session *s,
                         struct presence_change *out)
{
    int c;
    uint32_t i = fence(p, dev, s, out, &c);
    if (i == PRESENCE_NONE || c < 0)
        return;
    struct presence_dev *d = &p->devs[i];
    if (c == 0 && !d->online) {
        out->verdict = PRESENCE_DUP;
        return;
    }
    remember_old(out, d);
    /* A newer session ended whose connect we never saw: whatever older
     * connection we still route to is stale, so close it too. */
    out->kick = c > 0 && d->online;
    set_session(d, s);
    go_offline(p, i);
    out->verdict = PRESENCE_APPLIED;
}

uint32_t presence_sweep(struct presence *p, uint64_t now_ms, uint64_t timeout_ms, presence_lost_cb *cb,
                        void *ud)
{
    uint32_t n = 0;
    for (uint32_t w = 0; w < p->nw; w++) {
        struct presence_worker *wk = &p->ws[w];
        if (!wk->used || now_ms < wk->last_ms + timeout_ms)
            continue;
        if (!wk->lost && wk->online > 0) {
            /* Rare (an edge died): a full scan is simpler than per-worker lists. */
            for (uint32_t i = 0; i < p->used && wk->online > 0; i++) {
                struct presence_dev *d = &p->devs[i];
                if (d->used && d->online && d->worker == w) {
                    go_offline(p, i);
                    n++;
                    if (cb)
                        cb(ud, d, wk);
                }
            }
        }
        wk->lost = true;
        if (wk->online == 0)
            w_free(p, w);
    }
    return n;
}

uint32_t presence_size(const struct presence *p)
{
    return p->used;
}
uint32_t presence_online(const struct presence *p)
{
    return p->online;
}
