/* SPDX-License-Identifier: Apache-2.0 */
/* writer.h - one batch -> one committed transaction, poison rows isolated.
 *
 * writer_commit runs the batch through db.h: fast path first (a batch of
 * data rows only: the whole transaction as one query string,
 * db_rows_commit; else BEGIN, the batch's keys in one COPY into
 * telemetry_keys, its rows in one COPY into telemetry, and so on, a round
 * trip each). If a key is already stored (23505, a resend), it rolls back and
 * writes the batch through the staging table with ON CONFLICT DO NOTHING on
 * the keys, and keeps using that path for the next
 * WRITER_STAGED_AFTER_DUP batches (resends come in bursts, and a failed
 * direct COPY is wasted work). If the server refuses data (other class 22/23),
 * it rolls back and bisects under savepoints until every refused row is
 * found; those go to telemetry_rejected, the rest to telemetry, sessions are
 * upserted, and everything commits together. A row that finds no partition
 * (DB_NOPART) makes it roll back, create the partitions of the batch's
 * periods (db_partition) and start again. Any transient failure returns
 * DB_TRANSIENT with nothing committed: the caller reconnects and calls
 * writer_commit again with the same batch (idempotent by ON CONFLICT).
 * Blocks on the database. Allocates only in writer_init. */
#ifndef PERSISTER_WRITER_H
#define PERSISTER_WRITER_H
#include <stdint.h>
#include "db.h"
#include "rows.h"

struct writer_stats {
    uint64_t inserted;       /* new telemetry rows */
    uint64_t stored;         /* data rows durable in telemetry (inserted + duplicates) */
    uint64_t dead;           /* data rows stored in telemetry_rejected */
    uint64_t dropped;        /* rows stored nowhere (not acked) */
    uint64_t sessions;       /* session rows upserted */
    uint64_t attempts;       /* db_rows calls (1 without poison rows or duplicates) */
    uint64_t partitions;     /* partitions this batch had to create */
    uint64_t conflicts;      /* stored (device_id, seq) resent with another body or ts (staged path only) */
    uint64_t conflicts_kept; /* of them, noted in telemetry_conflicts (the rest: over the per-device bound) */
    bool staged;             /* the batch went through the staging table (duplicates) */
};

#define WRITER_STAGED_AFTER_DUP 16
#define WRITER_NOPART_ROUNDS    3 /* transactions re-run after creating partitions */

struct writer {
    struct db *db;
    uint32_t *idx;
    uint32_t cap;
    uint32_t staged_left; /* batches still to write staged after a duplicate */
    int part_days;        /* partition period in days (1 after writer_init; set it after) */
};

/* cap_rows: the batch capacity. Returns 0 or -1 (out of memory). */
int writer_init(struct writer *w, struct db *db, uint32_t cap_rows);
void writer_fini(struct writer *w);

/* DB_OK: committed; every data row is ROW_STORED, ROW_DEAD or ROW_DROPPED.
 * DB_TRANSIENT: nothing committed (the transaction is rolled back or the
 * connection is bad; after a lost COMMIT answer: unknown, and the retry is
 * idempotent). Never returns DB_DATA or DB_NOPART. */
enum db_rc writer_commit(struct writer *w, struct batch *b, struct writer_stats *st);

#endif
