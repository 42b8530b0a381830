/* SPDX-License-Identifier: Apache-2.0 */
/* main.c - sluice-persister: flags, logging, metrics (stats.c exports the
 * core's counters), signals; then the loop. Deliberately nothing else: the
 * service lives in persister.c. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "persister.h"
#include "sl/cfg.h"
#include "sl/keys.h"
#include "sl/log.h"
#include "sl/metrics.h"
#include "stats.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

int main(int argc, char **argv)
{
    struct persister_cfg c = {0};
    const char *metrics = NULL, *level = NULL, *curve_key = NULL;
    const struct cfg_opt opts[] = {
        {"pull", CFG_STR, &c.pull, "tcp://*:7001", "PULL endpoint to bind (edge batches)", 0, 0},
        {"router", CFG_STR, &c.router, "tcp://*:7002", "ROUTER endpoint to bind (acks to edge workers)", 0,
         0},
        {"db", CFG_SECRET, &c.db, "", "libpq conninfo or URI; empty = PG* environment variables", 0, 0},
        {"batch-max", CFG_INT, &c.batch_max, "5000", "rows per transaction at most", 1, 1000000},
        {"batch-ms", CFG_INT, &c.batch_ms, "0",
         "0: a free connection commits the batch at once (group commit); N: it waits until the batch is "
         "full or its first row is N ms old",
         0, 60000},
        {"connections", CFG_INT, &c.connections, "2",
         "PostgreSQL connections committing batches side by side (plus three more: maintenance, the command "
         "queue, the devices table)",
         1, 16},
        {"max-pending", CFG_INT, &c.max_pending, "20000",
         "rows held in memory at most, all batches together (each holds 1/(connections+1)); beyond, stop "
         "pulling",
         1, 10000000},
        {"max-pending-bytes", CFG_INT, &c.max_pending_bytes, "268435456",
         "bytes of edge batches held in memory at most, pulled but not yet committed and acked; the next "
         "is pulled only while one of --zmq-max-msg still fits (so at least that)",
         65536, 1ll << 40},
        {"partition-days", CFG_INT, &c.partition_days, "1", "telemetry partition period in days (UTC)", 1,
         366},
        {"partition-ahead-days", CFG_INT, &c.partition_ahead_days, "2",
         "create telemetry partitions this many days ahead", 0, 3660},
        {"retention-days", CFG_INT, &c.retention_days, "0",
         "drop telemetry partitions older than this many days (0: keep everything)", 0, 365000},
        {"max-conflicts-per-device", CFG_INT, &c.conflicts_max, "100",
         "resends with another body or ts kept in telemetry_conflicts per device; beyond, only counted", 0,
         1000000},
        {"edge-timeout-ms", CFG_INT, &c.edge_timeout_ms, "10000",
         "close the sessions of an edge incarnation silent this long (reason edge_lost)", 100, 86400000},
        {"json-bytes", CFG_INT, &c.json_bytes, "0", "JSON arena per batch in bytes (0 = 1 KiB per row)", 0,
         1ll << 32},
        {"shutdown-ms", CFG_INT, &c.shutdown_ms, "10000",
         "after SIGTERM, keep retrying the held batch this long (then the devices table gets 5 s at most)", 0,
         3600000},
        /* An edge batch is at most 4 MiB (edge/bus.c BATCH_HARD): 2x that. */
        {"zmq-max-msg", CFG_INT, &c.max_msg, "8388608",
         "largest ZeroMQ message accepted, bytes; a peer sending a bigger one is disconnected", 65536,
         1ll << 32},
        {"max-attempts", CFG_INT, &c.max_attempts, "3",
         "queued commands: write each cmd frame at most this many times across reconnects", 1, 1000},
        {"curve-key", CFG_STR, &curve_key, "",
         "this service's CURVE key pair (the FILE_secret sluice-keys wrote); empty = CURVE off", 0, 0},
        {"curve-allow", CFG_STR, &c.curve_allow, "",
         "with --curve-key: directory of the edges' public certificates admitted (re-read while running)", 0,
         0},
        {"metrics", CFG_STR, &metrics, "", "HOST:PORT for /metrics /healthz /readyz (empty or port 0 = off)",
         0, 0},
        {"log-level", CFG_STR, &level, "info", "debug, info, warn or error", 0, 0},
    };
    cfg_parse(opts, (int)(sizeof opts / sizeof opts[0]), argc, argv,
              "sluice-persister: stores edge batches in PostgreSQL and acks each row after COMMIT.");
    if (log_init_flag("persister", level) != 0)
        return 2;
    static struct keys_pair keys;
    if (!*curve_key != !*c.curve_allow) {
        fprintf(stderr, "sluice-persister: --curve-key and --curve-allow go together (try --help)\n");
        return 2;
    }
    if (*curve_key) {
        if (keys_load_pair(curve_key, &keys, NULL, 0) != 0)
            return 2;
        c.curve = &keys;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: zmq_poll and sleeps return early */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct persister *p = persister_new(&c);
    if (!p)
        return 1;
    struct stats st;
    stats_init(&st, persister_stats(p), persister_zap_counts(p));
    if (metrics && *metrics && metrics_start(metrics) != 0) {
        stats_fini(&st);
        persister_destroy(&p);
        return 1;
    }
    int rc = persister_run(p, &g_stop);
    metrics_stop();
    stats_fini(&st);
    persister_destroy(&p);
    return rc == 0 ? 0 : 1;
}
