/* maint.h - the persister's maintenance connection, on a thread of its own:
 * telemetry partitions created ahead, retention (whole partitions detached
 * and dropped), and closing the sessions of lost edges.
 *
 * Several persisters run it side by side: creating a partition is serialized
 * in the server (sluice_telemetry_partition's advisory lock), a retention run
 * is done by whichever persister holds MAINT_RETENTION_LOCK, and closing an
 * edge's sessions is idempotent. Nothing here is on the path of an ack: the
 * writers (lane.c) create a missing partition themselves.
 *
 * The functions below are for the loop's thread; none blocks on the
 * database. */
#ifndef PERSISTER_MAINT_H
#define PERSISTER_MAINT_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAINT_EVERY_MS       3600000u /* partitions ahead and retention, once an hour (and at start) */
#define MAINT_RETRY_MS       60000u   /* after a failed run */
#define MAINT_RETENTION_LOCK 7308604637093544963LL

/* Written by the maintenance thread only (its own struct: sl/stat.h's one
 * writer per struct), exported by stats.c. */
struct maint_stats {
    _Atomic uint64_t partitions_created; /* by the runs ahead of time */
    _Atomic uint64_t partitions_dropped; /* by retention */
};

struct maint_cfg {
    const char *conninfo; /* copied */
    int part_days;        /* partition period, days */
    int ahead_days;       /* create partitions up to now + this */
    int retention_days;   /* drop partitions older than this; 0 = keep everything */
};

struct maint;

/* Start the thread (SIGINT/SIGTERM blocked); it connects and runs at once.
 * st must outlive the maint. NULL on failure (logged). */
struct maint *maint_new(const struct maint_cfg *cfg, struct maint_stats *st);
/* Stop and join; a statement in progress is waited for. *m becomes NULL. */
void maint_destroy(struct maint **m);

/* Queue closing the open sessions of edge incarnation (edge[0..n), inc) with
 * reason 'edge_lost'; retried until done. Copies edge. False if the queue is
 * full or n is too long: ask again later. */
bool maint_edge_lost(struct maint *m, const uint8_t *edge, size_t n, uint64_t inc);

#endif
