/* db.h - the persister's libpq shell: connection, migrations and the SQL of
 * one batch transaction, as small steps the writer (writer.c) sequences.
 *
 * Every call blocks on the network (libpq, synchronous). Each step returns
 * DB_OK, DB_DATA (the server refused the data: SQLSTATE class 22 or 23,
 * see db_classify) or DB_TRANSIENT (anything else: connection lost,
 * shutdown, serialization failure, ...; the caller rolls back or reconnects
 * and retries the whole batch). After DB_DATA/DB_TRANSIENT, db_last_error()
 * holds the server's message until the next call. */
#ifndef PERSISTER_DB_H
#define PERSISTER_DB_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "rows.h"

enum db_rc { DB_OK = 0, DB_DATA, DB_TRANSIENT };

struct db;

/* conninfo: a libpq keyword string or URI; "" = PG* environment variables.
 * Copied. Does not connect. NULL on out of memory. */
struct db *db_new(const char *conninfo);
void db_destroy(struct db **d);

/* Connect, run pending migrations under an advisory lock (so persisters
 * starting together never race), create the per-connection staging table.
 * DB_OK or DB_TRANSIENT. */
enum db_rc db_connect(struct db *d);
void db_disconnect(struct db *d);
bool db_connected(const struct db *d);

enum db_rc db_begin(struct db *d);
enum db_rc db_commit(struct db *d);
/* Best effort; a failure leaves the connection marked bad. */
void db_rollback(struct db *d);

/* How db_rows writes. */
enum db_path {
    DB_DIRECT, /* COPY straight into telemetry: fastest; fails with 23505 if any row exists */
    DB_STAGED, /* COPY into the staging table, INSERT ... ON CONFLICT DO NOTHING: idempotent */
};

/* Write data rows idx[0..n) to telemetry by `path`. With savepoint, the
 * step is wrapped in a savepoint rolled back on failure, so the surrounding
 * transaction stays usable after DB_DATA. *inserted = rows new to telemetry
 * (the rest were duplicates). */
enum db_rc db_rows(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n, enum db_path path,
                   bool savepoint, uint64_t *inserted);

/* Upsert device_sessions for connect/disconnect rows idx[0..n), inside a
 * savepoint: one statement for the connects, then one for the disconnects
 * (two round trips whatever n). One refused row fails the call with DB_DATA
 * (the writer bisects). Reuses the COPY buffer: no allocation per row. */
enum db_rc db_sessions(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n);

/* Store data row i in telemetry_rejected with its error text, inside a
 * savepoint (ON CONFLICT DO NOTHING: a resent poison row is stored once). */
enum db_rc db_reject(struct db *d, const struct batch *b, uint32_t i);

/* Close the open sessions of edge incarnation inc with reason 'edge_lost'
 * (autocommit). *closed = sessions closed. */
enum db_rc db_edge_lost(struct db *d, const uint8_t *edge, size_t n, uint64_t inc, uint64_t *closed);

/* A trivial round trip, to notice a dead server while idle. */
enum db_rc db_ping(struct db *d);

const char *db_last_error(const struct db *d);
const char *db_last_sqlstate(const struct db *d);

/* What a server error means for the batch: DB_DATA for SQLSTATE class 22
 * (data exception) and 23 (integrity constraint violation), DB_TRANSIENT for
 * anything else, NULL or malformed. Pure: no connection needed. (A broken
 * connection is transient whatever the SQLSTATE: the steps above check that
 * first.) */
enum db_rc db_classify(const char *sqlstate);

#endif
