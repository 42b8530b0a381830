/* part.h - telemetry partition periods: which range partition a row's
 * received_at falls in, as pure arithmetic (no I/O, no allocation).
 *
 * telemetry is range-partitioned by received_at into periods of `days` whole
 * UTC days, aligned on the Unix epoch (docs/internals.md, "persister:
 * partitions"). Day alignment is what keeps partitions of different periods
 * (an operator changing --partition-days, or the legacy partition of a
 * migrated database, which ends at a midnight) from half-overlapping: a day
 * is either covered or free. The persister computes the periods; the SQL
 * function sluice_telemetry_partition (migrations/002) creates them. */
#ifndef PERSISTER_PART_H
#define PERSISTER_PART_H
#include <stddef.h>
#include <stdint.h>

#define PART_DAY_US   86400000000LL
#define PART_DAYS_MAX 366 /* longest period accepted (--partition-days) */

/* [lo_us, hi_us): microseconds since the Unix epoch, UTC. */
struct part_period {
    int64_t lo_us, hi_us;
};

/* The period of `days` days (1..PART_DAYS_MAX) holding t_us. Blocks: no. */
struct part_period part_period_of(int64_t t_us, int days);

/* A small set of distinct periods (the periods one batch touches). Adding
 * never allocates: beyond PART_SET_MAX the set reports overflow and the
 * caller ensures periods as it meets them again. */
#define PART_SET_MAX 8u
struct part_set {
    struct part_period p[PART_SET_MAX];
    unsigned n;
    int overflow; /* a period did not fit */
};

/* Add the period of t_us unless present. Returns 1 if added, 0 if present,
 * -1 if the set is full (overflow is set). */
int part_set_add(struct part_set *s, int64_t t_us, int days);

#endif
