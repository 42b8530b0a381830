/* SPDX-License-Identifier: Apache-2.0 */
/* db.h - the persister's libpq shell: connection, migrations, the SQL of
 * one batch transaction as small steps the writer (writer.c) sequences, and
 * the maintenance statements (maint.c: partitions, retention, edge_lost).
 *
 * A struct db is one connection, used by one thread at a time. Every call
 * blocks on the network (libpq, synchronous). Each step returns DB_OK,
 * DB_DATA (the server refused the data: SQLSTATE class 22 or 23, see
 * db_classify), DB_NOPART (a row found no telemetry partition: create the
 * batch's partitions with db_partition and retry) or DB_TRANSIENT (anything
 * else: connection lost, shutdown, deadlock, ...; the caller rolls back or
 * reconnects and retries the whole batch). After a failure, db_last_error()
 * holds the server's message until the next call. */
#ifndef PERSISTER_DB_H
#define PERSISTER_DB_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "rows.h"

enum db_rc { DB_OK = 0, DB_DATA, DB_TRANSIENT, DB_NOPART };

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

/* How db_rows writes. Either way a row is stored only with its key in
 * telemetry_keys, the arbiter of exactly once across partitions. */
enum db_path {
    DB_DIRECT, /* COPY the keys into telemetry_keys, then the rows into telemetry: fastest;
                  fails with 23505 if any key exists (a resend, or twice in the batch) */
    DB_STAGED, /* COPY into the staging table, then one statement: keys ON CONFLICT DO NOTHING,
                  rows whose key was new: idempotent */
};

/* Write data rows idx[0..n) to telemetry by `path`. With savepoint, the
 * step is wrapped in a savepoint rolled back on failure, so the surrounding
 * transaction stays usable after DB_DATA. *inserted = rows new to telemetry
 * (the rest were duplicates). After DB_NOPART the transaction is aborted:
 * roll it back. */
enum db_rc db_rows(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n, enum db_path path,
                   bool savepoint, uint64_t *inserted);

/* telemetry_conflicts rows kept per device (default DB_CONFLICTS_MAX_DEFAULT):
 * beyond, conflicts are only counted. Call before the first db_rows. */
#define DB_CONFLICTS_MAX_DEFAULT 100
void db_set_conflicts_max(struct db *d, int max);

/* Conflicts (a stored (device_id, seq) resent with another body or ts) that
 * the staged writes since the last call found, and how many of them were
 * kept in telemetry_conflicts; resets both. Only DB_STAGED writes look.
 * Counts of writes later rolled back are included: call after a COMMIT,
 * and reset before the transaction. */
void db_conflicts(struct db *d, uint64_t *found, uint64_t *kept);

/* The whole transaction of a batch of data rows only, in as few round trips
 * as its size allows: the round trips of BEGIN, two COPYs and COMMIT sent
 * one by one, not the rows, are most of a small batch's time.
 *  - Up to DB_ONESHOT_MAX rows: one round trip. The prepared statement
 *    "rows" inserts the keys, then the rows, from one binary array per
 *    column, in autocommit (the statement is the transaction).
 *  - More: "BEGIN; COPY keys; COPY rows; COMMIT" as one query string, whose
 *    COPYs the server asks for in turn: three round trips instead of six.
 * DB_OK: committed, *inserted = rows inserted. Otherwise nothing is
 * committed (but for DB_TRANSIENT when the commit's answer was lost:
 * unknown, and a retry is idempotent) and the caller rolls back (a no-op
 * after the one statement): DB_DATA as db_rows(DB_DIRECT) says it (23505 for
 * a key already stored: the keys go first in both forms), DB_NOPART,
 * DB_TRANSIENT. Call outside a transaction.
 *
 * Why 128: per row, PostgreSQL spends more on the statement's inserts (a
 * row at a time) than on COPY's (many at a time): ~2.5 µs more of a lane's
 * time a row at saturation's ~4,300-row batches. At 50k msgs/s a commit of
 * ~50 rows still took ~0.2 ms less as the statement, so its two round trips
 * fewer are worth ~0.33 ms there, the extra cost of ~130 rows
 * (docs/performance.md, "one statement for small batches (session 17)"). */
#define DB_ONESHOT_MAX 128u
enum db_rc db_rows_commit(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n,
                          uint64_t *inserted);

/* Upsert device_sessions for connect/disconnect rows idx[0..n), inside a
 * savepoint: one statement for the connects, then one for the disconnects
 * (two round trips whatever n). One refused row fails the call with DB_DATA
 * (the writer bisects). Reuses the COPY buffer: no allocation per row. */
enum db_rc db_sessions(struct db *d, const struct batch *b, const uint32_t *idx, uint32_t n);

/* Upsert entries [from, from + n) of a devices summary (devsum.h) into
 * `devices` with one execution of a prepared statement (binary arrays,
 * devsum_arrays), autocommit, outside a batch transaction. The connection
 * is made the devices writer's own on first use: synchronous_commit off for
 * the session (a summary the next update corrects, not a record an ack
 * depends on) and statement_timeout timeout_ms (a lock another session
 * holds on `devices` fails the statement instead of holding its writer for
 * as long as it lasts; 0 would be PostgreSQL's "no timeout": pass at least
 * 1). DB_OK (also for an empty range), DB_DATA or DB_TRANSIENT; nothing is
 * retried: the caller resets the sum either way, and the next one writes
 * the same columns again. The arrays go into the connection's COPY buffer
 * (grown when a sum needs more: no allocation once warm). Blocks on the
 * database. */
struct devsum;
enum db_rc db_devices(struct db *d, const struct devsum *s, uint32_t from, uint32_t n, uint32_t timeout_ms);

/* Cancelling what a connection runs, from another thread: a stop must not
 * wait for a statement stuck on a lock (devwriter.c). A canceller is made
 * by d's own thread while d is connected, and sent from any thread
 * (PQcancel is thread-safe); one made before a reconnect cancels nothing
 * (the server does not know its key any more). NULL: not connected, or out
 * of memory. */
struct db_canceller;
struct db_canceller *db_canceller_new(struct db *d);
/* Ask the server to cancel the statement running on the connection (none
 * running: nothing happens). Blocks for one connect to the server. False
 * if the request could not be sent: its reason in err. */
bool db_canceller_send(struct db_canceller *c, char *err, size_t cap);
void db_canceller_free(struct db_canceller **c);

/* Store data row i in telemetry_rejected with its error text, inside a
 * savepoint (ON CONFLICT DO NOTHING: a resent poison row is stored once). */
enum db_rc db_reject(struct db *d, const struct batch *b, uint32_t i);

/* Close the open sessions of edge incarnation inc with reason 'edge_lost'
 * (autocommit). *closed = sessions closed. */
enum db_rc db_edge_lost(struct db *d, const uint8_t *edge, size_t n, uint64_t inc, uint64_t *closed);

/* A trivial round trip, to notice a dead server while idle. */
enum db_rc db_ping(struct db *d);

/* ---- partitions and retention (autocommit: call outside a transaction) ---- */

/* Make received_at in [lo_us, hi_us) routable (SELECT sluice_telemetry_partition,
 * migrations/002): *created = partitions created (0: it was). Serialized
 * with other persisters by an advisory lock in the server. */
enum db_rc db_partition(struct db *d, int64_t lo_us, int64_t hi_us, int *created);

/* A partition of telemetry past retention, or left half detached. */
struct db_part {
    char name[64];
    bool pending; /* a DETACH ... CONCURRENTLY was interrupted: finish it */
};

/* The partitions whose upper bound is <= cutoff_us, and those whose detach is
 * pending, at most cap of them (oldest first). */
enum db_rc db_expired(struct db *d, int64_t cutoff_us, struct db_part *out, int cap, int *n);

/* ALTER TABLE telemetry DETACH PARTITION name CONCURRENTLY (or FINALIZE, for
 * a pending one), then DROP TABLE name. Waits for transactions that still
 * see the partition; never blocks writers. */
enum db_rc db_drop_partition(struct db *d, const struct db_part *p);

/* Delete what telemetry's retention leaves behind: keys older than the oldest
 * partition left (none if that partition starts at MINVALUE), dead letters
 * and conflicts received and closed sessions ended before cutoff_us. Counts
 * in *keys, *rejected (dead letters + conflicts), *sessions. */
enum db_rc db_trim(struct db *d, int64_t cutoff_us, uint64_t *keys, uint64_t *rejected, uint64_t *sessions);

/* A session-level advisory lock (maintenance work one persister does at a
 * time): *got = taken. db_unlock releases it (best effort). */
enum db_rc db_try_lock(struct db *d, int64_t key, bool *got);
void db_unlock(struct db *d, int64_t key);

const char *db_last_error(const struct db *d);
const char *db_last_sqlstate(const struct db *d);
/* db_last_error quoted for a log line's value (log_q) into q[n]: the way
 * every caller logs it. Returns q. DB_ERR_Q is room for a whole one. */
#define DB_ERR_Q 600u
const char *db_error_q(const struct db *d, char *q, size_t n);

/* What a server error means for the batch: DB_DATA for SQLSTATE class 22
 * (data exception) and 23 (integrity constraint violation), DB_TRANSIENT for
 * anything else, NULL or malformed. Pure: no connection needed. (A broken
 * connection is transient whatever the SQLSTATE: the steps above check that
 * first.) */
enum db_rc db_classify(const char *sqlstate);

/* The same with the error's table and constraint fields (NULL = absent): a
 * 23514 raised by the table telemetry itself with no constraint is "no
 * partition of relation telemetry found for row" (PostgreSQL names no
 * constraint then, whatever the server's language): DB_NOPART, never a
 * refused row. Pure. */
enum db_rc db_classify_err(const char *sqlstate, const char *table, const char *constraint);

#endif
