/* SPDX-License-Identifier: Apache-2.0 */
/* devsim.c - sluice-devsim: simulate N devices against Sluice edges.
 *
 * The parent parses options, splits the devices over K worker processes
 * (one process may hold at most 20,000 fds here), forks them
 * (devsim_worker.c runs the devices with the device library), prints a
 * progress line once a second from the workers' snapshots, and at the end
 * prints and writes a JSON summary and, with --verify, checks PostgreSQL:
 * every acked seq of every device is in telemetry or telemetry_rejected
 * exactly once.
 *
 * Exit: 0 if every message sent was acked, at least one device was
 * welcomed (and verify passed when asked), 1 otherwise, 2 on a usage or
 * setup error. The parent does not talk to the
 * edges itself. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "devsim.h"
#include "sl/client.h"
#include "sl/loop.h"
#include "sl/cfg.h"
#include "sl/limits.h"
#include "sl/log.h"
#include "sl/msg.h"
#include "sl/secfile.h"

#define FDS_PER_WORKER 18000u /* connections per process, under the 20,000 fd limit */
#define SECRET_MAX     4096

static volatile int devsim_stop; /* see worker_cfg.stop */

static void on_signal(int sig)
{
    (void)sig;
    devsim_stop++;
}

/* In a worker: SIGUSR1 (the parent's first stop) = stop sending and drain,
 * SIGTERM = quit now. SIGINT is ignored there: a terminal's Ctrl-C reaches
 * the whole process group, and the parent decides. */
static void on_worker_signal(int sig)
{
    if (sig == SIGTERM)
        devsim_stop = 2;
    else if (devsim_stop == 0)
        devsim_stop = 1;
}

static void worker_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_worker_signal;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGINT, SIG_IGN);
}

/* JSON string body: quotes, backslashes and control bytes escaped. */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

struct opts {
    const char *edges, *prefix, *secret_file, *secret, *src_ips, *state_dir, *verify, *json, *log_level;
    const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
    int64_t devices, body_size, window, procs, messages, ack_timeout_ms;
    double rate, ramp, duration, drain_s;
};

struct totals {
    uint64_t connected, queued, acked, frames, resent, disconnects, errors, backpressure;
    uint64_t tls_handshakes, tls_resumed;
    uint64_t first_welcome_ms, last_welcome_ms; /* over all workers; 0 = none */
    struct hist lat;
};

static void sum_snaps(const struct snap *snaps, uint32_t k, struct totals *t)
{
    memset(t, 0, sizeof *t);
    for (uint32_t i = 0; i < k; i++) {
        const struct snap *s = &snaps[i];
        t->connected += s->connected;
        t->queued += s->queued;
        t->acked += s->acked;
        t->frames += s->frames;
        t->resent += s->resent;
        t->disconnects += s->disconnects;
        t->errors += s->errors;
        t->backpressure += s->backpressure;
        t->tls_handshakes += s->tls_handshakes;
        t->tls_resumed += s->tls_resumed;
        if (s->first_welcome_ms && (t->first_welcome_ms == 0 || s->first_welcome_ms < t->first_welcome_ms))
            t->first_welcome_ms = s->first_welcome_ms;
        if (s->last_welcome_ms > t->last_welcome_ms)
            t->last_welcome_ms = s->last_welcome_ms;
        for (uint32_t b = 0; b < HIST_N; b++)
            t->lat.n[b] += s->lat.n[b];
    }
}

static void progress(const struct totals *now, const struct totals *prev, double elapsed, uint64_t devices,
                     bool tty)
{
    struct hist d;
    for (uint32_t b = 0; b < HIST_N; b++)
        d.n[b] = now->lat.n[b] - prev->lat.n[b];
    char line[512];
    snprintf(line, sizeof line,
             "t=%.0fs connected=%" PRIu64 "/%" PRIu64 " sent/s=%" PRIu64 " acked/s=%" PRIu64 " sent=%" PRIu64
             " acked=%" PRIu64 " unacked=%" PRIu64 " p50=%.2fms p99=%.2fms reconnects=%" PRIu64
             " errors=%" PRIu64,
             elapsed, now->connected, devices, now->queued - prev->queued, now->acked - prev->acked,
             now->queued, now->acked, now->queued - now->acked, (double)hist_quantile(&d, 0.5) / 1000.0,
             (double)hist_quantile(&d, 0.99) / 1000.0, now->disconnects, now->errors);
    if (tty)
        fprintf(stderr, "\r%s\033[K", line);
    else
        fprintf(stderr, "%s\n", line);
}

/* ---- verify ---- */

struct vres {
    bool done, ok;
    int64_t missing, dups, found, bad_devices;
    char err[256];
};

static int copy_line(PGconn *pg, const char *s)
{
    return PQputCopyData(pg, s, (int)strlen(s)) == 1 ? 0 : -1;
}

static int exec_ok(PGconn *pg, const char *sql, ExecStatusType want, struct vres *v)
{
    PGresult *r = PQexec(pg, sql);
    int ok = PQresultStatus(r) == want;
    if (!ok)
        snprintf(v->err, sizeof v->err, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

static int copy_end(PGconn *pg, struct vres *v)
{
    if (PQputCopyEnd(pg, NULL) != 1)
        return -1;
    PGresult *r;
    int rc = 0;
    while ((r = PQgetResult(pg)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            snprintf(v->err, sizeof v->err, "%s", PQresultErrorMessage(r));
            rc = -1;
        }
        PQclear(r);
    }
    return rc;
}

/* Load the workers' records into temp tables and count, per device, the
 * acked seqs found in telemetry + telemetry_rejected. */
static void verify(const char *dsn, const char *prefix, char **rec_paths, uint32_t k, struct vres *v)
{
    v->done = true;
    PGconn *pg = PQconnectdb(dsn);
    if (PQstatus(pg) != CONNECTION_OK) {
        snprintf(v->err, sizeof v->err, "%s", PQerrorMessage(pg));
        PQfinish(pg);
        return;
    }
    if (exec_ok(pg,
                "CREATE TEMP TABLE devsim_r (device_id text PRIMARY KEY, lo bigint, hi bigint, acked bigint);"
                "CREATE TEMP TABLE devsim_u (device_id text, seq bigint)",
                PGRES_COMMAND_OK, v) != 0)
        goto out;
    for (int pass = 0; pass < 2; pass++) {
        if (exec_ok(pg, pass == 0 ? "COPY devsim_r FROM STDIN" : "COPY devsim_u FROM STDIN", PGRES_COPY_IN,
                    v) != 0)
            goto out;
        for (uint32_t i = 0; i < k; i++) {
            FILE *f = fopen(rec_paths[i], "rb");
            if (f == NULL)
                continue;
            struct dev_rec r;
            uint64_t un[4096];
            char line[256];
            while (fread(&r, sizeof r, 1, f) == 1) {
                if (r.n_unacked > 4096 || fread(un, sizeof un[0], r.n_unacked, f) != r.n_unacked)
                    break;
                if (r.lo == 0)
                    continue; /* sent nothing */
                if (pass == 0) {
                    snprintf(line, sizeof line, "%s-%u\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\n", prefix,
                             r.idx, r.lo, r.hi, r.acked);
                    copy_line(pg, line);
                } else {
                    for (uint32_t j = 0; j < r.n_unacked; j++) {
                        snprintf(line, sizeof line, "%s-%u\t%" PRIu64 "\n", prefix, r.idx, un[j]);
                        copy_line(pg, line);
                    }
                }
            }
            fclose(f);
        }
        if (copy_end(pg, v) != 0)
            goto out;
    }
    exec_ok(pg, "ANALYZE devsim_r; ANALYZE devsim_u", PGRES_COMMAND_OK, v);
    PGresult *res = PQexec(
        pg,
        "WITH p AS ("
        "  SELECT t.device_id, t.seq FROM telemetry t JOIN devsim_r r"
        "    ON r.device_id = t.device_id AND t.seq >= r.lo AND t.seq < r.hi"
        "  UNION ALL"
        "  SELECT x.device_id, x.seq FROM telemetry_rejected x JOIN devsim_r r"
        "    ON r.device_id = x.device_id AND x.seq >= r.lo AND x.seq < r.hi"
        "), q AS ("
        "  SELECT p.* FROM p WHERE NOT EXISTS"
        "    (SELECT 1 FROM devsim_u u WHERE u.device_id = p.device_id AND u.seq = p.seq)"
        "), c AS (SELECT device_id, count(*) AS n, count(DISTINCT seq) AS d FROM q GROUP BY device_id)"
        " SELECT coalesce(sum(r.acked - coalesce(c.d, 0)), 0),"
        "        coalesce(sum(coalesce(c.n, 0) - coalesce(c.d, 0)), 0),"
        "        coalesce(sum(coalesce(c.d, 0)), 0),"
        "        count(*) FILTER (WHERE r.acked <> coalesce(c.d, 0) OR coalesce(c.n, 0) <> coalesce(c.d, 0))"
        " FROM devsim_r r LEFT JOIN c USING (device_id)");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(v->err, sizeof v->err, "%s", PQresultErrorMessage(res));
        PQclear(res);
        goto out;
    }
    v->missing = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    v->dups = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    v->found = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    v->bad_devices = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    PQclear(res);
    v->ok = v->missing == 0 && v->dups == 0 && v->bad_devices == 0;
out:
    PQfinish(pg);
}

/* ---- main ---- */

/* "name":{"acks":N,"p50":ms,...}, */
static void json_latency(FILE *f, const char *name, const struct hist *h)
{
    fprintf(
        f, "\"%s\":{\"acks\":%" PRIu64 ",\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},",
        name, hist_total(h), (double)hist_quantile(h, 0.5) / 1000.0, (double)hist_quantile(h, 0.9) / 1000.0,
        (double)hist_quantile(h, 0.99) / 1000.0, (double)hist_quantile(h, 0.999) / 1000.0,
        (double)hist_quantile(h, 1.0) / 1000.0);
}

/* ramp: the connect ramp's latencies (ramp_second); the rest came after. */
static void json_summary(FILE *f, const struct opts *o, uint32_t k, const struct totals *t,
                         const struct hist *ramp, double secs, uint64_t t0, const struct vres *v, bool ok)
{
    fprintf(f,
            "{\"devices\":%" PRId64 ",\"procs\":%u,\"duration_s\":%.3f,\"sent\":%" PRIu64
            ",\"acked\":%" PRIu64 ",\"unacked\":%" PRIu64 ",\"frames\":%" PRIu64 ",\"resent\":%" PRIu64
            ",\"reconnects\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"backpressure\":%" PRIu64
            ",\"acked_per_s\":%.1f,",
            o->devices, k, secs, t->queued, t->acked, t->queued - t->acked, t->frames, t->resent,
            t->disconnects, t->errors, t->backpressure, secs > 0 ? (double)t->acked / secs : 0.0);
    json_latency(f, "latency_ms", &t->lat);
    struct hist after;
    hist_sub(&after, &t->lat, ramp);
    json_latency(f, "latency_ms_ramp", ramp);
    json_latency(f, "latency_ms_after_ramp", &after);
    /* Welcomes, ms after the start: the last one is when every device
     * that connected was in (a reconnect storm's length). */
    fprintf(f, "\"welcome_ms\":{\"first\":%" PRId64 ",\"last\":%" PRId64 "},",
            t->first_welcome_ms ? (int64_t)(t->first_welcome_ms - t0) : -1,
            t->last_welcome_ms ? (int64_t)(t->last_welcome_ms - t0) : -1);
    if (o->tls_ca[0])
        fprintf(f, "\"tls\":{\"handshakes\":%" PRIu64 ",\"resumed\":%" PRIu64 "},", t->tls_handshakes,
                t->tls_resumed);
    else
        fputs("\"tls\":null,", f);
    if (v->done)
        fprintf(f,
                "\"verify\":{\"ok\":%s,\"found\":%" PRId64 ",\"missing\":%" PRId64 ",\"duplicates\":%" PRId64
                ",\"bad_devices\":%" PRId64 ",\"error\":",
                v->ok ? "true" : "false", v->found, v->missing, v->dups, v->bad_devices);
    if (v->done) {
        json_str(f, v->err);
        fputs("},", f);
    } else
        fprintf(f, "\"verify\":null,");
    fprintf(f, "\"ok\":%s}\n", ok ? "true" : "false");
}

int main(int argc, char **argv)
{
    struct opts o;
    memset(&o, 0, sizeof o);
    const struct cfg_opt opts[] = {
        {"edges", CFG_STR, &o.edges, "127.0.0.1:7000",
         "edge addresses host:port,host:port (devices spread over them)", 0, 0},
        {"devices", CFG_INT, &o.devices, "1000", "number of simulated devices", 1, 10000000},
        {"rate", CFG_DOUBLE, &o.rate, "1", "messages per second per device (0: as fast as the window allows)",
         0, 0},
        {"body-size", CFG_INT, &o.body_size, "64", "body bytes per message (a msgpack bin)", 3, 60000},
        {"window", CFG_INT, &o.window, "16", "max unacked messages per device", 1, 4096},
        {"ramp", CFG_DOUBLE, &o.ramp, "5000",
         "new connections per second, all workers together (0: all at once)", 0, 0},
        {"duration", CFG_DOUBLE, &o.duration, "0",
         "seconds of sending (default 10; with --messages: no limit unless given)", 0, 0},
        {"messages", CFG_INT, &o.messages, "0", "messages per device, then stop (0: use --duration)", 0,
         INT64_MAX},
        {"drain-s", CFG_DOUBLE, &o.drain_s, "30", "after sending stops, wait at most this long for acks", 0,
         0},
        {"ack-timeout-ms", CFG_INT, &o.ack_timeout_ms, "10000",
         "resend unacked after this on the same connection", 100, 3600000},
        {"prefix", CFG_STR, &o.prefix, "sim", "device ids are <prefix>-<n>", 0, 0},
        {"secret-file", CFG_STR, &o.secret_file, NULL,
         "file holding the fleet secret (one trailing newline dropped)", 0, 0},
        {"fleet-secret", CFG_STR, &o.secret, NULL,
         "the fleet secret itself (prefer the SLUICE_FLEET_SECRET env var)", 0, 0},
        {"src-ips", CFG_STR, &o.src_ips, "",
         "source addresses A-B, e.g. 127.0.0.2-127.0.0.250 (\"\": kernel's choice)", 0, 0},
        {"procs", CFG_INT, &o.procs, "0", "worker processes (0: one per 18,000 devices)", 0, 256},
        {"state-dir", CFG_STR, &o.state_dir, "",
         "keep each device's next seq in DIR/<prefix>.seq (\"\": seqs from the clock)", 0, 0},
        {"verify", CFG_STR, &o.verify, "",
         "libpq DSN: at the end check every acked seq is stored exactly once", 0, 0},
        {"json", CFG_STR, &o.json, "", "write the final JSON summary to this file too", 0, 0},
        {"log-level", CFG_STR, &o.log_level, "info", "debug, info, warn, error", 0, 0},
        {"tls-ca", CFG_STR, &o.tls_ca, "",
         "speak TLS: PEM CA file the edges' certificates must chain to (\"\": plain TCP)", 0, 0},
        {"tls-cert", CFG_STR, &o.tls_cert, "",
         "PEM client certificate for edges with mutual TLS, one for every device: it must name each "
         "device id (CN or a SAN), so for load tests run such edges without --tls-client-ca",
         0, 0},
        {"tls-key", CFG_STR, &o.tls_key, "", "PEM private key of --tls-cert", 0, 0},
        {"tls-server-name", CFG_STR, &o.tls_server_name, "",
         "name the edges' certificates must carry, DNS name or IP (\"\": the host of each --edges entry)", 0,
         0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]);
    cfg_parse(opts, nopts, argc, argv,
              "sluice-devsim: simulate devices sending telemetry to Sluice edges, using the device library.\n"
              "Prints a progress line every second on stderr and a JSON summary on stdout at the end.\n"
              "Exit 0 only if every message sent was acked, some device was welcomed (and --verify passed).");
    if (log_init_flag("devsim", o.log_level) != 0)
        return 2;

    static uint8_t secret[SECRET_MAX];
    long slen = -1;
    if (o.secret_file && o.secret_file[0]) {
        slen = secret_read(o.secret_file, secret, sizeof secret);
        if (slen < 0) {
            fprintf(stderr, "sluice-devsim: cannot read --secret-file %s\n", o.secret_file);
            return 2;
        }
        secfile_check(o.secret_file, "secret-file"); /* warns if other users may read it */
    } else if (o.secret && o.secret[0]) {
        slen = (long)strlen(o.secret);
        if (slen > SECRET_MAX)
            slen = SECRET_MAX;
        memcpy(secret, o.secret, (size_t)slen);
    } else {
        fprintf(stderr, "sluice-devsim: no fleet secret: set --secret-file or SLUICE_FLEET_SECRET\n");
        return 2;
    }
    struct ip_range src;
    if (ip_range_parse(o.src_ips, &src) != 0) {
        fprintf(stderr, "sluice-devsim: bad --src-ips %s (want A or A-B)\n", o.src_ips);
        return 2;
    }
    char probe[SL_DEV_MAX + 16];
    int pl = snprintf(probe, sizeof probe, "%s-%" PRId64, o.prefix, o.devices);
    if (pl <= 0 || (size_t)pl > SL_DEV_MAX || !msg_valid_id((const uint8_t *)probe, (size_t)pl)) {
        fprintf(stderr, "sluice-devsim: --prefix %s makes invalid device ids\n", o.prefix);
        return 2;
    }
    if (o.state_dir[0] && mkdir(o.state_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "sluice-devsim: cannot create --state-dir %s\n", o.state_dir);
        return 2;
    }
    if (o.duration <= 0 && o.messages == 0)
        o.duration = 10;
    /* One TLS context for every device, loaded here so a bad file is a
     * usage error before anything starts; the workers inherit it. Buffers
     * released while idle: thousands of connections per process. */
    struct sl_tls *tls = NULL;
    if (o.tls_ca[0]) {
        struct sl_tls_config tc = {
            .ca_file = o.tls_ca, .cert_file = o.tls_cert, .key_file = o.tls_key, .release_buffers = true};
        enum sl_err terr;
        char why[256] = "";
        if ((tls = sl_tls_new(&tc, &terr, why, sizeof why)) == NULL) {
            fprintf(stderr, "sluice-devsim: TLS: %s\n", why);
            return 2;
        }
    } else if (o.tls_cert[0] || o.tls_key[0] || o.tls_server_name[0]) {
        fprintf(stderr, "sluice-devsim: --tls-cert, --tls-key and --tls-server-name need --tls-ca\n");
        return 2;
    }
    uint32_t n_edges = 1;
    for (const char *p = o.edges; *p; p++)
        n_edges += *p == ',';
    uint32_t k =
        o.procs > 0 ? (uint32_t)o.procs : (uint32_t)((o.devices + FDS_PER_WORKER - 1) / FDS_PER_WORKER);
    if (k > o.devices)
        k = (uint32_t)o.devices;
    if ((uint64_t)o.devices / k >= 19900)
        log_warn("event=config msg=\"more than 19,900 devices per process will hit the fd limit\" procs=%u",
                 k);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char tmpl[] = "/tmp/sluice-devsim-XXXXXX";
    if (mkdtemp(tmpl) == NULL) {
        fprintf(stderr, "sluice-devsim: mkdtemp: %s\n", strerror(errno));
        return 2;
    }
    char **rec_paths = calloc(k, sizeof *rec_paths);
    int *pipes = calloc(k, sizeof *pipes);
    pid_t *pids = calloc(k, sizeof *pids);
    struct snap *snaps = calloc(k, sizeof *snaps);
    bool *finals = calloc(k, sizeof *finals);
    if (!rec_paths || !pipes || !pids || !snaps || !finals)
        return 2;
    log_info("event=start devices=%" PRId64 " procs=%u edges=%s rate=%g window=%" PRId64 " body=%" PRId64,
             o.devices, k, o.edges, o.rate, o.window, o.body_size);
    uint64_t t0 = loop_clock_ms();
    pid_t parent = getpid(); /* for the children's check after PR_SET_PDEATHSIG */
    for (uint32_t i = 0; i < k; i++) {
        int pfd[2];
        if (asprintf(&rec_paths[i], "%s/w%u.rec", tmpl, i) < 0 || pipe(pfd) != 0)
            return 2;
        struct worker_cfg wc;
        memset(&wc, 0, sizeof wc);
        wc.worker = i;
        wc.first = (uint32_t)((uint64_t)o.devices * i / k);
        wc.count = (uint32_t)((uint64_t)o.devices * (i + 1) / k) - wc.first;
        wc.edges = o.edges;
        wc.n_edges = n_edges;
        wc.tls = tls;
        wc.tls_server_name = o.tls_server_name[0] ? o.tls_server_name : NULL;
        wc.prefix = o.prefix;
        wc.secret = secret;
        wc.secret_len = (size_t)slen;
        wc.rate = o.rate;
        wc.body_size = (uint32_t)o.body_size;
        wc.window = (uint32_t)o.window;
        wc.ack_timeout_ms = (uint32_t)o.ack_timeout_ms;
        wc.ramp = o.ramp / k;
        wc.duration_s = o.duration;
        wc.messages = (uint64_t)o.messages;
        wc.drain_s = o.drain_s;
        wc.src = src;
        wc.state_dir = o.state_dir[0] ? o.state_dir : NULL;
        wc.records_path = rec_paths[i];
        wc.pipe_fd = pfd[1];
        wc.t0_ms = t0;
        wc.stop = &devsim_stop;
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "sluice-devsim: fork: %s\n", strerror(errno));
            return 2;
        }
        if (pid == 0) {
            worker_signals();
            /* A worker must not outlive the parent (killed with SIGKILL, say):
             * it would go on loading the edges with nobody to stop it. SIGTERM
             * is "quit now" in a worker. A parent that died before prctl()
             * sends nothing, so compare getppid() with the pid saved before
             * fork() to close that window. */
            if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
                _exit(2);
            close(pfd[0]);
            for (uint32_t j = 0; j < i; j++)
                close(pipes[j]);
            _exit(worker_run(&wc));
        }
        close(pfd[1]);
        pipes[i] = pfd[0];
        pids[i] = pid;
    }

    /* Progress: one line a second from the latest snapshot of each worker. */
    bool tty = isatty(STDERR_FILENO);
    struct totals prev, cur;
    memset(&prev, 0, sizeof prev);
    struct ramp ramp;
    memset(&ramp, 0, sizeof ramp);
    uint32_t open_pipes = k;
    uint64_t next_line = t0 + 1000;
    int forwarded = 0;
    struct pollfd *pf = calloc(k, sizeof *pf);
    while (open_pipes > 0) {
        if (devsim_stop > forwarded) {
            /* first stop: drain; second: quit now */
            for (uint32_t i = 0; i < k; i++)
                if (pipes[i] >= 0)
                    kill(pids[i], devsim_stop >= 2 ? SIGTERM : SIGUSR1);
            forwarded = devsim_stop;
        }
        uint64_t now = loop_clock_ms();
        int timeout = now >= next_line ? 0 : (int)(next_line - now);
        for (uint32_t i = 0; i < k; i++) {
            pf[i].fd = pipes[i];
            pf[i].events = POLLIN;
            pf[i].revents = 0;
        }
        int n = poll(pf, k, timeout);
        if (n < 0 && errno != EINTR)
            break;
        for (uint32_t i = 0; n > 0 && i < k; i++) {
            if (pipes[i] < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            struct snap s;
            ssize_t r = read(pipes[i], &s, sizeof s);
            if (r == (ssize_t)sizeof s) {
                snaps[i] = s;
                if (s.final)
                    finals[i] = true;
            } else if (r == 0 || (r < 0 && errno != EINTR)) {
                close(pipes[i]);
                pipes[i] = -1;
                open_pipes--;
            }
        }
        now = loop_clock_ms();
        if (now >= next_line) {
            sum_snaps(snaps, k, &cur);
            progress(&cur, &prev, (double)(now - t0) / 1000.0, (uint64_t)o.devices, tty);
            ramp_second(&ramp, &cur.lat, cur.connected, (uint64_t)o.devices);
            prev = cur;
            next_line += 1000;
            if (next_line <= now)
                next_line = now + 1000;
        }
    }
    if (tty)
        fputc('\n', stderr);
    bool workers_ok = true;
    for (uint32_t i = 0; i < k; i++) {
        int st = 0;
        waitpid(pids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !finals[i]) {
            workers_ok = false;
            log_warn("event=worker_end worker=%u status=%d final=%d", i, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                     finals[i]);
        }
    }
    double secs = (double)(loop_clock_ms() - t0) / 1000.0;
    sum_snaps(snaps, k, &cur);

    struct vres v;
    memset(&v, 0, sizeof v);
    if (o.verify[0]) {
        verify(o.verify, o.prefix, rec_paths, k, &v);
        if (v.err[0])
            log_error("event=verify err=%s", v.err);
        else
            log_info("event=verify ok=%d found=%" PRId64 " missing=%" PRId64 " duplicates=%" PRId64
                     " bad_devices=%" PRId64,
                     v.ok, v.found, v.missing, v.dups, v.bad_devices);
    }
    /* No device ever welcomed (edges down, a TLS or token problem) is a
     * failure, even though nothing was left unacked. */
    if (cur.first_welcome_ms == 0)
        log_error("event=never_welcomed msg=\"no device was ever welcomed\"");
    bool ok = workers_ok && cur.acked == cur.queued && cur.first_welcome_ms != 0 && (!o.verify[0] || v.ok);
    json_summary(stdout, &o, k, &cur, &ramp.lat, secs, t0, &v, ok);
    fflush(stdout);
    if (o.json[0]) {
        FILE *f = fopen(o.json, "w");
        if (f) {
            json_summary(f, &o, k, &cur, &ramp.lat, secs, t0, &v, ok);
            fclose(f);
        } else {
            log_error("event=json_write path=%s", o.json);
        }
    }
    for (uint32_t i = 0; i < k; i++) {
        unlink(rec_paths[i]);
        free(rec_paths[i]);
    }
    rmdir(tmpl);
    free(rec_paths);
    free(pipes);
    free(pids);
    free(snaps);
    free(finals);
    free(pf);
    sl_tls_destroy(&tls);
    return ok ? 0 : 1;
}
