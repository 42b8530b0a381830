/* SPDX-License-Identifier: Apache-2.0 */
/* store.c - the API's libpq pool and statements (store.h).
 *
 * Why PostgreSQL writes the JSON: the rows are already there, json_agg and
 * to_json quote, escape and format timestamps (ISO 8601, UTC: every
 * connection sets TimeZone=UTC) exactly once, and the reply is one text
 * value. Why prepared statements: each endpoint is one statement, parsed
 * once per connection.
 *
 * Online state, edge and connected-since are the device's newest session
 * (device_sessions, by epoch: fenced as the persister stores it); the rest
 * is the devices row (persister/migrations/004). Keyset pages by device_id
 * (COLLATE "C": bytewise, so "> after" and a prefix range are exact).
 *
 * Deliberately not here: what a status code is (server.c), parameters'
 * syntax (route.c). Logs only connection changes and unexpected errors. */
#define _GNU_SOURCE
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sl/cmdstore.h"
#include "sl/log.h"

/* A device's newest session s, joined LATERAL to devices d. */
/* COLLATE "default": devices.device_id is "C" (bytewise pages), the
 * sessions' is the database's; compared with mixed collations, the index
 * device_sessions (device_id, epoch DESC) would not serve (measured: a page
 * of 100 devices scanned every session 100 times). */
#define NEWEST_SESSION                                                                                       \
    " LEFT JOIN LATERAL (SELECT x.edge_id, x.connected_at, x.disconnected_at FROM device_sessions x"         \
    " WHERE x.device_id = d.device_id COLLATE \"default\" ORDER BY x.epoch DESC LIMIT 1) s ON true"
#define ONLINE "coalesce(s.connected_at IS NOT NULL AND s.disconnected_at IS NULL, false)"
#define DEVICE_JSON                                                                                          \
    "'id', d.device_id, 'online', " ONLINE ", 'edge', s.edge_id, 'connected_since', CASE WHEN " ONLINE       \
    " THEN s.connected_at END, 'first_seen', d.first_seen, 'last_seen', d.last_seen, 'last_seq', d.last_seq"
/* A command as GET /v1/commands/{id} shows it: as the submission returns it. */
#define COMMAND_JSON CMDSTORE_COMMAND_JSON

static const char *const stmts[][2] = {
    /* $1 after ("" = from the start), $2 and $3 the id range [lo, hi) of
     * the prefix ("" and "~" without one: '~' sorts after every id byte),
     * $4 online, $5 limit. Plain comparisons, always set: the key's range
     * scan starts at the cursor whatever the plan (an "IS NULL OR" would
     * make a generic plan scan from the first device). */
    {"devices", "WITH p AS (SELECT d.device_id, json_build_object(" DEVICE_JSON
                ") AS j FROM devices d" NEWEST_SESSION " WHERE d.device_id > $1 AND d.device_id >= $2"
                " AND d.device_id < $3"
                " AND ($4::bool IS NULL OR " ONLINE " = $4)"
                " ORDER BY d.device_id LIMIT $5)"
                " SELECT json_build_object('devices', coalesce(json_agg(j ORDER BY device_id), '[]'::json),"
                " 'next', CASE WHEN count(*) = $5 THEN max(device_id) END)::text FROM p"},
    /* $1 device */
    {"device",
     "SELECT json_build_object(" DEVICE_JSON ", 'sessions', (SELECT coalesce(json_agg(json_build_object("
     "'edge', z.edge_id, 'epoch', z.epoch, 'peer', z.peer, 'connected_at', z.connected_at,"
     " 'disconnected_at', z.disconnected_at, 'reason', nullif(z.reason, '')) ORDER BY z.epoch DESC),"
     " '[]'::json) FROM (SELECT * FROM device_sessions y WHERE y.device_id = $1"
     " ORDER BY y.epoch DESC LIMIT 10) z))::text FROM devices d" NEWEST_SESSION " WHERE d.device_id = $1"},
    /* $1 device, $2 from, $3 to (timestamptz text: "-infinity" and
     * "infinity" without them), $4 before seq (INT64_MAX without one), $5
     * limit. Always set, plain comparisons: each partition's key serves
     * (device_id, seq < before) backwards, and partitions outside [from, to)
     * are pruned, whatever the plan. */
    {"telemetry",
     "WITH r AS (SELECT seq, device_ts, received_at, edge_id, body FROM telemetry"
     " WHERE device_id = $1 AND received_at >= $2::timestamptz AND received_at < $3::timestamptz"
     " AND seq < $4::int8 ORDER BY seq DESC LIMIT $5)"
     " SELECT CASE WHEN EXISTS (SELECT 1 FROM devices WHERE device_id = $1)"
     " OR EXISTS (SELECT 1 FROM r) THEN json_build_object('device', $1::text,"
     " 'rows', coalesce((SELECT json_agg(json_build_object('seq', seq, 'ts', device_ts,"
     " 'received_at', received_at, 'edge', edge_id, 'body', body) ORDER BY seq DESC) FROM r),"
     " '[]'::json), 'next_before', (SELECT CASE WHEN count(*) = $5 THEN min(seq) END FROM r))::text"
     " END"},
    /* $1 device. One statement: all or nothing. */
    {"delete_data", "WITH t AS (DELETE FROM telemetry WHERE device_id = $1 RETURNING 1),"
                    " k AS (DELETE FROM telemetry_keys WHERE device_id = $1 RETURNING 1),"
                    " rj AS (DELETE FROM telemetry_rejected WHERE device_id = $1 RETURNING 1),"
                    " c AS (DELETE FROM telemetry_conflicts WHERE device_id = $1 RETURNING 1),"
                    " s AS (DELETE FROM device_sessions WHERE device_id = $1 RETURNING 1),"
                    " d AS (DELETE FROM devices WHERE device_id = $1 RETURNING 1),"
                    " q AS (DELETE FROM commands WHERE device_id = $1 RETURNING 1),"
                    " kk AS (DELETE FROM device_kicks WHERE device_id = $1)" /* run though unreferenced */
                    " SELECT CASE WHEN EXISTS (SELECT 1 FROM d) OR EXISTS (SELECT 1 FROM k)"
                    " OR EXISTS (SELECT 1 FROM s) OR EXISTS (SELECT 1 FROM rj)"
                    " THEN json_build_object('device', $1::text, 'deleted', json_build_object("
                    "'telemetry', (SELECT count(*) FROM t), 'rejected', (SELECT count(*) FROM rj),"
                    " 'conflicts', (SELECT count(*) FROM c), 'sessions', (SELECT count(*) FROM s),"
                    " 'commands', (SELECT count(*) FROM q)))::text END"},
    /* $1 command id */
    {"command", "SELECT " COMMAND_JSON "::text FROM commands c WHERE c.id = $1"},
    /* $1 device: close its newest session if open (the persister's cmdq
     * sends the kick). NULL: unknown device; false: not connected. */
    {"kick",
     "WITH s AS (SELECT x.epoch, x.edge_id FROM device_sessions x WHERE x.device_id = $1"
     " AND x.connected_at IS NOT NULL ORDER BY x.epoch DESC LIMIT 1),"
     " o AS (SELECT * FROM s WHERE NOT EXISTS (SELECT 1 FROM device_sessions y WHERE y.device_id = $1"
     " AND y.epoch = s.epoch AND y.disconnected_at IS NOT NULL)),"
     " k AS (INSERT INTO device_kicks (device_id, epoch) SELECT $1, epoch FROM o"
     " ON CONFLICT (device_id) DO UPDATE SET epoch = EXCLUDED.epoch, requested_at = now() RETURNING 1)"
     " SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM devices WHERE device_id = $1) THEN NULL"
     " WHEN NOT EXISTS (SELECT 1 FROM k) THEN 'false'"
     " ELSE json_build_object('device', $1::text, 'edge', (SELECT edge_id FROM o), 'closing', true)::text"
     " END"},
};
#define NSTMTS (sizeof stmts / sizeof stmts[0])

struct store {
    char *conninfo;
    unsigned n, wait_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    PGconn **conns; /* NULL: not connected */
    bool *busy;
    unsigned connect_fails;
};

struct store *store_new(const char *conninfo, unsigned conns, unsigned wait_ms)
{
    struct store *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->n = conns ? conns : 1;
    s->wait_ms = wait_ms;
    s->conninfo = strdup(conninfo ? conninfo : "");
    s->conns = calloc(s->n, sizeof *s->conns);
    s->busy = calloc(s->n, sizeof *s->busy);
    if (!s->conninfo || !s->conns || !s->busy) {
        free(s->conninfo);
        free(s->conns);
        free(s->busy);
        free(s);
        return NULL;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    return s;
}

void store_destroy(struct store **sp)
{
    struct store *s = *sp;
    if (!s)
        return;
    for (unsigned i = 0; i < s->n; i++)
        if (s->conns[i])
            PQfinish(s->conns[i]);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->conninfo);
    free(s->conns);
    free(s->busy);
    free(s);
    *sp = NULL;
}

static void ignore_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* A new connection with every statement prepared, or NULL (logged: the
 * first failure, then one in 10). */
static PGconn *connect_one(struct store *s)
{
    const char *keys[] = {"connect_timeout", "application_name", "options", "dbname", NULL};
    const char *vals[] = {"3", "sluice-api", "-c TimeZone=UTC", s->conninfo, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    const char *err = NULL;
    if (!c || PQstatus(c) != CONNECTION_OK) {
        err = c ? PQerrorMessage(c) : "out of memory";
    } else {
        PQsetNoticeProcessor(c, ignore_notice, NULL);
        /* Ours, then the submission's (sl/cmdstore.h). */
        for (size_t k = 0; k < NSTMTS + CMDSTORE_NSTMTS && !err; k++) {
            const char *const *st = k < NSTMTS ? stmts[k] : cmdstore_stmts[k - NSTMTS];
            PGresult *r = PQprepare(c, st[0], st[1], 0, NULL);
            if (PQresultStatus(r) != PGRES_COMMAND_OK)
                err = PQresultErrorMessage(r); /* e.g. the persister has not migrated yet */
            if (err) {
                char q[600];
                log_warn("event=db_prepare_failed stmt=%s err=%s", st[0],
                         log_q(q, sizeof q, err, strlen(err)));
            }
            PQclear(r);
        }
        if (err)
            err = "prepare failed";
    }
    if (err) {
        pthread_mutex_lock(&s->mu);
        unsigned fails = s->connect_fails++;
        pthread_mutex_unlock(&s->mu);
        if (fails % 10u == 0) {
            char q[600];
            log_warn("event=db_connect_failed failures=%u err=%s", fails + 1u,
                     log_q(q, sizeof q, err, strlen(err)));
        }
        if (c)
            PQfinish(c);
        return NULL;
    }
    pthread_mutex_lock(&s->mu);
    if (s->connect_fails)
        log_info("event=db_connected after_failures=%u", s->connect_fails);
    s->connect_fails = 0;
    pthread_mutex_unlock(&s->mu);
    return c;
}

/* Take a free slot (waiting up to wait_ms); connect it if needed. -1: none. */
static int acquire(struct store *s, PGconn **out)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += s->wait_ms / 1000u;
    until.tv_nsec += (long)(s->wait_ms % 1000u) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    int slot = -1;
    for (;;) {
        /* A connected free slot first, then any free one. */
        for (unsigned i = 0; i < s->n && slot < 0; i++)
            if (!s->busy[i] && s->conns[i])
                slot = (int)i;
        for (unsigned i = 0; i < s->n && slot < 0; i++)
            if (!s->busy[i])
                slot = (int)i;
        if (slot >= 0 || pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT)
            break;
    }
    if (slot >= 0)
        s->busy[slot] = true;
    PGconn *c = slot >= 0 ? s->conns[slot] : NULL;
    pthread_mutex_unlock(&s->mu);
    if (slot < 0)
        return -1;
    if (c && PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        c = NULL;
    }
    if (!c)
        c = connect_one(s); /* outside the lock: it blocks */
    pthread_mutex_lock(&s->mu);
    s->conns[slot] = c;
    if (!c) {
        s->busy[slot] = false;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (!c)
        return -1;
    *out = c;
    return slot;
}

static void release(struct store *s, int slot)
{
    pthread_mutex_lock(&s->mu);
    s->busy[slot] = false;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Run prepared statement `name` that returns one text value or none.
 * NULL value (or no row): STORE_NOT_FOUND. */
static enum store_rc run(struct store *s, const char *name, int n, const char *const *v, char **json,
                         size_t *len)
{
    *json = NULL;
    *len = 0;
    PGconn *c;
    int slot = acquire(s, &c);
    if (slot < 0)
        return STORE_UNAVAILABLE;
    PGresult *r = PQexecPrepared(c, name, n, v, NULL, NULL, 0);
    enum store_rc rc = STORE_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (PQstatus(c) != CONNECTION_OK || !st || !strncmp(st, "08", 2) || !strncmp(st, "57", 2)) {
            rc = STORE_UNAVAILABLE; /* the slot reconnects on next use */
        } else if (!strncmp(st, "22", 2)) {
            rc = STORE_BAD;
        } else {
            const char *e = PQresultErrorMessage(r);
            char q[600];
            log_warn("event=db_error stmt=%s sqlstate=%s err=%s", name, st, log_q(q, sizeof q, e, strlen(e)));
            rc = STORE_ERROR;
        }
    } else if (PQntuples(r) == 0 || PQgetisnull(r, 0, 0)) {
        rc = STORE_NOT_FOUND;
    } else {
        size_t l = (size_t)PQgetlength(r, 0, 0);
        char *out = malloc(l + 1);
        if (!out) {
            rc = STORE_ERROR;
        } else {
            memcpy(out, PQgetvalue(r, 0, 0), l);
            out[l] = '\0';
            *json = out;
            *len = l;
        }
    }
    PQclear(r);
    release(s, slot);
    return rc;
}

enum store_rc store_devices(struct store *s, const struct route_query *q, char **json, size_t *len)
{
    char limit[24];
    snprintf(limit, sizeof limit, "%" PRId64, q->limit);
    char hi[SL_DEV_MAX + 2];
    snprintf(hi, sizeof hi, "%s~", q->prefix); /* ids use [A-Za-z0-9._:-], all below '~' */
    const char *v[5] = {q->after, q->prefix, hi, q->online < 0 ? NULL : (q->online ? "true" : "false"),
                        limit};
    return run(s, "devices", 5, v, json, len);
}

enum store_rc store_device(struct store *s, const char *dev, char **json, size_t *len)
{
    const char *v[1] = {dev};
    return run(s, "device", 1, v, json, len);
}

/* "YYYY-MM-DD HH:MM:SS.uuuuuu+00" for microseconds since the epoch, or
 * the infinity given when the bound is absent. */
static void ts_text(char *out, size_t cap, bool has, int64_t us, const char *inf)
{
    if (!has) {
        snprintf(out, cap, "%s", inf);
        return;
    }
    int64_t sec = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        sec--;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%06lld+00", (long long)frac);
}

enum store_rc store_telemetry(struct store *s, const char *dev, const struct route_query *q, char **json,
                              size_t *len)
{
    char from[48], to[48], before[24], limit[24];
    ts_text(from, sizeof from, q->has_from, q->from_us, "-infinity");
    ts_text(to, sizeof to, q->has_to, q->to_us, "infinity");
    snprintf(before, sizeof before, "%" PRId64, q->has_before ? q->before : INT64_MAX);
    snprintf(limit, sizeof limit, "%" PRId64, q->limit);
    const char *v[5] = {dev, from, to, before, limit};
    return run(s, "telemetry", 5, v, json, len);
}

enum store_rc store_delete_data(struct store *s, const char *dev, char **json, size_t *len)
{
    const char *v[1] = {dev};
    return run(s, "delete_data", 1, v, json, len);
}

enum store_rc store_command(struct store *s, const char *id, char **json, size_t *len)
{
    const char *v[1] = {id};
    return run(s, "command", 1, v, json, len);
}

enum store_rc store_kick(struct store *s, const char *dev, char **json, size_t *len)
{
    const char *v[1] = {dev};
    enum store_rc rc = run(s, "kick", 1, v, json, len);
    if (rc == STORE_OK && !strcmp(*json, "false")) {
        free(*json);
        *json = NULL;
        *len = 0;
        rc = STORE_CONFLICT;
    }
    return rc;
}

/* Classify a failed result (as run does) and clear it. */
static enum store_rc failed(PGconn *c, PGresult *r, const char *what)
{
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    enum store_rc rc = STORE_ERROR;
    if (PQstatus(c) != CONNECTION_OK || !st || !strncmp(st, "08", 2) || !strncmp(st, "57", 2)) {
        rc = STORE_UNAVAILABLE;
    } else if (!strncmp(st, "22", 2)) {
        rc = STORE_BAD;
    } else {
        const char *e = PQresultErrorMessage(r);
        char q[600];
        log_warn("event=db_error stmt=%s sqlstate=%s err=%s", what, st, log_q(q, sizeof q, e, strlen(e)));
    }
    PQclear(r);
    return rc;
}

enum store_rc store_submit(struct store *s, const char *dev, const char *id, const struct cmdreq *req,
                           int64_t max_queued, char **json, size_t *len)
{
    *json = NULL;
    *len = 0;
    PGconn *c;
    int slot = acquire(s, &c);
    if (slot < 0)
        return STORE_UNAVAILABLE;
    const struct cmdstore_cmd cmd = {.dev = dev,
                                     .id = id,
                                     .json = req->json,
                                     .mp = req->mp,
                                     .mp_len = req->mp_len,
                                     .ttl_s = req->ttl_s,
                                     .queue = req->queue,
                                     .max_queued = max_queued};
    PGresult *r;
    const char *what;
    enum store_rc rc = STORE_ERROR;
    switch (cmdstore_submit(c, &cmd, json, len, &r, &what)) {
    case CMDSTORE_OK: rc = STORE_OK; break;
    case CMDSTORE_UNKNOWN: rc = STORE_NOT_FOUND; break;
    case CMDSTORE_FULL: rc = STORE_CONFLICT; break;
    case CMDSTORE_DUPLICATE: /* the id is drawn at random: 64 bits colliding is a bug */
        log_warn("event=db_error stmt=submit err=\"duplicate command id\" id=%s", id);
        break;
    case CMDSTORE_NOMEM: break;
    /* A COMMIT whose answer is lost leaves the outcome unknown (503): the
     * command may exist under an id the client never saw (docs/api.md). */
    case CMDSTORE_FAILED: rc = failed(c, r, what); break;
    }
    release(s, slot);
    return rc;
}

bool store_ping(struct store *s)
{
    PGconn *c;
    int slot = acquire(s, &c);
    if (slot < 0)
        return false;
    PGresult *r = PQexec(c, "SELECT 1");
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    release(s, slot);
    return ok;
}
