/* edge/stats.h - the edge's Prometheus metrics, registered once at startup
 * (stats_init) and updated lock-free from every worker thread. */
#ifndef EDGE_STATS_H
#define EDGE_STATS_H
#include "sl/err.h"
#include "sl/metrics.h"

/* Close reasons: the label set of edge_closed_total and the `reason` of
 * disconnect envelopes. Wire errors use their code as reason. */
enum close_reason {
    CR_EOF = 0, /* device closed */
    CR_IO,      /* socket error */
    CR_OUT_CAP, /* output over --out-cap: device not reading */
    CR_FRAME,
    CR_DECODE,
    CR_PROTO,
    CR_AUTH,
    CR_REPLACED,
    CR_BUSY,
    CR_DRAINING,
    CR_TIMEOUT,
    CR_SHUTDOWN, /* process exit with the connection still open */
    CR_COUNT
};

struct stats {
    struct metric_gauge *open;
    struct metric_counter *accepted;
    struct metric_counter *closed[CR_COUNT];
    struct metric_counter *frames_in, *frames_out, *bytes_in, *bytes_out;
    struct metric_counter *errors[SL_TIMEOUT + 1]; /* indexed by enum sl_err, wire codes only */
    struct metric_counter *auth_failures;
    struct metric_counter *bp_pauses;
    struct metric_counter *bp_paused_us; /* exported as seconds via a counter in micro units */
    struct metric_counter *notifier_shed;
    struct metric_counter *notifier_ctl_dropped;
    struct metric_counter *persister_ctl_dropped;
    struct metric_counter *stale_acks, *stale_batches, *acks, *cmds, *kicks, *undeliverable;
    struct metric_counter *cmds_forwarded;       /* handed to the worker holding the device */
    struct metric_counter *cmds_forward_refused; /* its inbox full: answered undeliverable */
    struct metric_gauge *persister_connected, *notifier_connected; /* 1: every worker (main.c) */
    struct metric_counter *batches_out_p, *batches_out_n;
    struct metric_counter *out_pool_exhausted;
    struct metric_hist *ack_rtt;
};

extern struct stats stats;

/* Register every series. Call once before any worker starts. */
void stats_init(void);

const char *close_reason_str(enum close_reason r);
/* The close reason for a wire error code. */
enum close_reason close_reason_of(enum sl_err e);

#endif
