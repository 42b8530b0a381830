/* SPDX-License-Identifier: Apache-2.0 */
/* devsum.h - what the devices table (migrations/004) should learn, summed
 * over the batches the lanes committed since the last write: per device the
 * highest stored seq and the earliest and latest receive time.
 *
 * Why a sum and not one upsert per batch: at 50k msgs/s from 1,000 devices a
 * lane commits ~25 batches a second, each with most devices in it; updating
 * `devices` per batch rewrote 1,000 rows 25 times a second (measured in
 * docs/performance.md, "persister: the devices table"). Summed over a second
 * it is once per device and second, whatever the rate.
 *
 * A fixed open-addressing table sized at devsum_init: adding never
 * allocates. Pure: no I/O, no locks (devwriter.c holds its mutex around it). */
#ifndef PERSISTER_DEVSUM_H
#define PERSISTER_DEVSUM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rows.h"
#include "sl/limits.h"

struct devsum_entry {
    char dev[SL_DEV_MAX];
    uint8_t n; /* 0 = free */
    bool has_seq;
    uint64_t seq; /* highest stored seq (has_seq) */
    int64_t first_us, last_us;
};

struct devsum {
    struct devsum_entry *tab;
    uint32_t *used_idx; /* the slots in use, in order of first use */
    uint32_t cap;       /* a power of two */
    uint32_t used;
};

/* Room for at least `devices` distinct devices before devsum_add reports
 * full (the table is twice that, rounded up to a power of two). Returns 0
 * or -1 (out of memory). */
int devsum_init(struct devsum *s, uint32_t devices);
void devsum_fini(struct devsum *s);
/* Forget every device (O(devices held)). */
void devsum_reset(struct devsum *s);

/* Add the rows of a committed batch from row *from on: data rows stored or
 * dead-lettered (seq and time), connect and disconnect rows (time only).
 * Rows with an empty device id, one longer than SL_DEV_MAX or holding a NUL
 * are skipped. Returns true when every row is added; false when the table
 * is full: *from is the next row to add (write the sum out, reset, call
 * again). */
bool devsum_add(struct devsum *s, const struct batch *b, uint32_t *from);

/* One statement that upserts entries [from, from + n) of the sum (in order
 * of first use; n is cut at the end of the sum) into `devices` in device
 * order (two connections never wait on each other in a cycle), in a
 * transaction of its own with synchronous_commit off (a summary the next
 * update corrects, not a record an ack depends on) and statement_timeout
 * timeout_ms (a lock another session holds on `devices` fails the statement
 * instead of holding its writer for as long as it lasts; 0 would be
 * PostgreSQL's "no timeout": pass at least 1), never moving a column
 * backwards: "BEGIN;SET LOCAL ...;INSERT INTO devices ... ON CONFLICT
 * ...;COMMIT". A large sum goes as several such statements (devwriter.c), so
 * that no one of them holds PostgreSQL's CPU or the rows' locks for long.
 * Writes it and a NUL into out and returns its length; 0 if the range is
 * empty or it does not fit (devsum_sql_bound(s, from, n) + 1 bytes always
 * fit). */
size_t devsum_sql(const struct devsum *s, uint32_t from, uint32_t n, uint32_t timeout_ms, char *out,
                  size_t cap);
size_t devsum_sql_bound(const struct devsum *s, uint32_t from, uint32_t n);

#endif
