/* SPDX-License-Identifier: Apache-2.0 */
/* stats.h - the persister's Prometheus series, exported from its core's
 * struct persister_stats on every scrape (metrics_set_collect). Names, types,
 * labels and help texts are part of the interface: dashboards, tests and
 * benches read them. Main thread at start and stop; the copy itself runs on
 * the metrics thread. */
#ifndef PERSISTER_STATS_H
#define PERSISTER_STATS_H
#include "persister.h"
#include "sl/metrics.h"

struct stats {
    const struct persister_stats *src;
    const struct zap_counts *zap; /* NULL: CURVE off, the series stay 0 */
    struct metric_counter *curve_allowed, *curve_refused, *curve_impostor;
    struct metric_gauge *curve_keys;
    struct metric_counter *rows_committed, *rows_inserted, *rows_duplicate, *rows_rejected, *rows_dropped;
    struct metric_counter *sessions, *retries, *acks_sent, *acks_unroutable, *batches_refused, *edges_lost;
    struct metric_counter *entries_skipped, *partitions_created, *partitions_dropped, *conflicts;
    struct metric_counter *devices_updated, *devices_failed, *devices_left_out;
    struct metric_counter *cmd_handed, *cmd_sent, *cmd_results, *cmd_expired, *cmd_gave_up, *cmd_db_errors,
        *cmd_kicks;
    struct metric_counter *cmd_reports_dropped, *cmd_batches_sent, *cmd_batches_unroutable;
    struct metric_gauge *pending, *pg_up, *pending_bytes;
    struct metric_hist *batch_rows, *commit_seconds;
};

/* Register every sluice_persister_* series and install the collect hook,
 * which copies src (and zap, the ZAP handler's counts, if not NULL) into
 * them and sets /readyz from src->pg_up. src, zap and st must stay valid
 * until stats_fini. Call once, before metrics_start. */
void stats_init(struct stats *st, const struct persister_stats *src, const struct zap_counts *zap);
/* Remove the hook (before src is freed). */
void stats_fini(struct stats *st);

/* Copy src into the series now: the hook (ud = st). Never blocks. */
void stats_collect(void *st);

#endif
