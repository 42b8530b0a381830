/* SPDX-License-Identifier: Apache-2.0 */
/* main.c - sluice-edge: load the configuration, wire the workers, wait for
 * SIGTERM/SIGINT, drain, exit. All the work happens in worker threads. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <zmq.h>
#include "sl/cfg.h"
#include "sl/keys.h"
#include "sl/limits.h"
#include "sl/log.h"
#include "sl/loop.h"
#include "sl/metrics.h"
#include "sl/msg.h"
#include "sl/sysres.h"
#include "sl/token.h"
#include "sl/zap.h"
#include "sl/zmqx.h"
#include "acceptor.h"
#include "bus.h"
#include "devmap.h"
#include "edge.h"
#include "guard.h"
#include "record.h"
#include "reload.h"
#include "stats.h"
#include "tls.h"
#include "trust.h"
#include "worker.h"

/* Overwrite a variable's bytes where the environment keeps them, then
 * remove it: unsetenv alone would leave them readable in /proc/PID/environ,
 * which is the process's original stack area. */
static void wipe_env(const char *name)
{
    char *v = getenv(name);
    if (v)
        explicit_bzero(v, strlen(v));
    unsetenv(name);
}

/* The fleet secret from SLUICE_FLEET_SECRET (when there is no
 * --secret-file), into trust; main wipes the variable right after. */
static int secret_from_env(struct trust *t)
{
    char *env = getenv("SLUICE_FLEET_SECRET");
    if (!env || !*env) {
        fprintf(stderr, "sluice-edge: no fleet secret: set --secret-file or SLUICE_FLEET_SECRET\n");
        return -1;
    }
    size_t n = strlen(env);
    int count = 0;
    const char *why = NULL;
    int rc = trust_set_secrets(t, (const uint8_t *)env, n, &count, &why);
    if (rc != 0)
        fprintf(stderr, "sluice-edge: refused SLUICE_FLEET_SECRET: %s\n", why);
    return rc;
}

/* Readiness (docs/internals.md, "edge readiness"): every worker listens
 * and is connected to a persister, the record. The notifier is reported
 * but not required: without it only the live view stops (its data copies
 * are shed), and failing /readyz would take every edge out of its load
 * balancer for that. */
static void report_readiness(struct edge *e, struct acceptor *acc)
{
    /* handoff: the acceptor's one listener; reuseport: every worker's. */
    bool listening = !acc || acceptor_listening(acc);
    unsigned all = BUS_UP_PERSISTER | BUS_UP_NOTIFIER;
    for (uint32_t i = 0; i < e->nworkers; i++) {
        struct worker_view v;
        worker_view(e->workers[i], &v);
        listening = listening && (acc || v.listening);
        all &= v.bus_up;
    }
    bool p = all & BUS_UP_PERSISTER, n = all & BUS_UP_NOTIFIER;
    stats_set_connected(p, n);
    char detail[96];
    snprintf(detail, sizeof detail, "persister=%s notifier=%s%s", p ? "up" : "down", n ? "up" : "down",
             listening ? "" : " listener=down");
    static char last[96];
    if (strcmp(detail, last) != 0) { /* one line per change, not per poll */
        log_info("event=readiness ready=%d %s", listening && p, detail);
        memcpy(last, detail, sizeof last);
    }
    metrics_set_ready_detail(detail);
    metrics_set_ready(listening && p);
}

/* POST /admin/shed?target=N&rate=R (docs/internals.md "shedding"), on the
 * metrics thread: hand the target to the workers through e->shed, which
 * they read on their tick, and say what the edge holds now. A target at or
 * above that ends any shed in progress and starts none. */
static unsigned admin_shed(void *ud, const char *name, struct metrics_req *req, char *body, size_t cap)
{
    struct edge *e = ud;
    if (strcmp(name, "shed") != 0) {
        snprintf(body, cap, "{\"error\":\"not found\"}");
        return 404;
    }
    const char *ts = metrics_req_arg(req, "target"), *rs = metrics_req_arg(req, "rate");
    char *end = NULL;
    errno = 0;
    unsigned long long target = ts ? strtoull(ts, &end, 10) : 0;
    bool bad = !ts || !*ts || *end || errno || *ts == '-' || target > UINT32_MAX;
    unsigned long long rate = 100;
    if (!bad && rs) {
        errno = 0;
        rate = strtoull(rs, &end, 10);
        bad = !*rs || *end || errno || *rs == '-' || rate < 1 || rate > 1000000;
    }
    if (bad) {
        snprintf(body, cap, "{\"error\":\"target=N (0..%u) and rate=R (1..1000000 per second) expected\"}",
                 UINT32_MAX);
        return 400;
    }
    if (atomic_load(&e->draining)) {
        snprintf(body, cap, "{\"error\":\"draining\"}");
        return 409;
    }
    static uint32_t requests; /* the metrics server has one thread */
    uint32_t open = atomic_load(&e->open_total);
    bool shedding = target < open;
    uint64_t old;
    if (shedding) {
        atomic_store(&e->shed_rate, (uint32_t)rate);
        atomic_store(&e->shed_done, 0);
        requests = requests == UINT32_MAX ? 1 : requests + 1;
        old = atomic_exchange(&e->shed, (uint64_t)requests << 32 | target);
        log_info("event=shed_begin open=%u target=%llu rate=%llu replaced=%d", open, target, rate, old != 0);
    } else {
        old = atomic_exchange(&e->shed, 0);
        if (old)
            log_info("event=shed_end open=%u target=%llu shed=%u cancelled=1", open, target,
                     atomic_load(&e->shed_done));
    }
    snprintf(body, cap, "{\"open\":%u,\"target\":%llu,\"rate\":%llu,\"shedding\":%s}", open, target, rate,
             shedding ? "true" : "false");
    return 200;
}

/* CURVE keys (docs/security.md): all three files or none. The key's edge
 * binding must admit this edge id, or every batch would be refused by the
 * services: say so now. 0 or -1 (said on stderr or logged). */
static int load_curve(struct edge_cfg *c, const char *own, const char *pkey, const char *nkey)
{
    static struct keys_pair kp;
    static char p_pub[41], n_pub[41];
    char bound[KEYS_BOUND_MAX];
    if (!*own && !*pkey && !*nkey)
        return 0;
    if (!*own || !*pkey || !*nkey) {
        fprintf(stderr, "sluice-edge: --curve-key, --persister-key and --notifier-key go together\n");
        return -1;
    }
    if (keys_load_pair(own, &kp, bound, sizeof bound) != 0 || keys_load_public(pkey, p_pub) != 0 ||
        keys_load_public(nkey, n_pub) != 0)
        return -1;
    if (!zap_binding_ok(bound, (const uint8_t *)c->edge_id, strlen(c->edge_id), NULL, 0)) {
        fprintf(stderr,
                "sluice-edge: the key %s is bound to edge id '%s', not '%s' (set --edge-id, or make a key "
                "with sluice-keys --edge-id)\n",
                own, bound, c->edge_id);
        return -1;
    }
    c->curve = &kp;
    c->persister_key = p_pub;
    c->notifier_key = n_pub;
    return 0;
}

int main(int argc, char **argv)
{
    const char *listen = NULL, *edge_id = NULL, *secret_file = NULL, *pp = NULL, *pr = NULL, *np = NULL,
               *nr = NULL, *metrics_addr = NULL, *log_level = NULL, *record = NULL, *record_devs = NULL,
               *accept_mode = NULL, *allow_cidrs = NULL, *deny_file = NULL, *listen_tls = NULL,
               *tls_cert = NULL, *tls_key = NULL, *tls_ca = NULL, *tls_tickets = NULL, *proxy_from = NULL,
               *curve_key = NULL, *persister_key = NULL, *notifier_key = NULL, *admin_token = NULL;
    bool proxy = false;
    int64_t hs_per_wake = 0;
    int64_t workers = 0, max_frame = 0, hb = 0, hello_ms = 0, idle_ms = 0, max_conns = 0, out_cap = 0,
            drain_timeout = 0, read_bufs = 0, out_pool = 0, hwm = 0, ntf_window = 0, record_mb = 0,
            max_msg = 0, hello_min_ms = 0, hello_max = 0, early_max = 0, src_conns = 0, src_early = 0,
            src_fails = 0, dev_flaps = 0, ban_min = 0, ban_max = 0;
    double src_rate = 0, src_burst = 0, acc_rate = 0, acc_burst = 0, dev_rate = 0, dev_burst = 0;
    int64_t hold_max = 0;
    double drain_rate = 0;
    const struct cfg_opt opts[] = {
        {"listen", CFG_STR, &listen, "0.0.0.0:7000", "TCP address devices connect to (plain; \"\" = none)", 0,
         0},
        {"listen-tls", CFG_STR, &listen_tls, "", "TCP address devices connect to with TLS (\"\" = none)", 0,
         0},
        {"tls-cert", CFG_STR, &tls_cert, "", "PEM certificate chain of --listen-tls (reloaded on change)", 0,
         0},
        {"tls-key", CFG_STR, &tls_key, "", "PEM private key of --listen-tls (reloaded on change)", 0, 0},
        {"tls-client-ca", CFG_STR, &tls_ca, "",
         "PEM CA of client certificates: mutual TLS, the certificate's CN or a SAN must equal the hello's "
         "dev",
         0, 0},
        {"tls-ticket-keys", CFG_STR, &tls_tickets, "",
         "session ticket keys shared by the edges (80 bytes each, the first issues): resumption across edges",
         0, 0},
        {"tls-handshakes-per-wake", CFG_INT, &hs_per_wake, "8",
         "TLS handshake steps per worker loop iteration (a storm must not delay established devices)", 1,
         1 << 16},
        {"proxy-protocol", CFG_BOOL, &proxy, "false",
         "every listener expects a PROXY protocol v2 header first (behind HAProxy or a cloud balancer)", 0,
         0},
        {"proxy-from", CFG_STR, &proxy_from, "",
         "addresses allowed to send PROXY headers (the balancers): CIDR,...; others are refused", 0, 0},
        {"edge-id", CFG_STR, &edge_id, "", "edge name (default <hostname>:<port>)", 0, 0},
        {"workers", CFG_INT, &workers, "0", "worker threads (0 = CPUs usable: affinity, container quota)", 0,
         EDGE_MAX_WORKERS},
        {"accept", CFG_STR, &accept_mode, "handoff",
         "handoff (one acceptor thread gives each connection to the least loaded worker) or reuseport "
         "(a listener per worker, the kernel hashes connections over them: for many workers and connect "
         "storms above ~430k/s); docs/internals.md",
         0, 0},
        {"secret-file", CFG_STR, &secret_file, "",
         "fleet secret file: the secret on line 1, the previous one (during a rotation) on line 2; reloaded "
         "on "
         "change (else SLUICE_FLEET_SECRET, read once and wiped)",
         0, 0},
        {"deny-file", CFG_STR, &deny_file, "",
         "revoked device ids, one a line: refused (err auth) and closed when connected; reloaded on change",
         0, 0},
        {"persister-push", CFG_STR, &pp, "tcp://127.0.0.1:7001", "persister PULL endpoints (comma list)", 0,
         0},
        {"persister-router", CFG_STR, &pr, "tcp://127.0.0.1:7002", "persister ROUTER endpoints", 0, 0},
        {"notifier-push", CFG_STR, &np, "tcp://127.0.0.1:7011", "notifier PULL endpoints", 0, 0},
        {"notifier-router", CFG_STR, &nr, "tcp://127.0.0.1:7012", "notifier ROUTER endpoints", 0, 0},
        {"curve-key", CFG_STR, &curve_key, "",
         "this edge's CURVE key pair (the FILE_secret sluice-keys wrote, bound to this edge id); empty = "
         "CURVE off",
         0, 0},
        {"persister-key", CFG_STR, &persister_key, "",
         "with --curve-key: the persisters' public certificate (one key for all replicas)", 0, 0},
        {"notifier-key", CFG_STR, &notifier_key, "", "with --curve-key: the notifier's public certificate", 0,
         0},
        /* At most what one entry of the notifier's data batch can hold
         * (bus.c NDATA_CAP, 1.125 MiB): a bigger data frame could never be
         * sent on, and its device would resend it forever. */
        {"max-frame", CFG_INT, &max_frame, "65536", "largest frame payload, bytes", 16, EDGE_MAX_FRAME},
        {"hb", CFG_INT, &hb, "30", "heartbeat announced in welcome, seconds", 1, 86400},
        {"hello-timeout-ms", CFG_INT, &hello_ms, "10000", "hello must arrive within this after connecting", 1,
         3600000},
        {"hello-timeout-min-ms", CFG_INT, &hello_min_ms, "2000",
         "the hello deadline under pressure shrinks down to this, never below (docs/protocol.md §1)", 1,
         3600000},
        {"hello-max", CFG_INT, &hello_max, "1024",
         "largest first frame (the hello), bytes; a longer one gets err frame before any buffer is taken",
         1024, 65536},
        {"early-max", CFG_INT, &early_max, "1024",
         "connections without an accepted hello per worker; one more closes the oldest of them", 16, 1 << 20},
        {"idle-timeout-ms", CFG_INT, &idle_ms, "0", "close a silent connection after this (0 = 3 x hb)", 0,
         864000000},
        {"max-conns", CFG_INT, &max_conns, "19000", "connections held by this edge; beyond: err busy", 1,
         10000000},
        {"source-max-conns", CFG_INT, &src_conns, "100",
         "connections from one address (an IPv6 /64) at most; 0 = no limit (docs/protocol.md §1)", 0, 65535},
        {"source-max-early", CFG_INT, &src_early, "16",
         "of them without an accepted hello at most; 0 = no limit", 0, 65535},
        {"source-connect-rate", CFG_DOUBLE, &src_rate, "20",
         "connects per second from one address; 0 = no limit", 0, 0},
        {"source-connect-burst", CFG_DOUBLE, &src_burst, "40", "... with this burst", 0, 0},
        {"source-hello-fails", CFG_INT, &src_fails, "10",
         "failed hellos per minute from one address before it is banned; 0 = never", 0, 1 << 20},
        {"device-max-flaps", CFG_INT, &dev_flaps, "30",
         "authenticated sessions of one device ending per minute before it is banned; 0 = never", 0, 1 << 20},
        {"ban-min-ms", CFG_INT, &ban_min, "10000", "first ban, ms; each repeat doubles it", 100, 86400000},
        {"ban-max-ms", CFG_INT, &ban_max, "600000", "longest ban, ms", 100, 86400000},
        {"accept-rate", CFG_DOUBLE, &acc_rate, "0",
         "accepts per second for the whole edge (connect storms wait in the backlog); 0 = no limit", 0, 0},
        {"accept-burst", CFG_DOUBLE, &acc_burst, "1000", "... with this burst", 1, 0},
        {"allow-cidrs", CFG_STR, &allow_cidrs, "",
         "addresses exempt from the per-address limits (carrier NAT gateways, load balancers): "
         "10.0.0.0/8,...",
         0, 0},
        {"device-rate", CFG_DOUBLE, &dev_rate, "1000",
         "frames per second a device may send after hello; over it the edge stops reading it a while (slower "
         "acks, nothing dropped); 0 = no limit",
         0, 0},
        {"device-burst", CFG_DOUBLE, &dev_burst, "2000", "... with this burst", 1, 0},
        {"device-hold-max-ms", CFG_INT, &hold_max, "2000",
         "longest such pause (stay well below a device's ack timeout, 15 s in the device library)", 1, 60000},
        {"out-cap", CFG_INT, &out_cap, "262144", "output queued per connection before it is closed", 256,
         1 << 30},
        {"read-bufs", CFG_INT, &read_bufs, "512", "max-frame read buffers per worker (partial frames)", 1,
         1 << 20},
        {"out-pool-mb", CFG_INT, &out_pool, "256", "output chunk pool per worker, MiB", 1, 1 << 20},
        {"zmq-hwm", CFG_INT, &hwm, "1000", "ZeroMQ high-water mark of the bus sockets, batches", 1, 1 << 24},
        {"notifier-window-ms", CFG_INT, &ntf_window, "5",
         "data copies for the notifiers wait up to this long to share one message (fewer wake-ups per "
         "message at light load; the live view is this much later at most); 0 = sent at once",
         0, 1000},
        {"zmq-max-msg", CFG_INT, &max_msg, "8388608",
         "largest reply batch (acks, commands) accepted, bytes; a service sending a bigger one is "
         "disconnected",
         65536, 1ll << 32},
        {"drain-rate", CFG_DOUBLE, &drain_rate, "1000", "evictions per second on SIGTERM", 0, 0},
        {"drain-timeout-ms", CFG_INT, &drain_timeout, "30000", "exit this long after SIGTERM at the latest",
         0, 86400000},
        {"record", CFG_STR, &record, "",
         "record device traffic to this file (0600; holds tokens: docs/recording.md)", 0, 0},
        {"record-devices", CFG_STR, &record_devs, "",
         "record only these devices: comma list of id prefixes or globs (* ?)", 0, 0},
        {"record-max-mb", CFG_INT, &record_mb, "1024",
         "stop recording when the file reaches this, MiB (0 = no limit)", 0, 1 << 30},
        {"metrics", CFG_STR, &metrics_addr, "0.0.0.0:9100", "HTTP /metrics /healthz /readyz (\"\" = off)", 0,
         0},
        {"admin-token", CFG_SECRET, &admin_token, "",
         "bearer token of POST /admin/shed on the metrics listener (use --admin-token-file FILE); empty = "
         "no admin endpoint",
         0, 0},
        {"log-level", CFG_STR, &log_level, "info", "debug, info, warn, error", 0, 0},
    };
    cfg_parse(opts, (int)(sizeof opts / sizeof opts[0]), argc, argv,
              "sluice-edge: the TCP front that holds device connections and forwards their frames.");
    if (log_init_flag("edge", log_level) != 0)
        return 2;

    static struct edge e;
    struct edge_cfg *c = &e.cfg;
    c->listen = listen;
    c->listen_tls = listen_tls;
    c->proxy_protocol = proxy;
    c->tls_handshakes_per_wake = (uint32_t)hs_per_wake;
    if (!*listen && !*listen_tls) {
        fprintf(stderr, "sluice-edge: neither --listen nor --listen-tls\n");
        return 2;
    }
    if (*listen_tls && (!*tls_cert || !*tls_key)) {
        fprintf(stderr, "sluice-edge: --listen-tls needs --tls-cert and --tls-key\n");
        return 2;
    }
    static struct cidr proxies[GUARD_ALLOW_MAX];
    const char *badp = NULL;
    e.nproxy_from = cidr_parse_list(proxy_from, proxies, GUARD_ALLOW_MAX, &badp);
    if (e.nproxy_from < 0 || (proxy && e.nproxy_from == 0)) {
        fprintf(stderr, "sluice-edge: --proxy-protocol needs --proxy-from CIDR,... (bad entry at \"%s\")\n",
                badp ? badp : "");
        return 2;
    }
    e.proxy_from = proxies;
    if (!strcmp(accept_mode, "reuseport")) {
        c->accept = EDGE_ACCEPT_REUSEPORT;
    } else if (!strcmp(accept_mode, "handoff")) {
        c->accept = EDGE_ACCEPT_HANDOFF;
    } else {
        fprintf(stderr, "sluice-edge: bad --accept %s (reuseport or handoff)\n", accept_mode);
        return 2;
    }
    static char idbuf[320];
    if (!edge_id || !*edge_id) {
        char host[256] = "localhost";
        gethostname(host, sizeof host - 1);
        const char *port = strrchr(*listen ? listen : listen_tls, ':');
        snprintf(idbuf, sizeof idbuf, "%s:%s", host, port ? port + 1 : "7000");
        edge_id = idbuf;
    }
    c->edge_id = edge_id;
    e.trust = trust_new();
    if (!e.trust)
        return 1;
    if (!*secret_file && secret_from_env(e.trust) != 0)
        return 2;
    wipe_env("SLUICE_FLEET_SECRET"); /* also when --secret-file made it unused */
    if (*listen_tls) {
        char err[300];
        e.tls = tls_new(
            &(struct tls_files){
                .cert = tls_cert, .key = tls_key, .client_ca = tls_ca, .ticket_keys = tls_tickets},
            err, sizeof err);
        if (!e.tls) {
            fprintf(stderr, "sluice-edge: TLS: %s\n", err);
            return 2;
        }
    }
    struct reload *rl = reload_new(&e, &(struct reload_files){.secret = secret_file,
                                                              .deny = deny_file,
                                                              .tls_cert = tls_cert,
                                                              .tls_key = tls_key,
                                                              .tls_client_ca = tls_ca,
                                                              .tls_ticket_keys = tls_tickets});
    if (!rl)
        return 2;
    if (load_curve(c, curve_key, persister_key, notifier_key) != 0)
        return 2;
    c->persister_push = pp;
    c->persister_router = pr;
    c->notifier_push = np;
    c->notifier_router = nr;
    /* One worker per CPU this process may use (affinity mask, container CPU
     * quota), not per CPU of the host. */
    unsigned ncpu = sysres_cpus();
    c->workers = workers > 0 ? (uint32_t)workers : (ncpu > EDGE_MAX_WORKERS ? EDGE_MAX_WORKERS : ncpu);
    c->max_frame = (uint32_t)max_frame;
    c->hb_s = (uint32_t)hb;
    c->hello_timeout_ms = (uint32_t)hello_ms;
    c->hello_timeout_min_ms = (uint32_t)(hello_min_ms < hello_ms ? hello_min_ms : hello_ms);
    c->hello_max = (uint32_t)(hello_max < max_frame ? hello_max : max_frame);
    c->early_max = (uint32_t)early_max;
    c->device_rate = dev_rate;
    c->device_burst = dev_burst;
    c->device_hold_max_ms = (uint32_t)hold_max;
    c->idle_timeout_ms = idle_ms > 0 ? (uint32_t)idle_ms : SL_IDLE_FACTOR * c->hb_s * 1000u;
    c->max_conns = (uint32_t)max_conns;
    c->out_cap = (uint32_t)out_cap;
    c->read_bufs = (uint32_t)read_bufs;
    c->out_pool_mb = (uint32_t)out_pool;
    c->zmq_hwm = (int)hwm;
    c->ntf_window_ms = (uint32_t)ntf_window;
    c->zmq_max_msg = max_msg;
    c->drain_rate = drain_rate > 0 ? drain_rate : 1000;
    c->drain_timeout_ms = (uint32_t)drain_timeout;
    c->record_path = record;
    c->record_devices = record_devs;
    c->record_max_bytes = (uint64_t)record_mb << 20;
    if (getrandom(&e.incarnation, sizeof e.incarnation, 0) != sizeof e.incarnation) {
        fprintf(stderr, "sluice-edge: getrandom failed\n");
        return 1;
    }

    /* Signals go to this thread only (a signalfd below); workers inherit
     * the mask. SIGHUP reloads (its default would kill the process). */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        fprintf(stderr, "sluice-edge: signalfd: %s\n", strerror(errno));
        return 1;
    }

    /* Warm up libcrypto before any device arrives. OpenSSL 3 loads its
     * providers and fetches the SHA-256/HMAC implementations lazily, on the
     * first use: about 2 MiB and some milliseconds, which would otherwise
     * land on the first device's hello (and its worker's whole loop). A
     * throwaway key and device, so nothing derived from the fleet secret is
     * left on the stack. */
    char warm[SL_TOKEN_HEX + 1];
    token_compute((const uint8_t *)"warmup", 6, (const uint8_t *)"warmup", 6, warm);
    (void)warm;

    /* One fd per device: take the whole hard limit, and say so when even
     * that cannot hold --max-conns (the rest is refused with err busy only
     * while fds last; beyond, accept fails with EMFILE). */
    uint64_t nofile = sysres_raise_nofile();
    if (nofile < (uint64_t)c->max_conns + 256)
        log_warn("event=nofile_low nofile=%llu max_conns=%u need=%u", (unsigned long long)nofile,
                 c->max_conns, c->max_conns + 256);
    /* Every refusal (edge full, no slot, a handed-over connection never
     * adopted) sends the same err{busy}: encoded once, here. */
    enum sl_err busy_code = SL_BUSY;
    struct msg busy = msg_err(&busy_code, "edge full: reconnect later");
    size_t busy_len = 0;
    if (msg_encode_frame(&busy, e.busy, sizeof e.busy, &busy_len) != SL_OK) {
        fprintf(stderr, "sluice-edge: cannot encode err{busy}\n");
        return 1;
    }
    e.busy_len = (uint32_t)busy_len;
    struct guard_cfg gc = {
        .slots = c->max_conns,
        .source_conns = (uint32_t)src_conns,
        .source_early = (uint32_t)src_early,
        .source_rate = src_rate,
        .source_burst = src_burst < 1 ? 1 : src_burst,
        .source_fails = (uint32_t)src_fails,
        .device_ends = (uint32_t)dev_flaps,
        .ban_min_ms = (uint32_t)ban_min,
        .ban_max_ms = (uint32_t)(ban_max > ban_min ? ban_max : ban_min),
        .accept_rate = acc_rate,
        .accept_burst = acc_burst,
    };
    const char *bad = NULL;
    gc.nallow = cidr_parse_list(allow_cidrs, gc.allow, GUARD_ALLOW_MAX, &bad);
    if (gc.nallow < 0) {
        fprintf(stderr, "sluice-edge: bad --allow-cidrs entry at \"%s\" (at most %d of a.b.c.d/n or x::/n)\n",
                bad, GUARD_ALLOW_MAX);
        return 2;
    }
    e.guard = guard_new(&gc);
    e.zctx = zmq_ctx_new();
    e.map = devmap_new(c->workers, c->max_conns);
    e.r_pp = zmqx_resolver_new(pp, 5000);
    e.r_pr = zmqx_resolver_new(pr, 5000);
    e.r_np = zmqx_resolver_new(np, 5000);
    e.r_nr = zmqx_resolver_new(nr, 5000);
    if (!e.guard || !e.zctx || !e.map || !e.r_pp || !e.r_pr || !e.r_np || !e.r_nr) {
        log_error("event=startup_failed err=\"init (endpoints or memory)\"");
        return 1;
    }
    if (*c->record_path && !(e.rec = record_new(c)))
        return 1;
    e.nworkers = c->workers;
    for (uint32_t i = 0; i < c->workers; i++) {
        e.workers[i] = worker_new(&e, i);
        if (!e.workers[i])
            return 1;
    }
    struct acceptor *acc = NULL;
    if (c->accept == EDGE_ACCEPT_HANDOFF && !(acc = acceptor_new(&e)))
        return 1;
    stats_init(&e, acc);
    if (admin_token && *admin_token &&
        metrics_set_admin(admin_token, strlen(admin_token), admin_shed, &e) != 0)
        return 1;
    if (metrics_addr && *metrics_addr && metrics_start(metrics_addr) != 0)
        return 1;
    for (uint32_t i = 0; i < c->workers; i++)
        if (worker_start(e.workers[i]) != 0) {
            log_error("event=startup_failed err=\"thread\"");
            return 1;
        }
    if (acc && acceptor_start(acc) != 0) {
        log_error("event=startup_failed err=\"thread\"");
        return 1;
    }
    log_info("event=start edge=%s listen=%s listen_tls=%s proxy=%d accept=%s workers=%u max_conns=%u "
             "incarnation=%llu nofile=%llu curve=%s",
             c->edge_id, c->listen, c->listen_tls, proxy, accept_mode, c->workers, c->max_conns,
             (unsigned long long)e.incarnation, (unsigned long long)nofile, c->curve ? "on" : "off");

    /* Main's loop: signals, changed files, and every 200 ms readiness. */
    int sig = 0;
    uint64_t next_tick = 0;
    while (!sig) {
        struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN}, {.fd = reload_fd(rl), .events = POLLIN}};
        int rc = poll(pf, pf[1].fd >= 0 ? 2 : 1, 200);
        struct signalfd_siginfo si;
        while (rc > 0 && (pf[0].revents & POLLIN) && read(sfd, &si, sizeof si) == sizeof si) {
            if (si.ssi_signo == SIGHUP)
                reload_now(rl, "sighup");
            else
                sig = (int)si.ssi_signo;
        }
        if (rc > 0 && pf[1].fd >= 0 && (pf[1].revents & POLLIN))
            reload_now(rl, "inotify");
        uint64_t now = loop_clock_ms();
        if (now >= next_tick) {
            next_tick = now + 200;
            report_readiness(&e, acc);
            reload_tick(rl);
        }
    }
    metrics_set_ready_detail("draining");
    metrics_set_ready(false);
    log_info("event=drain_begin signal=%d open=%u drain_rate=%.0f timeout_ms=%u", sig,
             atomic_load(&e.open_total), c->drain_rate, c->drain_timeout_ms);
    atomic_store(&e.drain_deadline_ms, loop_clock_ms() + c->drain_timeout_ms);
    /* Stop accepting before draining, so no connection is handed to a
     * worker after it has seen its last one close. (reuseport: each
     * worker closes its own listener on its next tick.) */
    if (acc)
        acceptor_stop(acc);
    atomic_store(&e.draining, true);
    for (uint32_t i = 0; i < e.nworkers; i++)
        worker_notify(e.workers[i]);
    for (uint32_t i = 0; i < e.nworkers; i++)
        worker_join(e.workers[i]);
    uint32_t left = atomic_load(&e.open_total);
    stats_fini(); /* the workers go next: scrapes keep the last sums, /readyz stays "draining" */
    acceptor_destroy(&acc);
    for (uint32_t i = 0; i < e.nworkers; i++)
        worker_destroy(&e.workers[i]);
    record_destroy(&e.rec); /* after the workers' last closes: flush, END, fdatasync */
    metrics_stop();
    zmqx_resolver_destroy(&e.r_pp);
    zmqx_resolver_destroy(&e.r_pr);
    zmqx_resolver_destroy(&e.r_np);
    zmqx_resolver_destroy(&e.r_nr);
    zmq_ctx_term(e.zctx);
    devmap_destroy(&e.map);
    guard_destroy(&e.guard);
    reload_destroy(&rl);
    trust_destroy(&e.trust);
    tls_destroy(&e.tls);
    close(sfd);
    log_info("event=exit open_at_exit=%u", left);
    return 0;
}
