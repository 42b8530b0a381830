/* edge/worker.h - one event-loop thread of the edge: its loop, connection
 * table, pools, bus sockets, the cross-thread close queue, the inbox of
 * commands forwarded by the other workers (cmdfwd.h) and (--accept handoff)
 * the ring of connections handed to it by the acceptor. */
#ifndef EDGE_WORKER_H
#define EDGE_WORKER_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "sl/loop.h"
#include "cmdfwd.h"
#include "conn.h"
#include "sl/metrics.h"
#include "devmap.h"
#include "edge.h"

struct conn;
struct out_chunk;
struct bus;

#define WORKER_KICKQ 4096 /* cross-thread close requests pending per worker */

struct kick_req {
    uint32_t slot, gen;
    int code; /* enum sl_err */
};

#define WORKER_CONNQ 1024 /* handed-off connections pending per worker */

/* Accepted connections on their way from the acceptor thread to a worker
 * (--accept handoff). len and since_ms change under mu but are atomics so
 * the acceptor can pick a worker without taking every worker's lock. */
struct conn_ring {
    pthread_mutex_t mu;
    struct conn_handoff {
        int fd;
        struct conn_peer peer;
    } q[WORKER_CONNQ];
    uint32_t head;
    _Atomic uint32_t len;
    _Atomic uint64_t since_ms; /* last progress while non-empty (monotonic ms), 0 = empty */
};

struct worker {
    struct edge *e;
    uint32_t idx;
    struct loop *loop;
    struct bus *bus;

    /* Connection table: nslots zeroed structs (calloc, backed only once
     * used), slots [0, nfresh) ever used, a stack of freed ones. */
    struct conn *conns;
    uint32_t nslots;
    uint32_t nfresh;
    uint32_t *free_slots;
    uint32_t nfree;
    uint32_t open;
    struct metric_gauge *open_g; /* the same, exported per worker and read by the acceptor */

    struct conn *flush_head; /* output queued this iteration */
    struct conn *read_head;  /* input left unread (cap, pause, pool) */
    struct conn *close_head; /* CLOSING, freed after the batch */

    uint8_t *scratch; /* loop-wide read buffer */
    uint32_t scratch_cap;
    uint8_t **rbufs; /* free max_frame read buffers */
    uint32_t nrbufs;
    uint8_t *rbuf_mem;

    struct out_chunk *chunk_free; /* output chunk pool */
    uint32_t chunks_alloc, chunks_max, chunks_nfree;
    struct conn *pool_wait; /* waiting for a read buffer */
    uint8_t *enc;           /* encode buffer for frames that span chunks */
    uint32_t enc_cap;

    int lfd;      /* --accept reuseport: own listener, -1 once draining */
    int spare_fd; /* closed and reopened on EMFILE (reuseport) */

    pthread_mutex_t qmu; /* cross-thread kick ring */
    struct kick_req q[WORKER_KICKQ];
    uint32_t qhead, qlen;
    struct conn_ring connq; /* --accept handoff */

    struct cmdfwd cmds; /* commands for devices held here, from other workers */

    struct loop_timer tick;
    uint64_t next_bus_tick_ms;
    double drain_credit;
    uint32_t drain_cursor;
    bool stop;
    _Atomic unsigned bus_up; /* enum bus_up bits of the last bus tick, for /readyz */
    _Atomic bool listening;
    pthread_t th;
};

/* Allocate and set up worker idx (table, pools, loop, bus, listener).
 * Called from main before threads start. NULL on failure (logged). */
struct worker *worker_new(struct edge *e, uint32_t idx);
void worker_destroy(struct worker **w);
int worker_start(struct worker *w); /* spawn the thread */
void worker_join(struct worker *w);
/* Thread-safe: queue a close of (slot, gen) on w. false if the ring is full. */
bool worker_post_kick(struct worker *w, uint32_t slot, uint32_t gen, int code);
/* Thread-safe: wake w to notice draining. */
void worker_notify(struct worker *w);
/* Thread-safe: hand the admitted connection fd to w, which adopts it on its
 * thread. false if w's ring is full (fd stays the caller's). Never blocks
 * for longer than the ring's lock. */
bool worker_post_conn(struct worker *w, int fd, const struct conn_peer *peer);
/* Whether w can take a handed-off connection now. */
enum worker_intake {
    WORKER_INTAKE_OK,
    WORKER_INTAKE_STUCK, /* connections handed to it made no progress for stuck_ms */
    WORKER_INTAKE_FULL,  /* its ring is full */
};
/* Thread-safe, lock-free: *load = connections open on w plus those handed to
 * it and not yet taken. With one producer (the acceptor), a ring seen not
 * full stays not full until that producer posts. */
enum worker_intake worker_intake(struct worker *w, uint64_t now_ms, uint64_t stuck_ms, uint32_t *load);

#endif
