/* SPDX-License-Identifier: Apache-2.0 */
/* devwriter.c - the devices table's writer thread (devwriter.h).
 *
 * Two summaries: the lanes fold into `in` under the mutex; the thread swaps
 * `in` with its empty `out` (two pointers, under the mutex) and writes `out`
 * without holding it, DEVWRITER_CHUNK devices a statement. A lane holds the
 * mutex for the fold of one batch only, and the thread for the swap only.
 *
 * Deliberately not here: the summary and its SQL (devsum.c), running the
 * statement (db.c). */
#define _GNU_SOURCE
#include "devwriter.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "devsum.h"
#include "sl/log.h"
#include "sl/loop.h"
#include "sl/stat.h"
#include "svcthread.h"

#define CONNECT_BACKOFF_MS 5000u

struct devwriter {
    struct devwriter_stats *st;

    struct svcthread svc; /* its mu guards quit, in, in_since and stop_at */
    struct devsum sums[2];
    struct devsum *in; /* the lanes fold into it */
    uint64_t in_since; /* monotonic ms of the first fold into in (in->used > 0) */
    uint64_t stop_at;  /* monotonic ms the stop's writes end by; 0 until devwriter_destroy */

    /* The thread makes and frees it, devwriter_destroy sends it: its own
     * mutex, so that a send never waits for the summary's. */
    pthread_mutex_t cancel_mu;
    struct db_canceller *cancel; /* for the connection now open; NULL: none */

    /* The thread only. */
    struct devsum *out; /* being written; empty between writes */
    struct db *db;
    uint64_t next_connect;
    unsigned connect_fails;
    uint64_t write_fails;
};

static void log_db_err(struct devwriter *w, const char *event, uint64_t count)
{
    char q[DB_ERR_Q];
    log_warn("event=%s failures=%llu err=%s", event, (unsigned long long)count,
             db_error_q(w->db, q, sizeof q));
}

/* Replace the canceller with one for the connection now open (NULL: none). */
static void set_canceller(struct devwriter *w, struct db_canceller *c)
{
    pthread_mutex_lock(&w->cancel_mu);
    struct db_canceller *old = w->cancel;
    w->cancel = c;
    pthread_mutex_unlock(&w->cancel_mu);
    db_canceller_free(&old);
}

static void disconnect_db(struct devwriter *w)
{
    set_canceller(w, NULL);
    db_disconnect(w->db);
}

static bool connect_db(struct devwriter *w)
{
    if (db_connected(w->db))
        return true;
    uint64_t now = loop_clock_ms();
    if (now < w->next_connect)
        return false;
    if (db_connect(w->db) == DB_OK) {
        w->connect_fails = 0;
        /* Without one (out of memory) a stop may wait for a stuck statement's timeout. */
        set_canceller(w, db_canceller_new(w->db));
        return true;
    }
    /* First failure, then one line per 10: the lanes report the outage too. */
    if (w->connect_fails++ % 10u == 0)
        log_db_err(w, "devices_connect_failed", w->connect_fails);
    w->next_connect = now + CONNECT_BACKOFF_MS;
    return false;
}

/* Between two statements of one write: spread the write over half the
 * period, so that PostgreSQL gets it as small slices, not as one burst that
 * takes a core from the batches' backends (docs/performance.md). Not when
 * the lanes have filled half the other sum meanwhile (they signal it): then
 * the write goes on at once, or their rows would soon be left out. False
 * once a stop is asked: the rest goes at once. */
static bool pause_between(struct devwriter *w, uint64_t gap_ms)
{
    pthread_mutex_lock(&w->svc.mu);
    if (!w->svc.quit && w->in->used < DEVWRITER_DEVICES_MAX / 2u)
        svcthread_wait_ms(&w->svc, gap_ms);
    bool go_on = !w->svc.quit;
    pthread_mutex_unlock(&w->svc.mu);
    return go_on;
}

/* The next statement's timeout: DEVWRITER_STATEMENT_MS, or once the stop
 * has begun what is left of its budget; 0 when that is spent. */
static uint32_t statement_ms(struct devwriter *w)
{
    pthread_mutex_lock(&w->svc.mu);
    uint64_t at = w->stop_at;
    pthread_mutex_unlock(&w->svc.mu);
    if (!at)
        return DEVWRITER_STATEMENT_MS;
    uint64_t now = loop_clock_ms();
    if (now >= at)
        return 0;
    return at - now < DEVWRITER_STATEMENT_MS ? (uint32_t)(at - now) : DEVWRITER_STATEMENT_MS;
}

/* Write out and empty it, paced (pause_between) unless it is the last.
 * An early write (the sum was half full) is paced too: the pauses end as
 * soon as the lanes fill half the other sum. Nothing is retried
 * (devwriter.h): a failed statement ends the write, since what failed it (a
 * lock, the server) would fail the next ones too, each after its timeout.
 * At the stop only an open connection is used, so a stop never waits for a
 * connect. */
static void write_out(struct devwriter *w, bool stopping)
{
    struct devsum *s = w->out;
    bool up = stopping ? db_connected(w->db) : connect_db(w);
    uint32_t chunks = (s->used + DEVWRITER_CHUNK - 1u) / DEVWRITER_CHUNK;
    uint64_t gap_ms = stopping || chunks < 2 ? 0 : DEVWRITER_EVERY_MS / 2u / chunks;
    uint32_t k = 0, budget = DEVWRITER_STATEMENT_MS;
    for (; up && k < s->used; k += DEVWRITER_CHUNK) {
        uint32_t n = s->used - k < DEVWRITER_CHUNK ? s->used - k : DEVWRITER_CHUNK;
        if (k && gap_ms && !pause_between(w, gap_ms))
            gap_ms = 0; /* stopping: the rest at once */
        if (!(budget = statement_ms(w)))
            break;
        if (db_devices(w->db, s, k, n, budget) != DB_OK) {
            /* First failure, then one line per 100. */
            if (w->write_fails++ % 100u == 0)
                log_db_err(w, "devices_update_failed", w->write_fails);
            if (!db_connected(w->db))
                disconnect_db(w);
            break;
        }
        stat_add(&w->st->devices_updated, n);
    }
    if (k < s->used) {
        stat_add(&w->st->devices_failed, s->used - k);
        if (up && !budget)
            log_warn("event=devices_not_written devices=%u why=stop_budget_spent budget_ms=%u", s->used - k,
                     DEVWRITER_STOP_MS);
    }
    devsum_reset(s);
}

static void *devwriter_main(void *arg)
{
    struct devwriter *w = arg;
    pthread_mutex_lock(&w->svc.mu);
    for (;;) {
        uint64_t now = loop_clock_ms();
        uint32_t held = w->in->used;
        if (held &&
            (w->svc.quit || held >= DEVWRITER_DEVICES_MAX / 2u || now - w->in_since >= DEVWRITER_EVERY_MS)) {
            struct devsum *full = w->in;
            w->in = w->out;
            w->out = full;
            w->in_since = 0;
            bool stopping = w->svc.quit;
            pthread_mutex_unlock(&w->svc.mu);
            write_out(w, stopping);
            pthread_mutex_lock(&w->svc.mu);
            continue;
        }
        if (w->svc.quit)
            break;
        uint64_t wait = DEVWRITER_EVERY_MS;
        if (held)
            wait = w->in_since + DEVWRITER_EVERY_MS - now; /* not due yet: positive */
        svcthread_wait_ms(&w->svc, wait);
    }
    pthread_mutex_unlock(&w->svc.mu);
    disconnect_db(w);
    return NULL;
}

void devwriter_add(struct devwriter *w, const struct batch *b)
{
    pthread_mutex_lock(&w->svc.mu);
    if (w->in->used == 0)
        w->in_since = loop_clock_ms();
    uint32_t from = 0;
    if (!devsum_add(w->in, b, &from))
        stat_add(&w->st->rows_left_out, b->nrows - from);
    if (w->in->used >= DEVWRITER_DEVICES_MAX / 2u)
        pthread_cond_signal(&w->svc.cv); /* write early: room before it fills */
    pthread_mutex_unlock(&w->svc.mu);
}

struct devwriter *devwriter_new(const struct devwriter_cfg *cfg, struct devwriter_stats *st)
{
    struct devwriter *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->st = st;
    svcthread_init(&w->svc);
    pthread_mutex_init(&w->cancel_mu, NULL);
    w->in = &w->sums[0];
    w->out = &w->sums[1];
    w->db = db_new(cfg->conninfo);
    if (!w->db || devsum_init(&w->sums[0], DEVWRITER_DEVICES_MAX) != 0 ||
        devsum_init(&w->sums[1], DEVWRITER_DEVICES_MAX) != 0) {
        log_error("event=alloc_failed what=devwriter devices=%u", DEVWRITER_DEVICES_MAX);
        devwriter_destroy(&w);
        return NULL;
    }
    if (svcthread_start(&w->svc, "devwriter", devwriter_main, w) != 0) {
        devwriter_destroy(&w);
        return NULL;
    }
    return w;
}

/* Ask the thread to write what it holds and return, and give it
 * DEVWRITER_STOP_MS: the statements it starts from now on time out within
 * that (statement_ms), and one it was already running when the stop came
 * (up to DEVWRITER_STATEMENT_MS on a lock) is cancelled at the end of it. */
static void stop_within_budget(struct devwriter *w)
{
    pthread_mutex_lock(&w->svc.mu);
    w->stop_at = loop_clock_ms() + DEVWRITER_STOP_MS; /* before quit: the stop's statements all fit */
    pthread_mutex_unlock(&w->svc.mu);
    if (svcthread_stop_within(&w->svc, DEVWRITER_STOP_MS))
        return;
    char err[256] = "no connection to cancel on", q[300];
    pthread_mutex_lock(&w->cancel_mu);
    bool sent = w->cancel && db_canceller_send(w->cancel, err, sizeof err);
    pthread_mutex_unlock(&w->cancel_mu);
    if (sent)
        log_warn("event=devices_write_cancelled why=stop_budget_spent budget_ms=%u", DEVWRITER_STOP_MS);
    else
        log_warn("event=devices_cancel_failed err=%s", log_q(q, sizeof q, err, strlen(err)));
}

void devwriter_destroy(struct devwriter **wp)
{
    struct devwriter *w = *wp;
    if (!w)
        return;
    stop_within_budget(w);   /* no thread (a failed new): returns at once */
    svcthread_stop(&w->svc); /* the thread writes what is held first */
    devsum_fini(&w->sums[0]);
    devsum_fini(&w->sums[1]);
    db_destroy(&w->db);
    db_canceller_free(&w->cancel);
    pthread_mutex_destroy(&w->cancel_mu);
    svcthread_fini(&w->svc);
    free(w);
    *wp = NULL;
}
