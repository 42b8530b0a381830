/* SPDX-License-Identifier: Apache-2.0 */
/* cmdstore.c - a command into the durable queue (sl/cmdstore.h).
 *
 * Deliberately not here: connections and their pools, what a failure
 * becomes (a status code, an MQTT result), logging. */
#include "sl/cmdstore.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const cmdstore_stmts[CMDSTORE_NSTMTS][2] = {
    /* Under the device's advisory lock (cmdstore_submit). $1 device, $2 id,
     * $3 body JSON, $4 body msgpack, $5 ttl_s, $6 queue, $7 max queued. A
     * command that would be refused at once (queue false, device offline)
     * is stored as rejected, whatever the cap; otherwise none when the
     * device has max queued pending already. */
    {"cmdstore_submit",
     "INSERT INTO commands AS c (id, device_id, body, body_mp, expires_at, state, result, history)"
     " SELECT $2, $1, $3::jsonb, $4, now() + $5::int8 * interval '1 second', v.state,"
     " CASE WHEN v.state = 'rejected' THEN '{\"error\":\"offline\"}'::jsonb END,"
     " jsonb_build_array(jsonb_build_object('state', v.state, 'at', now()))"
     " FROM (SELECT CASE WHEN NOT $6::bool AND NOT coalesce((SELECT x.connected_at IS NOT NULL"
     " AND x.disconnected_at IS NULL FROM device_sessions x WHERE x.device_id = $1"
     " ORDER BY x.epoch DESC LIMIT 1), false) THEN 'rejected' ELSE 'queued' END AS state) v"
     " WHERE EXISTS (SELECT 1 FROM devices WHERE device_id = $1) AND (v.state = 'rejected' OR"
     " (SELECT count(*) FROM commands q WHERE q.device_id = $1 AND q.state IN ('queued', 'delivered'))"
     " < $7::int8)"
     " RETURNING " CMDSTORE_COMMAND_JSON "::text"},
    {"cmdstore_known", "SELECT 1 FROM devices WHERE device_id = $1"},
};

/* The step that failed: hand its result over, roll back if possible. */
static enum cmdstore_rc fail(PGconn *c, PGresult *r, const char *step, PGresult **failed, const char **what)
{
    *failed = r;
    *what = step;
    if (PQstatus(c) == CONNECTION_OK)
        PQclear(PQexec(c, "ROLLBACK"));
    return CMDSTORE_FAILED;
}

static enum cmdstore_rc rollback(PGconn *c, enum cmdstore_rc rc)
{
    if (PQstatus(c) == CONNECTION_OK)
        PQclear(PQexec(c, "ROLLBACK"));
    return rc;
}

enum cmdstore_rc cmdstore_submit(PGconn *c, const struct cmdstore_cmd *cmd, char **json, size_t *len,
                                 PGresult **failed, const char **what)
{
    *json = NULL;
    *len = 0;
    *failed = NULL;
    *what = NULL;
    char ttl[24], max[24];
    snprintf(ttl, sizeof ttl, "%" PRId64, cmd->ttl_s);
    snprintf(max, sizeof max, "%" PRId64, cmd->max_queued);
    const char *v[7] = {
        cmd->dev, cmd->id, cmd->json, (const char *)cmd->mp, ttl, cmd->queue ? "true" : "false", max};
    int lens[7] = {0, 0, 0, (int)cmd->mp_len, 0, 0, 0};
    int fmts[7] = {0, 0, 0, 1, 0, 0, 0};
    const char *lv[1] = {cmd->dev};
    PGresult *r = PQexec(c, "BEGIN");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        return fail(c, r, "begin", failed, what);
    PQclear(r);
    /* The device's lock serializes submissions to one device (the cap, and
     * seq order = commit order: the persister delivers by seq). */
    r = PQexecParams(c, "SELECT pg_advisory_xact_lock(1936745827, hashtext($1))", 1, NULL, lv, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return fail(c, r, "lock", failed, what);
    PQclear(r);
    r = PQexecPrepared(c, "cmdstore_submit", 7, v, lens, fmts, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (st && !strcmp(st, "23505")) { /* unique_violation: the id is taken */
            PQclear(r);
            return rollback(c, CMDSTORE_DUPLICATE);
        }
        return fail(c, r, "submit", failed, what);
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        /* Unknown device, or its queue is full: which? */
        r = PQexecPrepared(c, "cmdstore_known", 1, lv, NULL, NULL, 0);
        enum cmdstore_rc rc =
            PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 0 ? CMDSTORE_UNKNOWN : CMDSTORE_FULL;
        PQclear(r);
        return rollback(c, rc);
    }
    size_t l = (size_t)PQgetlength(r, 0, 0);
    char *out = malloc(l + 1);
    if (out) {
        memcpy(out, PQgetvalue(r, 0, 0), l);
        out[l] = '\0';
    }
    PQclear(r);
    if (!out)
        return rollback(c, CMDSTORE_NOMEM);
    r = PQexec(c, "COMMIT");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        free(out);
        return fail(c, r, "commit", failed, what);
    }
    PQclear(r);
    *json = out;
    *len = l;
    return CMDSTORE_OK;
}
