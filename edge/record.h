/* edge/record.h - recording of device traffic to a file (--record,
 * docs/recording.md): one bounded ring per worker, one writer thread.
 *
 * The record_* hooks run on a connection's worker thread, never block and
 * never allocate: they copy into that worker's ring, or drop and count
 * when it is full. conn.c calls them only when e->rec is set, so a
 * disabled recorder costs one predictable branch per read and per frame. */
#ifndef EDGE_RECORD_H
#define EDGE_RECORD_H
#include <stddef.h>
#include <stdint.h>

struct conn;
struct edge_cfg;
struct record;

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
void record_open(struct record *r, const struct conn *c);                            /* accepted */
void record_in(struct record *r, const struct conn *c, const uint8_t *p, size_t n);  /* one read(2) */
void record_out(struct record *r, const struct conn *c, const uint8_t *p, size_t n); /* one queued frame */
void record_close(struct record *r, const struct conn *c); /* freed: c->close_reason */

#endif
