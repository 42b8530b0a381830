/* worker.c - one edge worker thread: wires its loop, connection table,
 * bus and listener, runs the after-hook in a fixed order, the periodic tick
 * (endpoints, heartbeat, readiness, paced draining) and the cross-thread
 * queues woken through the loop's eventfd: the kick ring, the inbox of
 * forwarded commands (cmdfwd.c) and (--accept handoff) the ring of
 * connections the acceptor thread hands over.
 *
 * It deliberately holds no protocol or socket logic of its own. */
#define _GNU_SOURCE
#include "worker.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sl/err.h"
#include "sl/log.h"
#include "bus.h"
#include "conn.h"
#include "session.h"

#define TICK_MS        100u
#define BUS_TICK_MS    1000u
#define ADOPT_PER_WAKE 64

static void after(struct loop *l, void *ud)
{
    (void)l;
    struct worker *w = ud;
    bus_recv(w->bus);  /* acks/cmds first: they free device-side waits */
    bus_flush(w->bus); /* may end a pause */
    conn_after(w);     /* input left unread by caps or a pause */
    bus_flush(w->bus); /* this iteration's envelopes: one message per destination */
    conn_flush_all(w); /* one writev per connection with output */
    conn_free_closed(w);
}

/* Adopt the connections handed over, at most ADOPT_PER_WAKE per wake-up
 * like a listener's accepts (one wake-up's hellos then stay one epoll batch,
 * and the output pool's high-water mark with them); the rest wait for the
 * next iteration, through a wake-up of our own. */
static void take_conns(struct worker *w)
{
    struct conn_ring *r = &w->connq;
    struct conn_handoff batch[ADOPT_PER_WAKE];
    uint32_t n = 0;
    pthread_mutex_lock(&r->mu);
    uint32_t len = atomic_load(&r->len);
    while (n < len && n < ADOPT_PER_WAKE) {
        batch[n++] = r->q[r->head];
        r->head = (r->head + 1) % WORKER_CONNQ;
    }
    atomic_store(&r->len, len - n);
    atomic_store(&r->since_ms, len - n ? loop_clock_ms() : 0);
    pthread_mutex_unlock(&r->mu);
    if (len > n)
        loop_wake(w->loop);
    for (uint32_t i = 0; i < n; i++)
        conn_adopt(w, batch[i].fd, &batch[i].peer);
}

bool worker_post_conn(struct worker *w, int fd, const struct conn_peer *peer)
{
    struct conn_ring *r = &w->connq;
    pthread_mutex_lock(&r->mu);
    uint32_t len = atomic_load(&r->len);
    if (len == WORKER_CONNQ) {
        pthread_mutex_unlock(&r->mu);
        return false;
    }
    r->q[(r->head + len) % WORKER_CONNQ] = (struct conn_handoff){fd, *peer};
    atomic_store(&r->len, len + 1);
    if (len == 0)
        atomic_store(&r->since_ms, loop_clock_ms());
    pthread_mutex_unlock(&r->mu);
    /* A non-empty ring has a wake-up on its way already: take_conns empties
     * it under the lock, so the next post after that sees len 0 again. */
    if (len == 0)
        loop_wake(w->loop);
    return true;
}

enum worker_intake worker_intake(struct worker *w, uint64_t now_ms, uint64_t stuck_ms, uint32_t *load)
{
    uint32_t len = atomic_load_explicit(&w->connq.len, memory_order_relaxed);
    uint64_t since = atomic_load_explicit(&w->connq.since_ms, memory_order_relaxed);
    int64_t open = atomic_load_explicit(&w->open_g->v, memory_order_relaxed);
    *load = (uint32_t)(open > 0 ? open : 0) + len;
    if (len == WORKER_CONNQ)
        return WORKER_INTAKE_FULL;
    return len && since && now_ms > since + stuck_ms ? WORKER_INTAKE_STUCK : WORKER_INTAKE_OK;
}

static void on_wake(struct loop *l, void *ud)
{
    (void)l;
    struct worker *w = ud;
    take_conns(w);
    struct kick_req batch[64];
    for (;;) {
        uint32_t n = 0;
        pthread_mutex_lock(&w->qmu);
        while (w->qlen && n < 64) {
            batch[n++] = w->q[w->qhead];
            w->qhead = (w->qhead + 1) % WORKER_KICKQ;
            w->qlen--;
        }
        pthread_mutex_unlock(&w->qmu);
        if (!n)
            break;
        for (uint32_t i = 0; i < n; i++) {
            struct devmap_ref r = {w->idx, batch[i].slot, batch[i].gen};
            conn_kick(w, r, (enum sl_err)batch[i].code);
        }
    }
    cmdfwd_drain(w); /* after the kicks: a command for a kicked connection is answered, not written */
}

bool worker_post_kick(struct worker *w, uint32_t slot, uint32_t gen, int code)
{
    bool ok = false;
    pthread_mutex_lock(&w->qmu);
    if (w->qlen < WORKER_KICKQ) {
        w->q[(w->qhead + w->qlen) % WORKER_KICKQ] = (struct kick_req){slot, gen, code};
        w->qlen++;
        ok = true;
    }
    pthread_mutex_unlock(&w->qmu);
    loop_wake(w->loop);
    return ok;
}

void worker_notify(struct worker *w)
{
    loop_wake(w->loop);
}

static void on_tick(struct loop *l, void *ud)
{
    struct worker *w = ud;
    struct edge *e = w->e;
    uint64_t now = loop_now_ms(l);
    if (now >= w->next_bus_tick_ms) {
        w->next_bus_tick_ms = now + BUS_TICK_MS;
        atomic_store(&w->bus_up, bus_tick(w->bus, w->open));
    } else if (bus_paused(w->bus)) {
        bus_flush(w->bus); /* ZMQ_FD may not signal a peer (re)connecting */
    }
    if (atomic_load(&e->draining)) {
        conn_stop_listening(w);
        /* Paced eviction: rate per second for the whole edge, shared. */
        w->drain_credit += e->cfg.drain_rate / e->nworkers * TICK_MS / 1000.0;
        if (w->drain_credit >= 1.0) {
            uint32_t n = (uint32_t)w->drain_credit;
            w->drain_credit -= n;
            conn_evict(w, n);
        }
        if ((w->open == 0 && atomic_load(&w->connq.len) == 0 && bus_idle(w->bus)) ||
            now >= atomic_load(&e->drain_deadline_ms))
            w->stop = true;
    }
    loop_timer_start(l, &w->tick, TICK_MS);
}

struct worker *worker_new(struct edge *e, uint32_t idx)
{
    struct worker *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->e = e;
    w->idx = idx;
    w->lfd = -1;
    w->spare_fd = -1;
    pthread_mutex_init(&w->qmu, NULL);
    cmdfwd_init(&w->cmds);
    pthread_mutex_init(&w->connq.mu, NULL);
    char lab[32];
    snprintf(lab, sizeof lab, "worker=\"%u\"", idx);
    w->open_g =
        metrics_gauge("sluice_edge_worker_connections_open", "Device connections open, by worker", lab);
    w->loop = loop_new(e->cfg.max_conns + 16);
    if (!w->loop || conn_worker_init(w) != 0) {
        log_error("event=worker_init_failed worker=%u err=nomem", idx);
        worker_destroy(&w);
        return NULL;
    }
    w->bus = bus_new(w);
    if (!w->bus) {
        worker_destroy(&w);
        return NULL;
    }
    int rc = e->cfg.accept == EDGE_ACCEPT_REUSEPORT ? conn_listen(w) : 0;
    if (rc != 0) {
        log_error("event=listen_failed worker=%u listen=%s err=\"%s\"", idx, e->cfg.listen, strerror(-rc));
        worker_destroy(&w);
        return NULL;
    }
    loop_set_after(w->loop, after, w);
    loop_set_wake(w->loop, on_wake, w);
    loop_timer_init(&w->tick, on_tick, w);
    loop_timer_start(w->loop, &w->tick, TICK_MS);
    return w;
}

void worker_destroy(struct worker **pw)
{
    struct worker *w = *pw;
    if (!w)
        return;
    /* Handed over but never adopted (drain deadline): never welcomed. */
    for (; w->connq.len; w->connq.len--) {
        conn_refuse(w->e, w->connq.q[w->connq.head].fd);
        w->connq.head = (w->connq.head + 1) % WORKER_CONNQ;
    }
    if (w->conns) {
        /* Closing emits disconnects: give them one last send. */
        conn_worker_fini(w);
        if (w->bus)
            bus_flush(w->bus);
    }
    bus_destroy(&w->bus);
    if (w->loop)
        loop_timer_stop(w->loop, &w->tick);
    loop_destroy(&w->loop);
    pthread_mutex_destroy(&w->qmu);
    cmdfwd_fini(&w->cmds);
    pthread_mutex_destroy(&w->connq.mu);
    free(w);
    *pw = NULL;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    while (!w->stop) {
        int rc = loop_run_once(w->loop, conn_read_pending(w) ? 0 : -1);
        if (rc < 0) {
            log_error("event=loop_failed worker=%u err=\"%s\"", w->idx, strerror(-rc));
            break;
        }
    }
    return NULL;
}

int worker_start(struct worker *w)
{
    int rc = pthread_create(&w->th, NULL, run, w);
    if (rc == 0) {
        char name[16]; /* for top -H and the bench's stuck-worker test */
        snprintf(name, sizeof name, "edge-w%u", w->idx);
        pthread_setname_np(w->th, name);
    }
    return rc ? -rc : 0;
}

void worker_join(struct worker *w)
{
    pthread_join(w->th, NULL);
}
