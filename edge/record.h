/* SPDX-License-Identifier: Apache-2.0 */
/* edge/record.h - recording of device traffic to a file (--record,
 * docs/recording.md): one bounded ring per worker, one writer thread.
 *
 * The record_* hooks run on a connection's worker thread, never block and
 * never allocate: they copy into that worker's ring, or drop and count
 * when it is full. conn.c calls them only when a recorder is set, so a
 * disabled recorder costs one predictable branch per read and per frame. */
#ifndef EDGE_RECORD_H
#define EDGE_RECORD_H
#include <stddef.h>
#include <stdint.h>
#include "addr.h"

struct edge_cfg;
struct record;

/* Which connection a hook is about: its worker, slot and generation. */
struct record_conn {
    uint32_t worker, slot, gen;
};

/* Create cfg->record_path (mode 0600, truncated), write the file header and
 * start the writer thread. Call once from main before any worker runs.
 * NULL on failure (logged). */
struct record *record_new(const struct edge_cfg *cfg);

/* Drain every ring, add a final END record, fdatasync and close the file,
 * join the writer. Call only once no worker runs any more (after
 * worker_destroy, whose closes are the last records). Blocks. */
void record_destroy(struct record **r);

/* The hooks (worker thread of c). With --record-devices, a connection is
 * held back until its first frame names a device (docs/recording.md). */
void record_open(struct record *r, struct record_conn c, const struct addr *peer);   /* accepted */
void record_in(struct record *r, struct record_conn c, const uint8_t *p, size_t n);  /* one read(2) */
void record_out(struct record *r, struct record_conn c, const uint8_t *p, size_t n); /* one queued frame */
/* freed, with its close reason (code and name) */
void record_close(struct record *r, struct record_conn c, uint8_t reason, const char *reason_str);

/* Any thread: records dropped (writer behind), connections skipped by the
 * filter, bytes written to the file, so far. */
void record_counts(const struct record *r, uint64_t *dropped, uint64_t *skipped, uint64_t *bytes);

#endif
