/* SPDX-License-Identifier: Apache-2.0 */
/* test_persister_stats.c - the persister's metrics as a scrape shows them
 * (persister/stats.c): every sluice_persister_* series keeps its name, type,
 * help text and order (dashboards, tests and benches read them; the text
 * below is what the persister served before its core stopped calling
 * metric_*), and each shows the core's struct persister_stats as of the
 * scrape, histograms included (/readyz following pg_up is persister_pgrestart's).
 * With CURVE on, the ZAP handler's counts follow as four more series.
 * No database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "persister.h"
#include "sl/metrics.h"
#include "stats.h"

static const char expected[] =
    "# HELP sluice_persister_rows_committed_total Data rows durable and acked (stored or duplicate)\n"
    "# TYPE sluice_persister_rows_committed_total counter\n"
    "sluice_persister_rows_committed_total 1\n"
    "# HELP sluice_persister_rows_inserted_total Data rows new to telemetry\n"
    "# TYPE sluice_persister_rows_inserted_total counter\n"
    "sluice_persister_rows_inserted_total 2\n"
    "# HELP sluice_persister_rows_duplicate_total Data rows already in telemetry (acked again)\n"
    "# TYPE sluice_persister_rows_duplicate_total counter\n"
    "sluice_persister_rows_duplicate_total 3\n"
    "# HELP sluice_persister_rows_rejected_total Data rows stored in telemetry_rejected\n"
    "# TYPE sluice_persister_rows_rejected_total counter\n"
    "sluice_persister_rows_rejected_total 4\n"
    "# HELP sluice_persister_rows_dropped_total Rows stored nowhere (not acked)\n"
    "# TYPE sluice_persister_rows_dropped_total counter\n"
    "sluice_persister_rows_dropped_total 5\n"
    "# HELP sluice_persister_sessions_written_total connect/disconnect entries upserted\n"
    "# TYPE sluice_persister_sessions_written_total counter\n"
    "sluice_persister_sessions_written_total 6\n"
    "# HELP sluice_persister_db_retries_total Batch commits retried after a transient failure\n"
    "# TYPE sluice_persister_db_retries_total counter\n"
    "sluice_persister_db_retries_total 7\n"
    "# HELP sluice_persister_acks_sent_total Ack entries sent to edges\n"
    "# TYPE sluice_persister_acks_sent_total counter\n"
    "sluice_persister_acks_sent_total 8\n"
    "# HELP sluice_persister_acks_unroutable_total Ack entries dropped: edge gone or full\n"
    "# TYPE sluice_persister_acks_unroutable_total counter\n"
    "sluice_persister_acks_unroutable_total 9\n"
    "# HELP sluice_persister_batches_refused_total Edge batches refused (version or malformed)\n"
    "# TYPE sluice_persister_batches_refused_total counter\n"
    "sluice_persister_batches_refused_total 10\n"
    "# HELP sluice_persister_edges_lost_total Edge incarnations timed out (sessions closed)\n"
    "# TYPE sluice_persister_edges_lost_total counter\n"
    "sluice_persister_edges_lost_total 11\n"
    "# HELP sluice_persister_entries_skipped_total Entries unusable by the persister\n"
    "# TYPE sluice_persister_entries_skipped_total counter\n"
    "sluice_persister_entries_skipped_total 12\n"
    "# HELP sluice_persister_pending_messages Rows held in memory, not yet committed\n"
    "# TYPE sluice_persister_pending_messages gauge\n"
    "sluice_persister_pending_messages 13\n"
    "# HELP sluice_persister_pg_up 1 while connected to PostgreSQL\n"
    "# TYPE sluice_persister_pg_up gauge\n"
    "sluice_persister_pg_up 1\n"
    "# HELP sluice_persister_batch_rows Rows per committed batch\n"
    "# TYPE sluice_persister_batch_rows histogram\n"
    "sluice_persister_batch_rows_bucket{le=\"1\"} 0\n"
    "sluice_persister_batch_rows_bucket{le=\"10\"} 1\n"
    "sluice_persister_batch_rows_bucket{le=\"50\"} 1\n"
    "sluice_persister_batch_rows_bucket{le=\"100\"} 1\n"
    "sluice_persister_batch_rows_bucket{le=\"250\"} 1\n"
    "sluice_persister_batch_rows_bucket{le=\"500\"} 1\n"
    "sluice_persister_batch_rows_bucket{le=\"1000\"} 1\n"
    "sluice_persister_batch_rows_bucket{le=\"2000\"} 2\n"
    "sluice_persister_batch_rows_bucket{le=\"5000\"} 2\n"
    "sluice_persister_batch_rows_bucket{le=\"10000\"} 2\n"
    "sluice_persister_batch_rows_bucket{le=\"+Inf\"} 2\n"
    "sluice_persister_batch_rows_sum 2003\n"
    "sluice_persister_batch_rows_count 2\n"
    "# HELP sluice_persister_commit_seconds Time to commit a batch, retries included\n"
    "# TYPE sluice_persister_commit_seconds histogram\n"
    "sluice_persister_commit_seconds_bucket{le=\"0.001\"} 0\n"
    "sluice_persister_commit_seconds_bucket{le=\"0.0025\"} 0\n"
    "sluice_persister_commit_seconds_bucket{le=\"0.005\"} 1\n"
    "sluice_persister_commit_seconds_bucket{le=\"0.01\"} 1\n"
    "sluice_persister_commit_seconds_bucket{le=\"0.025\"} 1\n"
    "sluice_persister_commit_seconds_bucket{le=\"0.05\"} 1\n"
    "sluice_persister_commit_seconds_bucket{le=\"0.1\"} 1\n"
    "sluice_persister_commit_seconds_bucket{le=\"0.25\"} 1\n"
    "sluice_persister_commit_seconds_bucket{le=\"0.5\"} 1\n"
    "sluice_persister_commit_seconds_bucket{le=\"1\"} 1\n"
    "sluice_persister_commit_seconds_bucket{le=\"2.5\"} 1\n"
    "sluice_persister_commit_seconds_bucket{le=\"5\"} 1\n"
    "sluice_persister_commit_seconds_bucket{le=\"10\"} 1\n"
    "sluice_persister_commit_seconds_bucket{le=\"+Inf\"} 1\n"
    "sluice_persister_commit_seconds_sum 0.003\n"
    "sluice_persister_commit_seconds_count 1\n"
    /* added with partitioned telemetry (issue 13), after the older series */
    "# HELP sluice_persister_partitions_created_total telemetry partitions created (ahead of time, or for a "
    "row that found none)\n"
    "# TYPE sluice_persister_partitions_created_total counter\n"
    "sluice_persister_partitions_created_total 0\n"
    "# HELP sluice_persister_partitions_dropped_total telemetry partitions detached and dropped by "
    "--retention-days\n"
    "# TYPE sluice_persister_partitions_dropped_total counter\n"
    "sluice_persister_partitions_dropped_total 0\n"
    /* issue 13: the devices table's writer (devwriter.h) */
    "# HELP sluice_persister_devices_updated_total devices rows written by the devices summary (one per "
    "device and write)\n"
    "# TYPE sluice_persister_devices_updated_total counter\n"
    "sluice_persister_devices_updated_total 0\n"
    "# HELP sluice_persister_devices_update_failed_total devices rows of the summary not written (database "
    "down or the statement failed; not retried)\n"
    "# TYPE sluice_persister_devices_update_failed_total counter\n"
    "sluice_persister_devices_update_failed_total 0\n"
    "# HELP sluice_persister_devices_rows_left_out_total committed rows not folded into the devices summary: "
    "it held DEVWRITER_DEVICES_MAX devices\n"
    "# TYPE sluice_persister_devices_rows_left_out_total counter\n"
    "sluice_persister_devices_rows_left_out_total 0\n"
    /* issue 11 item 7 */
    "# HELP sluice_persister_conflicts_total Stored messages resent with another body or ts (kept in "
    "telemetry_conflicts up to the per-device bound)\n"
    "# TYPE sluice_persister_conflicts_total counter\n"
    "sluice_persister_conflicts_total 0\n"
    /* issue 11: --max-pending-bytes */
    "# HELP sluice_persister_pending_bytes Bytes of edge batches held in memory until their rows are "
    "committed "
    "and acked (at most --max-pending-bytes)\n"
    "# TYPE sluice_persister_pending_bytes gauge\n"
    "sluice_persister_pending_bytes 14\n"
    /* the command queue (issue 16) */
    "# HELP sluice_persister_commands_handed_total Queued commands handed to an edge session (cmd entries)\n"
    "# TYPE sluice_persister_commands_handed_total counter\n"
    "sluice_persister_commands_handed_total 0\n"
    "# HELP sluice_persister_commands_sent_total Queued commands whose cmd frame an edge wrote (cmd_sent "
    "reports applied)\n"
    "# TYPE sluice_persister_commands_sent_total counter\n"
    "sluice_persister_commands_sent_total 0\n"
    "# HELP sluice_persister_commands_answered_total Queued commands ended by the device's res (ok or "
    "error)\n"
    "# TYPE sluice_persister_commands_answered_total counter\n"
    "sluice_persister_commands_answered_total 0\n"
    "# HELP sluice_persister_commands_expired_total Queued commands whose ttl passed\n"
    "# TYPE sluice_persister_commands_expired_total counter\n"
    "sluice_persister_commands_expired_total 0\n"
    "# HELP sluice_persister_commands_gave_up_total Queued commands written --max-attempts times and never "
    "answered\n"
    "# TYPE sluice_persister_commands_gave_up_total counter\n"
    "sluice_persister_commands_gave_up_total 0\n"
    "# HELP sluice_persister_command_db_errors_total Command queue rounds that failed on the database "
    "(retried)\n"
    "# TYPE sluice_persister_command_db_errors_total counter\n"
    "sluice_persister_command_db_errors_total 0\n"
    "# HELP sluice_persister_command_reports_dropped_total res or cmd_sent reports dropped: the command "
    "queue's backlog was full\n"
    "# TYPE sluice_persister_command_reports_dropped_total counter\n"
    "sluice_persister_command_reports_dropped_total 0\n"
    "# HELP sluice_persister_command_batches_sent_total cmd batches sent to edge workers\n"
    "# TYPE sluice_persister_command_batches_sent_total counter\n"
    "sluice_persister_command_batches_sent_total 0\n"
    "# HELP sluice_persister_connections_closed_total Device connections closed for sluice-api (DELETE "
    ".../connection: kick entries sent)\n"
    "# TYPE sluice_persister_connections_closed_total counter\n"
    "sluice_persister_connections_closed_total 0\n"
    "# HELP sluice_persister_command_batches_unroutable_total cmd batches whose edge worker was gone (the "
    "commands wait for the next session)\n"
    "# TYPE sluice_persister_command_batches_unroutable_total counter\n"
    "sluice_persister_command_batches_unroutable_total 0\n"
    /* issue 15: per edge, from the core's clocks table */
    "# HELP sluice_persister_edge_clock_skew_seconds Edge wall clock minus this persister's, per edge "
    "(largest "
    "of the last 10 s of heartbeats)\n"
    "# TYPE sluice_persister_edge_clock_skew_seconds gauge\n"
    "sluice_persister_edge_clock_skew_seconds{edge=\"edge-a\"} -0.0015\n"
    "sluice_persister_edge_clock_skew_seconds{edge=\"edge-b\"} 2\n";

static void test_export(void **state)
{
    (void)state;
    static struct persister_stats s;
    persister_stats_init(&s);
    struct stats st;
    stats_init(&st, &s, NULL);

    _Atomic uint64_t *c[] = {&s.rows_committed,  &s.rows_inserted,   &s.rows_duplicate, &s.rows_rejected,
                             &s.rows_dropped,    &s.sessions,        &s.retries,        &s.acks_sent,
                             &s.acks_unroutable, &s.batches_refused, &s.edges_lost,     &s.entries_skipped};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        stat_add(c[i], i + 1); /* each a different value: a swapped pair shows */
    stat_set(&s.pending, 13);
    stat_set(&s.pending_bytes, 14);
    stat_set(&s.pg_up, 1);
    stat_hist_observe(&s.batch_rows, 3);
    stat_hist_observe(&s.batch_rows, 2000); /* le is inclusive */
    stat_hist_observe(&s.commit_seconds, 0.003);
    /* one heartbeat each, edge-a 1.5 ms behind, edge-b 2 s ahead (sl/edgeclock.h) */
    const uint64_t wall = 1700000000000000000u;
    edgeclock_sample(&s.clocks, (const uint8_t *)"edge-a", 6, 1, wall - 1500000u, wall, 1);
    edgeclock_sample(&s.clocks, (const uint8_t *)"edge-b", 6, 1, wall + 2000000000u, wall, 1);
    edgeclock_publish(&s.clocks, 1);

    static char buf[16384];
    size_t n = metrics_render(buf, sizeof buf);
    assert_string_equal(buf, expected);
    assert_int_equal(n, strlen(expected));

    /* Later counts show at the next scrape. */
    stat_add(&s.rows_committed, 100);
    stat_set(&s.pg_up, 0);
    metrics_render(buf, sizeof buf);
    assert_non_null(strstr(buf, "\nsluice_persister_rows_committed_total 101\n"));
    assert_non_null(strstr(buf, "\nsluice_persister_pg_up 0\n"));
    /* partitions: the writers' and the maintenance thread's counts, summed */
    stat_add(&s.partitions_created, 2);
    stat_add(&s.maint.partitions_created, 3);
    stat_add(&s.maint.partitions_dropped, 4);
    metrics_render(buf, sizeof buf);
    assert_non_null(strstr(buf, "\nsluice_persister_partitions_created_total 5\n"));
    assert_non_null(strstr(buf, "\nsluice_persister_partitions_dropped_total 4\n"));
    stat_add(&s.conflicts, 6);
    metrics_render(buf, sizeof buf);
    assert_non_null(strstr(buf, "\nsluice_persister_conflicts_total 6\n"));
    /* the devices writer's counts, each its own series */
    stat_add(&s.devices.devices_updated, 7);
    stat_add(&s.devices.devices_failed, 8);
    stat_add(&s.devices.rows_left_out, 9);
    metrics_render(buf, sizeof buf);
    assert_non_null(strstr(buf, "\nsluice_persister_devices_updated_total 7\n"));
    assert_non_null(strstr(buf, "\nsluice_persister_devices_update_failed_total 8\n"));
    assert_non_null(strstr(buf, "\nsluice_persister_devices_rows_left_out_total 9\n"));
    /* the command queue's counts: its thread's struct and the loop's */
    stat_add(&s.cmdq.handed, 21);
    stat_add(&s.cmdq.sent, 22);
    stat_add(&s.cmdq.results, 23);
    stat_add(&s.cmdq.expired, 24);
    stat_add(&s.cmdq.gave_up, 25);
    stat_add(&s.cmdq.db_errors, 26);
    stat_add(&s.cmdq.kicks, 27);
    stat_add(&s.cmd_reports_dropped, 28);
    stat_add(&s.cmd_batches_sent, 29);
    stat_add(&s.cmd_batches_unroutable, 30);
    metrics_render(buf, sizeof buf);
    assert_non_null(strstr(buf, "\nsluice_persister_commands_handed_total 21\n"));
    assert_non_null(strstr(buf, "\nsluice_persister_commands_sent_total 22\n"));
    assert_non_null(strstr(buf, "\nsluice_persister_commands_answered_total 23\n"));
    assert_non_null(strstr(buf, "\nsluice_persister_commands_expired_total 24\n"));
    assert_non_null(strstr(buf, "\nsluice_persister_commands_gave_up_total 25\n"));
    assert_non_null(strstr(buf, "\nsluice_persister_command_db_errors_total 26\n"));
    assert_non_null(strstr(buf, "\nsluice_persister_connections_closed_total 27\n"));
    assert_non_null(strstr(buf, "\nsluice_persister_command_reports_dropped_total 28\n"));
    assert_non_null(strstr(buf, "\nsluice_persister_command_batches_sent_total 29\n"));
    assert_non_null(strstr(buf, "\nsluice_persister_command_batches_unroutable_total 30\n"));

    stats_fini(&st);
    assert_null(st.src);
    stat_add(&s.rows_committed, 1); /* no hook: the series keep their last copy */
    metrics_render(buf, sizeof buf);
    assert_non_null(strstr(buf, "\nsluice_persister_rows_committed_total 101\n"));
}

static const char expected_curve[] =
    "# HELP sluice_persister_curve_handshakes_total CURVE handshakes by the ZAP decision\n"
    "# TYPE sluice_persister_curve_handshakes_total counter\n"
    "sluice_persister_curve_handshakes_total{result=\"allowed\"} 21\n"
    "sluice_persister_curve_handshakes_total{result=\"refused\"} 22\n"
    "# HELP sluice_persister_curve_impostor_batches_total Edge batches dropped: they name an edge id or "
    "reply "
    "address the sender's CURVE key is not bound to\n"
    "# TYPE sluice_persister_curve_impostor_batches_total counter\n"
    "sluice_persister_curve_impostor_batches_total 23\n"
    "# HELP sluice_persister_curve_keys Edge keys in the allowed directory\n"
    "# TYPE sluice_persister_curve_keys gauge\n"
    "sluice_persister_curve_keys 24\n";

/* After test_export: the registry is process-wide, and these series come
 * after the others. */
static void test_export_curve(void **state)
{
    (void)state;
    static struct persister_stats s;
    static struct zap_counts z;
    persister_stats_init(&s);
    struct stats st;
    stats_init(&st, &s, &z);
    stat_add(&z.allowed, 21);
    stat_add(&z.refused, 22);
    stat_add(&z.impostor, 23);
    stat_set(&z.keys, 24);
    static char buf[16384];
    metrics_render(buf, sizeof buf);
    const char *tail = strstr(buf, "# HELP sluice_persister_curve_handshakes_total");
    assert_non_null(tail);
    assert_string_equal(tail, expected_curve);
    stats_fini(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export),
        cmocka_unit_test(test_export_curve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
