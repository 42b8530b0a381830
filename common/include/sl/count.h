/* sl/count.h - counters with one writer and any number of readers.
 *
 * A service core counts in a plain struct of these (no metrics registry,
 * no labels); main.c or a stats module reads them on another thread and
 * turns them into Prometheus series. One thread writes a given counter, so
 * an increment is a relaxed load and store (plain moves on x86-64, no
 * locked instruction), and a reader on another thread never sees a torn
 * value. Do not use count_add from two threads on the same counter. */
#ifndef SL_COUNT_H
#define SL_COUNT_H
#include <stdatomic.h>
#include <stdint.h>

typedef _Atomic uint64_t count_t;

static inline void count_add(count_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline void count_inc(count_t *c)
{
    count_add(c, 1);
}

/* For the reader (any thread). */
static inline uint64_t count_get(const count_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

#endif
