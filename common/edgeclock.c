/* SPDX-License-Identifier: Apache-2.0 */
/* edgeclock.c - per edge incarnation, the largest (edge - local) wall-clock
 * difference of 10 s windows of heartbeats, published per edge id for the
 * metrics thread (sl/edgeclock.h).
 *
 * A linear scan of a fixed table: a service hears a few dozen edges, one
 * heartbeat each every 2 s. Deliberately not here: reading clocks (callers
 * pass the times, so tests drive it) and deciding when an edge is gone (the
 * caller forgets it, or silent_ms does). */
#include "sl/edgeclock.h"

#include <stdio.h>
#include <string.h>

#include "sl/metrics.h"

void edgeclock_init(struct edgeclock *c, uint64_t silent_ms)
{
    memset(c, 0, sizeof *c);
    c->silent_ms = silent_ms;
    pthread_mutex_init(&c->mu, NULL);
}

void edgeclock_fini(struct edgeclock *c)
{
    pthread_mutex_destroy(&c->mu);
}

static bool same(const struct edgeclock_slot *s, const uint8_t *id, size_t n)
{
    return s->n == n && memcmp(s->id, id, n) == 0;
}

bool edgeclock_sample(struct edgeclock *c, const uint8_t *id, size_t n, uint64_t inc, uint64_t at_ns,
                      uint64_t wall_ns, uint64_t now_ms)
{
    if (n == 0 || n > EDGECLOCK_ID_MAX || at_ns == 0 || at_ns > (uint64_t)INT64_MAX ||
        wall_ns > (uint64_t)INT64_MAX)
        return true;
    /* microseconds: the difference of two int64 ns values could overflow */
    int64_t d = (int64_t)(at_ns / 1000u) - (int64_t)(wall_ns / 1000u);
    struct edgeclock_slot *e = NULL, *free_slot = NULL;
    for (uint32_t i = 0; i < EDGECLOCK_SLOTS; i++) {
        struct edgeclock_slot *s = &c->s[i];
        if (!s->used) {
            if (!free_slot)
                free_slot = s;
        } else if (s->inc == inc && same(s, id, n)) {
            e = s;
            break;
        }
    }
    if (!e) {
        if (!free_slot)
            return false;
        e = free_slot;
        memset(e, 0, sizeof *e);
        memcpy(e->id, id, n);
        e->n = (uint16_t)n;
        e->inc = inc;
        e->used = true;
        e->win_ms = now_ms;
    }
    e->last_ms = now_ms;
    if (!e->win_any || d > e->win_max_us)
        e->win_max_us = d;
    e->win_any = true;
    if (!e->skew_known) { /* the first heartbeat shows at once, not after a window */
        e->skew_us = d;
        e->skew_known = true;
    }
    return true;
}

void edgeclock_forget(struct edgeclock *c, const uint8_t *id, size_t n, uint64_t inc)
{
    for (uint32_t i = 0; i < EDGECLOCK_SLOTS; i++) {
        struct edgeclock_slot *s = &c->s[i];
        if (s->used && s->inc == inc && same(s, id, n))
            s->used = false;
    }
}

void edgeclock_publish(struct edgeclock *c, uint64_t now_ms)
{
    const struct edgeclock_slot *pick[EDGECLOCK_EDGES];
    uint32_t n = 0;
    for (uint32_t i = 0; i < EDGECLOCK_SLOTS; i++) {
        struct edgeclock_slot *e = &c->s[i];
        if (!e->used)
            continue;
        if (c->silent_ms && now_ms - e->last_ms >= c->silent_ms) {
            e->used = false;
            continue;
        }
        if (now_ms - e->win_ms >= EDGECLOCK_WINDOW_MS) {
            if (e->win_any) {
                e->skew_us = e->win_max_us;
                e->skew_known = true;
            }
            e->win_any = false;
            e->win_ms = now_ms;
        }
        if (!e->skew_known)
            continue;
        uint32_t j = 0;
        while (j < n && !same(pick[j], e->id, e->n))
            j++;
        if (j < n) {
            if (e->last_ms > pick[j]->last_ms)
                pick[j] = e; /* a restarted edge: its newest incarnation */
        } else if (n < EDGECLOCK_EDGES) {
            pick[n++] = e;
        }
    }
    pthread_mutex_lock(&c->mu);
    for (uint32_t j = 0; j < n; j++) {
        memcpy(c->pub[j].edge, pick[j]->id, pick[j]->n);
        c->pub[j].edge[pick[j]->n] = '\0';
        c->pub[j].skew_us = pick[j]->skew_us;
    }
    c->n = n;
    pthread_mutex_unlock(&c->mu);
}

size_t edgeclock_collect(void *ud, struct metrics_sample *out, size_t cap)
{
    struct edgeclock *c = ud;
    pthread_mutex_lock(&c->mu);
    size_t n = c->n < cap ? c->n : cap;
    for (size_t i = 0; i < n; i++) {
        snprintf(out[i].value, sizeof out[i].value, "%s", c->pub[i].edge);
        out[i].v = (double)c->pub[i].skew_us / 1e6;
    }
    pthread_mutex_unlock(&c->mu);
    return n;
}
