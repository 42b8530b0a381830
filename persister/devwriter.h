/* SPDX-License-Identifier: Apache-2.0 */
/* devwriter.h - the devices table's writer: a connection of its own, on a
 * thread of its own, that upserts what the writer lanes committed (devsum.h)
 * about once a second.
 *
 * Why not on the lanes, as it was: the upsert of a second's devices (1,000
 * devices: ~20 ms of PostgreSQL time on a busy 2-core box) held its lane,
 * and both lanes wrote theirs about together, so once a second no lane was
 * free and every ack waited; the 10k msgs/s ack p99 doubled or tripled
 * (docs/performance.md, "persister: the devices table off the lanes"). Here
 * the lanes only add to a summary under a mutex, which the thread swaps for
 * an empty one before it writes: a lane never waits for the database on
 * behalf of the devices table. One summary for all lanes also writes each
 * device once a second, not once per lane.
 *
 * What it may miss (devices is a summary, not a record: nothing is acked on
 * it): a failed write is not retried (the next batches of the same devices
 * write the same columns again); when more than DEVWRITER_DEVICES_MAX devices
 * wait while a write is in progress, the rest of a batch's rows are left out
 * and counted (rows_left_out); a persister killed drops the summary it
 * held (up to about a second).
 *
 * devwriter_add is for the lanes' threads, the rest for the loop's thread;
 * only devwriter_destroy blocks on the database (the last write). */
#ifndef PERSISTER_DEVWRITER_H
#define PERSISTER_DEVWRITER_H
#include <stdatomic.h>
#include <stdint.h>

#include "rows.h"

#define DEVWRITER_EVERY_MS    1000u  /* a device's row is written at most this often (but see _MAX) */
#define DEVWRITER_DEVICES_MAX 16384u /* devices held between two writes; half of it starts a write early */
/* Devices per statement and transaction; a write's statements are spread
 * over half of DEVWRITER_EVERY_MS. */
#define DEVWRITER_CHUNK 128u
/* A statement stuck on a lock another session holds on `devices` fails
 * after this long (counted, not retried), and the rest of its write waits
 * for the next: the lock would stop them the same way. */
#define DEVWRITER_STATEMENT_MS 30000u
/* devwriter_destroy: the last write, and a statement in progress when the
 * stop comes, get this long; then the statement is cancelled and what is
 * not written is counted as failed. So a lock on `devices` holds a stop
 * this long at most, not DEVWRITER_STATEMENT_MS per statement. */
#define DEVWRITER_STOP_MS 5000u

/* Written by the devices thread (updates, failures) and by the lanes under
 * the writer's mutex (rows_left_out): relaxed atomics, read by stats.c. */
struct devwriter_stats {
    _Atomic uint64_t devices_updated; /* device entries written (one per device and write) */
    _Atomic uint64_t devices_failed;  /* device entries not written: no connection, or the statement failed */
    _Atomic uint64_t rows_left_out;   /* committed rows not folded in: the summary was full */
};

struct devwriter_cfg {
    const char *conninfo; /* copied */
};

struct devwriter;

/* Start the thread (SIGINT/SIGTERM blocked); it connects when it first has
 * something to write. st must outlive the writer. NULL on failure (logged). */
struct devwriter *devwriter_new(const struct devwriter_cfg *cfg, struct devwriter_stats *st);
/* Write what is held (if the database is there), stop and join, within
 * DEVWRITER_STOP_MS (and one cancel request) whatever the database does. Call
 * after the lanes are gone. *w becomes NULL; NULL is a no-op. */
void devwriter_destroy(struct devwriter **w);

/* Fold the committed batch b into the summary (devsum_add). Takes the
 * writer's mutex for the time of the fold, never a database round trip. */
void devwriter_add(struct devwriter *w, const struct batch *b);

#endif
