/* SPDX-License-Identifier: Apache-2.0 */
/* db.c - libpq shell of the persister: connect, migrate, the statements of
 * one batch transaction, and the maintenance statements.
 *
 * Write paths (writer.c picks): DB_DIRECT is two binary COPYs, the batch's
 * keys into telemetry_keys and then its rows into telemetry (routed to their
 * partitions by received_at): the same work as a bulk load of both tables.
 * It is all-or-nothing, and a key already stored makes the first COPY fail
 * with unique_violation (23505) before the big one starts (db_rows_commit
 * sends BEGIN, both COPYs and COMMIT as one query string, or for a small
 * batch one statement that inserts the keys, then the rows), after which the
 * writer uses DB_STAGED: COPY into a per-connection TEMP staging table (ON
 * COMMIT DELETE ROWS, created once per connection) and one prepared statement
 * that inserts the keys ON CONFLICT DO NOTHING and the rows whose key was
 * new. Either way a batch retried after an unknown COMMIT outcome stores each
 * row once, on whatever partition and day the retry lands (docs/internals.md,
 * "persister: partitions and exactly once").
 * Sessions are one prepared INSERT ... SELECT FROM unnest(...) per kind and
 * batch (binary array parameters); dead letters and edge_lost are single-row
 * prepared statements with binary parameters: no quoting, no NUL problems.
 *
 * It owns libpq's results, so it also says what a failure means
 * (db_classify_err: data refused, no partition, or transient); writer.c and
 * maint.c act on that verdict. Calls go one way: lane.c/maint.c -> writer.c
 * -> db.c -> rows.c (COPY tuples).
 *
 * Deliberately not here: batching decisions, bisecting (writer.c), retry
 * and backoff (lane.c), when to maintain (maint.c). Logs only migrations and
 * connection events. */
#define _GNU_SOURCE
#include "db.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devsum.h"
#include "migrations.h"
#include "pgbin.h"
#include "sl/log.h"
#include "sl/pgconn.h"

/* Advisory lock key for migrations: "sluice" + 1, any constant would do. */
#define MIGRATE_LOCK_KEY "7308604637093544961"
#define COPY_CHUNK       (256u * 1024u)

struct db {
    char *conninfo;
    int conflicts_max;                        /* telemetry_conflicts rows kept per device */
    uint64_t conflicts_found, conflicts_kept; /* of the staged writes since db_conflicts */
    PGconn *conn;
    char err[512];
    char sqlstate[6];
    char *copybuf;
    size_t copycap;
    /* db_devices' state of this connection: the statement_timeout set, 0
     * before the first (synchronous_commit is off once it is set); whether
     * its statement is prepared. */
    uint32_t dev_timeout_ms;
    bool dev_prepared;
};

struct db *db_new(const char *conninfo)
{
    struct db *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->conninfo = strdup(conninfo ? conninfo : "");
    d->conflicts_max = DB_CONFLICTS_MAX_DEFAULT;
    d->copycap = COPY_CHUNK;
    d->copybuf = malloc(d->copycap);
    if (!d->conninfo || !d->copybuf) {
        db_destroy(&d);
        return NULL;
    }
    return d;
}

void db_destroy(struct db **dp)
{
    struct db *d = *dp;
    if (!d)
        return;
    db_disconnect(d);
    free(d->conninfo);
    free(d->copybuf);
    free(d);
    *dp = NULL;
}

bool db_connected(const struct db *d)
{
    return d->conn && PQstatus(d->conn) == CONNECTION_OK;
}

enum db_rc db_classify(const char *sqlstate)
{
    if (!sqlstate || strlen(sqlstate) != 5)
        return DB_TRANSIENT;
    if (sqlstate[0] == '2' && (sqlstate[1] == '2' || sqlstate[1] == '3'))
        return DB_DATA;
    return DB_TRANSIENT;
}

const char *db_last_error(const struct db *d)
{
    return d->err;
}
const char *db_error_q(const struct db *d, char *q, size_t n)
{
    return log_q(q, n, d->err, strlen(d->err));
}

const char *db_last_sqlstate(const struct db *d)
{
    return d->sqlstate;
}

void db_disconnect(struct db *d)
{
    if (d->conn)
        PQfinish(d->conn);
    d->conn = NULL;
}

static void copy_msg(struct db *d, const char *m)
{
    snprintf(d->err, sizeof d->err, "%s", m && *m ? m : "unknown error");
    size_t n = strlen(d->err);
    while (n > 0 && (d->err[n - 1] == '\n' || d->err[n - 1] == ' '))
        d->err[--n] = '\0';
}

/* A failure of ours or of libpq's client side, not the server's: message m
 * and no SQLSTATE. Always DB_TRANSIENT (the batch is retried). */
static enum db_rc local_fail(struct db *d, const char *m)
{
    copy_msg(d, m);
    d->sqlstate[0] = '\0';
    return DB_TRANSIENT;
}

/* Make *buf (capacity *cap) hold at least need bytes: grown to exactly need,
 * never shrunk, so a connection's buffers stop allocating once warm. DB_OK,
 * or local_fail's DB_TRANSIENT when realloc fails (*buf is kept as it was). */
static enum db_rc grow(struct db *d, char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return DB_OK;
    char *nb = realloc(*buf, need);
    if (!nb)
        return local_fail(d, "out of memory");
    *buf = nb;
    *cap = need;
    return DB_OK;
}

enum db_rc db_classify_err(const char *sqlstate, const char *table, const char *constraint)
{
    enum db_rc rc = db_classify(sqlstate);
    if (rc == DB_DATA && strcmp(sqlstate, "23514") == 0 && (!constraint || !*constraint) && table &&
        strcmp(table, "telemetry") == 0)
        return DB_NOPART;
    return rc;
}

/* Record the failure of res (may be NULL) and classify it. A broken
 * connection is transient whatever the SQLSTATE says. */
static enum db_rc failed(struct db *d, PGresult *res)
{
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(d->sqlstate, sizeof d->sqlstate, "%s", st ? st : "");
    const char *m = res ? PQresultErrorMessage(res) : NULL;
    copy_msg(d, m && *m ? m : PQerrorMessage(d->conn));
    enum db_rc rc = DB_TRANSIENT;
    if (PQstatus(d->conn) == CONNECTION_OK)
        rc = db_classify_err(d->sqlstate[0] ? d->sqlstate : NULL,
                             res ? PQresultErrorField(res, PG_DIAG_TABLE_NAME) : NULL,
                             res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL);
    if (res)
        PQclear(res);
    return rc;
}

/* Run a statement that returns no rows. */
static enum db_rc exec_cmd(struct db *d, const char *sql)
{
    PGresult *res = PQexec(d->conn, sql);
    ExecStatusType s = PQresultStatus(res);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
        return failed(d, res);
    PQclear(res);
    return DB_OK;
}

/* A migration's WARNING is meant for the operator (007 says so when it
 * leaves a big database as it is): logged, unlike other notices. */
static void migrate_notice(void *arg, const PGresult *res)
{
    (void)arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (sev && msg && strcmp(sev, "WARNING") == 0) {
        char q[512];
        log_warn("event=migrate_notice msg=%s", log_q(q, sizeof q, msg, strlen(msg)));
    }
}

/* After a migration: end the sessions of the command paths, ours and other
 * processes', so that they reconnect and prepare their statements again.
 * A statement prepared before a migration changed a column it returns fails
 * on every execution in its session (SQLSTATE 0A000, sl/pgconn.h). This
 * version's cmdq and cmdlog reconnect on that error by themselves; the
 * versions before it do not, and in a rolling upgrade they are the ones
 * still running when the first new persister migrates. A terminated
 * session is a broken connection to every version: each makes a new one.
 * Only those two (by application_name): the writers' statements return
 * counts, and terminating a lane would cost a batch's retry. A session we
 * may not signal (another role) is left alone. */
static void reset_command_sessions(struct db *d)
{
    static const char sql[] =
        "DO $$ DECLARE p int; BEGIN"
        " FOR p IN SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()"
        " AND application_name IN ('" PGCONN_APP_CMDQ "', '" PGCONN_APP_CMDLOG "') LOOP"
        " BEGIN PERFORM pg_terminate_backend(p); EXCEPTION WHEN insufficient_privilege THEN NULL; END;"
        " END LOOP; END $$";
    if (exec_cmd(d, sql) != DB_OK) {
        char q[DB_ERR_Q];
        log_warn("event=migrate_reset_failed err=%s", db_error_q(d, q, sizeof q));
    } else {
        log_info("event=migrate_reset_sessions of=cmdq,cmdlog");
    }
}

static enum db_rc migrate(struct db *d)
{
    if (exec_cmd(d, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")") != DB_OK)
        return DB_TRANSIENT;
    PQnoticeReceiver was = PQsetNoticeReceiver(d->conn, migrate_notice, NULL);
    enum db_rc rc = exec_cmd(d, "CREATE TABLE IF NOT EXISTS schema_version ("
                                "version int PRIMARY KEY, name text NOT NULL,"
                                " applied_at timestamptz NOT NULL DEFAULT now())");
    int have = 0;
    if (rc == DB_OK) {
        PGresult *res = PQexec(d->conn, "SELECT coalesce(max(version), 0) FROM schema_version");
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            rc = failed(d, res);
        } else {
            have = atoi(PQgetvalue(res, 0, 0));
            PQclear(res);
        }
    }
    int applied = 0;
    for (int k = 0; rc == DB_OK && k < migrations_count; k++) {
        const struct migration *m = &migrations[k];
        if (m->version <= have)
            continue;
        char ins[256];
        snprintf(ins, sizeof ins, "INSERT INTO schema_version (version, name) VALUES (%d, '%s')", m->version,
                 m->name);
        if ((rc = exec_cmd(d, "BEGIN")) == DB_OK && (rc = exec_cmd(d, m->sql)) == DB_OK &&
            (rc = exec_cmd(d, ins)) == DB_OK && (rc = exec_cmd(d, "COMMIT")) == DB_OK) {
            log_info("event=migrated version=%d name=%s", m->version, m->name);
            applied++;
        } else {
            log_error("event=migrate_failed version=%d name=%s sqlstate=%s", m->version, m->name,
                      d->sqlstate);
            exec_cmd(d, "ROLLBACK");
            rc = DB_TRANSIENT;
        }
    }
    PQsetNoticeReceiver(d->conn, was, NULL);
    if (applied > 0) /* even if a later one failed: these are in force */
        reset_command_sessions(d);
    /* Session-level lock: released explicitly, or by the disconnect. */
    exec_cmd(d, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")");
    return rc == DB_OK ? DB_OK : DB_TRANSIENT;
}

/* The staged insert: the batch's keys go into telemetry_keys ON CONFLICT DO
 * NOTHING, and exactly the rows whose key was new into telemetry. A key may
 * be twice in one batch (a resend caught up with its original): DISTINCT ON
 * keeps the earliest copy, as the old primary key kept the first. Keys are
 * inserted in key order, so two persisters (or two connections) staging
 * overlapping resends lock them in the same order and cannot deadlock.
 *
 * The same statement finds the resends that are not resends (f): a staged
 * copy whose body or ts differs from the version kept, which is the one
 * stored before this statement (its key existed: the snapshot of these CTEs
 * does not see k's keys) or else the batch's earliest copy. A version
 * already noted is not noted again; at most $1 rows per device are kept
 * (c), the rest only counted. Returns one row: rows inserted, conflicts
 * found, conflicts kept. Only resends come this way: the common path
 * (COPY, the one statement) never runs it. */
#define STAGED_INSERT(src)                                                                                   \
    "s AS (SELECT DISTINCT ON (device_id, seq) * FROM " src " ORDER BY device_id, seq, received_at),"        \
    " k AS (INSERT INTO telemetry_keys (device_id, seq, received_at)"                                        \
    " SELECT device_id, seq, received_at FROM s ORDER BY device_id, seq"                                     \
    " ON CONFLICT (device_id, seq) DO NOTHING RETURNING device_id, seq),"                                    \
    " i AS (INSERT INTO telemetry (device_id, seq, device_ts, received_at, edge_id, body)"                   \
    " SELECT s.device_id, s.seq, s.device_ts, s.received_at, s.edge_id, s.body FROM s JOIN k USING "         \
    "(device_id, seq) RETURNING 1),"                                                                         \
    " f AS (SELECT DISTINCT ON (x.device_id, x.seq, x.body, x.device_ts) x.device_id, x.seq, x.received_at," \
    " x.device_ts, x.body, x.edge_id, v.received_at AS v_at, v.device_ts AS v_ts, v.body AS v_body"          \
    " FROM " src " x JOIN LATERAL ("                                                                         \
    " SELECT t.received_at, t.device_ts, t.body FROM telemetry_keys tk JOIN telemetry t"                     \
    " ON t.device_id = tk.device_id AND t.seq = tk.seq AND t.received_at = tk.received_at"                   \
    " WHERE tk.device_id = x.device_id AND tk.seq = x.seq"                                                   \
    " UNION ALL SELECT e.received_at, e.device_ts, e.body FROM s e"                                          \
    " WHERE e.device_id = x.device_id AND e.seq = x.seq AND NOT EXISTS"                                      \
    " (SELECT 1 FROM telemetry_keys tk2 WHERE tk2.device_id = x.device_id AND tk2.seq = x.seq)) v ON true"   \
    " WHERE (x.body IS DISTINCT FROM v.body OR x.device_ts IS DISTINCT FROM v.device_ts)"                    \
    " AND NOT EXISTS (SELECT 1 FROM telemetry_conflicts n WHERE n.device_id = x.device_id"                   \
    " AND n.seq = x.seq AND n.body = x.body AND n.device_ts IS NOT DISTINCT FROM x.device_ts)"               \
    " ORDER BY x.device_id, x.seq, x.body, x.device_ts, x.received_at),"                                     \
    " c AS (INSERT INTO telemetry_conflicts (device_id, seq, stored_received_at, stored_device_ts,"          \
    " stored_body, received_at, device_ts, body, edge_id)"                                                   \
    " SELECT g.device_id, g.seq, g.v_at, g.v_ts, g.v_body, g.received_at, g.device_ts, g.body, g.edge_id"    \
    " FROM (SELECT f.*, row_number() OVER (PARTITION BY f.device_id ORDER BY f.received_at) AS nth FROM f) " \
    "g"                                                                                                      \
    " WHERE g.nth + (SELECT count(*) FROM telemetry_conflicts n WHERE n.device_id = g.device_id) <= $1"      \
    " RETURNING 1)"                                                                                          \
    " SELECT (SELECT count(*) FROM i), (SELECT count(*) FROM f), (SELECT count(*) FROM c)"

static const char *const stmts[][2] = {
    {"ins", "WITH " STAGED_INSERT("sl_stage")},
    /* Under savepoints (bisecting) the stage must be emptied by each step, or
     * the next step would insert the previous subset again. */
    {"ins_del", "WITH d AS (DELETE FROM sl_stage RETURNING *), " STAGED_INSERT("d")},
    {"rej", "INSERT INTO telemetry_rejected (device_id, seq, received_at, edge_id, raw, error)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id, seq) DO NOTHING"},
    /* Session upserts, one statement per kind and batch: binary arrays,
     * unnested WITH ORDINALITY (ord = position in the batch). A key may
     * appear twice in one batch (a resent envelope), and ON CONFLICT DO
     * UPDATE must not touch a row twice: DISTINCT ON keeps the entry the
     * per-row statements would have left in force. For connects that is the
     * last one (connected_at is overwritten), with a peer from another copy
     * if it has none (coalesce kept the earlier one); for disconnects the
     * first (the WHERE keeps the first real disconnect). */
    {"con", "INSERT INTO device_sessions AS s (device_id, edge_id, incarnation, epoch, peer, connected_at,"
            " reply, slot, gen)"
            " SELECT DISTINCT ON (u.d, u.e, u.ep) u.d, u.e, u.inc, u.ep,"
            " coalesce(u.peer, max(u.peer) OVER (PARTITION BY u.d, u.e, u.ep)), u.at, u.reply, u.slot, u.gen"
            " FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::timestamptz[],"
            " $7::text[], $8::int8[], $9::int8[])"
            " WITH ORDINALITY AS u(d, e, inc, ep, peer, at, reply, slot, gen, ord)"
            " ORDER BY u.d, u.e, u.ep, u.ord DESC"
            " ON CONFLICT (device_id, edge_id, epoch) DO UPDATE"
            " SET connected_at = EXCLUDED.connected_at, peer = coalesce(EXCLUDED.peer, s.peer),"
            " reply = EXCLUDED.reply, slot = EXCLUDED.slot, gen = EXCLUDED.gen"},
    /* A real disconnect replaces an 'edge_lost' guess, never an earlier real one. */
    {"dis", "INSERT INTO device_sessions AS s"
            " (device_id, edge_id, incarnation, epoch, peer, disconnected_at, reason)"
            " SELECT DISTINCT ON (u.d, u.e, u.ep) u.d, u.e, u.inc, u.ep, u.peer, u.at, u.why"
            " FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::timestamptz[],"
            " $7::text[]) WITH ORDINALITY AS u(d, e, inc, ep, peer, at, why, ord)"
            " ORDER BY u.d, u.e, u.ep, u.ord"
            " ON CONFLICT (device_id, edge_id, epoch) DO UPDATE"
            " SET disconnected_at = EXCLUDED.disconnected_at, reason = EXCLUDED.reason,"
            " peer = coalesce(s.peer, EXCLUDED.peer)"
            " WHERE s.disconnected_at IS NULL OR s.reason = 'edge_lost'"},
    {"lost", "UPDATE device_sessions SET disconnected_at = now(), reason = 'edge_lost'"
             " WHERE edge_id = $1 AND incarnation = $2 AND disconnected_at IS NULL"},
    {"part", "SELECT sluice_telemetry_partition($1, $2)"},
    /* A batch of data rows in one statement (db_rows_commit): the keys, then
     * the rows, from the same binary arrays. Keys first, as in the COPY
     * forms, so that a resend fails on its key (23505, the writer's cue for
     * the staged path) before any row is routed to a partition: the gate
     * makes the keys' insert an InitPlan that runs to the end before the
     * rows' scan starts. count(*) is never NULL, so the gate never drops a
     * row; it only orders the two inserts. */
    {"rows", "WITH k AS (INSERT INTO telemetry_keys (device_id, seq, received_at)"
             " SELECT * FROM unnest($1::text[], $2::int8[], $4::timestamptz[]) RETURNING 1)"
             " INSERT INTO telemetry (device_id, seq, device_ts, received_at, edge_id, body)"
             " SELECT * FROM unnest($1::text[], $2::int8[], $3::timestamptz[], $4::timestamptz[], $5::text[],"
             " $6::jsonb[]) WHERE (SELECT count(*) FROM k) IS NOT NULL"},
};

/* The devices summary (db_devices, devsum_arrays' columns), in device
 * order: two connections never wait on each other in a cycle. The WHERE
 * skips the write (a new row version and its WAL) when nothing would move;
 * no column ever moves backwards. Prepared by db_devices on its own
 * connection only: preparing takes a lock on `devices`, which a lane's
 * connect must never wait for. */
static const char dev_sql[] =
    "INSERT INTO devices AS d (device_id, first_seen, last_seen, last_seq)"
    " SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::int8[]) v(i, f, l, s)"
    " ORDER BY i ON CONFLICT (device_id) DO UPDATE SET"
    " first_seen = least(d.first_seen, EXCLUDED.first_seen),"
    " last_seen = greatest(d.last_seen, EXCLUDED.last_seen),"
    " last_seq = greatest(d.last_seq, EXCLUDED.last_seq)"
    " WHERE EXCLUDED.last_seen > d.last_seen OR EXCLUDED.first_seen < d.first_seen"
    " OR EXCLUDED.last_seq > d.last_seq OR (d.last_seq IS NULL AND EXCLUDED.last_seq IS NOT NULL)";

static void ignore_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

enum db_rc db_connect(struct db *d)
{
    db_disconnect(d);
    /* Ours first: a connect_timeout in the user's conninfo overrides it. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {"5", "sluice-persister", d->conninfo, NULL};
    d->conn = PQconnectdbParams(keys, vals, 1);
    if (!d->conn || PQstatus(d->conn) != CONNECTION_OK) {
        enum db_rc rc = local_fail(d, d->conn ? PQerrorMessage(d->conn) : "out of memory");
        db_disconnect(d);
        return rc;
    }
    /* Server NOTICEs ("already exists, skipping") are not ours to print. */
    PQsetNoticeProcessor(d->conn, ignore_notice, NULL);
    d->dev_timeout_ms = 0;
    d->dev_prepared = false;
    enum db_rc rc = migrate(d);
    if (rc == DB_OK)
        rc = exec_cmd(d, "CREATE TEMP TABLE IF NOT EXISTS sl_stage"
                         " (LIKE telemetry INCLUDING DEFAULTS) ON COMMIT DELETE ROWS");
    for (size_t k = 0; rc == DB_OK && k < sizeof stmts / sizeof stmts[0]; k++) {
        PGresult *res = PQprepare(d->conn, stmts[k][0], stmts[k][1], 0, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = failed(d, res);
        else
            PQclear(res);
    }
    if (rc != DB_OK) {
        db_disconnect(d);
        return DB_TRANSIENT;
    }
    return DB_OK;
}

enum db_rc db_ping(struct db *d)
{
    return d->conn ? exec_cmd(d, "SELECT 1") : DB_TRANSIENT;
}

enum db_rc db_begin(struct db *d)
{
    return exec_cmd(d, "BEGIN");
}
enum db_rc db_commit(struct db *d)
{
    return exec_cmd(d, "COMMIT");
}

void db_rollback(struct db *d)
{
    /* After a failed one-statement batch (db_rows_commit) there is no
     * transaction to end, and a ROLLBACK would only log a WARNING. */
    if (d->conn && PQstatus(d->conn) == CONNECTION_OK && PQtransactionStatus(d->conn) != PQTRANS_IDLE) {
        PGresult *res = PQexec(d->conn, "ROLLBACK");
        PQclear(res);
    }
}

static enum db_rc exec_prepared(struct db *d, const char *name, int n, const char *const *v, const int *len,
                                const int *fmt, uint64_t *affected)
{
    PGresult *res = PQexecPrepared(d->conn, name, n, v, len, fmt, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return failed(d, res);
    if (affected)
        *affected = strtoull(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return DB_OK;
}

/* Run one step inside "SAVEPOINT s" when asked; roll back to it on failure
 * so the transaction survives a data error. */
static enum db_rc sp_begin(struct db *d, bool sp)
{
    return sp ? exec_cmd(d, "SAVEPOINT s") : DB_OK;
}

static enum db_rc sp_end(struct db *d, bool sp, enum db_rc rc)
{
    if (!sp)
        return rc;
    if (rc == DB_OK)
        return exec_cmd(d, "RELEASE SAVEPOINT s") == DB_OK ? DB_OK : DB_TRANSIENT;
    if (rc == DB_DATA) {
        /* Keep the data error text: it is what the dead letter records. */
        char keep[sizeof d->err], st[sizeof d->sqlstate];
        memcpy(keep, d->err, sizeof keep);
        memcpy(st, d->sqlstate, sizeof st);
        if (exec_cmd(d, "ROLLBACK TO SAVEPOINT s") != DB_OK)
            return DB_TRANSIENT;
        memcpy(d->err, keep, sizeof keep);
        memcpy(d->sqlstate, st, sizeof st);
    }
    return rc;
}

typedef size_t copy_tuple_fn(const struct batch *b, uint32_t i, char *out, size_t cap);
typedef size_t copy_bound_fn(const struct batch *b, uint32_t i);

/* Send rows idx[0..n) to the COPY the connection is in (binary format:
 * header, a tuple per row, trailer), end it, and read the COPY's own result
 * (not what may follow it in the same query string). tuple/bound give the
 * row's fields. Tuples are gathered in d->copybuf and sent COPY_CHUNK at a
 * time. */
static enum db_rc copy_data(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n,
                            copy_tuple_fn *tuple, copy_bound_fn *bound, uint64_t *copied)
{
    size_t len = rows_copy_header(d->copybuf); /* copycap >= COPY_CHUNK */
    bool io_ok = true;
    for (uint32_t k = 0; k < n && io_ok; k++) {
        size_t need = bound(b, idx[k]);
        if (len + need > d->copycap && len > 0) {
            io_ok = PQputCopyData(d->conn, d->copybuf, (int)len) == 1;
            len = 0;
        }
        /* One huge body: grow once (rare; bounded by the JSON arena). */
        if (grow(d, &d->copybuf, &d->copycap, need + ROWS_COPY_TRAILER_LEN) != DB_OK) {
            PQputCopyEnd(d->conn, "out of memory");
            return DB_TRANSIENT;
        }
        len += tuple(b, idx[k], d->copybuf + len, d->copycap - len);
    }
    if (len + ROWS_COPY_TRAILER_LEN > d->copycap) {
        io_ok = io_ok && PQputCopyData(d->conn, d->copybuf, (int)len) == 1;
        len = 0;
    }
    len += rows_copy_trailer(d->copybuf + len);
    if (io_ok)
        io_ok = PQputCopyData(d->conn, d->copybuf, (int)len) == 1;
    if (!io_ok || PQputCopyEnd(d->conn, NULL) != 1)
        return local_fail(d, PQerrorMessage(d->conn));
    PGresult *res = PQgetResult(d->conn);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return failed(d, res);
    *copied = strtoull(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return DB_OK;
}

/* Read what is left of a query's results, so the connection is idle. A
 * COPY still waiting for data (a step failed before it) is ended, or libpq
 * would hand back its COPY_IN result for ever. */
static void drain(struct db *d)
{
    PGresult *res;
    while ((res = PQgetResult(d->conn))) {
        bool copy_in = PQresultStatus(res) == PGRES_COPY_IN;
        PQclear(res);
        if (copy_in && PQputCopyEnd(d->conn, "abandoned") != 1)
            break; /* the connection is gone: the caller reconnects */
    }
}

/* One COPY of rows idx[0..n): `sql` is the COPY statement. */
static enum db_rc copy_rows(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n,
                            const char *sql, copy_tuple_fn *tuple, copy_bound_fn *bound, uint64_t *copied)
{
    PGresult *res = PQexec(d->conn, sql);
    if (PQresultStatus(res) != PGRES_COPY_IN)
        return failed(d, res);
    PQclear(res);
    enum db_rc rc = copy_data(d, b, idx, n, tuple, bound, copied);
    drain(d);
    return rc;
}

#define TELEMETRY_COLS "(device_id, seq, device_ts, received_at, edge_id, body)"
#define KEYS_COLS      "(device_id, seq, received_at)"
#define BINARY         " FROM STDIN (FORMAT binary)"

/* The staged statement: one row of counts (STAGED_INSERT). */
static enum db_rc staged_insert(struct db *d, const char *stmt, uint64_t *inserted)
{
    char max[16];
    snprintf(max, sizeof max, "%d", d->conflicts_max);
    const char *v[1] = {max};
    PGresult *res = PQexecPrepared(d->conn, stmt, 1, v, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != 3)
        return failed(d, res);
    *inserted = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    d->conflicts_found += strtoull(PQgetvalue(res, 0, 1), NULL, 10);
    d->conflicts_kept += strtoull(PQgetvalue(res, 0, 2), NULL, 10);
    PQclear(res);
    return DB_OK;
}

void db_set_conflicts_max(struct db *d, int max)
{
    d->conflicts_max = max;
}

void db_conflicts(struct db *d, uint64_t *found, uint64_t *kept)
{
    *found = d->conflicts_found;
    *kept = d->conflicts_kept;
    d->conflicts_found = d->conflicts_kept = 0;
}

enum db_rc db_rows(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n, enum db_path path,
                   bool savepoint, uint64_t *inserted)
{
    *inserted = 0;
    enum db_rc rc = sp_begin(d, savepoint);
    if (rc != DB_OK)
        return DB_TRANSIENT;
    uint64_t copied = 0;
    if (path == DB_DIRECT) {
        /* Keys first: a resend fails here, before the rows' COPY is sent. */
        rc = copy_rows(d, b, idx, n, "COPY telemetry_keys " KEYS_COLS BINARY, rows_key_tuple, rows_key_bound,
                       &copied);
        if (rc == DB_OK)
            rc = copy_rows(d, b, idx, n, "COPY telemetry " TELEMETRY_COLS BINARY, rows_copy_tuple,
                           rows_copy_bound, inserted);
    } else {
        rc = copy_rows(d, b, idx, n, "COPY sl_stage " TELEMETRY_COLS BINARY, rows_copy_tuple, rows_copy_bound,
                       &copied);
        if (rc == DB_OK)
            rc = staged_insert(d, savepoint ? "ins_del" : "ins", inserted);
    }
    return sp_end(d, savepoint, rc);
}

/* The next result of the query in flight: DB_OK if it has status want
 * (and, for a command, tag `tag` when given), else the failure recorded. */
static enum db_rc next_result(struct db *d, ExecStatusType want, const char *tag)
{
    PGresult *res = PQgetResult(d->conn);
    if (PQresultStatus(res) != want || (tag && strcmp(PQcmdStatus(res), tag) != 0))
        return failed(d, res);
    PQclear(res);
    return DB_OK;
}

/* db_rows_commit for a batch of more than DB_ONESHOT_MAX rows: BEGIN, both
 * COPYs and COMMIT as one query string. The server asks for each COPY's
 * data in turn, so the transaction takes three round trips (to the keys'
 * COPY, to the rows' COPY, to COMMIT) instead of the six of the same steps
 * sent one by one. A failing statement ends the string, and the explicit
 * transaction is left aborted for the caller's ROLLBACK. */
static enum db_rc copy_commit(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n,
                              uint64_t *inserted)
{
    static const char sql[] =
        "BEGIN;COPY telemetry_keys " KEYS_COLS BINARY ";COPY telemetry " TELEMETRY_COLS BINARY ";COMMIT";
    if (PQsendQuery(d->conn, sql) != 1)
        return local_fail(d, PQerrorMessage(d->conn));
    uint64_t keys = 0, rows = 0;
    enum db_rc rc = next_result(d, PGRES_COMMAND_OK, NULL);
    if (rc == DB_OK)
        rc = next_result(d, PGRES_COPY_IN, NULL);
    if (rc == DB_OK)
        rc = copy_data(d, b, idx, n, rows_key_tuple, rows_key_bound, &keys);
    if (rc == DB_OK)
        rc = next_result(d, PGRES_COPY_IN, NULL);
    if (rc == DB_OK)
        rc = copy_data(d, b, idx, n, rows_copy_tuple, rows_copy_bound, &rows);
    if (rc == DB_OK)
        rc = next_result(d, PGRES_COMMAND_OK, "COMMIT");
    drain(d);
    if (rc == DB_OK)
        *inserted = rows;
    return rc;
}

/* Every parameter of the array statements ("rows", "con", "dis", "dev") is
 * binary; as many as the widest of them has. */
static const int all_binary[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

/* Rows idx[0..n) of b, for pgbin_arrays: item k is row idx[k]. */
struct rows_sel {
    const struct batch *b;
    const uint32_t *idx;
};

static size_t rows_elem(const void *ctx, int c, uint32_t k, uint8_t *o)
{
    const struct rows_sel *s = ctx;
    return rows_field(s->b, s->idx[k], (enum rows_col)c, (char *)o);
}

/* db_rows_commit for a batch of at most DB_ONESHOT_MAX rows: the prepared
 * "rows" statement with one binary array per column, in autocommit. One
 * round trip (the statement and its commit), nothing for PostgreSQL to
 * parse or plan, and the fields are the COPY's (rows_field). */
static enum db_rc arrays_commit(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n,
                                uint64_t *inserted)
{
    static const uint32_t oid[ROWS_NCOL] = {PGBIN_OID_TEXT,        PGBIN_OID_INT8, PGBIN_OID_TIMESTAMPTZ,
                                            PGBIN_OID_TIMESTAMPTZ, PGBIN_OID_TEXT, PGBIN_OID_JSONB};
    size_t need = (size_t)ROWS_NCOL * PGBIN_ARR_HDR;
    for (uint32_t k = 0; k < n; k++)
        need += rows_copy_bound(b, idx[k]) - 2u; /* its fields, without the tuple's field count */
    if (need > INT32_MAX)
        return local_fail(d, "batch too large for one statement");
    if (grow(d, &d->copybuf, &d->copycap, need) != DB_OK)
        return DB_TRANSIENT;
    const char *v[ROWS_NCOL];
    int len[ROWS_NCOL];
    const struct rows_sel sel = {b, idx};
    pgbin_arrays((uint8_t *)d->copybuf, ROWS_NCOL, oid, n, n, rows_elem, &sel, v, len);
    return exec_prepared(d, "rows", ROWS_NCOL, v, len, all_binary, inserted);
}

enum db_rc db_rows_commit(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n,
                          uint64_t *inserted)
{
    *inserted = 0;
    if (n == 0)
        return DB_OK;
    return n <= DB_ONESHOT_MAX ? arrays_commit(d, b, idx, n, inserted) : copy_commit(d, b, idx, n, inserted);
}

/* Session array columns: device, edge, incarnation, epoch, peer, at, reason,
 * and for connects the edge worker's identity and the connection id (the
 * command queue's route: migrations/005). */
enum { SC_DEV, SC_EDGE, SC_INC, SC_EPOCH, SC_PEER, SC_AT, SC_REASON, SC_REPLY, SC_SLOT, SC_GEN, SC_N };

_Static_assert(sizeof all_binary / sizeof all_binary[0] >= SC_N && (int)SC_N >= (int)ROWS_NCOL &&
                   (int)SC_N >= (int)DEVSUM_NCOL,
               "all_binary covers every array statement");

static const uint32_t sc_oid[SC_N] = {PGBIN_OID_TEXT, PGBIN_OID_TEXT,        PGBIN_OID_INT8, PGBIN_OID_INT8,
                                      PGBIN_OID_TEXT, PGBIN_OID_TIMESTAMPTZ, PGBIN_OID_TEXT, PGBIN_OID_TEXT,
                                      PGBIN_OID_INT8, PGBIN_OID_INT8};

/* The columns of each statement, in its parameter order. */
static const int sc_con[] = {SC_DEV, SC_EDGE, SC_INC, SC_EPOCH, SC_PEER, SC_AT, SC_REPLY, SC_SLOT, SC_GEN};
static const int sc_dis[] = {SC_DEV, SC_EDGE, SC_INC, SC_EPOCH, SC_PEER, SC_AT, SC_REASON};

/* One statement's session rows, for pgbin_arrays: item k is row idx[k] if
 * it is of the statement's kind (connect or not), its column ci is
 * cols[ci]. */
struct sc_sel {
    const struct batch *b;
    const uint32_t *idx;
    bool connect;
    const int *cols;
};

/* A session row's column as an array element at o; returns the bytes
 * written, 0 for a row of the other kind. A peer-less row's peer is NULL;
 * an absent reply or reason is stored as '', as the per-row statement did. */
static size_t sc_elem(const void *ctx, int ci, uint32_t k, uint8_t *o)
{
    const struct sc_sel *s = ctx;
    const struct batch *b = s->b;
    const struct row *r = &b->rows[s->idx[k]];
    if ((r->kind == ENV_CONNECT) != s->connect)
        return 0;
    const struct batch_peer *p = &b->peers[r->peer];
    switch (s->cols[ci]) {
    case SC_DEV: return pgbin_field(o, r->dev.p, r->dev.n);
    case SC_EDGE: return pgbin_field(o, p->edge.p, p->edge.n);
    case SC_INC: return pgbin_field_i64(o, p->incarnation);
    case SC_EPOCH: return pgbin_field_i64(o, r->epoch);
    case SC_PEER: return r->addr.n ? pgbin_field(o, r->addr.p, r->addr.n) : pgbin_null(o);
    case SC_AT: return pgbin_field_ts(o, rows_at_us(r));
    case SC_REPLY: return pgbin_field(o, p->reply.p, p->reply.p ? p->reply.n : 0);
    case SC_SLOT: return pgbin_field_i64(o, r->slot);
    case SC_GEN: return pgbin_field_i64(o, r->gen);
    default: return pgbin_field(o, r->reason.p, r->reason.p ? r->reason.n : 0);
    }
}

/* Upsert the connect (or the other, disconnect) rows of idx[0..n) with one execution
 * of `stmt`: ncol binary array parameters built in d->copybuf (grown, never
 * shrunk: no allocation per row or per batch once warm). */
static enum db_rc sessions_kind(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n,
                                bool connect, const char *stmt, const int *cols, int ncol)
{
    uint32_t cnt = 0;
    size_t need = 0;
    for (uint32_t k = 0; k < n; k++) {
        const struct row *r = &b->rows[idx[k]];
        if ((r->kind == ENV_CONNECT) != connect)
            continue;
        cnt++;
        const struct batch_peer *p = &b->peers[r->peer];
        /* 4-byte length words, 5 fixed 8-byte values at most, the strings. */
        need += (size_t)ncol * 4u + 40u + r->dev.n + p->edge.n + r->addr.n + r->reason.n + p->reply.n;
    }
    if (cnt == 0)
        return DB_OK;
    need += (size_t)ncol * PGBIN_ARR_HDR;
    if (need > INT32_MAX)
        return local_fail(d, "session batch too large");
    if (grow(d, &d->copybuf, &d->copycap, need) != DB_OK)
        return DB_TRANSIENT;
    const char *v[SC_N];
    int len[SC_N];
    uint32_t oid[SC_N];
    for (int ci = 0; ci < ncol; ci++)
        oid[ci] = sc_oid[cols[ci]];
    const struct sc_sel sel = {b, idx, connect, cols};
    pgbin_arrays((uint8_t *)d->copybuf, ncol, oid, n, cnt, sc_elem, &sel, v, len);
    return exec_prepared(d, stmt, ncol, v, len, all_binary, NULL);
}

enum db_rc db_sessions(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n)
{
    if (sp_begin(d, true) != DB_OK)
        return DB_TRANSIENT;
    /* Connects first, as the writer always did; either order gives the same
     * rows, since each kind only sets its own columns and peer is kept. */
    enum db_rc rc = sessions_kind(d, b, idx, n, true, "con", sc_con, (int)(sizeof sc_con / sizeof sc_con[0]));
    if (rc == DB_OK)
        rc = sessions_kind(d, b, idx, n, false, "dis", sc_dis, (int)(sizeof sc_dis / sizeof sc_dis[0]));
    return sp_end(d, true, rc);
}

/* ---- the devices table -------------------------------------------------- */

enum db_rc db_devices(struct db *d, const struct devsum *s, uint32_t from, uint32_t n, uint32_t timeout_ms)
{
    if (from >= s->used || n == 0)
        return DB_OK;
    if (!d->conn)
        return DB_TRANSIENT;
    /* Session settings, not SET LOCAL: the statement runs in autocommit, and
     * this connection runs nothing else (devwriter.c). Sent again only when
     * the timeout changes (a stop's last statements). */
    if (timeout_ms != d->dev_timeout_ms) {
        char q[96];
        snprintf(q, sizeof q, "SET synchronous_commit TO off;SET statement_timeout TO %u",
                 (unsigned)timeout_ms);
        enum db_rc rc = exec_cmd(d, q);
        if (rc != DB_OK)
            return rc;
        d->dev_timeout_ms = timeout_ms;
    }
    /* Under the timeout, and cancellable: it waits for a lock on `devices`. */
    if (!d->dev_prepared) {
        PGresult *res = PQprepare(d->conn, "dev", dev_sql, 0, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            return failed(d, res);
        PQclear(res);
        d->dev_prepared = true;
    }
    size_t need = devsum_arrays_bound(s, from, n);
    if (need > INT32_MAX)
        return local_fail(d, "devices summary too large for one statement");
    if (grow(d, &d->copybuf, &d->copycap, need) != DB_OK)
        return DB_TRANSIENT;
    struct devsum_arrays a;
    if (devsum_arrays(s, from, n, (uint8_t *)d->copybuf, d->copycap, &a) == 0)
        return DB_OK;
    return exec_prepared(d, "dev", DEVSUM_NCOL, a.v, a.len, all_binary, NULL);
}

/* ---- cancelling from another thread ------------------------------------ */

struct db_canceller {
    PGcancel *pc;
};

struct db_canceller *db_canceller_new(struct db *d)
{
    if (!d->conn)
        return NULL;
    struct db_canceller *c = malloc(sizeof *c);
    if (c && !(c->pc = PQgetCancel(d->conn))) {
        free(c);
        c = NULL;
    }
    return c;
}

bool db_canceller_send(struct db_canceller *c, char *err, size_t cap)
{
    return PQcancel(c->pc, err, (int)cap) == 1;
}

void db_canceller_free(struct db_canceller **cp)
{
    struct db_canceller *c = *cp;
    if (!c)
        return;
    PQfreeCancel(c->pc);
    free(c);
    *cp = NULL;
}

enum db_rc db_reject(struct db *d, const struct batch *b, uint32_t i)
{
    const struct row *r = &b->rows[i];
    const struct batch_peer *p = &b->peers[r->peer];
    uint8_t seq[8], at[8];
    pgbin_be64(seq, r->seq);
    pgbin_ts(at, rows_at_us(r));
    static const char empty[1] = "";
    const char *v[6] = {(const char *)r->dev.p,
                        (const char *)seq,
                        (const char *)at,
                        (const char *)p->edge.p,
                        r->raw.n ? (const char *)r->raw.p : empty,
                        b->err + r->err_off};
    int len[6] = {(int)r->dev.n, 8, 8, (int)p->edge.n, (int)r->raw.n, (int)r->err_len};
    int fmt[6] = {1, 1, 1, 1, 1, 1};
    if (sp_begin(d, true) != DB_OK)
        return DB_TRANSIENT;
    return sp_end(d, true, exec_prepared(d, "rej", 6, v, len, fmt, NULL));
}

enum db_rc db_edge_lost(struct db *d, const uint8_t *edge, size_t n, uint64_t inc, uint64_t *closed)
{
    uint8_t ib[8];
    pgbin_be64(ib, inc);
    const char *v[2] = {(const char *)edge, (const char *)ib};
    int len[2] = {(int)n, 8};
    int fmt[2] = {1, 1};
    return exec_prepared(d, "lost", 2, v, len, fmt, closed);
}

/* ---- partitions and retention ------------------------------------------ */

enum db_rc db_partition(struct db *d, int64_t lo_us, int64_t hi_us, int *created)
{
    uint8_t lo[8], hi[8];
    pgbin_ts(lo, lo_us);
    pgbin_ts(hi, hi_us);
    const char *v[2] = {(const char *)lo, (const char *)hi};
    int len[2] = {8, 8}, fmt[2] = {1, 1};
    *created = 0;
    PGresult *res = PQexecPrepared(d->conn, "part", 2, v, len, fmt, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return failed(d, res);
    *created = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return DB_OK;
}

/* A partition's bound as a value, from the text pg_get_expr gives in this
 * session (so it casts back exactly); NULL for MINVALUE/MAXVALUE. */
#define PART_BOUND(word)                                                                                     \
    "(regexp_match(pg_get_expr(c.relpartbound, c.oid), '" word " \\(''([^'']*)''\\)'))[1]::timestamptz"
#define PARTS_OF_TELEMETRY                                                                                   \
    " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'telemetry'::regclass"

enum db_rc db_expired(struct db *d, int64_t cutoff_us, struct db_part *out, int cap, int *n)
{
    static const char sql[] =
        "SELECT name, pending FROM (SELECT c.relname AS name, i.inhdetachpending AS pending, " PART_BOUND(
            "TO") " AS hi" PARTS_OF_TELEMETRY ") p"
                  " WHERE pending OR hi <= $1 ORDER BY hi NULLS FIRST";
    uint8_t cut[8];
    pgbin_ts(cut, cutoff_us);
    const char *v[1] = {(const char *)cut};
    int len[1] = {8}, fmt[1] = {1};
    *n = 0;
    PGresult *res = PQexecParams(d->conn, sql, 1, NULL, v, len, fmt, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return failed(d, res);
    for (int r = 0; r < PQntuples(res) && *n < cap; r++) {
        struct db_part *p = &out[(*n)++];
        snprintf(p->name, sizeof p->name, "%s", PQgetvalue(res, r, 0));
        p->pending = PQgetvalue(res, r, 1)[0] == 't';
    }
    PQclear(res);
    return DB_OK;
}

enum db_rc db_drop_partition(struct db *d, const struct db_part *p)
{
    char *id = PQescapeIdentifier(d->conn, p->name, strlen(p->name));
    if (!id)
        return local_fail(d, PQerrorMessage(d->conn));
    char sql[256];
    /* CONCURRENTLY: two transactions, the first of which makes new queries
     * stop seeing the partition; no lock that writers wait for. Not inside a
     * transaction block, so this connection must be in autocommit. */
    snprintf(sql, sizeof sql, "ALTER TABLE telemetry DETACH PARTITION %s %s", id,
             p->pending ? "FINALIZE" : "CONCURRENTLY");
    enum db_rc rc = exec_cmd(d, sql);
    if (rc == DB_OK) {
        snprintf(sql, sizeof sql, "DROP TABLE %s", id);
        rc = exec_cmd(d, sql);
    }
    PQfreemem(id);
    return rc;
}

static enum db_rc exec_count(struct db *d, const char *sql, int n, const char *const *v, const int *len,
                             const int *fmt, uint64_t *count)
{
    PGresult *res = PQexecParams(d->conn, sql, n, NULL, v, len, fmt, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return failed(d, res);
    *count = strtoull(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return DB_OK;
}

enum db_rc db_trim(struct db *d, int64_t cutoff_us, uint64_t *keys, uint64_t *rejected, uint64_t *sessions)
{
    /* A key lives as long as the partition its row is in: delete those
     * below the oldest partition left. None while the oldest starts at
     * MINVALUE (the legacy partition: its keys are its rows'), nor when no
     * partition is left at all (nothing says which keys are orphans). */
    static const char keys_sql[] =
        "DELETE FROM telemetry_keys WHERE received_at <"
        " (SELECT min(coalesce(" PART_BOUND("FROM") ", '-infinity'))" PARTS_OF_TELEMETRY
                                                    " AND NOT i.inhdetachpending)";
    uint8_t cut[8];
    pgbin_ts(cut, cutoff_us);
    const char *v[1] = {(const char *)cut};
    int len[1] = {8}, fmt[1] = {1};
    *keys = *rejected = *sessions = 0;
    enum db_rc rc = exec_count(d, keys_sql, 0, NULL, NULL, NULL, keys);
    if (rc == DB_OK)
        rc = exec_count(d, "DELETE FROM telemetry_rejected WHERE received_at < $1", 1, v, len, fmt, rejected);
    if (rc == DB_OK)
        rc =
            exec_count(d, "DELETE FROM device_sessions WHERE disconnected_at < $1", 1, v, len, fmt, sessions);
    return rc;
}

enum db_rc db_try_lock(struct db *d, int64_t key, bool *got)
{
    uint8_t k[8];
    pgbin_be64(k, (uint64_t)key);
    const char *v[1] = {(const char *)k};
    int len[1] = {8}, fmt[1] = {1};
    *got = false;
    PGresult *res = PQexecParams(d->conn, "SELECT pg_try_advisory_lock($1::int8)", 1, NULL, v, len, fmt, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return failed(d, res);
    *got = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return DB_OK;
}

void db_unlock(struct db *d, int64_t key)
{
    if (!db_connected(d))
        return;
    char sql[64];
    snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%lld)", (long long)key);
    PGresult *res = PQexec(d->conn, sql);
    PQclear(res);
}
