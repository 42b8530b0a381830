/* SPDX-License-Identifier: Apache-2.0 */
/* lane.c - a writer connection on its own thread (lane.h).
 *
 * Why threads and not libpq's asynchronous API on the loop's thread: a batch
 * transaction is a sequence of steps with branches (COPY, 23505 -> staged,
 * bisect under savepoints, missing partitions, dead letters, sessions), which
 * writer.c states as plain blocking code. Running that code on a thread per
 * connection keeps it as it is, and the loop stays free to pull, map and ack
 * while a lane waits for PostgreSQL. The hand-over is one pointer under a
 * mutex in each direction; the batch is never touched by both sides at once.
 *
 * Deliberately not here: the SQL (writer.c, db.c), acks and counting
 * (persister.c: the lane reports in struct lane_result and never writes the
 * persister's stats, which keep one writer). */
#define _GNU_SOURCE
#include "lane.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "devwriter.h"
#include "sl/log.h"
#include "sl/loop.h"
#include "svcthread.h"

#define LANE_TICK_MS 1000u

struct lane {
    struct lane_cfg cfg;

    /* Shared with the loop, under svc.mu. svc.quit (lane_destroy): leave
     * when idle. */
    struct svcthread svc;
    struct batch *job;   /* submitted, not yet taken back */
    bool done;           /* job is finished: res is valid */
    uint64_t give_up_at; /* monotonic ms; 0 = never */
    struct lane_result res;

    _Atomic bool up;

    /* The lane's thread only. */
    struct db *db;
    struct writer writer;
    unsigned connect_fails;
    uint64_t next_connect, last_db_ms;
    unsigned seed;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t backoff_ms(struct lane *l, unsigned attempt)
{
    uint64_t d = LANE_BACKOFF_MIN_MS;
    for (unsigned k = 0; k < attempt && d < LANE_BACKOFF_MAX_MS; k++)
        d *= 2u;
    if (d > LANE_BACKOFF_MAX_MS)
        d = LANE_BACKOFF_MAX_MS;
    /* Jitter in [d/2, d): lanes and persisters restarted together do not
     * reconnect in step. */
    return d / 2u + (uint64_t)rand_r(&l->seed) % (d / 2u + 1u);
}

/* Wait on svc.cv until monotonic ms `until` or a signal of it; svc.mu held. */
static void wait_until(struct lane *l, uint64_t until)
{
    uint64_t now = loop_clock_ms();
    svcthread_wait_ms(&l->svc, until > now ? until - now : 0);
}

static void notify(struct lane *l)
{
    uint64_t one = 1;
    ssize_t n = write(l->cfg.notify_fd, &one, sizeof one);
    (void)n; /* an eventfd write fails only at 2^64-1: the loop reads it every wake-up */
}

static void set_up(struct lane *l, bool up)
{
    /* A change wakes the loop, so /readyz follows it now, not at the next
     * tick (up to a second: most of a start-up's time to ready). */
    if (atomic_exchange_explicit(&l->up, up, memory_order_relaxed) != up)
        notify(l);
}

static bool try_connect(struct lane *l)
{
    if (db_connect(l->db) == DB_OK) {
        if (l->connect_fails)
            log_info("event=db_connected lane=%u after_failures=%u", l->cfg.id, l->connect_fails);
        else
            log_info("event=db_connected lane=%u", l->cfg.id);
        l->connect_fails = 0;
        l->last_db_ms = loop_clock_ms();
        set_up(l, true);
        return true;
    }
    /* First failure, then one line per 10, so an outage does not flood the log. */
    if (l->connect_fails % 10u == 0) {
        char q[DB_ERR_Q];
        log_warn("event=db_connect_failed lane=%u failures=%u err=%s", l->cfg.id, l->connect_fails + 1u,
                 db_error_q(l->db, q, sizeof q));
    }
    l->connect_fails++;
    l->next_connect = loop_clock_ms() + backoff_ms(l, l->connect_fails);
    set_up(l, false);
    return false;
}

static void lost(struct lane *l, const char *event)
{
    char q[DB_ERR_Q];
    log_warn("event=%s lane=%u err=%s", event, l->cfg.id, db_error_q(l->db, q, sizeof q));
    db_disconnect(l->db);
    set_up(l, false);
}

/* Idle upkeep: reconnect when due, ping when quiet for a while. */
static void idle(struct lane *l)
{
    uint64_t now = loop_clock_ms();
    if (!db_connected(l->db)) {
        if (now >= l->next_connect)
            try_connect(l);
    } else if (now - l->last_db_ms >= LANE_PING_IDLE_MS) {
        if (db_ping(l->db) != DB_OK)
            lost(l, "db_lost");
        else
            l->last_db_ms = now;
    }
}

/* Commit b, retrying until it commits or the give-up time passes. */
static void commit(struct lane *l, struct batch *b, struct lane_result *r)
{
    memset(r, 0, sizeof *r);
    uint64_t t0 = now_us();
    unsigned attempt = 0;
    for (;;) {
        if (db_connected(l->db) || try_connect(l)) {
            if (writer_commit(&l->writer, b, &r->st) == DB_OK)
                break;
            char q[DB_ERR_Q];
            const char *st = db_last_sqlstate(l->db);
            log_warn("event=batch_retry lane=%u rows=%u attempt=%u sqlstate=%s err=%s", l->cfg.id, b->nrows,
                     attempt + 1u, st[0] ? st : "none", db_error_q(l->db, q, sizeof q));
            if (!db_connected(l->db)) {
                db_disconnect(l->db);
                set_up(l, false);
            }
        }
        r->retries++;
        pthread_mutex_lock(&l->svc.mu);
        uint64_t give_up = l->give_up_at;
        if (give_up && loop_clock_ms() >= give_up) {
            pthread_mutex_unlock(&l->svc.mu);
            log_warn("event=shutdown_abandon lane=%u rows=%u", l->cfg.id, b->nrows);
            r->rc = -1;
            break;
        }
        uint64_t until = loop_clock_ms() + backoff_ms(l, attempt++);
        if (give_up && until > give_up)
            until = give_up;
        wait_until(l, until); /* lane_give_up_at wakes it early */
        pthread_mutex_unlock(&l->svc.mu);
    }
    uint64_t t1 = now_us();
    r->busy_us = t1 - t0;
    l->last_db_ms = t1 / 1000u;
    if (r->rc == 0 && attempt > 0)
        log_info("event=batch_committed_after_retry lane=%u rows=%u attempts=%u ms=%llu", l->cfg.id, b->nrows,
                 attempt + 1u, (unsigned long long)(r->busy_us / 1000u));
}

static void *lane_main(void *arg)
{
    struct lane *l = arg;
    try_connect(l);
    pthread_mutex_lock(&l->svc.mu);
    for (;;) {
        if (l->job && !l->done) {
            struct batch *b = l->job;
            pthread_mutex_unlock(&l->svc.mu);
            struct lane_result r;
            commit(l, b, &r);
            if (r.rc == 0 && l->cfg.devices)
                devwriter_add(l->cfg.devices, b); /* before the hand-back: the loop reuses b */
            pthread_mutex_lock(&l->svc.mu);
            l->res = r;
            l->done = true;
            pthread_mutex_unlock(&l->svc.mu);
            notify(l);
            pthread_mutex_lock(&l->svc.mu);
            continue;
        }
        if (l->svc.quit)
            break;
        wait_until(l, loop_clock_ms() + LANE_TICK_MS);
        if (!l->job && !l->svc.quit) {
            pthread_mutex_unlock(&l->svc.mu);
            idle(l);
            pthread_mutex_lock(&l->svc.mu);
        }
    }
    pthread_mutex_unlock(&l->svc.mu);
    db_disconnect(l->db);
    set_up(l, false);
    return NULL;
}

struct lane *lane_new(const struct lane_cfg *cfg)
{
    struct lane *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->cfg = *cfg;
    l->seed = (unsigned)getpid() * 2654435761u + cfg->id * 40503u + (unsigned)loop_clock_ms();
    svcthread_init(&l->svc);
    l->db = db_new(cfg->conninfo);
    if (!l->db || writer_init(&l->writer, l->db, cfg->cap_rows) != 0) {
        log_error("event=alloc_failed what=lane rows=%u", cfg->cap_rows);
        lane_destroy(&l);
        return NULL;
    }
    l->writer.part_days = cfg->part_days;
    db_set_conflicts_max(l->db, cfg->conflicts_max);
    if (svcthread_start(&l->svc, "lane", lane_main, l) != 0) {
        lane_destroy(&l);
        return NULL;
    }
    return l;
}

void lane_destroy(struct lane **lp)
{
    struct lane *l = *lp;
    if (!l)
        return;
    /* A batch still held (the loop failed): abandon it rather than retry
     * it through an outage. Set before the stop's signal, which wakes a
     * retrying commit to see it. */
    pthread_mutex_lock(&l->svc.mu);
    if (!l->give_up_at)
        l->give_up_at = loop_clock_ms();
    pthread_mutex_unlock(&l->svc.mu);
    svcthread_stop(&l->svc);
    writer_fini(&l->writer);
    db_destroy(&l->db);
    svcthread_fini(&l->svc);
    free(l);
    *lp = NULL;
}

bool lane_busy(struct lane *l)
{
    pthread_mutex_lock(&l->svc.mu);
    bool busy = l->job != NULL;
    pthread_mutex_unlock(&l->svc.mu);
    return busy;
}

void lane_submit(struct lane *l, struct batch *b)
{
    pthread_mutex_lock(&l->svc.mu);
    l->job = b;
    l->done = false;
    pthread_cond_signal(&l->svc.cv);
    pthread_mutex_unlock(&l->svc.mu);
}

bool lane_take(struct lane *l, struct lane_result *r)
{
    pthread_mutex_lock(&l->svc.mu);
    bool done = l->job && l->done;
    if (done) {
        *r = l->res;
        l->job = NULL;
        l->done = false;
    }
    pthread_mutex_unlock(&l->svc.mu);
    return done;
}

bool lane_up(const struct lane *l)
{
    return atomic_load_explicit(&l->up, memory_order_relaxed);
}

void lane_give_up_at(struct lane *l, uint64_t at)
{
    pthread_mutex_lock(&l->svc.mu);
    l->give_up_at = at;
    pthread_cond_signal(&l->svc.cv);
    pthread_mutex_unlock(&l->svc.mu);
}
