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
 * (PostgreSQL's text cannot hold one: the statement would fail) are
 * skipped. Returns true when every row is added; false when the table
 * is full: *from is the next row to add (write the sum out, reset, call
 * again). */
bool devsum_add(struct devsum *s, const struct batch *b, uint32_t *from);

/* The devices statement's parameters (db.c's "dev"), in its order: one
 * binary array per column, an element per device. */
enum devsum_col { DEVSUM_ID, DEVSUM_FIRST, DEVSUM_LAST, DEVSUM_SEQ, DEVSUM_NCOL };
struct devsum_arrays {
    const char *v[DEVSUM_NCOL];
    int len[DEVSUM_NCOL];
};

/* Entries [from, from + n) of the sum (in order of first use; n is cut at
 * the end of the sum) as the statement's arrays, written into out: id
 * (text), first and last time (timestamptz), highest stored seq (int8, NULL
 * for a device that only connected). Returns the number of devices, with
 * a's pointers into out; 0 if the range is empty or it does not fit
 * (devsum_arrays_bound(s, from, n) bytes always fit). A large sum goes as
 * several such statements (devwriter.c), so that no one of them holds
 * PostgreSQL's CPU or the rows' locks for long. */
uint32_t devsum_arrays(const struct devsum *s, uint32_t from, uint32_t n, uint8_t *out, size_t cap,
                       struct devsum_arrays *a);
size_t devsum_arrays_bound(const struct devsum *s, uint32_t from, uint32_t n);

#endif
