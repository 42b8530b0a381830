/* SPDX-License-Identifier: Apache-2.0 */
/* lane.h - one PostgreSQL connection on a thread of its own, committing the
 * batches the persister's loop hands it (group commit: docs/internals.md,
 * "persister: group commit").
 *
 * The loop (persister.c) owns the batches and everything their rows point
 * into; a lane borrows one batch from lane_submit until lane_take returns it.
 * Meanwhile the lane runs writer_commit on it, and through an outage retries
 * it (reconnecting with backoff and jitter) until it commits or the deadline
 * set by lane_give_up_at passes. When the batch is done, the lane writes to
 * cfg.notify_fd (an eventfd the loop polls). It folds each committed batch
 * into the devices table's summary (devwriter.h), whose own thread writes
 * it: a lane's connection carries batches only. While idle it keeps its
 * connection checked: a reconnect with backoff when down, a ping after
 * LANE_PING_IDLE_MS without a statement.
 *
 * Every function below is for the loop's thread and never blocks on the
 * database (only, briefly, on the lane's mutex). */
#ifndef PERSISTER_LANE_H
#define PERSISTER_LANE_H
#include <stdbool.h>
#include <stdint.h>

#include "devwriter.h"
#include "rows.h"
#include "writer.h"

#define LANE_PING_IDLE_MS   2000u
#define LANE_BACKOFF_MIN_MS 100u
#define LANE_BACKOFF_MAX_MS 5000u

struct lane_cfg {
    const char *conninfo;      /* libpq conninfo (copied); multi-host with target_session_attrs works */
    uint32_t cap_rows;         /* the largest batch it will be given */
    int part_days;             /* telemetry partition period (writer.part_days) */
    int conflicts_max;         /* telemetry_conflicts rows kept per device (db_set_conflicts_max) */
    int notify_fd;             /* eventfd: 1 is added when a batch is done */
    struct devwriter *devices; /* committed batches are folded into it (borrowed; NULL: none) */
    unsigned id;               /* for log lines */
};

/* What became of a submitted batch. */
struct lane_result {
    int rc;                 /* 0 committed (rows' states are final), -1 abandoned at the deadline */
    struct writer_stats st; /* of the committing attempt */
    uint64_t retries;       /* failed connects and commits before it */
    uint64_t busy_us;       /* lane_submit to done, retries included */
};

struct lane;

/* Start the lane's thread (with SIGINT/SIGTERM blocked: signals are the
 * loop's) and its first connection attempt. NULL on failure (logged). */
struct lane *lane_new(const struct lane_cfg *cfg);
/* Stop and join the thread, disconnect. The lane must not hold a batch
 * (lane_busy false); *l becomes NULL. */
void lane_destroy(struct lane **l);

/* True from lane_submit until lane_take returned the batch. */
bool lane_busy(struct lane *l);
/* Hand b to an idle lane. b and what its rows point into must stay untouched
 * by the caller until lane_take gives it back. */
void lane_submit(struct lane *l, struct batch *b);
/* If the submitted batch is done: *r, the lane is idle again, true. */
bool lane_take(struct lane *l, struct lane_result *r);
/* Connected to PostgreSQL now (as of its last statement). */
bool lane_up(const struct lane *l);
/* Stop retrying a failing batch at monotonic ms `at` (shutdown); 0 = never. */
void lane_give_up_at(struct lane *l, uint64_t at);

#endif
