/* SPDX-License-Identifier: Apache-2.0 */
/* stats.c - the edge's Prometheus series (see stats.h): registration, and
 * the collect function that sums every worker's counts into them when
 * /metrics is scraped (it runs under the registry's lock: it only stores). It holds no logic: the modules
 * that count decide what to count. Names, help texts and labels are the contract with dashboards, alerts,
 * tests and benches (docs/performance.md); keep them. */
#include "stats.h"
#include <stdio.h>
#include "sl/metrics.h"
#include "acceptor.h"
#include "bus.h"
#include "cmdfwd.h"
#include "conn.h"
#include "edge.h"
#include "guard.h"
#include "record.h"
#include "session.h"
#include "worker.h"

static struct {
    struct edge *e;
    struct acceptor *acc;
    struct metric_gauge *open, *early, *worker_open[EDGE_MAX_WORKERS];
    struct metric_counter *early_evicted, *early_buf_waits, *holds, *held_us;
    struct metric_counter *tls_hs, *tls_resumed, *tls_failed;
    struct metric_counter *guard_refused[GUARD_VERDICTS], *bans_source, *bans_device, *guard_untracked;
    struct metric_counter *accepted;
    struct metric_counter *closed[CR_COUNT];
    struct metric_counter *frames_in, *frames_out, *bytes_in, *bytes_out;
    struct metric_counter *errors[SL_TIMEOUT + 1]; /* indexed by enum sl_err, wire codes only */
    struct metric_counter *auth_failures;
    struct metric_counter *bp_pauses, *bp_paused_us;
    struct metric_counter *notifier_shed, *notifier_ctl_dropped, *persister_ctl_dropped;
    struct metric_counter *notifier_ctl_rerouted, *notifier_ctl_forgotten;
    struct metric_counter *stale_replies, *stale_batches, *acks, *cmds, *kicks, *undeliverable;
    struct metric_counter *cmds_forwarded, *cmds_forward_refused, *kicks_retried, *shed_conns;
    struct metric_gauge *persister_connected, *notifier_connected;
    struct metric_counter *batches_p, *batches_n;
    struct metric_counter *out_pool_exhausted;
    struct metric_counter *rec_dropped, *rec_bytes, *rec_skipped;
    struct metric_hist *ack_rtt;
} g;

/* The sums over every worker, taken on the scraping thread. */
struct sums {
    uint64_t open, early, early_evicted, early_buf_waits, accepted, refused, closed[CR_COUNT];
    uint64_t frames_in, frames_out, bytes_in, bytes_out, out_pool_exhausted;
    uint64_t tls_hs, tls_resumed, tls_failed;
    uint64_t errors[SL_TIMEOUT + 1], auth_failures, acks, cmds, holds, held_us;
    struct stat_hist rtt;
    uint64_t bp_pauses, bp_paused_us, shed, nctl_dropped, pctl_dropped, batches_p, batches_n;
    uint64_t nctl_rerouted, nctl_forgotten;
    uint64_t forwarded, forward_refused, undeliverable;
    uint64_t stale_replies, stale_batches, kicks, kicks_retried, shed_conns;
};

static void add_worker(struct sums *s, const struct worker_view *v)
{
    const struct conn_counts *c = v->conn;
    s->open += v->open;
    s->refused += stat_get(&v->own->refused_full);
    s->early += v->early;
    s->early_evicted += stat_get(&v->own->early_evicted);
    s->early_buf_waits += stat_get(&v->conn->early_buf_waits);
    s->accepted += stat_get(&c->accepted);
    s->refused += stat_get(&c->refused);
    for (int r = 0; r < CR_COUNT; r++)
        s->closed[r] += stat_get(&c->closed[r]);
    s->frames_in += stat_get(&c->frames_in);
    s->frames_out += stat_get(&c->frames_out);
    s->bytes_in += stat_get(&c->bytes_in);
    s->bytes_out += stat_get(&c->bytes_out);
    s->out_pool_exhausted += stat_get(&c->out_pool_exhausted);
    s->tls_hs += stat_get(&c->tls_handshakes);
    s->tls_resumed += stat_get(&c->tls_resumed);
    s->tls_failed += stat_get(&c->tls_failed);
    const struct session_counts *x = v->session;
    for (int e = 0; e <= SL_TIMEOUT; e++)
        s->errors[e] += stat_get(&x->errors[e]);
    s->auth_failures += stat_get(&x->auth_failures);
    s->acks += stat_get(&x->acks);
    s->cmds += stat_get(&x->cmds);
    s->holds += stat_get(&x->holds);
    s->held_us += stat_get(&x->held_us);
    for (int i = 0; i <= SESSION_RTT_BUCKETS; i++)
        stat_add(&s->rtt.counts[i], stat_get(&x->rtt.counts[i]));
    stat_add(&s->rtt.sum_micro, stat_get(&x->rtt.sum_micro));
    const struct bus_counts *b = v->bus;
    s->bp_pauses += stat_get(&b->bp_pauses);
    s->bp_paused_us += stat_get(&b->bp_paused_us);
    s->shed += stat_get(&b->notifier_shed);
    s->nctl_dropped += stat_get(&b->notifier_ctl_dropped);
    s->nctl_rerouted += stat_get(&b->notifier_ctl_rerouted);
    s->nctl_forgotten += stat_get(&b->notifier_ctl_forgotten);
    s->pctl_dropped += stat_get(&b->persister_ctl_dropped);
    s->batches_p += stat_get(&b->batches_persister);
    s->batches_n += stat_get(&b->batches_notifier);
    const struct cmdfwd_counts *f = v->cmdfwd;
    s->forwarded += stat_get(&f->forwarded);
    s->forward_refused += stat_get(&f->forward_refused);
    s->undeliverable += stat_get(&f->undeliverable);
    const struct worker_counts *o = v->own;
    s->stale_replies += stat_get(&o->stale_replies);
    s->stale_batches += stat_get(&o->stale_batches);
    s->kicks += stat_get(&o->kicks);
    s->kicks_retried += stat_get(&o->kicks_retried);
    s->shed_conns += stat_get(&o->shed);
}

static void collect(void *ud)
{
    (void)ud;
    struct sums s = {0};
    stat_hist_init(&s.rtt, session_rtt_bounds, SESSION_RTT_BUCKETS);
    for (uint32_t i = 0; i < g.e->nworkers; i++) {
        struct worker_view v;
        worker_view(g.e->workers[i], &v);
        add_worker(&s, &v);
        metric_set(g.worker_open[i], v.open);
    }
    if (g.acc) {
        const struct acceptor_counts *a = acceptor_counts(g.acc);
        s.accepted += stat_get(&a->accepted);
        s.refused += stat_get(&a->refused);
    }
    const struct guard_counts *gc = guard_counts(g.e->guard);
    for (int v = GUARD_OK + 1; v < GUARD_VERDICTS; v++) {
        uint64_t n = stat_get(&gc->refused[v]);
        metric_counter_set(g.guard_refused[v], n);
        if (v != GUARD_DEVICE_BANNED) /* a banned device got its err from its session: counted there */
            s.refused += n;
    }
    metric_counter_set(g.bans_source, stat_get(&gc->bans_source));
    metric_counter_set(g.bans_device, stat_get(&gc->bans_device));
    metric_counter_set(g.guard_untracked, stat_get(&gc->untracked));
    /* A refusal is an err{busy} sent and a connection closed for busy. */
    s.errors[SL_BUSY] += s.refused;
    s.closed[CR_BUSY] += s.refused;
    metric_set(g.open, (int64_t)s.open);
    metric_set(g.early, (int64_t)s.early);
    metric_counter_set(g.early_evicted, s.early_evicted);
    metric_counter_set(g.holds, s.holds);
    metric_counter_set(g.tls_hs, s.tls_hs);
    metric_counter_set(g.tls_resumed, s.tls_resumed);
    metric_counter_set(g.tls_failed, s.tls_failed);
    metric_counter_set(g.held_us, s.held_us);
    metric_counter_set(g.early_buf_waits, s.early_buf_waits);
    metric_counter_set(g.accepted, s.accepted);
    for (int r = 0; r < CR_COUNT; r++)
        metric_counter_set(g.closed[r], s.closed[r]);
    for (int e = SL_FRAME; e <= SL_TIMEOUT; e++)
        metric_counter_set(g.errors[e], s.errors[e]);
    metric_counter_set(g.frames_in, s.frames_in);
    metric_counter_set(g.frames_out, s.frames_out);
    metric_counter_set(g.bytes_in, s.bytes_in);
    metric_counter_set(g.bytes_out, s.bytes_out);
    metric_counter_set(g.out_pool_exhausted, s.out_pool_exhausted);
    metric_counter_set(g.auth_failures, s.auth_failures);
    metric_counter_set(g.bp_pauses, s.bp_pauses);
    metric_counter_set(g.bp_paused_us, s.bp_paused_us);
    metric_counter_set(g.notifier_shed, s.shed);
    metric_counter_set(g.notifier_ctl_dropped, s.nctl_dropped);
    metric_counter_set(g.notifier_ctl_rerouted, s.nctl_rerouted);
    metric_counter_set(g.notifier_ctl_forgotten, s.nctl_forgotten);
    metric_counter_set(g.persister_ctl_dropped, s.pctl_dropped);
    metric_counter_set(g.stale_replies, s.stale_replies);
    metric_counter_set(g.stale_batches, s.stale_batches);
    metric_counter_set(g.acks, s.acks);
    metric_counter_set(g.cmds, s.cmds);
    metric_counter_set(g.kicks, s.kicks);
    metric_counter_set(g.undeliverable, s.undeliverable);
    metric_counter_set(g.cmds_forwarded, s.forwarded);
    metric_counter_set(g.cmds_forward_refused, s.forward_refused);
    metric_counter_set(g.kicks_retried, s.kicks_retried);
    metric_counter_set(g.shed_conns, s.shed_conns);
    metric_counter_set(g.batches_p, s.batches_p);
    metric_counter_set(g.batches_n, s.batches_n);
    metric_hist_set(g.ack_rtt, &s.rtt);
    if (g.e->rec) {
        uint64_t dropped, skipped, bytes;
        record_counts(g.e->rec, &dropped, &skipped, &bytes);
        metric_counter_set(g.rec_dropped, dropped);
        metric_counter_set(g.rec_skipped, skipped);
        metric_counter_set(g.rec_bytes, bytes);
    }
}

void stats_fini(void)
{
    metrics_set_collect(NULL, NULL); /* waits for a render in progress: it holds the registry lock */
    collect(NULL);                   /* the last sums, from workers that are still there */
}

void stats_set_connected(bool persister, bool notifier)
{
    metric_set(g.persister_connected, persister);
    metric_set(g.notifier_connected, notifier);
}

void stats_init(struct edge *e, struct acceptor *acc)
{
    g.e = e;
    g.acc = acc;
    char lab[64];
    g.open = metrics_gauge("sluice_edge_connections_open", "Device connections open", NULL);
    for (int v = GUARD_OK + 1; v < GUARD_VERDICTS; v++) {
        snprintf(lab, sizeof lab, "why=\"%s\"", guard_verdict_str((enum guard_verdict)v));
        g.guard_refused[v] = metrics_counter("sluice_edge_refused_total",
                                             "Connections or hellos refused err busy, by limit", lab);
    }
    g.bans_source = metrics_counter("sluice_edge_bans_total", "Bans started", "what=\"source\"");
    g.bans_device = metrics_counter("sluice_edge_bans_total", "Bans started", "what=\"device\"");
    g.guard_untracked =
        metrics_counter("sluice_edge_guard_untracked_total",
                        "Connections or session ends not tracked per address or device: table full", NULL);
    g.early =
        metrics_gauge("sluice_edge_connections_early", "Connections without an accepted hello yet", NULL);
    g.early_evicted =
        metrics_counter("sluice_edge_early_evicted_total",
                        "Connections without a hello closed to make room for a newer one", NULL);
    g.early_buf_waits =
        metrics_counter("sluice_edge_early_buffer_waits_total",
                        "Reads of hello-less connections deferred for want of a small buffer", NULL);
    g.tls_hs = metrics_counter("sluice_edge_tls_handshakes_total", "TLS handshakes completed", NULL);
    g.tls_resumed =
        metrics_counter("sluice_edge_tls_resumed_total", "Of them resumed (a session ticket)", NULL);
    g.tls_failed =
        metrics_counter("sluice_edge_tls_failed_total", "TLS handshakes or records that failed", NULL);
    g.holds = metrics_counter("sluice_edge_device_rate_holds_total",
                              "Times a device over --device-rate was not read for a while", NULL);
    g.held_us = metrics_counter_micro("sluice_edge_device_rate_held_seconds_total",
                                      "Time devices over --device-rate were not read", NULL);
    for (int r = 0; r < CR_COUNT; r++) {
        snprintf(lab, sizeof lab, "reason=\"%s\"", conn_reason_str((enum conn_reason)r));
        g.closed[r] =
            metrics_counter("sluice_edge_connections_closed_total", "Connections closed, by reason", lab);
    }
    for (int c = SL_FRAME; c <= SL_TIMEOUT; c++) {
        snprintf(lab, sizeof lab, "code=\"%s\"", sl_wire_code((enum sl_err)c));
        g.errors[c] = metrics_counter("sluice_edge_errors_total", "err frames sent, by code", lab);
    }
    /* Plain counters: one row each, registered in this order. */
    const struct metrics_counter_def plain[] = {
        {&g.accepted, "sluice_edge_connections_accepted_total", "Connections accepted"},
        {&g.frames_in, "sluice_edge_received_frames_total", "Frames received from devices"},
        {&g.frames_out, "sluice_edge_sent_frames_total", "Frames queued to devices"},
        {&g.bytes_in, "sluice_edge_received_bytes_total", "Bytes read from devices"},
        {&g.bytes_out, "sluice_edge_sent_bytes_total", "Bytes written to devices"},
        {&g.out_pool_exhausted, "sluice_edge_out_pool_exhausted_total",
         "Connections closed because the worker's output pool was empty"},
        {&g.auth_failures, "sluice_edge_auth_failures_total", "Hellos refused for a bad token or device id"},
        {&g.bp_pauses, "sluice_edge_backpressure_pauses_total",
         "Times reading stopped because the persister PUSH was full"},
        {&g.notifier_shed, "sluice_edge_notifier_shed_total",
         "Data entries for the notifier dropped because its PUSH was full"},
        {&g.notifier_ctl_dropped, "sluice_edge_notifier_ctl_dropped_total",
         "Control entries for the notifier dropped: retry queue full"},
        {&g.notifier_ctl_rerouted, "sluice_edge_notifier_ctl_rerouted_total",
         "Control entries sent to a notifier whose connection closed before it confirmed them, routed again"},
        {&g.notifier_ctl_forgotten, "sluice_edge_notifier_ctl_unconfirmed_forgotten_total",
         "Control entries sent to a notifier and forgotten before it confirmed them: too many or too old"},
        {&g.persister_ctl_dropped, "sluice_edge_persister_ctl_dropped_total",
         "Session/heartbeat entries for the persister dropped: pending batch full"},
        {&g.stale_replies, "sluice_edge_stale_replies_total",
         "Acks, cmds or kicks whose connection id or device no longer matched"},
        {&g.stale_batches, "sluice_edge_stale_batches_total",
         "Reply batches for another incarnation or version"},
        {&g.acks, "sluice_edge_acks_total", "Acks written to devices"},
        {&g.cmds, "sluice_edge_cmds_total", "Commands written to devices"},
        {&g.kicks, "sluice_edge_kicks_total", "Connections closed on a kick from the notifier"},
        {&g.undeliverable, "sluice_edge_undeliverable_total", "Commands answered undeliverable"},
        {&g.cmds_forwarded, "sluice_edge_cmds_forwarded_total",
         "Commands forwarded to the worker of this edge that holds the device"},
        {&g.cmds_forward_refused, "sluice_edge_cmds_forward_refused_total",
         "Commands answered undeliverable because the holding worker's inbox was full"},
        {&g.kicks_retried, "sluice_edge_kicks_retried_total",
         "Takeover kicks another worker's mailbox could not take at once (posted again, never dropped)"},
        {&g.shed_conns, "sluice_edge_shed_connections_total",
         "Devices closed with err draining to shed load (POST /admin/shed)"},
    };
    metrics_counters(plain, sizeof plain / sizeof plain[0]);
    g.bp_paused_us = metrics_counter_micro("sluice_edge_backpressure_paused_seconds_total",
                                           "Time spent with reading stopped", NULL);
    g.persister_connected =
        metrics_gauge("sluice_edge_persister_connected",
                      "1 while every worker has a persister on its PUSH and on its DEALER", NULL);
    g.notifier_connected =
        metrics_gauge("sluice_edge_notifier_connected",
                      "1 while every worker has a notifier on its PUSH and on its DEALER", NULL);
    g.batches_p =
        metrics_counter("sluice_edge_batches_sent_total", "Envelope batches sent", "dest=\"persister\"");
    g.batches_n =
        metrics_counter("sluice_edge_batches_sent_total", "Envelope batches sent", "dest=\"notifier\"");
    static const double b[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                               0.025,  0.05,    0.1,    0.25,  1,      5};
    _Static_assert(sizeof b / sizeof b[0] == SESSION_RTT_BUCKETS, "one bound per session_rtt_bounds_us");
    g.ack_rtt = metrics_hist("sluice_edge_ack_rtt_seconds", "Data frame received to ack written (sampled)",
                             NULL, b, (int)(sizeof b / sizeof b[0]));
    for (uint32_t i = 0; i < e->nworkers; i++) {
        snprintf(lab, sizeof lab, "worker=\"%u\"", i);
        g.worker_open[i] =
            metrics_gauge("sluice_edge_worker_connections_open", "Device connections open, by worker", lab);
    }
    if (e->rec) {
        g.rec_dropped = metrics_counter(
            "sluice_edge_record_dropped_total",
            "Records not recorded because the writer fell behind (a GAP marks the place)", NULL);
        g.rec_bytes =
            metrics_counter("sluice_edge_record_bytes_total", "Bytes written to the --record file", NULL);
        g.rec_skipped =
            metrics_counter("sluice_edge_record_skipped_total",
                            "Connections left out of a --record-devices recording: hello too long, in "
                            "too many reads, or no pre-hello stage free",
                            NULL);
    }
    metrics_set_collect(collect, NULL);
}
