/* SPDX-License-Identifier: Apache-2.0 */
/* devmap.c - the device -> connection map for takeover inside one edge.
 *
 * Chained hash table over preallocated nodes: node i belongs to global slot
 * i, so a connection never needs a node allocated or freed, only linked.
 * One mutex: claims happen once per hello and releases once per close,
 * far too rarely to contend. It deliberately does not know about conns or
 * workers beyond their numbers; closing the replaced one is the caller's. */
#define _GNU_SOURCE
#include "devmap.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "sl/limits.h"

#define NIL UINT32_MAX

struct node {
    uint32_t next;
    uint32_t gen;
    uint32_t hash;
    uint8_t linked;
    uint8_t n;
    char dev[SL_DEV_MAX + 1];
};

struct devmap {
    pthread_mutex_t mu;
    uint32_t per_worker;
    uint32_t nnodes;
    uint32_t mask;
    uint32_t count;
    uint32_t *buckets;
    struct node *nodes;
};

static uint32_t hash_dev(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a: short keys, no adversarial concern past a chain walk */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

struct devmap *devmap_new(uint32_t workers, uint32_t slots_per_worker)
{
    struct devmap *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->per_worker = slots_per_worker;
    m->nnodes = workers * slots_per_worker;
    uint32_t nb = 16;
    while (nb < slots_per_worker && nb < (1u << 30))
        nb <<= 1;
    m->mask = nb - 1;
    m->buckets = malloc(nb * sizeof *m->buckets);
    /* calloc: untouched nodes stay unbacked pages until a slot is used. */
    m->nodes = calloc(m->nnodes, sizeof *m->nodes);
    if (!m->buckets || !m->nodes) {
        devmap_destroy(&m);
        return NULL;
    }
    memset(m->buckets, 0xff, nb * sizeof *m->buckets);
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

void devmap_destroy(struct devmap **pm)
{
    struct devmap *m = *pm;
    if (!m)
        return;
    if (m->nodes)
        pthread_mutex_destroy(&m->mu);
    free(m->buckets);
    free(m->nodes);
    free(m);
    *pm = NULL;
}

static uint32_t node_id(const struct devmap *m, struct devmap_ref r)
{
    return r.worker * m->per_worker + r.slot;
}

static struct devmap_ref node_ref(const struct devmap *m, uint32_t id, uint32_t gen)
{
    struct devmap_ref r = {id / m->per_worker, id % m->per_worker, gen};
    return r;
}

/* Find dev's node; *prevp gets the link that points at it. Lock held. */
static uint32_t lookup(struct devmap *m, const char *dev, size_t n, uint32_t h, uint32_t **prevp)
{
    uint32_t *link = &m->buckets[h & m->mask];
    while (*link != NIL) {
        struct node *x = &m->nodes[*link];
        if (x->hash == h && x->n == n && memcmp(x->dev, dev, n) == 0) {
            if (prevp)
                *prevp = link;
            return *link;
        }
        link = &x->next;
    }
    return NIL;
}

bool devmap_claim(struct devmap *m, const char *dev, size_t n, struct devmap_ref ref, struct devmap_ref *old)
{
    if (n > SL_DEV_MAX)
        return false;
    uint32_t h = hash_dev(dev, n);
    uint32_t id = node_id(m, ref);
    bool had = false;
    pthread_mutex_lock(&m->mu);
    uint32_t *link = NULL;
    uint32_t cur = lookup(m, dev, n, h, &link);
    if (cur != NIL) {
        struct node *x = &m->nodes[cur];
        *link = x->next;
        x->linked = 0;
        m->count--;
        if (cur != id || x->gen != ref.gen) {
            *old = node_ref(m, cur, x->gen);
            had = true;
        }
    }
    struct node *x = &m->nodes[id];
    if (x->linked) {
        /* The slot still maps another device (cannot happen if callers
         * release on close); unlink it so chains stay consistent. */
        uint32_t *l2 = NULL;
        if (lookup(m, x->dev, x->n, x->hash, &l2) == id) {
            *l2 = x->next;
            m->count--;
        }
    }
    memcpy(x->dev, dev, n);
    x->dev[n] = 0;
    x->n = (uint8_t)n;
    x->hash = h;
    x->gen = ref.gen;
    x->linked = 1;
    x->next = m->buckets[h & m->mask];
    m->buckets[h & m->mask] = id;
    m->count++;
    pthread_mutex_unlock(&m->mu);
    return had;
}

const char *devmap_dev(struct devmap *m, struct devmap_ref ref)
{
    return m->nodes[node_id(m, ref)].dev;
}

void devmap_release(struct devmap *m, struct devmap_ref ref)
{
    uint32_t id = node_id(m, ref);
    pthread_mutex_lock(&m->mu);
    struct node *x = &m->nodes[id];
    if (x->linked && x->gen == ref.gen) {
        uint32_t *link = NULL;
        if (lookup(m, x->dev, x->n, x->hash, &link) == id) {
            *link = x->next;
            m->count--;
        }
        x->linked = 0;
    }
    pthread_mutex_unlock(&m->mu);
}

bool devmap_find(struct devmap *m, const char *dev, size_t n, struct devmap_ref *out)
{
    if (n > SL_DEV_MAX)
        return false;
    uint32_t h = hash_dev(dev, n);
    pthread_mutex_lock(&m->mu);
    uint32_t id = lookup(m, dev, n, h, NULL);
    if (id != NIL)
        *out = node_ref(m, id, m->nodes[id].gen);
    pthread_mutex_unlock(&m->mu);
    return id != NIL;
}

uint32_t devmap_count(struct devmap *m)
{
    pthread_mutex_lock(&m->mu);
    uint32_t n = m->count;
    pthread_mutex_unlock(&m->mu);
    return n;
}
