/* SPDX-License-Identifier: Apache-2.0 */
/* maint.c - the maintenance thread (maint.h): partitions ahead, retention,
 * edge_lost.
 *
 * Why a connection of its own: DETACH ... CONCURRENTLY cannot run inside a
 * transaction and waits for every transaction that still sees the partition,
 * and closing a lost edge's sessions must not wait behind a batch. On the
 * writers' connections either would delay acks; here it delays nothing.
 *
 * Retention never deletes telemetry rows: a partition whose upper bound is
 * older than --retention-days is detached (CONCURRENTLY: writers keep
 * inserting meanwhile) and dropped. What follows telemetry's retention is
 * trimmed afterwards by DELETE: telemetry_keys below the oldest partition
 * left, and the two small tables (dead letters, closed sessions).
 *
 * Deliberately not here: the SQL (db.c, migrations/002), partitions a batch
 * needs now (writer.c creates those itself). */
#define _GNU_SOURCE
#include "maint.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "part.h"
#include "rows.h"
#include "sl/log.h"
#include "sl/loop.h"
#include "sl/stat.h"
#include "svcthread.h"

#define MAINT_TICK_MS   1000u
#define MAINT_QUEUE     64u
#define MAINT_DROP_MAX  64 /* partitions dropped per run at most (the next run goes on) */
#define CONNECT_BACKOFF 5000u

struct lost_req {
    uint8_t edge[ROWS_EDGE_MAX];
    uint16_t n;
    uint64_t inc;
};

struct maint {
    struct maint_cfg cfg;
    struct maint_stats *st;

    struct svcthread svc; /* its mu guards quit and the queue */
    struct lost_req q[MAINT_QUEUE];
    unsigned qhead, qlen;

    /* The thread only. */
    struct db *db;
    unsigned connect_fails;
    uint64_t next_connect, next_run;
};

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void log_db_err(struct maint *m, const char *event)
{
    char q[DB_ERR_Q];
    log_warn("event=%s err=%s", event, db_error_q(m->db, q, sizeof q));
    if (!db_connected(m->db))
        db_disconnect(m->db);
}

static bool connect_db(struct maint *m, uint64_t now)
{
    if (db_connected(m->db))
        return true;
    if (now < m->next_connect)
        return false;
    if (db_connect(m->db) == DB_OK) {
        m->connect_fails = 0;
        m->next_run = now; /* a new server (failover) may lack what the old one had */
        return true;
    }
    if (m->connect_fails++ % 10u == 0)
        log_db_err(m, "maint_connect_failed");
    m->next_connect = now + CONNECT_BACKOFF;
    return false;
}

/* Close the sessions of queued lost edges; stops at the first failure. */
static void edges_lost(struct maint *m)
{
    for (;;) {
        pthread_mutex_lock(&m->svc.mu);
        if (m->qlen == 0) {
            pthread_mutex_unlock(&m->svc.mu);
            return;
        }
        struct lost_req r = m->q[m->qhead];
        pthread_mutex_unlock(&m->svc.mu);
        uint64_t closed = 0;
        if (db_edge_lost(m->db, r.edge, r.n, r.inc, &closed) != DB_OK) {
            log_db_err(m, "edge_lost_failed");
            return; /* retried next tick */
        }
        char id[ROWS_EDGE_MAX * 4 + 8];
        log_q(id, sizeof id, (const char *)r.edge, r.n);
        log_info("event=edge_lost edge=%s incarnation=%llu sessions_closed=%llu", id,
                 (unsigned long long)r.inc, (unsigned long long)closed);
        pthread_mutex_lock(&m->svc.mu);
        m->qhead = (m->qhead + 1u) % MAINT_QUEUE;
        m->qlen--;
        pthread_mutex_unlock(&m->svc.mu);
    }
}

static bool ahead(struct maint *m, int64_t now_us)
{
    int64_t end = now_us + (int64_t)m->cfg.ahead_days * PART_DAY_US;
    for (int64_t t = now_us;;) {
        struct part_period p = part_period_of(t, m->cfg.part_days);
        int created = 0;
        if (db_partition(m->db, p.lo_us, p.hi_us, &created) != DB_OK) {
            log_db_err(m, "partition_failed");
            return false;
        }
        if (created) {
            stat_add(&m->st->partitions_created, (uint64_t)created);
            char lo[40];
            lo[rows_fmt_us(lo, p.lo_us)] = '\0';
            log_info("event=partition_created from=\"%s\" days=%d", lo, m->cfg.part_days);
        }
        if (p.hi_us > end)
            return true;
        t = p.hi_us;
    }
}

static bool retention(struct maint *m, int64_t now_us)
{
    bool got = false;
    if (db_try_lock(m->db, MAINT_RETENTION_LOCK, &got) != DB_OK) {
        log_db_err(m, "retention_failed");
        return false;
    }
    if (!got)
        return true; /* another persister is at it */
    int64_t cutoff = now_us - (int64_t)m->cfg.retention_days * PART_DAY_US;
    struct db_part parts[MAINT_DROP_MAX];
    int n = 0;
    bool ok = db_expired(m->db, cutoff, parts, MAINT_DROP_MAX, &n) == DB_OK;
    for (int i = 0; ok && i < n; i++) {
        if (db_drop_partition(m->db, &parts[i]) != DB_OK) {
            ok = false;
            break;
        }
        stat_inc(&m->st->partitions_dropped);
        log_info("event=partition_dropped name=%s retention_days=%d%s", parts[i].name, m->cfg.retention_days,
                 parts[i].pending ? " finalized=1" : "");
    }
    uint64_t keys = 0, rejected = 0, sessions = 0;
    if (ok)
        ok = db_trim(m->db, cutoff, &keys, &rejected, &sessions) == DB_OK;
    if (ok && (keys || rejected || sessions))
        log_info("event=retention_trimmed keys=%llu rejected=%llu sessions=%llu", (unsigned long long)keys,
                 (unsigned long long)rejected, (unsigned long long)sessions);
    if (!ok)
        log_db_err(m, "retention_failed");
    db_unlock(m->db, MAINT_RETENTION_LOCK);
    return ok;
}

static void *maint_main(void *arg)
{
    struct maint *m = arg;
    pthread_mutex_lock(&m->svc.mu);
    while (!m->svc.quit) {
        pthread_mutex_unlock(&m->svc.mu);
        uint64_t now = loop_clock_ms();
        if (connect_db(m, now)) {
            edges_lost(m);
            if (db_connected(m->db) && now >= m->next_run) {
                int64_t wall = wall_us();
                bool ok = ahead(m, wall) && (m->cfg.retention_days <= 0 || retention(m, wall));
                m->next_run = now + (ok ? MAINT_EVERY_MS : MAINT_RETRY_MS);
            }
        }
        pthread_mutex_lock(&m->svc.mu);
        if (m->svc.quit)
            break;
        svcthread_wait_ms(&m->svc, MAINT_TICK_MS);
    }
    pthread_mutex_unlock(&m->svc.mu);
    db_disconnect(m->db);
    return NULL;
}

struct maint *maint_new(const struct maint_cfg *cfg, struct maint_stats *st)
{
    struct maint *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cfg = *cfg;
    m->st = st;
    svcthread_init(&m->svc);
    m->db = db_new(cfg->conninfo);
    if (!m->db) {
        maint_destroy(&m);
        return NULL;
    }
    if (svcthread_start(&m->svc, "maint", maint_main, m) != 0) {
        maint_destroy(&m);
        return NULL;
    }
    return m;
}

void maint_destroy(struct maint **mp)
{
    struct maint *m = *mp;
    if (!m)
        return;
    svcthread_stop(&m->svc);
    db_destroy(&m->db);
    svcthread_fini(&m->svc);
    free(m);
    *mp = NULL;
}

bool maint_edge_lost(struct maint *m, const uint8_t *edge, size_t n, uint64_t inc)
{
    if (n == 0 || n > ROWS_EDGE_MAX)
        return false;
    pthread_mutex_lock(&m->svc.mu);
    bool ok = m->qlen < MAINT_QUEUE;
    if (ok) {
        struct lost_req *r = &m->q[(m->qhead + m->qlen) % MAINT_QUEUE];
        memcpy(r->edge, edge, n);
        r->n = (uint16_t)n;
        r->inc = inc;
        m->qlen++;
        pthread_cond_signal(&m->svc.cv);
    }
    pthread_mutex_unlock(&m->svc.mu);
    return ok;
}
