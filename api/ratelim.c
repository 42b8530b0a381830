/* SPDX-License-Identifier: Apache-2.0 */
/* ratelim.c - token buckets per client in a set-associative table
 * (ratelim.h). Sets of RATELIM_WAYS: a key hashes to one set and takes the
 * way holding it, or else the one seen least recently. */
#define _GNU_SOURCE
#include "ratelim.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define RATELIM_WAYS 8u

struct bucket {
    char key[RATELIM_KEY_MAX + 1];
    double tokens;
    uint64_t seen_us; /* 0 = free */
};

struct ratelim {
    pthread_mutex_t mu;
    double rate, burst;
    uint32_t sets;
    struct bucket *b;
};

struct ratelim *ratelim_new(double rate, double burst, uint32_t slots)
{
    struct ratelim *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->rate = rate > 0 ? rate : 1;
    r->burst = burst >= 1 ? burst : 1;
    r->sets = slots / RATELIM_WAYS + 1u;
    r->b = calloc((size_t)r->sets * RATELIM_WAYS, sizeof *r->b);
    if (!r->b) {
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

void ratelim_destroy(struct ratelim **rp)
{
    struct ratelim *r = *rp;
    if (!r)
        return;
    pthread_mutex_destroy(&r->mu);
    free(r->b);
    free(r);
    *rp = NULL;
}

static uint32_t hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t k = 0; k < n; k++)
        h = (h ^ (unsigned char)s[k]) * 16777619u;
    return h;
}

bool ratelim_take(struct ratelim *r, const char *key, uint64_t now_us, uint64_t *retry_ms)
{
    size_t n = strnlen(key, RATELIM_KEY_MAX);
    if (now_us == 0)
        now_us = 1; /* 0 marks a free way */
    pthread_mutex_lock(&r->mu);
    struct bucket *set = &r->b[(size_t)(hash(key, n) % r->sets) * RATELIM_WAYS];
    struct bucket *b = NULL, *oldest = &set[0];
    for (unsigned w = 0; w < RATELIM_WAYS; w++) {
        struct bucket *x = &set[w];
        if (x->seen_us && strncmp(x->key, key, n) == 0 && x->key[n] == '\0') {
            b = x;
            break;
        }
        if (x->seen_us < oldest->seen_us)
            oldest = x;
    }
    if (!b) {
        b = oldest;
        memcpy(b->key, key, n);
        b->key[n] = '\0';
        b->tokens = r->burst;
    } else if (now_us > b->seen_us) {
        b->tokens += (double)(now_us - b->seen_us) * r->rate / 1e6;
        if (b->tokens > r->burst)
            b->tokens = r->burst;
    }
    b->seen_us = now_us;
    bool ok = b->tokens >= 1.0;
    if (ok)
        b->tokens -= 1.0;
    else
        *retry_ms = (uint64_t)ceil((1.0 - b->tokens) * 1000.0 / r->rate) + 0u;
    pthread_mutex_unlock(&r->mu);
    if (!ok && *retry_ms == 0)
        *retry_ms = 1;
    return ok;
}
