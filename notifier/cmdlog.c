/* SPDX-License-Identifier: Apache-2.0 */
/* cmdlog.c - the durable command queue's states and results to MQTT
 * (cmdlog.h).
 *
 * Why an outbox table and not a query of commands: a state change and its
 * event commit together (the trigger, migrations/006), so no change is
 * missed or seen twice, whoever made it (sluice-api, any persister). Why
 * DELETE ... RETURNING under an advisory lock: each event is taken by one
 * notifier, and one notifier at a time takes them, in event order, so one
 * command's states are published in the order they happened. Why claim
 * before publishing: a final state's result must never be published twice
 * (docs/protocol.md §5); the price is that a notifier killed between the
 * COMMIT and the broker's PUBACK loses what it had claimed.
 *
 * PostgreSQL writes every payload (json_build_object: quoting, timestamps
 * in UTC): the thread only adds the topics.
 *
 * Deliberately not here: MQTT (the loop's thread publishes through the
 * callback it gives cmdlog_flush), the commands' delivery (the persister's
 * cmdq), the states' SQL (sluice-api, the persister). */
#define _GNU_SOURCE
#include "cmdlog.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "ntf.h"
#include "sl/cmdstore.h"
#include "sl/limits.h"
#include "sl/log.h"
#include "sl/loop.h"
#include "sl/pgconn.h"
#include "sl/stat.h"

#define CMDLOG_LOCK_KEY "7308604637093544965" /* one drainer at a time; cmdq's key + 1 */
#define CMDLOG_CHANNEL  "sluice_command_events"
#define CMDLOG_BATCH    256   /* events claimed per transaction at most */
#define CMDLOG_POLL_MS  500   /* a missed notification costs at most this */
#define CMDLOG_RETRY_MS 2000u /* between connection attempts */

/* One publish, topic and payload in one allocation: a few per command,
 * never per data message. */
struct item {
    struct item *next;
    size_t topic_len, len;
    char *payload; /* into data, after the topic */
    char data[];
};

/* An MQTT command to store (cmdlog_submit). */
struct req {
    struct req *next;
    uint64_t deadline_ms; /* loop_clock_ms: answered "unavailable" after it */
    int64_t ttl_s;
    char dev[SL_DEV_MAX + 1];
    char id[SL_CMD_ID_MAX + 1];
    char *json; /* into data */
    size_t mp_len;
    uint8_t data[]; /* mp, then json */
};

struct cmdlog {
    char *conninfo, *prefix;
    int64_t max_queued;
    struct loop *loop;
    struct cmdlog_stats *st;
    pthread_t th;
    bool started;
    int efd; /* wakes the thread: a command to store, or stop */

    pthread_mutex_t mu; /* guards the fields below */
    struct item *head, **tail;
    unsigned n;
    struct req *rhead, **rtail; /* from cmdlog_submit */
    unsigned nreq;              /* in rhead and the thread's own list */
    bool quit;

    /* The thread's own. */
    struct pgconn db;
};

/* $1 how many. The result payloads as docs/protocol.md §5 has them: the
 * device's body for ok and error, an error code for the outcomes the queue
 * decided. A persister's give-up is told from a device's error by its
 * result (persister/cmdq.c give_up); a device answering exactly that
 * object reads as max_attempts too, as it does over HTTP. */
static const char claim_sql[] =
    "WITH e AS (DELETE FROM command_events WHERE event_id IN"
    " (SELECT event_id FROM command_events ORDER BY event_id LIMIT $1) RETURNING *)"
    " SELECT device_id, command_id,"
    " json_build_object('state', state, 'at', at, 'attempts', attempts)::text,"
    " CASE state WHEN 'ok' THEN json_build_object('ok', true, 'body', result)::text"
    " WHEN 'error' THEN CASE WHEN result = jsonb_build_object('error', 'max_attempts', 'attempts', attempts)"
    " THEN '{\"ok\":false,\"error\":\"max_attempts\"}' ELSE json_build_object('ok', false, 'body', "
    "result)::text"
    " END"
    " WHEN 'expired' THEN '{\"ok\":false,\"error\":\"expired\"}'"
    " WHEN 'rejected' THEN '{\"ok\":false,\"error\":\"offline\"}' END"
    " FROM e ORDER BY event_id";

/* ---- the thread --------------------------------------------------------- */

static void pg_fail(struct cmdlog *c, const char *what, const PGresult *r)
{
    pgconn_fail_res(&c->db, what, r);
}

static bool simple(struct cmdlog *c, const char *sql)
{
    return pgconn_exec(&c->db, sql);
}

/* A new connection: UTC timestamps in the payloads, the trigger's channel,
 * our statement and the submission's (sl/cmdstore.h). */
static bool setup(struct pgconn *db, void *ud)
{
    (void)ud;
    static const char *const claim[][2] = {{"claim", claim_sql}};
    /* e.g. no persister has migrated to 006 yet: retried */
    return pgconn_exec(db, "SET TimeZone = 'UTC'") && pgconn_exec(db, "LISTEN " CMDLOG_CHANNEL) &&
           pgconn_prepare(db, claim, 1) && pgconn_prepare(db, cmdstore_stmts, CMDSTORE_NSTMTS);
}

static bool pg_up(struct cmdlog *c)
{
    return pgconn_up(&c->db, setup, c);
}

static struct item *item_new(const char *prefix, const char *dev, const char *id, const char *leaf,
                             const char *payload, size_t len)
{
    int tl = snprintf(NULL, 0, "%s/%s/cmd/%s/%s", prefix, dev, id, leaf);
    if (tl < 0)
        return NULL;
    struct item *it = malloc(sizeof *it + (size_t)tl + 1 + len);
    if (!it)
        return NULL;
    it->next = NULL;
    snprintf(it->data, (size_t)tl + 1, "%s/%s/cmd/%s/%s", prefix, dev, id, leaf);
    it->topic_len = (size_t)tl;
    it->payload = it->data + tl + 1;
    memcpy(it->payload, payload, len);
    it->len = len;
    return it;
}

static void free_items(struct item *it)
{
    while (it) {
        struct item *nx = it->next;
        free(it);
        it = nx;
    }
}

/* Hand one publish to the loop. */
static void hand_over(struct cmdlog *c, struct item *it)
{
    pthread_mutex_lock(&c->mu);
    *c->tail = it;
    c->tail = &it->next;
    c->n++;
    pthread_mutex_unlock(&c->mu);
    loop_wake(c->loop);
}

/* A command the queue did not take: its one result says why. */
static void refuse(struct cmdlog *c, const struct req *q, const char *error)
{
    char p[64];
    int len = snprintf(p, sizeof p, "{\"ok\":false,\"error\":\"%s\"}", error);
    struct item *it = item_new(c->prefix, q->dev, q->id, "result", p, (size_t)len);
    stat_inc(&c->st->refused);
    char qd[96];
    log_info("event=cmd_refused dev=%s id=%s reason=%s", log_q(qd, sizeof qd, q->dev, strlen(q->dev)), q->id,
             error);
    if (!it) {
        log_error("event=alloc_failed what=cmdlog");
        return;
    }
    hand_over(c, it);
}

/* Store one command. false: the database is unreachable (keep it). */
static bool submit(struct cmdlog *c, const struct req *q)
{
    const struct cmdstore_cmd cmd = {.dev = q->dev,
                                     .id = q->id,
                                     .json = q->json,
                                     .mp = q->data,
                                     .mp_len = q->mp_len,
                                     .ttl_s = q->ttl_s,
                                     .queue = true,
                                     .max_queued = c->max_queued};
    char *json;
    size_t len;
    PGresult *r;
    const char *what;
    char qd[96];
    switch (cmdstore_submit(c->db.pg, &cmd, &json, &len, &r, &what)) {
    case CMDSTORE_OK:
        free(json); /* its states come through the outbox */
        stat_inc(&c->st->queued);
        break;
    case CMDSTORE_UNKNOWN: refuse(c, q, "unknown_device"); break;
    case CMDSTORE_FULL: refuse(c, q, "queue_full"); break;
    case CMDSTORE_NOMEM: refuse(c, q, "unavailable"); break;
    case CMDSTORE_DUPLICATE:
        stat_inc(&c->st->dups);
        log_warn("event=cmd_dropped dev=%s id=%s reason=duplicate_id",
                 log_q(qd, sizeof qd, q->dev, strlen(q->dev)), q->id);
        break;
    case CMDSTORE_FAILED: {
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        bool data = st && !strncmp(st, "22", 2); /* e.g. \u0000 in a string: jsonb refuses it */
        pg_fail(c, what, r);
        PQclear(r);
        if (data)
            refuse(c, q, "bad_command");
        else if (c->db.pg)
            refuse(c, q, "unavailable"); /* the connection works, the statement does not: no retry */
        else
            return false;
        break;
    }
    }
    return true;
}

/* Store the commands handed over, in order; those the database cannot
 * take now wait at the head of *todo until their deadline. */
static void submit_all(struct cmdlog *c, struct req **todo)
{
    pthread_mutex_lock(&c->mu);
    struct req **t = todo;
    while (*t)
        t = &(*t)->next;
    *t = c->rhead;
    c->rhead = NULL;
    c->rtail = &c->rhead;
    pthread_mutex_unlock(&c->mu);
    while (*todo) {
        struct req *q = *todo;
        if (!pg_up(c) || !submit(c, q)) {
            if (loop_clock_ms() < q->deadline_ms)
                return;
            refuse(c, q, "unavailable");
        }
        *todo = q->next;
        free(q);
        pthread_mutex_lock(&c->mu);
        c->nreq--;
        pthread_mutex_unlock(&c->mu);
    }
}

/* One transaction: claim at most max events and hand them over. True when
 * it claimed max (more may wait). */
static bool drain(struct cmdlog *c, unsigned max)
{
    if (!simple(c, "BEGIN"))
        return false;
    PGresult *r = PQexec(c->db.pg, "SELECT pg_try_advisory_xact_lock(" CMDLOG_LOCK_KEY ")");
    bool got = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        pg_fail(c, "lock", r);
    PQclear(r);
    if (!got) { /* another notifier is draining: it publishes these */
        if (c->db.pg)
            simple(c, "ROLLBACK");
        return false;
    }
    char lim[16];
    snprintf(lim, sizeof lim, "%u", max);
    const char *v[1] = {lim};
    r = PQexecPrepared(c->db.pg, "claim", 1, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_fail(c, "claim", r);
        PQclear(r);
        if (c->db.pg)
            simple(c, "ROLLBACK");
        return false;
    }
    int rows = PQntuples(r);
    struct item *head = NULL, **tail = &head;
    unsigned n = 0, results = 0;
    bool ok = true;
    for (int i = 0; ok && i < rows; i++) {
        const char *dev = PQgetvalue(r, i, 0), *id = PQgetvalue(r, i, 1);
        struct item *st =
            item_new(c->prefix, dev, id, "state", PQgetvalue(r, i, 2), (size_t)PQgetlength(r, i, 2));
        ok = st != NULL;
        if (ok) {
            *tail = st;
            tail = &st->next;
            n++;
        }
        if (ok && !PQgetisnull(r, i, 3)) {
            const char *p = PQgetvalue(r, i, 3);
            size_t len = (size_t)PQgetlength(r, i, 3);
            if (len > NTF_PAYLOAD_MAX) { /* as the notifier's own results (protocol.md §5) */
                p = "{\"ok\":false,\"error\":\"too_big\"}";
                len = strlen(p);
            }
            struct item *res = item_new(c->prefix, dev, id, "result", p, len);
            ok = res != NULL;
            if (ok) {
                *tail = res;
                tail = &res->next;
                n++;
                results++;
            }
        }
    }
    PQclear(r);
    /* Out of memory: nothing is claimed, the events wait for the next round. */
    if (!ok || !simple(c, "COMMIT")) {
        if (!ok)
            log_error("event=alloc_failed what=cmdlog");
        if (c->db.pg)
            PQclear(PQexec(c->db.pg, "ROLLBACK"));
        free_items(head);
        return false;
    }
    if (head) {
        pthread_mutex_lock(&c->mu);
        *c->tail = head;
        c->tail = tail;
        c->n += n;
        pthread_mutex_unlock(&c->mu);
        stat_add(&c->st->states, (uint64_t)rows);
        stat_add(&c->st->results, results);
        loop_wake(c->loop);
    }
    return (unsigned)rows == max;
}

/* Sleep until a notification, a stop, or timeout_ms. */
static void wait_events(struct cmdlog *c, int timeout_ms)
{
    struct pollfd p[2] = {{.fd = c->efd, .events = POLLIN}, {.fd = -1, .events = POLLIN}};
    if (c->db.pg)
        p[1].fd = PQsocket(c->db.pg);
    if (poll(p, 2, timeout_ms) <= 0)
        return;
    if (p[0].revents) {
        uint64_t x;
        if (read(c->efd, &x, sizeof x) < 0) { /* EAGAIN: someone else read it */
        }
    }
    if (c->db.pg && p[1].revents) {
        if (!PQconsumeInput(c->db.pg)) {
            pgconn_fail(&c->db, "listen", PQerrorMessage(c->db.pg));
            return;
        }
        PGnotify *nt;
        while ((nt = PQnotifies(c->db.pg)) != NULL)
            PQfreemem(nt);
    }
}

static void *cmdlog_main(void *arg)
{
    struct cmdlog *c = arg;
    struct req *todo = NULL;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        bool quit = c->quit;
        unsigned room = c->n < CMDLOG_QUEUE_MAX ? CMDLOG_QUEUE_MAX - c->n : 0;
        pthread_mutex_unlock(&c->mu);
        if (quit)
            break;
        submit_all(c, &todo);
        bool more = false;
        if (room > 0 && pg_up(c))
            more = drain(c, room < CMDLOG_BATCH ? room : CMDLOG_BATCH);
        if (!more)
            wait_events(c, CMDLOG_POLL_MS);
    }
    /* Commands not stored by now get no result from here: stopping, the
     * notifier drops them as it drops a command it had not routed. */
    while (todo) {
        struct req *q = todo;
        todo = q->next;
        free(q);
    }
    return NULL;
}

/* ---- the loop's side ---------------------------------------------------- */

unsigned cmdlog_flush(struct cmdlog *c, cmdlog_publish_cb *publish, void *ud)
{
    unsigned k = 0;
    pthread_mutex_lock(&c->mu);
    while (c->head) {
        struct item *it = c->head;
        if (publish(ud, it->data, it->topic_len, it->payload, it->len) != 0)
            break;
        c->head = it->next;
        if (!c->head)
            c->tail = &c->head;
        c->n--;
        free(it);
        k++;
    }
    pthread_mutex_unlock(&c->mu);
    return k;
}

int cmdlog_submit(struct cmdlog *c, const char *dev, size_t dev_len, const char *id, const char *json,
                  const uint8_t *mp, size_t mp_len, int64_t ttl_s)
{
    size_t jl = strlen(json);
    if (dev_len > SL_DEV_MAX || strlen(id) > SL_CMD_ID_MAX)
        return -1;
    pthread_mutex_lock(&c->mu);
    bool full = c->nreq >= CMDLOG_SUBMIT_MAX;
    pthread_mutex_unlock(&c->mu);
    if (full)
        return -1;
    struct req *q = malloc(sizeof *q + mp_len + jl + 1); /* one per command: control path */
    if (!q)
        return -1;
    q->next = NULL;
    q->deadline_ms = loop_clock_ms() + CMDLOG_SUBMIT_WAIT_MS;
    q->ttl_s = ttl_s;
    memcpy(q->dev, dev, dev_len);
    q->dev[dev_len] = '\0';
    snprintf(q->id, sizeof q->id, "%s", id);
    q->mp_len = mp_len;
    memcpy(q->data, mp, mp_len);
    q->json = (char *)q->data + mp_len;
    memcpy(q->json, json, jl + 1);
    pthread_mutex_lock(&c->mu);
    *c->rtail = q;
    c->rtail = &q->next;
    c->nreq++;
    pthread_mutex_unlock(&c->mu);
    uint64_t one = 1;
    if (write(c->efd, &one, sizeof one) < 0) { /* full counter: the thread is being woken anyway */
    }
    return 0;
}

unsigned cmdlog_pending(struct cmdlog *c)
{
    if (!c)
        return 0;
    pthread_mutex_lock(&c->mu);
    unsigned n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

struct cmdlog *cmdlog_new(const struct cmdlog_cfg *cfg, struct cmdlog_stats *st)
{
    struct cmdlog *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->st = st;
    c->loop = cfg->loop;
    c->tail = &c->head;
    c->rtail = &c->rhead;
    c->max_queued = cfg->max_queued;
    c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->conninfo = strdup(cfg->conninfo ? cfg->conninfo : "");
    c->prefix = strdup(cfg->prefix ? cfg->prefix : "");
    pgconn_init(&c->db, c->conninfo ? c->conninfo : "", PGCONN_APP_CMDLOG, "cmdlog", CMDLOG_RETRY_MS,
                &st->db_errors);
    pthread_mutex_init(&c->mu, NULL);
    if (!c->conninfo || !c->prefix || c->efd < 0) {
        log_error("event=alloc_failed what=cmdlog");
        cmdlog_destroy(&c);
        return NULL;
    }
    /* SIGTERM and SIGINT stay with the loop's signalfd: main.c blocks them
     * before any thread exists, and this one inherits that mask. */
    int rc = pthread_create(&c->th, NULL, cmdlog_main, c);
    if (rc != 0) {
        log_error("event=thread_failed what=cmdlog err=%d", rc);
        cmdlog_destroy(&c);
        return NULL;
    }
    c->started = true;
    return c;
}

void cmdlog_stop(struct cmdlog *c)
{
    if (!c || !c->started)
        return;
    pthread_mutex_lock(&c->mu);
    c->quit = true;
    pthread_mutex_unlock(&c->mu);
    uint64_t one = 1;
    if (write(c->efd, &one, sizeof one) < 0) { /* full counter: the thread is being woken anyway */
    }
    pthread_join(c->th, NULL);
    c->started = false;
}

void cmdlog_destroy(struct cmdlog **cp)
{
    struct cmdlog *c = *cp;
    if (!c)
        return;
    cmdlog_stop(c);
    free_items(c->head);
    while (c->rhead) {
        struct req *q = c->rhead;
        c->rhead = q->next;
        free(q);
    }
    pgconn_fini(&c->db);
    if (c->efd >= 0)
        close(c->efd);
    pthread_mutex_destroy(&c->mu);
    free(c->conninfo);
    free(c->prefix);
    free(c);
    *cp = NULL;
}
