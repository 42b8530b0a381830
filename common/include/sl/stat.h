/* SPDX-License-Identifier: Apache-2.0 */
/* sl/stat.h - counters a service core keeps in a struct of its own, for
 * main to export as metrics (sl/metrics.h: metrics_set_collect,
 * metric_counter_set, metric_hist_set) while another thread scrapes.
 *
 * One thread writes a struct's fields (the core's loop); any thread may read
 * them. Fields are relaxed atomics: a reader sees each field's latest or an
 * earlier value, never a torn one, and fields are not consistent with one
 * another (a scrape may see a batch's rows before its batch count). Because
 * there is one writer, an update is a relaxed load and store (plain moves on
 * x86-64), not a locked read-modify-write; two threads must never update the
 * same struct. Nothing may read these to decide anything: they exist to be
 * exported. Header-only, no I/O, no allocation, never blocks. */
#ifndef SL_STAT_H
#define SL_STAT_H
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>

static inline void stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline void stat_inc(_Atomic uint64_t *c)
{
    stat_add(c, 1);
}

static inline void stat_set(_Atomic int64_t *g, int64_t v)
{
    atomic_store_explicit(g, v, memory_order_relaxed);
}

/* Readers (any thread). */
static inline uint64_t stat_get(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static inline int64_t stat_gget(const _Atomic int64_t *g)
{
    return atomic_load_explicit(g, memory_order_relaxed);
}

#define STAT_HIST_MAX 16 /* buckets besides +Inf, as METRICS_MAX_BUCKETS */

/* A histogram kept as bucket counts: counts[i] holds the observations
 * <= bounds[i] and > bounds[i-1] (not cumulative); counts[nb] the rest. */
struct stat_hist {
    int nb;
    const double *bounds; /* nb ascending upper bounds; static storage (not copied) */
    _Atomic uint64_t counts[STAT_HIST_MAX + 1];
    _Atomic uint64_t sum_micro; /* sum of the observations x 1e6 (wraps for negative ones) */
};

/* bounds must outlive h; nb <= STAT_HIST_MAX. Zeroes the counts. Not
 * thread-safe (before any reader starts). */
static inline void stat_hist_init(struct stat_hist *h, const double *bounds, int nb)
{
    h->nb = nb;
    h->bounds = bounds;
    for (int i = 0; i <= STAT_HIST_MAX; i++)
        atomic_init(&h->counts[i], 0);
    atomic_init(&h->sum_micro, 0);
}

/* Count one observation (writer thread only). NaN lands in +Inf and adds
 * nothing to the sum, as metric_observe does. */
static inline void stat_hist_observe(struct stat_hist *h, double v)
{
    int i = 0;
    while (i < h->nb && !(v <= h->bounds[i]))
        i++;
    stat_inc(&h->counts[i]);
    if (isfinite(v))
        stat_add(&h->sum_micro, (uint64_t)llround(v * 1e6));
}

#endif
