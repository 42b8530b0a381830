/* SPDX-License-Identifier: Apache-2.0 */
/* pgconn.c - a background thread's PostgreSQL connection (sl/pgconn.h).
 *
 * Deliberately not here: pools (sluice-api's store.c has its own: its
 * request threads wait for a free connection), statements of any service. */
#include "sl/pgconn.h"

#include <string.h>

#include "sl/log.h"
#include "sl/loop.h"
#include "sl/stat.h"

static void ignore_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

void pgconn_init(struct pgconn *c, const char *conninfo, const char *app, const char *tag, unsigned retry_ms,
                 _Atomic uint64_t *errors)
{
    memset(c, 0, sizeof *c);
    c->conninfo = conninfo;
    c->app = app;
    c->tag = tag;
    c->retry_ms = retry_ms;
    c->errors = errors;
}

void pgconn_fini(struct pgconn *c)
{
    if (c->pg)
        PQfinish(c->pg);
    c->pg = NULL;
}

void pgconn_fail(struct pgconn *c, const char *what, const char *err)
{
    if (c->errors)
        stat_inc(c->errors);
    if (c->fails++ % 10u == 0) {
        char e[600];
        log_warn("event=%s_db_failed what=%s failures=%u err=%s", c->tag, what, c->fails,
                 log_q(e, sizeof e, err, strlen(err)));
    }
    if (c->pg && PQstatus(c->pg) != CONNECTION_OK)
        pgconn_fini(c);
    c->next_connect = loop_clock_ms() + c->retry_ms;
}

void pgconn_fail_res(struct pgconn *c, const char *what, const PGresult *r)
{
    pgconn_fail(c, what, PQresultErrorMessage(r));
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (c->pg && st && strcmp(st, "0A000") == 0)
        pgconn_fini(c); /* next_connect is set: the next round reconnects and prepares */
}

bool pgconn_up(struct pgconn *c, pgconn_setup_cb *setup, void *ud)
{
    if (c->pg)
        return true;
    if (loop_clock_ms() < c->next_connect)
        return false;
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {"5", c->app, c->conninfo, NULL};
    c->pg = PQconnectdbParams(keys, vals, 1);
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
        pgconn_fail(c, "connect", c->pg ? PQerrorMessage(c->pg) : "out of memory");
        pgconn_fini(c);
        return false;
    }
    PQsetNoticeProcessor(c->pg, ignore_notice, NULL);
    if (setup && !setup(c, ud)) {
        pgconn_fini(c);
        c->next_connect = loop_clock_ms() + c->retry_ms;
        return false;
    }
    if (c->fails)
        log_info("event=%s_db_connected after_failures=%u", c->tag, c->fails);
    c->fails = 0;
    return true;
}

bool pgconn_exec(struct pgconn *c, const char *sql)
{
    PGresult *r = PQexec(c->pg, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        pgconn_fail_res(c, sql, r);
    PQclear(r);
    return ok;
}

bool pgconn_prepare(struct pgconn *c, const char *const (*stmts)[2], size_t n)
{
    for (size_t k = 0; k < n; k++) {
        PGresult *r = PQprepare(c->pg, stmts[k][0], stmts[k][1], 0, NULL);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            pgconn_fail_res(c, "prepare", r);
        PQclear(r);
        if (!ok)
            return false;
    }
    return true;
}
