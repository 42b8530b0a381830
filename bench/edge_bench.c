/* edge_bench.c - benchmark of one sluice-edge (not a test).
 *
 * It starts the edge itself (--edge-bin), plays an instant persister in a
 * thread (PULL + ROUTER: every data entry is acked at once through the
 * ROUTER path), and drives devices over TCP from this process:
 *
 *   idle  --conns N : N authenticated idle connections (source addresses
 *                     spread over 127.0.0.2..), edge RSS before/after ->
 *                     bytes per connection.
 *   tput  --conns N --window W --seconds S : each connection keeps W data
 *                     frames in flight; prints acked frames/s, p50/p99.
 *   rate  --rate R ... : the same at a fixed total rate R frames/s, paced
 *                     every --tick-us (hrtimer sleeps), each write stamped.
 *   peer  : only the instant persister + a notifier sink, until SIGTERM
 *           (for edges started by hand, see bench/edge_scale.sh).
 *   idle --external 1 : only devices, against a running edge; prints
 *           "held N" and keeps them --hold seconds.
 *
 * --persister-bin PATH --db DSN: instead of the instant persister, start a
 * real sluice-persister (on BASE+1/+2, metrics on BASE+8, --persister-args
 * passed on) against PostgreSQL, wait until it is ready, and measure the
 * whole path: device -> edge -> persister -> COMMIT -> ack -> device, in
 * microseconds (bench/persister_e2e.py drives it). --warmup S runs the load
 * S seconds before measuring; --body-size N sends an N-byte msgpack bin body
 * (as sluice-devsim does) instead of {"temp":21.5}.
 *
 * --accept MODE is passed to the edge it starts. Its metrics listen on
 * BASE+9: once every device is welcomed the bench prints how many
 * connections each worker holds (sluice_edge_worker_connections_open).
 *
 * In tput/rate mode no notifier is bound: the edge sheds its data copies
 * (counted), the cheapest notifier; a real one adds one more PUSH per batch.
 *
 * --curve 1: CURVE on the edge's links (docs/security.md). The bench makes
 * the key pairs (zcert files in a temporary directory: the edge reads files),
 * runs the ZAP handler of sl/zap.h on its own context and binds the instant
 * persister and the notifier sink as CURVE servers, as the services do.
 * In idle/peer mode a notifier sink drains them, so the edge's bounded
 * notifier queue does not fill and count as per-connection memory. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <czmq.h>
#include <zmq.h>
#include "sl/envelope.h"
#include "sl/keys.h"
#include "sl/zap.h"
#include "sl/zmqx.h"
#include "sl/frame.h"
#include "sl/msg.h"
#include "sl/token.h"

static const char *SECRET = "bench-fleet-secret";
static int base_port = 21900;
static atomic_bool peer_stop;
static uint64_t incarnation_seen;

/* --curve 1: the services' key pairs (the edge's are files only). */
static bool curve;
static struct keys_pair persister_kp, notifier_kp;
static char keydir[64];

/* A CURVE server socket, as zmqx_socket makes one with .curve and .zap. */
static void curve_server(void *sock, const struct keys_pair *kp)
{
    int one = 1;
    if (!curve)
        return;
    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, kp->public_key, 40);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, kp->secret_key, 40);
    zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, ZMQX_ZAP_DOMAIN, strlen(ZMQX_ZAP_DOMAIN));
    zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one);
}

/* Save a new pair as keydir/NAME (+ _secret), into kp when not NULL. */
static void make_key(const char *name, const char *bound, struct keys_pair *kp)
{
    char path[128];
    zcert_t *c = zcert_new();
    if (bound)
        zcert_set_meta(c, KEYS_META_EDGE_ID, "%s", bound);
    snprintf(path, sizeof path, "%s/%s", keydir, name);
    if (zcert_save(c, path) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    if (kp) {
        snprintf(kp->public_key, sizeof kp->public_key, "%s", zcert_public_txt(c));
        snprintf(kp->secret_key, sizeof kp->secret_key, "%s", zcert_secret_txt(c));
    }
    zcert_destroy(&c);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- instant persister ---------------------------------------------- */
static void *peer_main(void *ctx)
{
    char ep[64];
    void *pull = zmq_socket(ctx, ZMQ_PULL), *router = zmq_socket(ctx, ZMQ_ROUTER);
    int to = 100, zero = 0;
    zmq_setsockopt(pull, ZMQ_RCVTIMEO, &to, sizeof to);
    zmq_setsockopt(router, ZMQ_SNDHWM, &zero, sizeof zero);
    curve_server(pull, &persister_kp);
    curve_server(router, &persister_kp);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", base_port + 1);
    zmq_bind(pull, ep);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", base_port + 2);
    zmq_bind(router, ep);
    size_t cap = 8u << 20;
    uint8_t *out = malloc(cap);
    while (!atomic_load(&peer_stop)) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, pull, 0) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        struct envelope_reader r;
        if (envelope_reader_begin(&r, zmq_msg_data(&m), zmq_msg_size(&m)) == SL_OK) {
            char reply[300];
            snprintf(reply, sizeof reply, "%.*s", (int)r.hdr.reply.n, r.hdr.reply.p);
            incarnation_seen = r.hdr.incarnation;
            struct envelope_hdr h = {.v = 1, .incarnation = r.hdr.incarnation};
            h.edge.p = (const uint8_t *)"bench";
            h.edge.n = 5;
            h.reply = h.edge;
            struct envelope_writer w;
            envelope_writer_begin(&w, out, cap, &h);
            struct envelope e;
            while (envelope_reader_next(&r, &e) == SL_OK) {
                if (e.kind != ENV_DATA)
                    continue;
                struct envelope a = {.kind = ENV_ACK,
                                     .slot = e.slot,
                                     .gen = e.gen,
                                     .dev = e.dev,
                                     .epoch = e.epoch,
                                     .seq = e.seq};
                envelope_writer_add(&w, &a);
            }
            if (w.count) {
                zmq_send(router, reply, strlen(reply), ZMQ_SNDMORE);
                zmq_send(router, out, envelope_writer_len(&w), 0);
            }
        }
        zmq_msg_close(&m);
    }
    zmq_close(pull);
    zmq_close(router);
    free(out);
    return NULL;
}

/* ---- notifier sink: drains the notifier PUSH, so the edge's bounded
 * notifier queue does not fill up and count towards its RSS ------------ */
static void *sink_main(void *ctx)
{
    char ep[64];
    void *pull = zmq_socket(ctx, ZMQ_PULL), *router = zmq_socket(ctx, ZMQ_ROUTER);
    int to = 100;
    zmq_setsockopt(pull, ZMQ_RCVTIMEO, &to, sizeof to);
    curve_server(pull, &notifier_kp);
    curve_server(router, &notifier_kp);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", base_port + 3);
    zmq_bind(pull, ep);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", base_port + 4);
    zmq_bind(router, ep);
    while (!atomic_load(&peer_stop)) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, pull, 0);
        zmq_msg_close(&m);
    }
    zmq_close(pull);
    zmq_close(router);
    return NULL;
}

static void on_stop(int sig)
{
    (void)sig;
    atomic_store(&peer_stop, true);
}

/* ---- devices ---------------------------------------------------------- */
struct dev {
    int fd;
    uint64_t next_seq;
    uint32_t inflight;
    struct frame_dec dec;
    uint8_t *dbuf;
    uint64_t sent_us[256]; /* by seq % 256, window <= 256 */
    int welcomed;
};

static int pack_hello(uint8_t *buf, const char *dev)
{
    char tok[65];
    token_compute((const uint8_t *)SECRET, strlen(SECRET), (const uint8_t *)dev, strlen(dev), tok);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "hello", 5);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_str_with_body(&pk, "dev", 3);
    msgpack_pack_str_with_body(&pk, dev, strlen(dev));
    msgpack_pack_str_with_body(&pk, "tok", 3);
    msgpack_pack_str_with_body(&pk, tok, 64);
    frame_encode_header(buf, (uint32_t)sb.size);
    memcpy(buf + 4, sb.data, sb.size);
    int n = (int)sb.size + 4;
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static int body_size; /* 0: {"temp":21.5}; else a bin of body_size bytes in all */

static int pack_data(uint8_t *buf, uint64_t seq)
{
    /* {"t":"data","seq":seq,"body":{"temp":21.5}} */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "data", 4);
    msgpack_pack_str_with_body(&pk, "seq", 3);
    msgpack_pack_uint64(&pk, seq);
    msgpack_pack_str_with_body(&pk, "body", 4);
    if (body_size > 0) {
        static const char filler[256] = {0};
        size_t n = (size_t)body_size - (body_size - 2 <= 255 ? 2u : 3u);
        msgpack_pack_bin_with_body(&pk, filler, n);
    } else {
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "temp", 4);
        msgpack_pack_double(&pk, 21.5);
    }
    frame_encode_header(buf, (uint32_t)sb.size);
    memcpy(buf + 4, sb.data, sb.size);
    int n = (int)sb.size + 4;
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static int src_base;

static int dial(int i, int nsrc)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)src_base + (uint32_t)(i % nsrc));
    bind(fd, (struct sockaddr *)&src, sizeof src);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)base_port)};
    dst.sin_addr.s_addr = htonl(0x7f000001u);
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* utime+stime of a process in clock ticks (/proc/PID/stat fields 14, 15). */
static double cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* GET path from 127.0.0.1:port into a static buffer; NULL if unreachable. */
static const char *http_get(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(0x7f000001u);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    static char buf[1 << 18];
    char req[128];
    snprintf(req, sizeof req, "GET %s HTTP/1.0\r\n\r\n", path);
    size_t len = 0;
    if (write(fd, req, strlen(req)) > 0)
        for (ssize_t n; len + 1 < sizeof buf && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0;)
            len += (size_t)n;
    close(fd);
    buf[len] = 0;
    return buf;
}

/* The value of an unlabelled series (e.g. "x_sum") in a scrape, or -1. */
static double metric_in(const char *scrape, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = scrape ? strstr(scrape, name) : NULL; p; p = strstr(p + 1, name))
        if ((p == scrape || p[-1] == '\n') && p[n] == ' ')
            return atof(p + n + 1);
    return -1;
}

/* "0=N 1=M ..." from the edge's per-worker open-connections gauge. */
static void worker_split(char *out, size_t cap)
{
    out[0] = 0;
    const char *buf = http_get(base_port + 9, "/metrics");
    if (!buf) {
        snprintf(out, cap, "? (no metrics)");
        return;
    }
    size_t o = 0;
    const char *key = "sluice_edge_worker_connections_open{worker=\"";
    for (const char *p = strstr(buf, key); p && o + 32 < cap; p = strstr(p + 1, key)) {
        unsigned wi = 0;
        double v = 0;
        if (sscanf(p + strlen(key), "%u\"} %lf", &wi, &v) == 2)
            o += (size_t)snprintf(out + o, cap - o, "%s%u=%.0f", o ? " " : "", wi, v);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *bin = NULL, *mode = "tput", *lat_out = NULL, *accept_mode = NULL;
    const char *pers_bin = NULL, *pers_db = NULL, *pers_args = "";
    int conns = 100, window = 32, seconds = 10, nsrc = 16, workers = 2, tick_us = 200, hold = 0, warmup = 0;
    int external = 0, sink = -1;
    double rate = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--edge-bin"))
            bin = argv[i + 1];
        else if (!strcmp(argv[i], "--mode"))
            mode = argv[i + 1];
        else if (!strcmp(argv[i], "--conns"))
            conns = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--window"))
            window = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rate"))
            rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--port"))
            base_port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--workers"))
            workers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tick-us"))
            tick_us = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--lat-out"))
            lat_out = argv[i + 1];
        else if (!strcmp(argv[i], "--external"))
            external = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--src-base"))
            src_base = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--nsrc"))
            nsrc = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--hold"))
            hold = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--notifier-sink"))
            sink = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--accept"))
            accept_mode = argv[i + 1];
        else if (!strcmp(argv[i], "--curve"))
            curve = atoi(argv[i + 1]) != 0;
        else if (!strcmp(argv[i], "--persister-bin"))
            pers_bin = argv[i + 1];
        else if (!strcmp(argv[i], "--db"))
            pers_db = argv[i + 1];
        else if (!strcmp(argv[i], "--persister-args"))
            pers_args = argv[i + 1];
        else if (!strcmp(argv[i], "--warmup"))
            warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--body-size"))
            body_size = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    bool peer_only = !strcmp(mode, "peer");
    if ((!bin && !external && !peer_only) || window > 256 || nsrc < 1 || (pers_bin && !pers_db) ||
        (body_size != 0 && (body_size < 3 || body_size > 250))) {
        fprintf(
            stderr,
            "usage: edge_bench --edge-bin PATH [--mode idle|tput|rate] [--conns N] [--window W<=256]\n"
            "       [--seconds S] [--rate FRAMES_PER_S] [--tick-us US] [--port BASE] [--workers N]\n"
            "       [--lat-out FILE (send offset us, latency us per ack)]\n"
            "       [--notifier-sink 0|1 (default: 1 in idle/peer mode, 0 otherwise)]\n"
            "       [--accept reuseport|handoff (passed to the edge; default: the edge's)]\n"
            "       [--curve 0|1 (CURVE on the edge's links, the bench's services as CURVE servers)]\n"
            "       [--persister-bin PATH --db DSN [--persister-args \"ARGS\"]: a real persister, not the\n"
            "        instant one]  [--warmup S]  [--body-size 3..250 (a bin body of that size)]\n"
            "   or: edge_bench --mode peer --port BASE   (instant persister + notifier sink on BASE+1..+4\n"
            "                                             until SIGTERM, for edges started by hand)\n"
            "   or: edge_bench --mode idle --external 1 --port EDGE_PORT --conns N [--src-base K]\n"
            "       [--nsrc M] [--hold S]   (devices only, against a running edge; prints 'held N')\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (sink < 0)
        sink = peer_only || !strcmp(mode, "idle");
    void *ctx = zmq_ctx_new();
    pthread_t pt, st;
    struct zap *zap = NULL;
    if (curve) {
        /* Keys as a deployment has them: one pair per service, the edge's
         * bound to any edge id (it runs with its default id), its public
         * certificate alone in the allowed directory. */
        snprintf(keydir, sizeof keydir, "/tmp/edge_bench_keys_XXXXXX");
        char allow[96];
        if (!mkdtemp(keydir)) {
            perror("mkdtemp");
            return 1;
        }
        snprintf(allow, sizeof allow, "%s/allow", keydir);
        mkdir(allow, 0700);
        make_key("persister.key", NULL, &persister_kp);
        make_key("notifier.key", NULL, &notifier_kp);
        make_key("edge.key", "*", NULL);
        char src[128], dst[128];
        snprintf(src, sizeof src, "%s/edge.key", keydir);
        snprintf(dst, sizeof dst, "%s/allow/edge.key", keydir);
        if (link(src, dst) != 0) {
            perror("link");
            return 1;
        }
        zap = zap_new(ctx, allow);
        if (!zap)
            return 1;
    }
    if (peer_only) {
        signal(SIGTERM, on_stop);
        signal(SIGINT, on_stop);
        if (curve)
            printf("keys in %s: the edge's pair edge.key_secret, the services' persister.key and "
                   "notifier.key (removed at exit)\n",
                   keydir);
        pthread_create(&st, NULL, sink_main, ctx);
        peer_main(ctx);
        pthread_join(st, NULL);
        zap_destroy(&zap);
        zmq_ctx_term(ctx);
        return 0;
    }
    pid_t ppid = 0;
    if (!external && pers_bin) {
        /* A real persister: PULL BASE+1, ROUTER BASE+2, metrics BASE+8. */
        char a_pull[64], a_rt[64], a_met[64], argbuf[1024];
        snprintf(a_pull, sizeof a_pull, "tcp://127.0.0.1:%d", base_port + 1);
        snprintf(a_rt, sizeof a_rt, "tcp://127.0.0.1:%d", base_port + 2);
        snprintf(a_met, sizeof a_met, "127.0.0.1:%d", base_port + 8);
        snprintf(argbuf, sizeof argbuf, "%s", pers_args);
        char *av[64];
        int ac = 0;
        av[ac++] = (char *)pers_bin;
        const char *fixed[] = {"--pull", a_pull,      "--router", a_rt,          "--db",
                               pers_db,  "--metrics", a_met,      "--log-level", "warn"};
        for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++)
            av[ac++] = (char *)fixed[k];
        for (char *tok = strtok(argbuf, " "); tok && ac < 63; tok = strtok(NULL, " "))
            av[ac++] = tok;
        av[ac] = NULL;
        ppid = fork();
        if (ppid == 0) {
            execv(pers_bin, av);
            _exit(127);
        }
        const char *r = NULL;
        for (int k = 0; k < 300 && !(r && strstr(r, " 200 ")); k++) {
            usleep(100 * 1000);
            r = http_get(base_port + 8, "/readyz");
        }
        if (!r || !strstr(r, " 200 ")) {
            fprintf(stderr, "persister not ready after 30 s\n");
            kill(ppid, SIGKILL);
            return 1;
        }
    } else if (!external) {
        pthread_create(&pt, NULL, peer_main, ctx);
        if (sink)
            pthread_create(&st, NULL, sink_main, ctx);
    }

    char a_listen[64], a_pp[64], a_pr[64], a_np[64], a_nr[64], a_mc[32], a_w[16], a_m[64];
    snprintf(a_listen, sizeof a_listen, "127.0.0.1:%d", base_port);
    snprintf(a_pp, sizeof a_pp, "tcp://127.0.0.1:%d", base_port + 1);
    snprintf(a_pr, sizeof a_pr, "tcp://127.0.0.1:%d", base_port + 2);
    snprintf(a_np, sizeof a_np, "tcp://127.0.0.1:%d", base_port + 3);
    snprintf(a_nr, sizeof a_nr, "tcp://127.0.0.1:%d", base_port + 4);
    /* room for this bench's devices, or what the caller asks for (edge_storm.py
     * adds a storm of devices from another process) */
    const char *mc_env = getenv("SLUICE_MAX_CONNS");
    snprintf(a_mc, sizeof a_mc, "%d", mc_env ? atoi(mc_env) : conns + 100);
    snprintf(a_w, sizeof a_w, "%d", workers);
    snprintf(a_m, sizeof a_m, "127.0.0.1:%d", base_port + 9);
    setenv("SLUICE_FLEET_SECRET", SECRET, 1);
    /* Every bench device connects from loopback: exempt it from the
     * per-address limits (unless the caller set a list of its own). */
    setenv("SLUICE_ALLOW_CIDRS", "127.0.0.0/8", 0);
    /* A bench connection sends far more than a device may (--device-rate). */
    setenv("SLUICE_DEVICE_RATE", "0", 0);
    if (accept_mode)
        setenv("SLUICE_ACCEPT", accept_mode, 1);
    pid_t pid = external ? 0 : fork();
    if (!external && pid == 0) {
        if (curve) {
            char k_own[128], k_p[128], k_n[128];
            snprintf(k_own, sizeof k_own, "%s/edge.key_secret", keydir);
            snprintf(k_p, sizeof k_p, "%s/persister.key", keydir);
            snprintf(k_n, sizeof k_n, "%s/notifier.key", keydir);
            execl(bin, bin, "--listen", a_listen, "--persister-push", a_pp, "--persister-router", a_pr,
                  "--notifier-push", a_np, "--notifier-router", a_nr, "--max-conns", a_mc, "--workers", a_w,
                  "--metrics", a_m, "--log-level", "warn", "--curve-key", k_own, "--persister-key", k_p,
                  "--notifier-key", k_n, (char *)NULL);
        }
        execl(bin, bin, "--listen", a_listen, "--persister-push", a_pp, "--persister-router", a_pr,
              "--notifier-push", a_np, "--notifier-router", a_nr, "--max-conns", a_mc, "--workers", a_w,
              "--metrics", a_m, "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    if (!external)
        usleep(500 * 1000);
    long rss0 = external ? 0 : rss_kb(pid);

    int ep = epoll_create1(0);
    struct dev *d = calloc((size_t)conns, sizeof *d);
    uint8_t hb[256];
    uint64_t t0 = now_us();
    for (int i = 0; i < conns; i++) {
        char name[32];
        snprintf(name, sizeof name, "bench-%d", i);
        d[i].fd = dial(i, nsrc);
        if (d[i].fd < 0) {
            fprintf(stderr, "connect %d failed: %s\n", i, strerror(errno));
            conns = i;
            break;
        }
        int n = pack_hello(hb, name);
        if (write(d[i].fd, hb, (size_t)n) != n)
            return 1;
        frame_dec_init(&d[i].dec, 65536);
        d[i].dbuf = NULL;
        d[i].next_seq = 1;
        fcntl(d[i].fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, d[i].fd, &ev);
    }
    uint8_t *rbuf = malloc(1 << 20);
    uint8_t *dec_buf = malloc(65536);
    size_t nlat = 0, lat_cap = 1u << 24;
    uint64_t *lat = malloc(lat_cap * sizeof *lat);
    uint64_t *lat_at = lat_out ? malloc(lat_cap * sizeof *lat_at) : NULL;
    uint64_t acked = 0;
    int welcomed = 0;
    struct epoll_event evs[256];
    uint8_t wbuf[256 * 64];
    /* Main loop: handle welcome/acks; top up windows (tput) or pace (rate). */
    uint64_t start = 0, end = 0, sent_total = 0, t_welcomed = 0, meas = 0;
    char split[256] = "";
    double cpu_edge0 = 0, cpu_self0 = 0, cpu_pers0 = 0;
    double pm_rows0 = 0, pm_commits0 = 0, pm_secs0 = 0;
    int measuring = 0, counting = 0;
    for (;;) {
        /* Rate mode paces in tick_us steps (hrtimer sleep, not the 1 ms
         * granularity of epoll_wait, which sent the rate in 1-2 ms bursts). */
        struct timespec ts = {0, (rate > 0 && measuring ? tick_us : 1000) * 1000L};
        int n = epoll_pwait2(ep, evs, 256, &ts, NULL);
        for (int k = 0; k < n; k++) {
            struct dev *x = &d[evs[k].data.u32];
            ssize_t r = read(x->fd, rbuf, 1 << 20);
            if (r <= 0)
                continue;
            size_t off = 0;
            while (off < (size_t)r) {
                size_t used;
                struct sl_slice p;
                enum frame_rc rc = frame_dec_feed(&x->dec, rbuf + off, (size_t)r - off, &used, &p);
                off += used;
                if (rc == FRAME_NEED_BUF) {
                    x->dec.buf = dec_buf;
                    continue;
                } /* rare: tiny frames */
                if (rc != FRAME_READY)
                    break;
                struct msg m;
                if (msg_decode(p.p, p.n, &m) != MSG_OK)
                    continue;
                if (m.t == MSG_WELCOME) {
                    x->welcomed = 1;
                    welcomed++;
                } else if (m.t == MSG_ACK) {
                    x->inflight--;
                    uint64_t sent = x->sent_us[m.u.ack.seq % 256];
                    /* Counted only for frames sent after the warm-up. */
                    if (counting && sent >= meas) {
                        acked++;
                        if (nlat < lat_cap) {
                            if (lat_at)
                                lat_at[nlat] = sent - start;
                            lat[nlat++] = now_us() - sent;
                        }
                    }
                }
                if (x->dec.buf && frame_dec_idle(&x->dec))
                    x->dec.buf = NULL;
            }
        }
        if (!t_welcomed && welcomed == conns) {
            t_welcomed = now_us();
            if (!external && strcmp(mode, "idle"))
                worker_split(split, sizeof split); /* idle: after the RSS reading */
        }
        if (!strcmp(mode, "idle")) {
            if (welcomed == conns)
                break;
            if (now_us() - t0 > 120000000u) {
                fprintf(stderr, "only %d of %d welcomed\n", welcomed, conns);
                break;
            }
            continue;
        }
        if (welcomed < conns)
            continue;
        uint64_t t = now_us();
        if (!measuring) {
            measuring = 1;
            start = t;
            meas = start + (uint64_t)warmup * 1000000u;
            end = meas + (uint64_t)seconds * 1000000u;
        }
        if (!counting && t >= meas) {
            counting = 1;
            printf("measuring\n"); /* for scripts that act at a known time of the run (edge_storm.py) */
            fflush(stdout);
            acked = 0;
            cpu_edge0 = cpu_s(pid);
            cpu_self0 = cpu_s(getpid());
            if (ppid) {
                const char *m = http_get(base_port + 8, "/metrics");
                cpu_pers0 = cpu_s(ppid);
                pm_rows0 = metric_in(m, "sluice_persister_batch_rows_sum");
                pm_commits0 = metric_in(m, "sluice_persister_batch_rows_count");
                pm_secs0 = metric_in(m, "sluice_persister_commit_seconds_sum");
            }
        }
        if (t >= end)
            break;
        /* Frames allowed now: windowed (tput) or paced (rate). */
        uint64_t budget = UINT64_MAX;
        if (rate > 0) {
            uint64_t due = (uint64_t)((double)(t - start) * rate / 1e6);
            budget = due > sent_total ? due - sent_total : 0;
        }
        for (int i = 0; i < conns && budget; i++) {
            struct dev *x = &d[(i + (int)(sent_total % (uint64_t)conns)) % conns];
            size_t len = 0;
            /* Stamp each write just before it: one stamp per pacing round
             * charged the round's later writes with the earlier ones. */
            uint64_t tw = now_us();
            while (x->inflight < (uint32_t)window && budget && len + 64 <= sizeof wbuf) {
                x->sent_us[x->next_seq % 256] = tw;
                len += (size_t)pack_data(wbuf + len, x->next_seq++);
                x->inflight++;
                budget--;
                sent_total++;
                if (rate > 0)
                    break; /* spread paced frames over connections */
            }
            if (len && write(x->fd, wbuf, len) < 0)
                perror("write");
        }
    }
    if (external) {
        printf("held %d authenticated connections in %.1f s\n", welcomed, (double)(now_us() - t0) / 1e6);
        fflush(stdout);
        sleep((unsigned)hold);
        zmq_ctx_term(ctx);
        return welcomed == conns ? 0 : 1;
    }
    if (!t_welcomed)
        t_welcomed = now_us(); /* not all welcomed: said above */
    if (!strcmp(mode, "idle")) {
        sleep(2);
        long rss1 = rss_kb(pid);
        worker_split(split, sizeof split);
        printf("idle: %d authenticated connections, all welcomed %.2f s after the first connect; edge RSS "
               "%ld KiB -> "
               "%ld KiB: %.0f bytes/connection; per worker: %s\n",
               welcomed, (double)(t_welcomed - t0) / 1e6, rss0, rss1,
               (double)(rss1 - rss0) * 1024.0 / (welcomed ? welcomed : 1), split);
    } else {
        double secs = (double)(now_us() - meas) / 1e6;
        double cpu_edge = (cpu_s(pid) - cpu_edge0) / secs * 100,
               cpu_self = (cpu_s(getpid()) - cpu_self0) / secs * 100;
        if (ppid) {
            const char *m = http_get(base_port + 8, "/metrics");
            double rows = metric_in(m, "sluice_persister_batch_rows_sum") - pm_rows0;
            double commits = metric_in(m, "sluice_persister_batch_rows_count") - pm_commits0;
            double csecs = metric_in(m, "sluice_persister_commit_seconds_sum") - pm_secs0;
            printf("persister: cpu %.0f%% of one core; %.0f commits/s of %.1f rows on average, %.3f ms each "
                   "(submit to COMMIT done); retries %.0f\n",
                   (cpu_s(ppid) - cpu_pers0) / secs * 100, commits / secs, commits > 0 ? rows / commits : 0,
                   commits > 0 ? csecs / commits * 1000 : 0,
                   metric_in(m, "sluice_persister_db_retries_total"));
        }
        if (lat_at) {
            FILE *f = fopen(lat_out, "w");
            for (size_t i = 0; f && i < nlat; i++)
                fprintf(f, "%llu %llu\n", (unsigned long long)lat_at[i], (unsigned long long)lat[i]);
            if (f)
                fclose(f);
        }
        qsort(lat, nlat, sizeof *lat, cmp_u64);
        printf("%s: conns=%d window=%d rate=%s%.0f: %.0f frames/s acked over %.1f s; latency p50 %.3f ms p99 "
               "%.3f ms "
               "p99.9 %.3f ms max %.3f ms (n=%zu)\n",
               mode, conns, window, rate > 0 ? "" : "max ", rate, (double)acked / secs, secs,
               nlat ? (double)lat[nlat / 2] / 1000.0 : 0, nlat ? (double)lat[nlat * 99 / 100] / 1000.0 : 0,
               nlat ? (double)lat[nlat * 999 / 1000] / 1000.0 : 0, nlat ? (double)lat[nlat - 1] / 1000.0 : 0,
               nlat);
        printf("cpu: edge %.0f%%, bench (%s) %.0f%% of one core; frames sent %llu, acked "
               "%llu; "
               "connections per worker: %s\n",
               cpu_edge, ppid ? "client" : "client + instant peer", cpu_self, (unsigned long long)sent_total,
               (unsigned long long)acked, split);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    if (ppid) {
        kill(ppid, SIGTERM);
        waitpid(ppid, NULL, 0);
        zmq_ctx_term(ctx);
        return 0;
    }
    atomic_store(&peer_stop, true);
    pthread_join(pt, NULL);
    if (sink)
        pthread_join(st, NULL);
    zap_destroy(&zap);
    zmq_ctx_term(ctx);
    if (curve) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", keydir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", keydir);
    }
    return 0;
}
