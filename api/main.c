/* SPDX-License-Identifier: Apache-2.0 */
/* main.c - sluice-api: flags, logging, the tokens file, metrics export,
 * signals; then the HTTP server until SIGTERM, re-reading the tokens file on
 * SIGHUP. Deliberately nothing else: requests are server.c's, SQL is
 * store.c's. */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "ratelim.h"
#include "server.h"
#include "sl/cfg.h"
#include "sl/log.h"
#include "sl/metrics.h"
#include "sl/secfile.h"
#include "sl/version.h"
#include "store.h"

static volatile sig_atomic_t g_stop, g_reload;

/* Only flags: the main loop does the work (reading a file, freeing the old
 * tokens) outside the handler. */
static void on_signal(int sig)
{
    if (sig == SIGHUP)
        g_reload = 1;
    else
        g_stop = 1;
}

/* The tokens of the file at path, or NULL after one error line that says
 * what happens next (then: "exit" at start, "kept" on a reload). */
static struct auth *load_tokens(const char *path, const char *then)
{
    size_t tlen = 0;
    char *ttext = secfile_read(path, "tokens", 1u << 20, &tlen);
    if (!ttext) {
        int e = errno;
        log_error("event=file_unreadable what=tokens path=%s err=\"%s\" then=%s", path, strerror(e), then);
        return NULL;
    }
    char err[160];
    struct auth *auth = auth_parse(ttext, tlen, err, sizeof err);
    explicit_bzero(ttext, tlen);
    free(ttext);
    if (!auth)
        log_error("event=tokens_bad path=%s err=\"%s\" then=%s", path, err, then);
    return auth;
}

/* SIGHUP: the file's tokens replace *cur (the server's, which main owns),
 * or *cur stays (a half-written or broken file must not lock every
 * operator out). */
static void reload_tokens(struct server *srv, const char *path, struct auth **cur)
{
    struct auth *next = load_tokens(path, "kept");
    if (!next)
        return;
    struct auth *prev = server_swap_auth(srv, next);
    assert(prev == *cur);
    *cur = next;
    log_info("event=tokens_reloaded path=%s tokens=%u was=%u", path, auth_count(next), auth_count(prev));
    auth_destroy(&prev);
}

/* The server's counts -> sluice_api_* on each scrape (docs/metrics.md rule 7). */
struct exported {
    const struct server_stats *src;
    struct metric_counter *requests[ROUTE_COUNT][SERVER_CLASSES];
    struct metric_counter *refused[SERVER_REFUSALS];
    struct metric_hist *seconds;
};

static void collect(void *ud)
{
    struct exported *x = ud;
    for (int r = 0; r < ROUTE_COUNT; r++)
        for (int c = 0; c < SERVER_CLASSES; c++)
            metric_counter_set(x->requests[r][c], stat_get(&x->src->requests[r][c]));
    for (int k = 0; k < SERVER_REFUSALS; k++)
        metric_counter_set(x->refused[k], stat_get(&x->src->refused[k]));
    metric_hist_set(x->seconds, &x->src->seconds);
}

static void export(struct exported *x, const struct server_stats *src)
{
    static const char *const cls[SERVER_CLASSES] = {"2xx", "4xx", "5xx"};
    static const char *const why[SERVER_REFUSALS] = {"auth", "scope", "rate", "size"};
    x->src = src;
    for (int r = 0; r < ROUTE_COUNT; r++)
        for (int c = 0; c < SERVER_CLASSES; c++) {
            char lab[96];
            snprintf(lab, sizeof lab, "route=\"%s\",code=\"%s\"", route_name((enum route_id)r), cls[c]);
            x->requests[r][c] = metrics_counter("sluice_api_requests_total", "HTTP requests answered", lab);
        }
    for (int k = 0; k < SERVER_REFUSALS; k++) {
        char lab[48];
        snprintf(lab, sizeof lab, "reason=\"%s\"", why[k]);
        x->refused[k] = metrics_counter("sluice_api_refused_total",
                                        "Requests refused: auth 401, scope 403, rate 429, size 413", lab);
    }
    x->seconds = metrics_hist("sluice_api_request_seconds", "Time to answer a request", NULL,
                              src->seconds.bounds, src->seconds.nb);
    char lab[128];
    snprintf(lab, sizeof lab, "version=\"%s\",commit=\"%s\"", sl_version, sl_commit);
    metric_set(metrics_gauge("sluice_build_info",
                             "The version and commit this program was built from (always 1)", lab),
               1);
    metrics_set_collect(collect, x);
}

/* A PEM file whole, or NULL (logged). */
static char *read_pem(const char *path, const char *what, bool secret)
{
    size_t len = 0;
    char *t = NULL;
    if (secret) {
        t = secfile_read(path, what, 1u << 20, &len);
    } else {
        FILE *f = fopen(path, "rb");
        if (f) {
            t = calloc(1, (1u << 20) + 1u);
            if (t)
                len = fread(t, 1, 1u << 20, f);
            fclose(f);
        }
    }
    if (!t) {
        int e = errno;
        log_error("event=file_unreadable what=%s path=%s err=\"%s\"", what, path, strerror(e));
    }
    (void)len;
    return t;
}

int main(int argc, char **argv)
{
    const char *listen = NULL, *db = NULL, *tokens = NULL, *metrics = NULL, *level = NULL;
    const char *tls_cert = NULL, *tls_key = NULL;
    int64_t threads = 0, max_conns = 0, per_ip = 0, max_body = 0, timeout_s = 0, db_wait_ms = 0,
            max_queued = 0;
    double rate = 0, burst = 0;
    const struct cfg_opt opts[] = {
        {"listen", CFG_STR, &listen, "0.0.0.0:8080", "HOST:PORT of the HTTP API", 0, 0},
        {"db", CFG_SECRET, &db, "", "libpq conninfo or URI; empty = PG* environment variables", 0, 0},
        {"tokens-file", CFG_STR, &tokens, "",
         "bearer tokens, one a line: NAME ro|rw TOKEN (required; docs/api.md)", 0, 0},
        {"tls-cert", CFG_STR, &tls_cert, "", "PEM certificate (chain) for HTTPS; empty = plain HTTP", 0, 0},
        {"tls-key", CFG_STR, &tls_key, "", "PEM private key for --tls-cert", 0, 0},
        {"threads", CFG_INT, &threads, "4", "request threads (and database connections)", 1, 256},
        {"max-conns", CFG_INT, &max_conns, "256", "HTTP connections at once, all clients", 1, 100000},
        {"max-conns-per-ip", CFG_INT, &per_ip, "32", "HTTP connections at once from one address", 1, 100000},
        {"max-body", CFG_INT, &max_body, "65536", "request body bytes at most (413 beyond)", 64, 16777216},
        {"max-queued", CFG_INT, &max_queued, "100",
         "pending (queued or delivered) commands per device at most; beyond, a submission is refused (409)",
         1, 1000000},
        {"idle-timeout", CFG_INT, &timeout_s, "30", "seconds before an idle connection is closed", 1, 3600},
        {"rate", CFG_DOUBLE, &rate, "50", "requests per second per token (or per address without one)", 0, 0},
        {"burst", CFG_DOUBLE, &burst, "100", "requests a client may make at once above --rate", 0, 0},
        {"db-wait-ms", CFG_INT, &db_wait_ms, "2000",
         "how long a request waits for a free database connection before 503", 0, 60000},
        {"metrics", CFG_STR, &metrics, "",
         "HOST:PORT for a separate /metrics /healthz /readyz (they are on --listen too; empty = off)", 0, 0},
        {"log-level", CFG_STR, &level, "info", "debug, info, warn or error", 0, 0},
    };
    cfg_parse(opts, (int)(sizeof opts / sizeof opts[0]), argc, argv,
              "sluice-api: the operator HTTP API (devices, telemetry, commands) over the PostgreSQL store.");
    if (log_init_flag("api", level) != 0)
        return 2;
    if (!*tokens) {
        fprintf(stderr, "sluice-api: --tokens-file is required (try --help)\n");
        return 2;
    }
    if (!*tls_cert != !*tls_key) {
        fprintf(stderr, "sluice-api: --tls-cert and --tls-key go together (try --help)\n");
        return 2;
    }
    if (!(rate > 0) || !(burst >= 1)) {
        fprintf(stderr, "sluice-api: --rate must be > 0 and --burst >= 1\n");
        return 2;
    }
    struct auth *auth = load_tokens(tokens, "exit");
    if (!auth)
        return 2;
    char *cert = NULL, *key = NULL;
    if (*tls_cert &&
        (!(cert = read_pem(tls_cert, "tls_cert", false)) || !(key = read_pem(tls_key, "tls_key", true)))) {
        free(cert);
        auth_destroy(&auth);
        return 2;
    }

    /* Blocked before any thread starts, so every thread inherits the mask
     * and the signals reach only the main loop's sigsuspend: no flag set
     * between its test and the wait is missed. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs, waitmask;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, &waitmask);

    static struct server_stats st;
    server_stats_init(&st);
    static struct exported ex;
    export(&ex, &st);
    int rc = 1;
    struct store *store = store_new(db, (unsigned)threads, (unsigned)db_wait_ms);
    struct ratelim *limit = ratelim_new(rate, burst, 4096);
    struct server *srv = NULL;
    if (store && limit) {
        const struct server_cfg sc = {.listen = listen,
                                      .threads = (unsigned)threads,
                                      .max_conns = (unsigned)max_conns,
                                      .per_ip = (unsigned)per_ip,
                                      .timeout_s = (unsigned)timeout_s,
                                      .max_body = (size_t)max_body,
                                      .max_queued = max_queued,
                                      .tls_cert = cert,
                                      .tls_key = key,
                                      .auth = auth,
                                      .limit = limit,
                                      .store = store,
                                      .stats = &st};
        srv = server_new(&sc);
    }
    if (srv && (!metrics || !*metrics || metrics_start(metrics) == 0)) {
        log_info("event=start tokens=%u db_connections=%lld rate=%g burst=%g", auth_count(auth),
                 (long long)threads, rate, burst);
        metrics_set_ready(store_ping(store));
        while (!g_stop) {
            sigsuspend(&waitmask); /* the server's threads do the work; a signal ends the wait */
            if (g_reload) {
                g_reload = 0;
                reload_tokens(srv, tokens, &auth);
            }
        }
        log_info("event=stopping");
        rc = 0;
    }
    metrics_stop();
    server_destroy(&srv);
    metrics_set_collect(NULL, NULL);
    store_destroy(&store);
    ratelim_destroy(&limit);
    auth_destroy(&auth);
    if (key) {
        explicit_bzero(key, strlen(key));
        free(key);
    }
    free(cert);
    if (rc == 0)
        log_info("event=stopped");
    return rc;
}
