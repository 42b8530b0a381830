/* part.c - telemetry partition periods (part.h): floor division of a
 * timestamp into epoch-aligned runs of whole UTC days.
 *
 * Deliberately not here: SQL and names (the migration's
 * sluice_telemetry_partition owns both), deciding when to create. */
#include "part.h"

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

struct part_period part_period_of(int64_t t_us, int days)
{
    if (days < 1)
        days = 1;
    if (days > PART_DAYS_MAX)
        days = PART_DAYS_MAX;
    int64_t len = PART_DAY_US * days;
    struct part_period p;
    p.lo_us = floor_div(t_us, len) * len;
    p.hi_us = p.lo_us + len;
    return p;
}

int part_set_add(struct part_set *s, int64_t t_us, int days)
{
    struct part_period p = part_period_of(t_us, days);
    for (unsigned i = 0; i < s->n; i++)
        if (s->p[i].lo_us == p.lo_us)
            return 0;
    if (s->n >= PART_SET_MAX) {
        s->overflow = 1;
        return -1;
    }
    s->p[s->n++] = p;
    return 1;
}
