/* guard.c - per-source, per-device and edge-wide admission (see guard.h).
 *
 * Two chained hash tables over fixed entry pools, one lock:
 * - sources: key = the address (IPv4 as ::ffff:a.b.c.d, IPv6 cut to its
 *   /64: one subscriber's block), value = connections open and early, a
 *   token bucket of connects, failed hellos in the current minute and a
 *   ban. 44 bytes an entry; an entry exists while the address has an open
 *   connection, a bucket not yet refilled, failures in the window or a ban.
 * - devices: key = the device id, value = ended sessions in the current
 *   minute and a ban. Entries exist only for devices whose sessions ended
 *   within the last minute or that are banned.
 * Bucket heads are allocated once (calloc: backed as they are touched);
 * entries come from their pool in LIFO order, so memory follows what is in
 * use. A full pool means "not tracked" (guard.h), counted.
 *
 * Times: uint32 milliseconds since guard_new for token refills (a wrap
 * after 49 days only makes one refill look longer than it was, which fills
 * the bucket: harmless), uint32 seconds for windows and bans.
 *
 * The hash is seeded at random (getrandom), so an attacker cannot choose
 * addresses or device ids that fall into one chain. */
#define _GNU_SOURCE
#include "guard.h"
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "sl/limits.h"

#define NIL      UINT32_MAX
#define WINDOW_S 60u
#define DEV_POOL 16384u

struct src {
    uint8_t key[16];
    uint32_t next; /* chain, or free list */
    uint16_t conns, early, fails;
    uint8_t level; /* bans so far: the next one lasts ban_min << level */
    uint8_t used;
    float tokens;
    uint32_t refill_ms;   /* last refill, ms since start */
    uint32_t win_s;       /* start of the failure window, s since start */
    uint32_t ban_until_s; /* 0 = none */
};

struct dev {
    char key[SL_DEV_MAX];
    uint8_t len, used, level;
    uint32_t next;
    uint16_t ends;
    uint32_t win_s, ban_until_s;
};

struct table {
    uint32_t *heads, mask;
    uint32_t free_head, nused, cap;
};

struct guard {
    pthread_mutex_t mu;
    struct guard_cfg cfg;
    uint64_t seed;
    uint64_t start_ms; /* now_ms of the first call: times are kept relative to it */
    bool started;
    struct table st, dt;
    struct src *srcs;
    struct dev *devs;
    double acc_tokens;
    uint64_t acc_refill_ms;
    struct guard_counts cnt;
};

static const char *const verdict_names[GUARD_VERDICTS] = {
    "ok", "source_conns", "source_early", "source_rate", "source_banned", "device_banned",
};

const char *guard_verdict_str(enum guard_verdict v)
{
    return (unsigned)v < GUARD_VERDICTS ? verdict_names[v] : "unknown";
}

/* ---- addresses ------------------------------------------------------------ */

static void addr_key(const struct addr *a, uint8_t k[16])
{
    if (a->v6) {
        memcpy(k, a->ip, 8); /* the /64 */
        memset(k + 8, 0, 8);
    } else {
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        memcpy(k, v4mapped, 12);
        memcpy(k + 12, a->ip, 4);
    }
}

bool cidr_match(const struct cidr *c, const struct addr *a)
{
    if (c->v6 != a->v6)
        return false;
    uint8_t full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->ip, a->ip, full) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (c->ip[full] & mask) == (a->ip[full] & mask);
}

int cidr_parse_list(const char *spec, struct cidr *out, int cap, const char **bad)
{
    int n = 0;
    const char *p = spec;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[80];
        *bad = p;
        if (len == 0) {
            p = end ? end + 1 : NULL;
            continue;
        }
        if (len >= sizeof item || n == cap)
            return -1;
        memcpy(item, p, len);
        item[len] = 0;
        struct cidr c;
        memset(&c, 0, sizeof c);
        char *slash = strchr(item, '/');
        if (slash)
            *slash = 0;
        if (inet_pton(AF_INET, item, c.ip) == 1) {
            c.bits = 32;
        } else if (inet_pton(AF_INET6, item, c.ip) == 1) {
            c.v6 = true;
            c.bits = 128;
        } else {
            return -1;
        }
        if (slash) {
            char *e;
            long bits = strtol(slash + 1, &e, 10);
            if (*e || e == slash + 1 || bits < 0 || bits > c.bits)
                return -1;
            c.bits = (uint8_t)bits;
        }
        out[n++] = c;
        p = end ? end + 1 : NULL;
    }
    return n;
}

static bool allowed(const struct guard *g, const struct addr *a)
{
    for (int i = 0; i < g->cfg.nallow; i++)
        if (cidr_match(&g->cfg.allow[i], a))
            return true;
    return false;
}

/* ---- tables ----------------------------------------------------------------- */

static uint64_t hash(uint64_t seed, const void *p, size_t n)
{
    /* FNV-1a over the bytes from a secret offset, then a final mix. */
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static bool table_init(struct table *t, uint32_t cap)
{
    uint32_t nb = 16;
    while (nb < cap)
        nb <<= 1;
    t->heads = malloc(nb * sizeof *t->heads);
    if (!t->heads)
        return false;
    memset(t->heads, 0xff, nb * sizeof *t->heads); /* NIL */
    t->mask = nb - 1;
    t->cap = cap;
    t->free_head = NIL;
    t->nused = 0;
    return true;
}

static uint32_t now_s(const struct guard *g, uint64_t now_ms)
{
    return (uint32_t)((now_ms - g->start_ms) / 1000u) + 1; /* 0 means "none" */
}

static uint32_t rel_ms(const struct guard *g, uint64_t now_ms)
{
    return (uint32_t)(now_ms - g->start_ms);
}

/* The source entry of key, created if create (NULL: pool full, or absent). */
static struct src *src_get(struct guard *g, const uint8_t key[16], bool create, uint64_t now_ms)
{
    uint32_t *head = &g->st.heads[hash(g->seed, key, 16) & g->st.mask];
    for (uint32_t i = *head; i != NIL; i = g->srcs[i].next)
        if (memcmp(g->srcs[i].key, key, 16) == 0)
            return &g->srcs[i];
    if (!create)
        return NULL;
    uint32_t i;
    if (g->st.free_head != NIL) {
        i = g->st.free_head; /* LIFO: the touched part of the pool stays small */
        g->st.free_head = g->srcs[i].next;
    } else if (g->st.nused < g->st.cap) {
        i = g->st.nused++; /* never used: the pool is touched in order */
    } else {
        return NULL;
    }
    struct src *s = &g->srcs[i];
    memset(s, 0, sizeof *s);
    memcpy(s->key, key, 16);
    s->used = 1;
    s->tokens = (float)g->cfg.source_burst;
    s->refill_ms = rel_ms(g, now_ms);
    s->next = *head;
    *head = i;
    return s;
}

static void src_free(struct guard *g, struct src *s)
{
    uint32_t idx = (uint32_t)(s - g->srcs);
    uint32_t *p = &g->st.heads[hash(g->seed, s->key, 16) & g->st.mask];
    while (*p != idx)
        p = &g->srcs[*p].next;
    *p = s->next;
    s->used = 0;
    s->next = g->st.free_head;
    g->st.free_head = idx;
}

static void refill(const struct guard *g, struct src *s, uint64_t now_ms)
{
    uint32_t now = rel_ms(g, now_ms);
    double add = (double)(uint32_t)(now - s->refill_ms) / 1000.0 * g->cfg.source_rate;
    double t = s->tokens + add;
    s->tokens = (float)(t > g->cfg.source_burst ? g->cfg.source_burst : t);
    s->refill_ms = now;
}

/* Nothing left to remember: no connection, a full bucket, no failure in
 * the window, no ban. */
static bool src_idle(const struct guard *g, const struct src *s, uint64_t now_ms)
{
    uint32_t t = now_s(g, now_ms);
    return s->conns == 0 && s->early == 0 && (g->cfg.source_rate <= 0 || s->tokens >= g->cfg.source_burst) &&
           (s->fails == 0 || t >= s->win_s + WINDOW_S) &&
           (s->ban_until_s == 0 || t >= s->ban_until_s + WINDOW_S);
}

static uint32_t ban_len(const struct guard *g, uint8_t level)
{
    uint64_t ms = (uint64_t)g->cfg.ban_min_ms << (level < 20 ? level : 20);
    return ms > g->cfg.ban_max_ms ? g->cfg.ban_max_ms : (uint32_t)ms;
}

/* ---- lifetime --------------------------------------------------------------- */

struct guard *guard_new(const struct guard_cfg *cfg)
{
    struct guard *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->cfg = *cfg;
    if (getrandom(&g->seed, sizeof g->seed, 0) != sizeof g->seed)
        g->seed = (uint64_t)(uintptr_t)g ^ 0x9e3779b97f4a7c15ull;
    uint32_t scap = cfg->slots + cfg->slots / 4 + 64;
    uint32_t dcap = cfg->slots < DEV_POOL ? cfg->slots + 64 : DEV_POOL;
    /* calloc: the pools are backed only as far as they are used. */
    g->srcs = calloc(scap, sizeof *g->srcs);
    g->devs = calloc(dcap, sizeof *g->devs);
    if (!g->srcs || !g->devs || !table_init(&g->st, scap) || !table_init(&g->dt, dcap)) {
        guard_destroy(&g);
        return NULL;
    }
    g->acc_tokens = cfg->accept_burst;
    pthread_mutex_init(&g->mu, NULL);
    return g;
}

void guard_destroy(struct guard **pg)
{
    struct guard *g = *pg;
    if (!g)
        return;
    if (g->st.heads && g->dt.heads)
        pthread_mutex_destroy(&g->mu);
    free(g->st.heads);
    free(g->dt.heads);
    free(g->srcs);
    free(g->devs);
    free(g);
    *pg = NULL;
}

static void start(struct guard *g, uint64_t now_ms)
{
    if (!g->started) {
        g->started = true;
        g->start_ms = now_ms;
        g->acc_refill_ms = now_ms;
    }
}

/* ---- sources ---------------------------------------------------------------- */

enum guard_verdict guard_connect(struct guard *g, const struct addr *a, uint64_t now_ms, uint32_t *retry_ms)
{
    *retry_ms = 0;
    if (allowed(g, a))
        return GUARD_OK;
    uint8_t key[16];
    addr_key(a, key);
    pthread_mutex_lock(&g->mu);
    start(g, now_ms);
    enum guard_verdict v = GUARD_OK;
    struct src *s = src_get(g, key, true, now_ms);
    if (!s) {
        stat_inc(&g->cnt.untracked);
        pthread_mutex_unlock(&g->mu);
        return GUARD_OK;
    }
    uint32_t t = now_s(g, now_ms);
    if (s->ban_until_s && t < s->ban_until_s) {
        v = GUARD_SOURCE_BANNED;
        *retry_ms = (s->ban_until_s - t) * 1000u;
    } else if (g->cfg.source_conns && s->conns >= g->cfg.source_conns) {
        v = GUARD_SOURCE_CONNS;
        *retry_ms = 1000;
    } else if (g->cfg.source_early && s->early >= g->cfg.source_early) {
        v = GUARD_SOURCE_EARLY;
        *retry_ms = 1000;
    } else if (g->cfg.source_rate > 0) {
        refill(g, s, now_ms);
        if (s->tokens < 1.0f) {
            v = GUARD_SOURCE_RATE;
            *retry_ms = (uint32_t)((1.0 - s->tokens) / g->cfg.source_rate * 1000.0) + 1;
        } else {
            s->tokens -= 1.0f;
        }
    }
    if (v == GUARD_OK) {
        if (s->conns < UINT16_MAX)
            s->conns++;
        if (s->early < UINT16_MAX)
            s->early++;
    } else {
        stat_inc(&g->cnt.refused[v]);
        if (src_idle(g, s, now_ms))
            src_free(g, s);
    }
    pthread_mutex_unlock(&g->mu);
    return v;
}

void guard_hello_ok(struct guard *g, const struct addr *a)
{
    if (allowed(g, a))
        return;
    uint8_t key[16];
    addr_key(a, key);
    pthread_mutex_lock(&g->mu);
    struct src *s = g->started ? src_get(g, key, false, 0) : NULL;
    if (s && s->early)
        s->early--;
    pthread_mutex_unlock(&g->mu);
}

uint32_t guard_hello_failed(struct guard *g, const struct addr *a, uint64_t now_ms)
{
    if (allowed(g, a))
        return 0;
    uint8_t key[16];
    addr_key(a, key);
    uint32_t ban = 0;
    pthread_mutex_lock(&g->mu);
    start(g, now_ms);
    struct src *s = src_get(g, key, false, now_ms);
    if (s) {
        if (s->early)
            s->early--;
        uint32_t t = now_s(g, now_ms);
        if (s->fails == 0 || t >= s->win_s + WINDOW_S) {
            s->fails = 0;
            s->win_s = t;
        }
        if (s->fails < UINT16_MAX)
            s->fails++;
        if (g->cfg.source_fails && s->fails > g->cfg.source_fails &&
            (s->ban_until_s == 0 || t >= s->ban_until_s)) {
            ban = ban_len(g, s->level);
            if (s->level < 30)
                s->level++;
            s->ban_until_s = t + (ban + 999u) / 1000u;
            s->fails = 0;
            s->win_s = t;
            stat_inc(&g->cnt.bans_source);
        }
    }
    pthread_mutex_unlock(&g->mu);
    return ban;
}

void guard_closed(struct guard *g, const struct addr *a, bool early)
{
    if (allowed(g, a))
        return;
    uint8_t key[16];
    addr_key(a, key);
    pthread_mutex_lock(&g->mu);
    struct src *s = g->started ? src_get(g, key, false, 0) : NULL;
    if (s) {
        if (s->conns)
            s->conns--;
        if (early && s->early)
            s->early--;
        /* An idle entry is freed by the sweep, not here: its bucket may
         * still be refilling, and a churning source must not get a fresh
         * bucket on every connect. */
    }
    pthread_mutex_unlock(&g->mu);
}

/* ---- devices ---------------------------------------------------------------- */

static struct dev *dev_get(struct guard *g, const char *id, size_t n, bool create)
{
    if (n == 0 || n > SL_DEV_MAX)
        return NULL;
    uint32_t *head = &g->dt.heads[hash(g->seed, id, n) & g->dt.mask];
    for (uint32_t i = *head; i != NIL; i = g->devs[i].next)
        if (g->devs[i].len == n && memcmp(g->devs[i].key, id, n) == 0)
            return &g->devs[i];
    if (!create)
        return NULL;
    uint32_t i;
    if (g->dt.free_head != NIL) {
        i = g->dt.free_head;
        g->dt.free_head = g->devs[i].next;
    } else if (g->dt.nused < g->dt.cap) {
        i = g->dt.nused++;
    } else {
        return NULL;
    }
    struct dev *d = &g->devs[i];
    memset(d, 0, sizeof *d);
    memcpy(d->key, id, n);
    d->len = (uint8_t)n;
    d->used = 1;
    d->next = *head;
    *head = i;
    return d;
}

static void dev_free(struct guard *g, struct dev *d)
{
    uint32_t idx = (uint32_t)(d - g->devs);
    uint32_t *p = &g->dt.heads[hash(g->seed, d->key, d->len) & g->dt.mask];
    while (*p != idx)
        p = &g->devs[*p].next;
    *p = d->next;
    d->used = 0;
    d->next = g->dt.free_head;
    g->dt.free_head = idx;
}

uint32_t guard_device_check(struct guard *g, const char *id, size_t n, uint64_t now_ms)
{
    if (!g->cfg.device_ends)
        return 0;
    uint32_t retry = 0;
    pthread_mutex_lock(&g->mu);
    start(g, now_ms);
    struct dev *d = dev_get(g, id, n, false);
    uint32_t t = now_s(g, now_ms);
    if (d && d->ban_until_s && t < d->ban_until_s) {
        retry = (d->ban_until_s - t) * 1000u;
        stat_inc(&g->cnt.refused[GUARD_DEVICE_BANNED]);
    }
    pthread_mutex_unlock(&g->mu);
    return retry;
}

uint32_t guard_device_ended(struct guard *g, const char *id, size_t n, uint64_t now_ms)
{
    if (!g->cfg.device_ends)
        return 0;
    uint32_t ban = 0;
    pthread_mutex_lock(&g->mu);
    start(g, now_ms);
    struct dev *d = dev_get(g, id, n, true);
    if (!d) {
        stat_inc(&g->cnt.untracked);
    } else {
        uint32_t t = now_s(g, now_ms);
        if (d->ends == 0 || t >= d->win_s + WINDOW_S) {
            d->ends = 0;
            d->win_s = t;
        }
        if (d->ends < UINT16_MAX)
            d->ends++;
        if (d->ends > g->cfg.device_ends && (d->ban_until_s == 0 || t >= d->ban_until_s)) {
            ban = ban_len(g, d->level);
            if (d->level < 30)
                d->level++;
            d->ban_until_s = t + (ban + 999u) / 1000u;
            d->ends = 0;
            d->win_s = t;
            stat_inc(&g->cnt.bans_device);
        }
    }
    pthread_mutex_unlock(&g->mu);
    return ban;
}

/* ---- the whole edge --------------------------------------------------------- */

uint32_t guard_accept(struct guard *g, uint64_t now_ms)
{
    if (g->cfg.accept_rate <= 0)
        return 0;
    uint32_t wait = 0;
    pthread_mutex_lock(&g->mu);
    start(g, now_ms);
    double t = g->acc_tokens + (double)(now_ms - g->acc_refill_ms) / 1000.0 * g->cfg.accept_rate;
    g->acc_tokens = t > g->cfg.accept_burst ? g->cfg.accept_burst : t;
    g->acc_refill_ms = now_ms;
    if (g->acc_tokens >= 1.0)
        g->acc_tokens -= 1.0;
    else
        wait = (uint32_t)((1.0 - g->acc_tokens) / g->cfg.accept_rate * 1000.0) + 1;
    pthread_mutex_unlock(&g->mu);
    return wait;
}

void guard_sweep(struct guard *g, uint64_t now_ms)
{
    pthread_mutex_lock(&g->mu);
    start(g, now_ms);
    uint32_t t = now_s(g, now_ms);
    for (uint32_t i = 0; i < g->st.nused; i++) {
        struct src *s = &g->srcs[i];
        if (!s->used)
            continue;
        if (g->cfg.source_rate > 0)
            refill(g, s, now_ms);
        if (src_idle(g, s, now_ms))
            src_free(g, s);
    }
    for (uint32_t i = 0; i < g->dt.nused; i++) {
        struct dev *d = &g->devs[i];
        if (d->used && t >= d->win_s + WINDOW_S && (d->ban_until_s == 0 || t >= d->ban_until_s + WINDOW_S))
            dev_free(g, d);
    }
    pthread_mutex_unlock(&g->mu);
}

const struct guard_counts *guard_counts(const struct guard *g)
{
    return &g->cnt;
}

static uint32_t in_use(const struct table *t, const void *pool, size_t esize, size_t used_off)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->nused; i++)
        n += ((const uint8_t *)pool)[(size_t)i * esize + used_off] != 0;
    return n;
}

uint32_t guard_sources(struct guard *g)
{
    pthread_mutex_lock(&g->mu);
    uint32_t n = in_use(&g->st, g->srcs, sizeof *g->srcs, offsetof(struct src, used));
    pthread_mutex_unlock(&g->mu);
    return n;
}

uint32_t guard_devices(struct guard *g)
{
    pthread_mutex_lock(&g->mu);
    uint32_t n = in_use(&g->dt, g->devs, sizeof *g->devs, offsetof(struct dev, used));
    pthread_mutex_unlock(&g->mu);
    return n;
}
