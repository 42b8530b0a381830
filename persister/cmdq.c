/* SPDX-License-Identifier: Apache-2.0 */
/* cmdq.c - delivery of queued commands and their state changes (cmdq.h).
 *
 * Why here and not in the notifier: the persister has the database, sees
 * every connect, and holds a ROUTER every edge worker's DEALER is connected
 * to (docs/api.md, "Commands: who delivers"). Why a thread of its own: a
 * round is a few statements on its own connection, and the loop must never
 * wait for them; the only thing crossing back is a ZeroMQ message on an
 * inproc PUSH (the loop owns the ROUTER: a socket has one thread).
 *
 * Order: one persister dispatches at a time (a transaction-level advisory
 * lock), and commands of a device go in seq order, so queued commands
 * reach a device in submission order, before newer ones. A command is
 * handed to a session at most once (sent_epoch), and written at most
 * max_attempts times in all (attempts counts the edges' cmd_sent).
 *
 * Deliberately not here: the commands' insertion (sluice-api), sessions
 * (the writers store them, with the route: migrations/005), the ROUTER. */
#define _GNU_SOURCE
#include "cmdq.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "sl/limits.h"
#include "sl/log.h"
#include "sl/loop.h"
#include "sl/pgconn.h"
#include "sl/stat.h"
#include "sl/tojson.h"
#include "svcthread.h"

#define CMDQ_LOCK_KEY  "7308604637093544964" /* one dispatcher at a time, cluster-wide */
#define CMDQ_BUF       (256u * 1024u)
#define CMDQ_RETRY_MS  2000u
#define CMDQ_EXPIRE_MS 1000u
/* The outbox of state changes (migrations/006) is drained by notifiers with
 * --db; what nobody took within an hour goes, so that a system without such
 * a notifier does not keep every event forever. */
#define CMDQ_PRUNE_MS   60000u
#define CMDQ_EVENTS_AGE "1 hour"

/* A report from an edge, copied off the loop's message. */
struct ev {
    struct ev *next;
    enum envelope_kind kind;
    bool ok, has_body;
    uint64_t epoch;
    char dev[SL_DEV_MAX + 1];
    char id[SL_CMD_ID_MAX + 1];
    uint32_t body_len;
    uint8_t body[]; /* res: the body's msgpack */
};

struct cmdq {
    struct cmdq_cfg cfg;
    char *conninfo, *self;
    struct cmdq_stats *st;
    void *push; /* used by the thread only */

    struct svcthread svc; /* its mu guards quit and the fields below */
    struct ev *head, **tail;
    unsigned nev;
    bool kicked;

    /* The thread's own. */
    struct pgconn db;
    uint64_t next_expire, next_prune;
    uint8_t *buf;
    char *json;
};

static const char *const stmts[][2] = {
    {"sent",
     "UPDATE commands SET attempts = attempts + 1, state = 'delivered', sent_epoch = $3, updated_at = now(),"
     " history = history || jsonb_build_array(jsonb_build_object('state', 'delivered', 'at', now()))"
     " WHERE id = $1 AND device_id = $2 AND state IN ('queued', 'delivered')"},
    {"res", "UPDATE commands SET state = $3, result = $4::jsonb, updated_at = now(),"
            " history = history || jsonb_build_array(jsonb_build_object('state', $3::text, 'at', now()))"
            " WHERE id = $1 AND device_id = $2 AND state IN ('queued', 'delivered')"},
    {"expire",
     "UPDATE commands SET state = 'expired', result = '{\"error\":\"expired\"}', updated_at = now(),"
     " history = history || jsonb_build_array(jsonb_build_object('state', 'expired', 'at', now()))"
     " WHERE state IN ('queued', 'delivered') AND expires_at <= now()"},
    /* Written max times, and its device is no longer in the session it was
     * last written to: it will not be answered. */
    {"give_up",
     "UPDATE commands c SET state = 'error', updated_at = now(),"
     " result = jsonb_build_object('error', 'max_attempts', 'attempts', c.attempts),"
     " history = history || jsonb_build_array(jsonb_build_object('state', 'error', 'at', now()))"
     " WHERE c.state IN ('queued', 'delivered') AND c.attempts >= $1 AND c.sent_epoch IS DISTINCT FROM"
     " (SELECT x.epoch FROM device_sessions x WHERE x.device_id = c.device_id"
     " AND x.connected_at IS NOT NULL AND x.disconnected_at IS NULL ORDER BY x.epoch DESC LIMIT 1)"},
    /* Pending commands of devices whose newest session is open and has not
     * had them yet, in device and submission order. */
    {"pick",
     "SELECT c.id, c.device_id, c.body_mp, s.edge_id, s.incarnation, s.reply, s.epoch, s.slot, s.gen"
     " FROM commands c JOIN LATERAL (SELECT x.edge_id, x.incarnation, x.reply, x.epoch, x.slot, x.gen,"
     " x.connected_at, x.disconnected_at FROM device_sessions x WHERE x.device_id = c.device_id"
     " ORDER BY x.epoch DESC LIMIT 1) s ON true"
     " WHERE c.state IN ('queued', 'delivered') AND c.expires_at > now() AND c.attempts < $1"
     " AND s.connected_at IS NOT NULL AND s.disconnected_at IS NULL AND s.reply IS NOT NULL"
     " AND c.sent_epoch IS DISTINCT FROM s.epoch"
     " ORDER BY c.device_id, c.seq LIMIT $2 FOR UPDATE OF c"},
    {"handed", "UPDATE commands SET sent_epoch = $2 WHERE id = $1"},
    {"prune_events", "DELETE FROM command_events WHERE at < now() - interval '" CMDQ_EVENTS_AGE "'"},
    /* Connections to close (sluice-api DELETE .../connection), still open. */
    {"kicks",
     "WITH k AS (DELETE FROM device_kicks RETURNING device_id, epoch)"
     " SELECT k.device_id, x.incarnation, x.reply, x.epoch, x.slot, x.gen FROM k JOIN device_sessions x"
     " ON x.device_id = k.device_id AND x.epoch = k.epoch"
     " WHERE x.reply IS NOT NULL AND x.connected_at IS NOT NULL AND x.disconnected_at IS NULL"},
};

/* ---- the loop's side ---------------------------------------------------- */

static void copy_str(char *out, size_t cap, struct sl_slice s)
{
    size_t n = s.n < cap - 1 ? s.n : cap - 1;
    memcpy(out, s.p, n);
    out[n] = '\0';
}

bool cmdq_post(struct cmdq *q, const struct envelope *e)
{
    if (e->kind != ENV_RES && e->kind != ENV_CMD_SENT)
        return true; /* undeliverable: the command waits for the next session as it is */
    uint32_t blen = e->kind == ENV_RES && e->has_body ? e->body.n : 0;
    pthread_mutex_lock(&q->svc.mu);
    bool full = q->nev >= CMDQ_EVENTS_MAX;
    pthread_mutex_unlock(&q->svc.mu);
    if (full)
        return false;
    struct ev *v = malloc(sizeof *v + blen); /* one per report: a few per command, never per message */
    if (!v)
        return false;
    memset(v, 0, sizeof *v);
    v->kind = e->kind;
    v->ok = e->ok;
    v->has_body = blen > 0;
    v->epoch = e->epoch;
    copy_str(v->dev, sizeof v->dev, e->dev);
    copy_str(v->id, sizeof v->id, e->id);
    v->body_len = blen;
    if (blen)
        memcpy(v->body, e->body.p, blen);
    pthread_mutex_lock(&q->svc.mu);
    *q->tail = v;
    q->tail = &v->next;
    q->nev++;
    pthread_cond_signal(&q->svc.cv);
    pthread_mutex_unlock(&q->svc.mu);
    return true;
}

void cmdq_kick(struct cmdq *q)
{
    pthread_mutex_lock(&q->svc.mu);
    q->kicked = true;
    pthread_cond_signal(&q->svc.cv);
    pthread_mutex_unlock(&q->svc.mu);
}

/* ---- the thread --------------------------------------------------------- */

static void pg_fail(struct cmdq *q, const char *what, const PGresult *r)
{
    pgconn_fail_res(&q->db, what, r);
}

static bool prepare(struct pgconn *c, void *ud)
{
    (void)ud; /* e.g. the writers have not migrated to 005 yet: retried */
    return pgconn_prepare(c, stmts, sizeof stmts / sizeof stmts[0]);
}

static bool pg_up(struct cmdq *q)
{
    return pgconn_up(&q->db, prepare, q);
}

/* Run a command statement; rows affected, or -1 (logged). */
static long exec_n(struct cmdq *q, const char *name, int n, const char *const *v)
{
    PGresult *r = PQexecPrepared(q->db.pg, name, n, v, NULL, NULL, 0);
    long rows = -1;
    if (PQresultStatus(r) == PGRES_COMMAND_OK)
        rows = atol(PQcmdTuples(r));
    else
        pg_fail(q, name, r);
    PQclear(r);
    return rows;
}

static bool simple(struct cmdq *q, const char *sql)
{
    return pgconn_exec(&q->db, sql);
}

/* Apply one report. false: a database failure (retry the report later). */
static bool apply(struct cmdq *q, const struct ev *v)
{
    if (v->kind == ENV_CMD_SENT) {
        char ep[24];
        snprintf(ep, sizeof ep, "%lld", (long long)v->epoch);
        const char *p[3] = {v->id, v->dev, ep};
        long n = exec_n(q, "sent", 3, p);
        if (n > 0)
            stat_inc(&q->st->sent);
        return n >= 0;
    }
    /* res: the body as JSON (protocol.md §3), null when absent or not msgpack. */
    struct tojson_buf b;
    tojson_buf_init(&b, q->json, CMDQ_BUF - 1);
    if (!v->has_body || tojson_encode(&b, v->body, v->body_len) != SL_OK) {
        b.len = 0;
        tojson_raw(&b, "null", 4);
    }
    q->json[b.len] = '\0';
    const char *p[4] = {v->id, v->dev, v->ok ? "ok" : "error", q->json};
    long n = exec_n(q, "res", 4, p);
    if (n > 0)
        stat_inc(&q->st->results);
    return n >= 0;
}

static void send_batch(struct cmdq *q, const char *reply, struct envelope_writer *w)
{
    if (envelope_writer_count(w) == 0)
        return;
    /* inproc to the loop, which forwards both frames on its ROUTER. */
    if (zmq_send(q->push, reply, strlen(reply), ZMQ_SNDMORE) >= 0)
        zmq_send(q->push, q->buf, envelope_writer_len(w), 0);
}

static uint64_t be64_at(const PGresult *r, int row, int col)
{
    uint64_t v;
    memcpy(&v, PQgetvalue(r, row, col), 8);
    return __builtin_bswap64(v);
}

/* Send the rows of r (binary: id, device, body, edge, incarnation, reply,
 * epoch, slot, gen for cmd; device, incarnation, reply, epoch, slot, gen
 * for kick) as entries of kind, one batch per (worker, incarnation). Rows
 * come in device order, so one device's commands stay in order. */
static void send_rows(struct cmdq *q, const PGresult *r, enum envelope_kind kind)
{
    const int off = kind == ENV_CMD ? 3 : 0; /* kick rows lack id, body, edge */
    struct envelope_writer w;
    char cur_reply[256] = "";
    uint64_t cur_inc = 0;
    bool open = false;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *reply = PQgetvalue(r, i, off + 2);
        uint64_t inc = be64_at(r, i, off + 1);
        const struct envelope_hdr h = {.v = SL_ENVELOPE_VERSION,
                                       .edge = {(const uint8_t *)q->self, (uint32_t)strlen(q->self)},
                                       .incarnation = inc,
                                       .reply = {(const uint8_t *)"", 0}};
        if (!open || inc != cur_inc || strcmp(reply, cur_reply) != 0) {
            if (open)
                send_batch(q, cur_reply, &w);
            snprintf(cur_reply, sizeof cur_reply, "%s", reply);
            cur_inc = inc;
            envelope_writer_begin(&w, q->buf, CMDQ_BUF, &h);
            open = true;
        }
        const int dcol = kind == ENV_CMD ? 1 : 0;
        struct envelope e = {
            .kind = kind,
            .slot = (uint32_t)be64_at(r, i, off + 4),
            .gen = (uint32_t)be64_at(r, i, off + 5),
            .dev = {(const uint8_t *)PQgetvalue(r, i, dcol), (uint32_t)PQgetlength(r, i, dcol)},
            .epoch = be64_at(r, i, off + 3)};
        if (kind == ENV_CMD) {
            e.id = (struct sl_slice){(const uint8_t *)PQgetvalue(r, i, 0), (uint32_t)PQgetlength(r, i, 0)};
            e.body = (struct sl_slice){(const uint8_t *)PQgetvalue(r, i, 2), (uint32_t)PQgetlength(r, i, 2)};
            e.has_body = true;
        }
        if (envelope_writer_add(&w, &e) == SL_TOOBIG) {
            send_batch(q, cur_reply, &w);
            envelope_writer_begin(&w, q->buf, CMDQ_BUF, &h);
            envelope_writer_add(&w, &e); /* a body is at most a frame: it fits an empty batch */
        }
    }
    if (open)
        send_batch(q, cur_reply, &w);
    if (kind == ENV_CMD)
        stat_add(&q->st->handed, (uint64_t)PQntuples(r));
}

/* Close the connections sluice-api was asked to close (the dispatcher's
 * lock is not needed: DELETE ... RETURNING gives each request to one
 * persister). */
static bool kicks(struct cmdq *q)
{
    PGresult *r = PQexecPrepared(q->db.pg, "kicks", 0, NULL, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_fail(q, "kicks", r);
        PQclear(r);
        return false;
    }
    send_rows(q, r, ENV_KICK);
    stat_add(&q->st->kicks, (uint64_t)PQntuples(r));
    PQclear(r);
    return true;
}

/* Hand pending commands to the sessions that should have them. One round,
 * one transaction; the batches go to the loop after COMMIT. */
static bool dispatch(struct cmdq *q)
{
    if (!simple(q, "BEGIN"))
        return false;
    PGresult *r = PQexec(q->db.pg, "SELECT pg_try_advisory_xact_lock(" CMDQ_LOCK_KEY ")");
    bool got = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        pg_fail(q, "lock", r);
    PQclear(r);
    if (!got) {
        if (q->db.pg)
            simple(q, "ROLLBACK");
        return q->db.pg != NULL && kicks(q); /* another persister is dispatching commands */
    }
    char max[24], lim[24];
    snprintf(max, sizeof max, "%lld", (long long)q->cfg.max_attempts);
    snprintf(lim, sizeof lim, "%d", CMDQ_BATCH_MAX);
    const char *pv[2] = {max, lim};
    r = PQexecPrepared(q->db.pg, "pick", 2, pv, NULL, NULL, 1); /* binary: body_mp as bytes */
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_fail(q, "pick", r);
        PQclear(r);
        if (q->db.pg)
            simple(q, "ROLLBACK");
        return false;
    }
    int n = PQntuples(r);
    bool ok = true;
    for (int i = 0; ok && i < n; i++) {
        char ep[24];
        uint64_t e = 0;
        memcpy(&e, PQgetvalue(r, i, 6), 8);
        snprintf(ep, sizeof ep, "%lld", (long long)__builtin_bswap64(e));
        const char *hv[2] = {PQgetvalue(r, i, 0), ep};
        ok = exec_n(q, "handed", 2, hv) >= 0;
    }
    if (!ok || !simple(q, "COMMIT")) {
        PQclear(r);
        if (q->db.pg)
            simple(q, "ROLLBACK");
        return false;
    }
    /* Committed: now the cmd entries. */
    send_rows(q, r, ENV_CMD);
    PQclear(r);
    return kicks(q);
}

static void round_trip(struct cmdq *q, struct ev **pending)
{
    if (!pg_up(q))
        return;
    /* Reports first: a res that came in this round ends its command before
     * give_up could judge it. A report is freed once applied. */
    while (*pending) {
        struct ev *v = *pending;
        if (!apply(q, v))
            return; /* kept for the next round */
        *pending = v->next;
        free(v);
    }
    uint64_t now = loop_clock_ms();
    if (now >= q->next_expire) {
        q->next_expire = now + CMDQ_EXPIRE_MS;
        long n = exec_n(q, "expire", 0, NULL);
        if (n < 0)
            return;
        stat_add(&q->st->expired, (uint64_t)n);
        char max[24];
        snprintf(max, sizeof max, "%lld", (long long)q->cfg.max_attempts);
        const char *p[1] = {max};
        if ((n = exec_n(q, "give_up", 1, p)) < 0)
            return;
        stat_add(&q->st->gave_up, (uint64_t)n);
    }
    if (now >= q->next_prune) {
        q->next_prune = now + CMDQ_PRUNE_MS;
        if (exec_n(q, "prune_events", 0, NULL) < 0)
            return;
    }
    dispatch(q);
}

static void *cmdq_main(void *arg)
{
    struct cmdq *q = arg;
    struct ev *pending = NULL, **ptail = &pending;
    pthread_mutex_lock(&q->svc.mu);
    for (;;) {
        if (!q->svc.quit && !q->kicked && !q->head)
            svcthread_wait_ms(&q->svc, CMDQ_POLL_MS);
        if (q->svc.quit) {
            *ptail = q->head; /* what the edges reported before SIGTERM: one last round */
            q->head = NULL;
            q->tail = &q->head;
            break;
        }
        /* Take the reports: they join the ones a failed round kept. */
        if (q->head) {
            *ptail = q->head;
            ptail = q->tail;
            q->head = NULL;
            q->tail = &q->head;
        }
        q->nev = 0;
        q->kicked = false;
        pthread_mutex_unlock(&q->svc.mu);
        round_trip(q, &pending);
        ptail = &pending;
        while (*ptail)
            ptail = &(*ptail)->next;
        pthread_mutex_lock(&q->svc.mu);
    }
    pthread_mutex_unlock(&q->svc.mu);
    if (pending)
        round_trip(q, &pending);
    while (pending) {
        struct ev *v = pending;
        pending = v->next;
        free(v);
    }
    return NULL;
}

struct cmdq *cmdq_new(const struct cmdq_cfg *cfg, struct cmdq_stats *st)
{
    struct cmdq *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->cfg = *cfg;
    q->st = st;
    q->tail = &q->head;
    q->conninfo = strdup(cfg->conninfo ? cfg->conninfo : "");
    q->self = strdup(cfg->self ? cfg->self : "persister");
    pgconn_init(&q->db, q->conninfo ? q->conninfo : "", PGCONN_APP_CMDQ, "cmdq", CMDQ_RETRY_MS,
                &st->db_errors);
    q->buf = malloc(CMDQ_BUF);
    q->json = malloc(CMDQ_BUF);
    svcthread_init(&q->svc);
    if (!q->conninfo || !q->self || !q->buf || !q->json) {
        log_error("event=alloc_failed what=cmdq");
        cmdq_destroy(&q);
        return NULL;
    }
    q->push = zmq_socket(cfg->zctx, ZMQ_PUSH);
    int linger = 0;
    if (!q->push || zmq_setsockopt(q->push, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_connect(q->push, cfg->endpoint) != 0) {
        log_error("event=cmdq_socket_failed err=\"%s\"", zmq_strerror(zmq_errno()));
        cmdq_destroy(&q);
        return NULL;
    }
    if (svcthread_start(&q->svc, "cmdq", cmdq_main, q) != 0) {
        cmdq_destroy(&q);
        return NULL;
    }
    return q;
}

void cmdq_destroy(struct cmdq **qp)
{
    struct cmdq *q = *qp;
    if (!q)
        return;
    svcthread_stop(&q->svc);
    while (q->head) {
        struct ev *v = q->head;
        q->head = v->next;
        free(v);
    }
    if (q->push)
        zmq_close(q->push);
    pgconn_fini(&q->db);
    svcthread_fini(&q->svc);
    free(q->conninfo);
    free(q->self);
    free(q->buf);
    free(q->json);
    free(q);
    *qp = NULL;
}
