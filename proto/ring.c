/* SPDX-License-Identifier: Apache-2.0 */
/* ring.c - rendezvous hashing of device ids over notifier ids (sl/ring.h).
 *
 * Deliberately not here: who the members are and when they change (the
 * edge's ntfring.c, the notifier's presence table). */
#include "sl/ring.h"

/* splitmix64's finaliser: every input bit affects every output bit, so
 * keys that differ in one byte give unrelated scores. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t ring_key(const void *id, size_t n)
{
    const unsigned char *p = id;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return mix(h);
}

uint32_t ring_pick(uint64_t dev, const uint64_t *members, uint32_t n)
{
    uint32_t best = 0;
    uint64_t best_score = mix(dev ^ members[0]);
    for (uint32_t i = 1; i < n; i++) {
        uint64_t s = mix(dev ^ members[i]);
        if (s > best_score || (s == best_score && members[i] < members[best])) {
            best = i;
            best_score = s;
        }
    }
    return best;
}

uint32_t ring_parse(const char *list, size_t n, uint64_t keys[RING_MAX])
{
    uint32_t k = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n && k < RING_MAX; i++) {
        if (i < n && list[i] != ',')
            continue;
        if (i > start)
            keys[k++] = ring_key(list + start, i - start);
        start = i + 1;
    }
    return k;
}
