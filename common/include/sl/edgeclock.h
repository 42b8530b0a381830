/* SPDX-License-Identifier: Apache-2.0 */
/* edgeclock.h - each edge's wall clock against this service's, from the
 * at_ns the edges stamp their heartbeats with (docs/metrics.md: the
 * persister's and the notifier's *_edge_clock_skew_seconds{edge}).
 *
 * Fencing and retained statuses assume edge clocks agree; transit and
 * queueing only ever make an edge look behind, so per edge incarnation the
 * largest (edge clock - local clock) of a 10 s window is the estimate. Once
 * a window closes its largest becomes the edge's value (the first heartbeat
 * of an incarnation shows at once, not after a window); a window with no
 * heartbeat keeps the value. edgeclock_publish, once a tick, rolls the
 * windows and copies one value per edge id (its most recently sampled
 * incarnation) for the metrics thread: edgeclock_collect is a
 * metrics_gauge_family_fn collector (sl/metrics.h) with c as its ud.
 *
 * Ownership: the caller embeds struct edgeclock (fixed size, ~110 KB: put
 * it in a heap object) and owns it; nothing is allocated. Bounds: at most
 * EDGECLOCK_SLOTS edge incarnations are tracked (a sample of one more is
 * dropped and edgeclock_sample returns false, until forget or silence frees
 * a slot), and at most EDGECLOCK_EDGES edge ids are published (the rest
 * wait for room). Edge ids longer than EDGECLOCK_ID_MAX are ignored.
 *
 * Threads: sample, forget and publish from one thread (the service loop);
 * edgeclock_collect from any thread (the metrics scrape), under the mutex.
 * Nothing blocks but for that mutex, held only while copying. No I/O, no
 * clock reads: callers pass the times. */
#ifndef SL_EDGECLOCK_H
#define SL_EDGECLOCK_H
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics_sample;

#define EDGECLOCK_WINDOW_MS 10000u
#define EDGECLOCK_ID_MAX    255u /* edge id bytes (the envelope's limit) */
#define EDGECLOCK_EDGES     128u /* edge ids published */
#define EDGECLOCK_SLOTS     256u /* edge incarnations tracked: two per published id */

/* One published value. */
struct edgeclock_value {
    char edge[EDGECLOCK_ID_MAX + 1]; /* NUL-terminated */
    int64_t skew_us;                 /* > 0: the edge's clock is ahead */
};

/* One edge incarnation's window (loop thread only). */
struct edgeclock_slot {
    uint8_t id[EDGECLOCK_ID_MAX];
    uint16_t n;
    bool used;
    bool win_any, skew_known; /* the window has a sample; skew_us holds a value */
    uint64_t inc;
    uint64_t last_ms, win_ms; /* last sample; start of the window (monotonic ms) */
    int64_t win_max_us, skew_us;
};

struct edgeclock {
    uint64_t silent_ms; /* 0: slots leave only through edgeclock_forget */
    struct edgeclock_slot s[EDGECLOCK_SLOTS];
    pthread_mutex_t mu; /* guards n and pub */
    uint32_t n;
    struct edgeclock_value pub[EDGECLOCK_EDGES];
};

/* Empty c. silent_ms > 0: edgeclock_publish drops an incarnation with no
 * sample for that long (its series disappears); 0: only edgeclock_forget
 * does (a service that times edges out itself). */
void edgeclock_init(struct edgeclock *c, uint64_t silent_ms);
void edgeclock_fini(struct edgeclock *c);

/* A heartbeat of edge id (n bytes) incarnation inc, stamped at_ns by the
 * edge's wall clock, received when the local wall clock read wall_ns and
 * the monotonic one now_ms. at_ns 0 or beyond INT64_MAX, and an empty or
 * too long id, are ignored (true: nothing to track). Returns false only
 * when the incarnation is new and every slot is taken. Loop thread. */
bool edgeclock_sample(struct edgeclock *c, const uint8_t *id, size_t n, uint64_t inc, uint64_t at_ns,
                      uint64_t wall_ns, uint64_t now_ms);

/* The incarnation is gone (timed out): free its slot; its id's series
 * follows at the next publish unless another incarnation holds a value.
 * Loop thread. */
void edgeclock_forget(struct edgeclock *c, const uint8_t *id, size_t n, uint64_t inc);

/* Roll every window that began EDGECLOCK_WINDOW_MS or more before now_ms,
 * drop silent incarnations (silent_ms), and publish. Call about once a
 * second. Loop thread; takes the mutex briefly. */
void edgeclock_publish(struct edgeclock *c, uint64_t now_ms);

/* Copy at most cap published values into out (label value = edge id, v =
 * skew in seconds); returns how many. ud is the struct edgeclock. Any
 * thread: the metrics scrape. */
size_t edgeclock_collect(void *ud, struct metrics_sample *out, size_t cap);

#endif
