/* SPDX-License-Identifier: Apache-2.0 */
/* mailbox.c - a worker's bounded, multi-producer inbox (see mailbox.h).
 *
 * One ring of share[ADOPT] + share[KICK] + share[CMD] slots: since no kind
 * may hold more than its share, the ring can never be full while some kind
 * is under its share, which is what makes the shares "reserved". Counts
 * per kind are atomics so the acceptor can balance load without the lock
 * (a snapshot: it may be one post behind, which only makes its pick
 * slightly stale, never unsafe; the post itself re-checks under the lock).
 *
 * The owner is woken on the empty -> non-empty transition only: a mailbox
 * that is not empty already has a wake-up on its way, and mailbox_take
 * wakes the owner again when it leaves items behind. So a burst of posts
 * costs one eventfd write, not one per item. */
#define _GNU_SOURCE
#include "mailbox.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "sl/loop.h"

struct mailbox {
    pthread_mutex_t mu;
    struct loop *owner;
    struct mailbox_limits lim;
    struct mailbox_item *ring;
    uint32_t cap, head, len; /* under mu */
    _Atomic uint32_t n[MAILBOX_KINDS];
    _Atomic uint64_t bytes;
    _Atomic uint64_t since_ms;
};

struct mailbox *mailbox_new(const struct mailbox_limits *lim, struct loop *owner)
{
    struct mailbox *mb = calloc(1, sizeof *mb);
    if (!mb)
        return NULL;
    mb->lim = *lim;
    mb->owner = owner;
    for (int k = 0; k < MAILBOX_KINDS; k++)
        mb->cap += lim->share[k];
    mb->ring = calloc(mb->cap ? mb->cap : 1, sizeof *mb->ring);
    if (!mb->ring) {
        free(mb);
        return NULL;
    }
    pthread_mutex_init(&mb->mu, NULL);
    return mb;
}

void mailbox_destroy(struct mailbox **pmb, mailbox_drop_fn *drop, void *ud)
{
    struct mailbox *mb = *pmb;
    if (!mb)
        return;
    for (; mb->len; mb->len--) {
        if (drop)
            drop(ud, &mb->ring[mb->head]);
        mb->head = (mb->head + 1) % mb->cap;
    }
    pthread_mutex_destroy(&mb->mu);
    free(mb->ring);
    free(mb);
    *pmb = NULL;
}

bool mailbox_post(struct mailbox *mb, const struct mailbox_item *it)
{
    if (it->kind >= MAILBOX_KINDS)
        return false;
    uint64_t bytes = it->kind == MAILBOX_CMD ? it->u.cmd.bytes : 0;
    pthread_mutex_lock(&mb->mu);
    uint32_t n = atomic_load_explicit(&mb->n[it->kind], memory_order_relaxed);
    uint64_t b = atomic_load_explicit(&mb->bytes, memory_order_relaxed);
    if (n >= mb->lim.share[it->kind] || b + bytes > mb->lim.max_bytes) {
        pthread_mutex_unlock(&mb->mu);
        return false;
    }
    bool was_empty = mb->len == 0;
    mb->ring[(mb->head + mb->len) % mb->cap] = *it;
    mb->len++;
    atomic_store_explicit(&mb->n[it->kind], n + 1, memory_order_relaxed);
    atomic_store_explicit(&mb->bytes, b + bytes, memory_order_relaxed);
    if (was_empty)
        atomic_store_explicit(&mb->since_ms, loop_clock_ms(), memory_order_relaxed);
    pthread_mutex_unlock(&mb->mu);
    if (was_empty)
        loop_wake(mb->owner);
    return true;
}

uint32_t mailbox_take(struct mailbox *mb, struct mailbox_item *out, uint32_t max)
{
    pthread_mutex_lock(&mb->mu);
    uint32_t got = 0;
    uint64_t freed = 0;
    while (mb->len && got < max) {
        struct mailbox_item *it = &mb->ring[mb->head];
        out[got++] = *it;
        atomic_fetch_sub_explicit(&mb->n[it->kind], 1, memory_order_relaxed);
        if (it->kind == MAILBOX_CMD)
            freed += it->u.cmd.bytes;
        mb->head = (mb->head + 1) % mb->cap;
        mb->len--;
    }
    atomic_fetch_sub_explicit(&mb->bytes, freed, memory_order_relaxed);
    bool more = mb->len > 0;
    atomic_store_explicit(&mb->since_ms, more ? loop_clock_ms() : 0, memory_order_relaxed);
    pthread_mutex_unlock(&mb->mu);
    if (more)
        loop_wake(mb->owner); /* the rest next iteration: a bounded batch per wake-up */
    return got;
}

uint32_t mailbox_len(const struct mailbox *mb, enum mailbox_kind k)
{
    return (unsigned)k < MAILBOX_KINDS ? atomic_load_explicit(&mb->n[k], memory_order_relaxed) : 0;
}

uint64_t mailbox_stalled_since(const struct mailbox *mb)
{
    return atomic_load_explicit(&mb->since_ms, memory_order_relaxed);
}

uint64_t mailbox_bytes(const struct mailbox *mb)
{
    return atomic_load_explicit(&mb->bytes, memory_order_relaxed);
}
