/* SPDX-License-Identifier: Apache-2.0 */
/* ntfring.c - one worker's view of the notifiers: peers by endpoint, named
 * by their heartbeat answers, and the ring of those alive (ntfring.h).
 *
 * The ring is recomputed only in ntfring_update (the bus calls it a few
 * times a second and after every answer), so ntfring_owner, called for
 * every entry, is one hash pick over an array.
 *
 * Deliberately not here: sockets, heartbeats on the wire, batches (bus.c). */
#define _GNU_SOURCE /* qsort_r */
#include "ntfring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl/msg.h"

void ntfring_init(struct ntfring *r)
{
    memset(r, 0, sizeof *r);
    r->legacy = -1;
}

int ntfring_add(struct ntfring *r, const char *ep)
{
    size_t n = strlen(ep);
    if (n == 0 || n >= NTFRING_EP_MAX)
        return -1;
    for (int s = 0; s < (int)NTFRING_PEERS; s++) {
        struct ntfring_peer *p = &r->p[s];
        if (p->used)
            continue;
        memset(p, 0, sizeof *p);
        p->used = true;
        memcpy(p->ep, ep, n + 1);
        return s;
    }
    return -1;
}

void ntfring_remove(struct ntfring *r, int s)
{
    memset(&r->p[s], 0, sizeof r->p[s]);
    /* Entries routed to this slot are routed again (the slot may be reused
     * for another endpoint): a new version makes them stale. */
    r->version++;
}

int ntfring_find(const struct ntfring *r, const char *ep, size_t n)
{
    for (int s = 0; s < (int)NTFRING_PEERS; s++) {
        const struct ntfring_peer *p = &r->p[s];
        if (p->used && strlen(p->ep) == n && memcmp(p->ep, ep, n) == 0)
            return s;
    }
    return -1;
}

void ntfring_conn(struct ntfring *r, int s, bool up, uint64_t now_ms)
{
    struct ntfring_peer *p = &r->p[s];
    if (up && !p->up_since_ms)
        p->up_since_ms = now_ms ? now_ms : 1;
    else if (!up)
        p->up_since_ms = 0;
}

int ntfring_heard(struct ntfring *r, struct sl_slice to, struct sl_slice id, uint64_t now_ms)
{
    if (!msg_valid_id(id.p, id.n))
        return -1;
    int s = ntfring_find(r, (const char *)to.p, to.n);
    if (s < 0)
        return -1;
    struct ntfring_peer *p = &r->p[s];
    if (!sl_slice_eqs(id, p->id)) {
        memcpy(p->id, id.p, id.n);
        p->id[id.n] = '\0';
        p->key = ring_key(id.p, id.n);
    }
    p->heard_ms = now_ms;
    /* One notifier, one slot: a restarted notifier answers from its new
     * address while the old one may still be listed. */
    for (int o = 0; o < (int)NTFRING_PEERS; o++)
        if (o != s && r->p[o].used && strcmp(r->p[o].id, p->id) == 0) {
            r->p[o].id[0] = '\0';
            r->p[o].key = 0;
            r->p[o].heard_ms = 0;
        }
    return s;
}

static int by_id(const void *a, const void *b, void *ud)
{
    const struct ntfring *r = ud;
    return strcmp(r->p[*(const uint32_t *)a].id, r->p[*(const uint32_t *)b].id);
}

bool ntfring_update(struct ntfring *r, uint64_t now_ms)
{
    uint32_t slots[NTFRING_PEERS], nm = 0;
    int legacy = -1;
    for (uint32_t s = 0; s < NTFRING_PEERS; s++) {
        struct ntfring_peer *p = &r->p[s];
        p->member = p->used && p->id[0] && p->up_since_ms && now_ms - p->heard_ms < NTFRING_TIMEOUT_MS;
        if (p->member)
            slots[nm++] = s;
        else if (legacy < 0 && p->used && p->up_since_ms)
            legacy = (int)s;
    }
    qsort_r(slots, nm, sizeof slots[0], by_id, r);
    if (nm > 0)
        legacy = -1;
    else if (r->legacy >= 0 && r->p[r->legacy].used && r->p[r->legacy].up_since_ms)
        legacy = r->legacy; /* the fallback stays while it is connected: no churn when another connects */
    bool same = nm == r->nm && legacy == r->legacy;
    for (uint32_t i = 0; same && i < nm; i++)
        same = slots[i] == r->slots[i] && r->p[slots[i]].key == r->keys[i];
    if (same)
        return false;
    r->nm = nm;
    r->legacy = legacy;
    size_t off = 0;
    r->list[0] = '\0';
    for (uint32_t i = 0; i < nm; i++) {
        r->slots[i] = slots[i];
        r->keys[i] = r->p[slots[i]].key;
        off += (size_t)snprintf(r->list + off, sizeof r->list - off, "%s%s", i ? "," : "", r->p[slots[i]].id);
    }
    r->version++;
    return true;
}

int ntfring_owner(const struct ntfring *r, uint64_t dev_key)
{
    if (r->nm == 0)
        return r->legacy;
    return (int)r->slots[ring_pick(dev_key, r->keys, r->nm)];
}
