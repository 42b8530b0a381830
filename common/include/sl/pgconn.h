/* SPDX-License-Identifier: Apache-2.0 */
/* sl/pgconn.h - the PostgreSQL connection of a service's background thread
 * (the persister's cmdq, the notifier's cmdlog): made when due, remade
 * after a failure no sooner than retry_ms later, its failures counted and
 * logged once in ten (event=<tag>_db_failed, then <tag>_db_connected when
 * it is back). A database that is down is never fatal: the thread asks
 * pgconn_up each round and does its work when it says yes.
 *
 * An embedded struct (pgconn_init/pgconn_fini); one thread's alone. Every
 * call blocks on libpq (a connection attempt: at most connect_timeout, 5 s). */
#ifndef SL_PGCONN_H
#define SL_PGCONN_H
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The application_name of each service's pgconn: how a persister that has
 * just migrated finds the sessions to reset (persister/db.c). Never change
 * them: older versions are found by the same names. */
#define PGCONN_APP_CMDQ   "sluice-persister-cmdq"
#define PGCONN_APP_CMDLOG "sluice-notifier-cmdlog"

struct pgconn {
    PGconn *pg;               /* NULL while down */
    const char *conninfo;     /* borrowed: libpq conninfo or URI ("" = PG* variables) */
    const char *app;          /* borrowed: application_name */
    const char *tag;          /* borrowed: the log events' prefix */
    unsigned retry_ms;        /* between connection attempts */
    _Atomic uint64_t *errors; /* counts every failure (NULL: not counted) */
    uint64_t next_connect;    /* loop_clock_ms of the next attempt */
    unsigned fails;           /* since the last success */
};

/* Set up c (no connection yet). The strings must outlive c. */
void pgconn_init(struct pgconn *c, const char *conninfo, const char *app, const char *tag, unsigned retry_ms,
                 _Atomic uint64_t *errors);
/* Close the connection, if any. */
void pgconn_fini(struct pgconn *c);

/* Run after each new connection (prepare statements, LISTEN, SET): false
 * when it failed (it called pgconn_fail), and the connection is dropped. */
typedef bool pgconn_setup_cb(struct pgconn *c, void *ud);

/* Connected? If not and an attempt is due, connect and run setup. */
bool pgconn_up(struct pgconn *c, pgconn_setup_cb *setup, void *ud);
/* Count and (once in ten) log a failure of `what`; drop the connection if
 * it is broken, and wait retry_ms before the next attempt. */
void pgconn_fail(struct pgconn *c, const char *what, const char *err);
/* pgconn_fail for a statement's failed result r, which also drops a
 * connection that works but cannot run its statements any more: SQLSTATE
 * 0A000 is what PostgreSQL answers, on every execution from then on, a
 * prepared statement whose result columns changed type or collation after
 * it was prepared ("cached plan must not change result type"). That happens
 * to a long-lived connection when another process migrates the schema under
 * it: a newer persister in a rolling upgrade (bench/persister_upgrade.sh
 * found it). A new session prepares the statement against the new columns.
 * (Versions before this one do not look: a persister that has just
 * migrated ends their sessions instead, by the names below.)
 * The other holders of prepared statements cannot meet it: the persister's
 * writers' statements return counts, sluice-api's one text value built in
 * SQL, which no column change alters. */
void pgconn_fail_res(struct pgconn *c, const char *what, const PGresult *r);
/* A statement without parameters (BEGIN, COMMIT, SET...): true if it
 * succeeded, else pgconn_fail'd. */
bool pgconn_exec(struct pgconn *c, const char *sql);
/* Prepare n (name, SQL) pairs: true, or pgconn_fail'd at the first that
 * failed (e.g. a migration not run yet). */
bool pgconn_prepare(struct pgconn *c, const char *const (*stmts)[2], size_t n);

#endif
