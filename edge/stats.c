/* stats.c - registration of the edge's metrics (see stats.h). It holds no
 * logic: the I/O shells (conn.c, bus.c) decide what to count. */
#include "stats.h"
#include <stdio.h>

struct stats stats;

static const char *const reason_names[CR_COUNT] = {
    "eof",  "io",       "out_cap", "frame",    "decode",  "proto",
    "auth", "replaced", "busy",    "draining", "timeout", "shutdown",
};

const char *close_reason_str(enum close_reason r)
{
    return (unsigned)r < CR_COUNT ? reason_names[r] : "unknown";
}

enum close_reason close_reason_of(enum sl_err e)
{
    switch (e) {
    case SL_FRAME: return CR_FRAME;
    case SL_DECODE: return CR_DECODE;
    case SL_PROTO: return CR_PROTO;
    case SL_AUTH: return CR_AUTH;
    case SL_REPLACED: return CR_REPLACED;
    case SL_BUSY: return CR_BUSY;
    case SL_DRAINING: return CR_DRAINING;
    case SL_TIMEOUT: return CR_TIMEOUT;
    default: return CR_IO;
    }
}

void stats_init(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    char lab[64];
    stats.open = metrics_gauge("sluice_edge_connections_open", "Device connections open", NULL);
    for (int r = 0; r < CR_COUNT; r++) {
        snprintf(lab, sizeof lab, "reason=\"%s\"", reason_names[r]);
        stats.closed[r] =
            metrics_counter("sluice_edge_connections_closed_total", "Connections closed, by reason", lab);
    }
    for (int e = SL_FRAME; e <= SL_TIMEOUT; e++) {
        snprintf(lab, sizeof lab, "code=\"%s\"", sl_wire_code((enum sl_err)e));
        stats.errors[e] = metrics_counter("sluice_edge_errors_total", "err frames sent, by code", lab);
    }
    /* Plain counters: one row each, registered in this order. */
    static const struct metrics_counter_def plain[] = {
        {&stats.accepted, "sluice_edge_connections_accepted_total", "Connections accepted"},
        {&stats.frames_in, "sluice_edge_frames_in_total", "Frames received from devices"},
        {&stats.frames_out, "sluice_edge_frames_out_total", "Frames queued to devices"},
        {&stats.bytes_in, "sluice_edge_bytes_in_total", "Bytes read from devices"},
        {&stats.bytes_out, "sluice_edge_bytes_out_total", "Bytes written to devices"},
        {&stats.out_pool_exhausted, "sluice_edge_out_pool_exhausted_total",
         "Connections closed because the worker's output pool was empty"},
        {&stats.auth_failures, "sluice_edge_auth_failures_total",
         "Hellos refused for a bad token or device id"},
        {&stats.bp_pauses, "sluice_edge_backpressure_pauses_total",
         "Times reading stopped because the persister PUSH was full"},
        {&stats.bp_paused_us, "sluice_edge_backpressure_paused_microseconds_total",
         "Time spent with reading stopped, microseconds"},
        {&stats.notifier_shed, "sluice_edge_notifier_shed_total",
         "Data entries for the notifier dropped because its PUSH was full"},
        {&stats.notifier_ctl_dropped, "sluice_edge_notifier_ctl_dropped_total",
         "Control entries for the notifier dropped: retry queue full"},
        {&stats.persister_ctl_dropped, "sluice_edge_persister_ctl_dropped_total",
         "Session/heartbeat entries for the persister dropped: pending batch full"},
        {&stats.stale_acks, "sluice_edge_stale_replies_total",
         "Acks, cmds or kicks whose connection id or device no longer matched"},
        {&stats.stale_batches, "sluice_edge_stale_batches_total",
         "Reply batches for another incarnation or version"},
        {&stats.acks, "sluice_edge_acks_total", "Acks written to devices"},
        {&stats.cmds, "sluice_edge_cmds_total", "Commands written to devices"},
        {&stats.kicks, "sluice_edge_kicks_total", "Connections closed on a kick from the notifier"},
        {&stats.undeliverable, "sluice_edge_undeliverable_total", "Commands answered undeliverable"},
        {&stats.cmds_forwarded, "sluice_edge_cmds_forwarded_total",
         "Commands forwarded to the worker of this edge that holds the device"},
        {&stats.cmds_forward_refused, "sluice_edge_cmds_forward_refused_total",
         "Commands answered undeliverable because the holding worker's inbox was full"},
    };
    metrics_counters(plain, sizeof plain / sizeof plain[0]);
    stats.persister_connected =
        metrics_gauge("sluice_edge_persister_connected",
                      "1 while every worker has a persister on its PUSH and on its DEALER", NULL);
    stats.notifier_connected =
        metrics_gauge("sluice_edge_notifier_connected",
                      "1 while every worker has a notifier on its PUSH and on its DEALER", NULL);
    stats.batches_out_p =
        metrics_counter("sluice_edge_batches_sent_total", "Envelope batches sent", "dest=\"persister\"");
    stats.batches_out_n =
        metrics_counter("sluice_edge_batches_sent_total", "Envelope batches sent", "dest=\"notifier\"");
    static const double b[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                               0.025,  0.05,    0.1,    0.25,  1,      5};
    stats.ack_rtt =
        metrics_hist("sluice_edge_ack_rtt_seconds", "Data frame received to ack written (sampled)", NULL, b,
                     (int)(sizeof b / sizeof b[0]));
}
