/* SPDX-License-Identifier: Apache-2.0 */
/* stats.c - struct persister_stats -> the sluice_persister_* metrics.
 *
 * Why a copy on each scrape rather than metric updates in the loop: the core
 * then counts in a struct it owns (so nothing in it depends on the metrics
 * registry, and no logic can read a metric), and a scrape still sees every
 * count as of that moment. The core's fields are relaxed atomics with one
 * writer (its loop), read here on the metrics thread: race-free, and a
 * scrape costs the loop nothing. Histograms are kept by the core as bucket
 * counts (sl/stat.h) and mirrored whole: no observation is lost between
 * scrapes, however rare they are.
 *
 * Deliberately not here: counting (persister.c), the HTTP side (common). */
#include "stats.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>

void stats_collect(void *ud)
{
    struct stats *st = ud;
    const struct persister_stats *s = st->src;
    metric_counter_set(st->rows_committed, stat_get(&s->rows_committed));
    metric_counter_set(st->rows_inserted, stat_get(&s->rows_inserted));
    metric_counter_set(st->rows_duplicate, stat_get(&s->rows_duplicate));
    metric_counter_set(st->rows_rejected, stat_get(&s->rows_rejected));
    metric_counter_set(st->rows_dropped, stat_get(&s->rows_dropped));
    metric_counter_set(st->sessions, stat_get(&s->sessions));
    metric_counter_set(st->retries, stat_get(&s->retries));
    metric_counter_set(st->acks_sent, stat_get(&s->acks_sent));
    metric_counter_set(st->acks_unroutable, stat_get(&s->acks_unroutable));
    metric_counter_set(st->batches_refused, stat_get(&s->batches_refused));
    metric_counter_set(st->edges_lost, stat_get(&s->edges_lost));
    metric_counter_set(st->entries_skipped, stat_get(&s->entries_skipped));
    metric_counter_set(st->partitions_created,
                       stat_get(&s->partitions_created) + stat_get(&s->maint.partitions_created));
    metric_counter_set(st->partitions_dropped, stat_get(&s->maint.partitions_dropped));
    metric_counter_set(st->conflicts, stat_get(&s->conflicts));
    metric_counter_set(st->devices_updated, stat_get(&s->devices.devices_updated));
    metric_counter_set(st->devices_failed, stat_get(&s->devices.devices_failed));
    metric_counter_set(st->devices_left_out, stat_get(&s->devices.rows_left_out));
    metric_counter_set(st->cmd_handed, stat_get(&s->cmdq.handed));
    metric_counter_set(st->cmd_sent, stat_get(&s->cmdq.sent));
    metric_counter_set(st->cmd_results, stat_get(&s->cmdq.results));
    metric_counter_set(st->cmd_expired, stat_get(&s->cmdq.expired));
    metric_counter_set(st->cmd_gave_up, stat_get(&s->cmdq.gave_up));
    metric_counter_set(st->cmd_db_errors, stat_get(&s->cmdq.db_errors));
    metric_counter_set(st->cmd_kicks, stat_get(&s->cmdq.kicks));
    metric_counter_set(st->cmd_reports_dropped, stat_get(&s->cmd_reports_dropped));
    metric_counter_set(st->cmd_batches_sent, stat_get(&s->cmd_batches_sent));
    metric_counter_set(st->cmd_batches_unroutable, stat_get(&s->cmd_batches_unroutable));
    int64_t up = stat_gget(&s->pg_up);
    metric_set(st->pending, stat_gget(&s->pending));
    metric_set(st->pending_bytes, stat_gget(&s->pending_bytes));
    metric_set(st->pg_up, up);
    metric_hist_set(st->batch_rows, &s->batch_rows);
    metric_hist_set(st->commit_seconds, &s->commit_seconds);
    if (st->zap) {
        metric_counter_set(st->curve_allowed, stat_get(&st->zap->allowed));
        metric_counter_set(st->curve_refused, stat_get(&st->zap->refused));
        metric_counter_set(st->curve_impostor, stat_get(&st->zap->impostor));
        metric_set(st->curve_keys, stat_gget(&st->zap->keys));
    }
    metrics_set_ready(up != 0);
}

#define CLOCKS_NAME "sluice_persister_edge_clock_skew_seconds"
#define CLOCKS_HELP                                                                                          \
    "Edge wall clock minus this persister's, per edge (largest of the last 10 s of heartbeats)"

void stats_init(struct stats *st, const struct persister_stats *src, const struct zap_counts *zap)
{
    st->src = src;
    st->zap = zap;
    const struct metrics_counter_def counters[] = {
        {&st->rows_committed, "sluice_persister_rows_committed_total",
         "Data rows durable and acked (stored or duplicate)"},
        {&st->rows_inserted, "sluice_persister_rows_inserted_total", "Data rows new to telemetry"},
        {&st->rows_duplicate, "sluice_persister_rows_duplicate_total",
         "Data rows already in telemetry (acked again)"},
        {&st->rows_rejected, "sluice_persister_rows_rejected_total",
         "Data rows stored in telemetry_rejected"},
        {&st->rows_dropped, "sluice_persister_rows_dropped_total", "Rows stored nowhere (not acked)"},
        {&st->sessions, "sluice_persister_sessions_written_total", "connect/disconnect entries upserted"},
        {&st->retries, "sluice_persister_db_retries_total",
         "Batch commits retried after a transient failure"},
        {&st->acks_sent, "sluice_persister_acks_sent_total", "Ack entries sent to edges"},
        {&st->acks_unroutable, "sluice_persister_acks_unroutable_total",
         "Ack entries dropped: edge gone or full"},
        {&st->batches_refused, "sluice_persister_batches_refused_total",
         "Edge batches refused (version or malformed)"},
        {&st->edges_lost, "sluice_persister_edges_lost_total",
         "Edge incarnations timed out (sessions closed)"},
        {&st->entries_skipped, "sluice_persister_entries_skipped_total", "Entries unusable by the persister"},
    };
    metrics_counters(counters, sizeof counters / sizeof counters[0]);
    st->pending =
        metrics_gauge("sluice_persister_pending_messages", "Rows held in memory, not yet committed", NULL);
    st->pg_up = metrics_gauge("sluice_persister_pg_up", "1 while connected to PostgreSQL", NULL);
    st->batch_rows = metrics_hist("sluice_persister_batch_rows", "Rows per committed batch", NULL,
                                  src->batch_rows.bounds, src->batch_rows.nb);
    st->commit_seconds =
        metrics_hist("sluice_persister_commit_seconds", "Time to commit a batch, retries included", NULL,
                     src->commit_seconds.bounds, src->commit_seconds.nb);
    /* Series added later come after the first ones: a scrape's older part
     * reads as it always did. */
    const struct metrics_counter_def later[] = {
        {&st->partitions_created, "sluice_persister_partitions_created_total",
         "telemetry partitions created (ahead of time, or for a row that found none)"},
        {&st->partitions_dropped, "sluice_persister_partitions_dropped_total",
         "telemetry partitions detached and dropped by --retention-days"},
        {&st->devices_updated, "sluice_persister_devices_updated_total",
         "devices rows written by the devices summary (one per device and write)"},
        {&st->devices_failed, "sluice_persister_devices_update_failed_total",
         "devices rows of the summary not written (database down or the statement failed; not retried)"},
        {&st->devices_left_out, "sluice_persister_devices_rows_left_out_total",
         "committed rows not folded into the devices summary: it held DEVWRITER_DEVICES_MAX devices"},
        {&st->conflicts, "sluice_persister_conflicts_total",
         "Stored messages resent with another body or ts (kept in telemetry_conflicts up to the per-device "
         "bound)"},
    };
    metrics_counters(later, sizeof later / sizeof later[0]);
    st->pending_bytes =
        metrics_gauge("sluice_persister_pending_bytes",
                      "Bytes of edge batches held in memory until their rows are committed and "
                      "acked (at most --max-pending-bytes)",
                      NULL);
    const struct metrics_counter_def cmds[] = {
        {&st->cmd_handed, "sluice_persister_commands_handed_total",
         "Queued commands handed to an edge session (cmd entries)"},
        {&st->cmd_sent, "sluice_persister_commands_sent_total",
         "Queued commands whose cmd frame an edge wrote (cmd_sent reports applied)"},
        {&st->cmd_results, "sluice_persister_commands_answered_total",
         "Queued commands ended by the device's res (ok or error)"},
        {&st->cmd_expired, "sluice_persister_commands_expired_total", "Queued commands whose ttl passed"},
        {&st->cmd_gave_up, "sluice_persister_commands_gave_up_total",
         "Queued commands written --max-attempts times and never answered"},
        {&st->cmd_db_errors, "sluice_persister_command_db_errors_total",
         "Command queue rounds that failed on the database (retried)"},
        {&st->cmd_reports_dropped, "sluice_persister_command_reports_dropped_total",
         "res or cmd_sent reports dropped: the command queue's backlog was full"},
        {&st->cmd_batches_sent, "sluice_persister_command_batches_sent_total",
         "cmd batches sent to edge workers"},
        {&st->cmd_kicks, "sluice_persister_connections_closed_total",
         "Device connections closed for sluice-api (DELETE .../connection: kick entries sent)"},
        {&st->cmd_batches_unroutable, "sluice_persister_command_batches_unroutable_total",
         "cmd batches whose edge worker was gone (the commands wait for the next session)"},
    };
    metrics_counters(cmds, sizeof cmds / sizeof cmds[0]);
    if (zap) {
        /* With CURVE only, after the others; the same four series in the
         * notifier (docs/security.md). */
        const char *hs = "sluice_persister_curve_handshakes_total",
                   *hh = "CURVE handshakes by the ZAP decision";
        st->curve_allowed = metrics_counter(hs, hh, "result=\"allowed\"");
        st->curve_refused = metrics_counter(hs, hh, "result=\"refused\"");
        st->curve_impostor =
            metrics_counter("sluice_persister_curve_impostor_batches_total",
                            "Edge batches dropped: they name an edge id or reply address the "
                            "sender's CURVE key is not bound to",
                            NULL);
        st->curve_keys =
            metrics_gauge("sluice_persister_curve_keys", "Edge keys in the allowed directory", NULL);
    }
    /* The mutex is the one thing a scrape changes: hence the cast. */
    metrics_gauge_family_fn(CLOCKS_NAME, CLOCKS_HELP, "edge", edgeclock_collect,
                            (struct edgeclock *)&src->clocks);
    metrics_set_collect(stats_collect, st);
}

void stats_fini(struct stats *st)
{
    metrics_gauge_family_fn(CLOCKS_NAME, CLOCKS_HELP, "edge", NULL, NULL);
    metrics_set_collect(NULL, NULL);
    st->src = NULL;
}
