/* SPDX-License-Identifier: Apache-2.0 */
/* persister.h - the persister service: PULL edge batches, write them to
 * PostgreSQL in batches, ack each committed row back through a ROUTER.
 *
 * Threads: the loop (persister_run: ZeroMQ, mapping, acks), one writer lane
 * per --connections (lane.c: group commit) and one maintenance thread
 * (maint.c: partitions, retention, edge_lost). Memory is bounded at
 * persister_new: connections + 1 batch arenas of min(batch_max,
 * max_pending / (connections + 1)) rows, and the ZeroMQ messages they point
 * into, at most max_pending_bytes of them. While every lane is committing
 * (or retrying while PostgreSQL is down) and the filling batch is full, or
 * one more message of max_msg bytes would pass max_pending_bytes, nothing
 * more is pulled, so ZeroMQ's high-water marks push back to the edges. */
#ifndef PERSISTER_PERSISTER_H
#define PERSISTER_PERSISTER_H
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include "cmdq.h"
#include "devwriter.h"
#include "maint.h"
#include "sl/edgeclock.h"
#include "sl/stat.h"
#include "sl/zap.h"
#include "sl/zmqx.h"

struct persister_cfg {
    const char *pull;             /* bind endpoint, e.g. "tcp://0.0.0.0:7001" */
    const char *router;           /* bind endpoint, e.g. "tcp://0.0.0.0:7002" */
    const char *db;               /* libpq conninfo or URI; "" = PG* env */
    int64_t batch_max;            /* rows per transaction */
    int64_t batch_ms;             /* 0: a free connection takes the batch at once; else it waits for a full
                                     batch or its first row this old */
    int64_t max_pending;          /* rows held in memory, all batches together */
    int64_t max_pending_bytes;    /* bytes of pulled messages held until committed and acked; >= max_msg */
    int64_t connections;          /* writer connections (lanes): batches committing at once */
    int64_t partition_days;       /* telemetry partition period */
    int64_t partition_ahead_days; /* partitions created this far ahead */
    int64_t retention_days;       /* drop partitions older than this; 0 = keep everything */
    int64_t conflicts_max;        /* telemetry_conflicts rows kept per device */
    int64_t edge_timeout_ms;      /* close sessions of an edge incarnation silent this long */
    int64_t json_bytes;           /* JSON arena per batch (0 = derived from batch size) */
    int64_t shutdown_ms;          /* after SIGTERM, how long to keep retrying the last batch */
    int64_t max_msg;      /* ZMQ_MAXMSGSIZE of both sockets: a bigger message disconnects its sender */
    int64_t max_attempts; /* queued commands: cmd frames written per command at most (cmdq.h) */
    /* CURVE (docs/security.md): NULL = plain sockets. Else both sockets are
     * CURVE servers with this key pair, admitting the edge certificates in
     * curve_allow, and a batch naming an edge id or reply address its
     * sender's key is not bound to is dropped (sl/zap.h). */
    const struct keys_pair *curve;
    const char *curve_allow;
};

/* What the persister counts. Written only by the thread in persister_run
 * (relaxed atomics, sl/stat.h), read by anyone: main.c exports it as the
 * sluice_persister_* metrics (stats.c). Nothing in the persister reads it. */
struct persister_stats {
    _Atomic uint64_t rows_committed;      /* data rows durable and acked (stored or duplicate) */
    _Atomic uint64_t rows_inserted;       /* data rows new to telemetry */
    _Atomic uint64_t rows_duplicate;      /* data rows already in telemetry (acked again) */
    _Atomic uint64_t rows_rejected;       /* data rows stored in telemetry_rejected */
    _Atomic uint64_t rows_dropped;        /* rows stored nowhere (not acked) */
    _Atomic uint64_t sessions;            /* connect/disconnect entries upserted */
    _Atomic uint64_t retries;             /* batch commits retried after a transient failure */
    _Atomic uint64_t acks_sent;           /* ack entries sent to edges */
    _Atomic uint64_t acks_unroutable;     /* ack entries dropped: edge gone or full */
    _Atomic uint64_t batches_refused;     /* edge batches refused (version or malformed) */
    _Atomic uint64_t edges_lost;          /* edge incarnations timed out (sessions closed) */
    _Atomic uint64_t entries_skipped;     /* entries unusable by the persister */
    _Atomic int64_t pending;              /* rows held in memory, not yet committed */
    _Atomic int64_t pending_bytes;        /* bytes of the pulled messages those rows point into */
    _Atomic int64_t pg_up;                /* 1 while connected to PostgreSQL */
    struct stat_hist batch_rows;          /* rows per committed batch */
    struct stat_hist commit_seconds;      /* time to commit a batch, retries included */
    _Atomic uint64_t partitions_created;  /* by the writers, for rows that found none */
    _Atomic uint64_t conflicts;           /* resends with another body or ts (kept or, over the bound, not) */
    struct maint_stats maint;             /* written by the maintenance thread only */
    struct devwriter_stats devices;       /* the devices table's writer (devwriter.h) */
    _Atomic uint64_t cmd_reports_dropped; /* res/cmd_sent not handed to cmdq: its queue was full */
    _Atomic uint64_t cmd_batches_sent;    /* cmd batches (from cmdq) sent to edge workers */
    _Atomic uint64_t cmd_batches_unroutable; /* the worker is gone: the command waits for the next session */
    struct cmdq_stats cmdq;                  /* written by the command queue's thread only */
    struct edgeclock clocks;                 /* edges' clock skew (sl/edgeclock.h): written by the loop,
                                                read under its mutex by the metrics thread */
};

/* Zero s and give its histograms their buckets (persister_new does this
 * for its own). */
void persister_stats_init(struct persister_stats *s);

struct persister;

/* The persister's counters; valid until persister_destroy. Any thread. */
const struct persister_stats *persister_stats(const struct persister *p);

/* The ZAP handler's counts (handshakes, impostor batches), or NULL when
 * CURVE is off. Valid until persister_destroy. Any thread. */
const struct zap_counts *persister_zap_counts(const struct persister *p);

/* Bind the sockets and allocate everything. NULL on failure (logged), also
 * when max_pending_bytes < max_msg (nothing could ever be pulled). Does not
 * contact the database yet. */
struct persister *persister_new(const struct persister_cfg *cfg);
void persister_destroy(struct persister **p);

/* Run until *stop becomes non-zero (set from a signal handler), then stop
 * pulling, commit and ack what is held, and return 0; -1 if the held batch
 * could not be committed before shutdown_ms (nothing unacked is lost: the
 * devices resend). Blocks. */
int persister_run(struct persister *p, volatile sig_atomic_t *stop);

#endif
