/* edge/stats.h - the edge's Prometheus series. The workers, the acceptor
 * and the recorder count in plain structs of their own (sl/stat.h); this
 * module registers one series per counter at startup and, on every scrape,
 * adds the counts of every worker into them (metrics_set_collect). No
 * logic anywhere reads a metric. */
#ifndef EDGE_STATS_H
#define EDGE_STATS_H
#include <stdbool.h>

struct acceptor;
struct edge;

/* Register every series and the collect function. Call once, after the
 * workers (and the acceptor, NULL with --accept reuseport) exist and
 * before the metrics server starts. */
void stats_init(struct edge *e, struct acceptor *acc);

/* Stop summing (before the workers are destroyed): the series keep their
 * last values; the metrics server may go on answering. */
void stats_fini(void);

/* Readiness gauges (main.c decides readiness; these only show it). */
void stats_set_connected(bool persister, bool notifier);

#endif
