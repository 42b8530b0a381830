/* tls_bench.c - TLS figures of the edge (benchmark, not a test;
 * docs/performance.md "TLS"). Two modes:
 *
 *   mem --conns N --cert EDGE.pem --key EDGE.key --ca CA.pem [--client-ca CA.pem
 *       --dev-cert D.pem --dev-key D.key] [--tls12 1] [--trace 1] [--keep-buffers 1]
 *     What one idle TLS connection costs the edge in OpenSSL's heap, and of
 *     what: N server SSLs made by the edge's own tls.c (the edge's context:
 *     SSL_MODE_RELEASE_BUFFERS, tickets, no session cache) handshake with N
 *     clients of the device library's TLS layer in a child process over
 *     socketpairs, then exchange one small record each way (as hello and
 *     welcome do) and sit idle. Every OpenSSL allocation of this process
 *     goes through a counting allocator (CRYPTO_set_mem_functions: usable
 *     size + 8 B of malloc header), so the bytes are the server side's only;
 *     phases are measured by subtraction.
 *
 *   hs --edge HOST:PORT --ca CA.pem --conc K --seconds S [--resume 1]
 *      [--edge-pid PID] [--dev-cert D.pem --dev-key D.key] [--plain 1]
 *     Handshake load: K connections at a time, each connect + TLS handshake
 *     (+ with --resume, the previous session of that slot offered) + close,
 *     over and over. No hello: the edge closes them as early connections.
 *     With --edge-pid, the edge's CPU time (utime + stime of /proc/PID/stat)
 *     over the run divided by the handshakes: CPU per handshake, robust to a
 *     slow client on a shared box. --plain 1: TCP connect + close only, the
 *     edge's cost of a connection without TLS (to subtract).
 *
 * Prints one "result ..." line of key=value pairs for bench/tls_bench.sh. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "ctls.h"
#include "sl/client.h"
#include "tls.h"

/* ---- counting allocator ---- */

static int64_t live_bytes, live_allocs;

/* --trace: every live allocation with OpenSSL's call site, to say what
 * one connection is made of (run with --conns 1). */
#define TRACE_MAX 65536
static struct site {
    void *p;
    size_t n;
    const char *file;
    int line;
    int phase;
} trace[TRACE_MAX];
static bool tracing;
static int trace_phase;

static void trace_add(void *p, size_t n, const char *file, int line)
{
    for (int i = 0; i < TRACE_MAX; i++)
        if (trace[i].p == NULL) {
            trace[i] = (struct site){p, n, file, line, trace_phase};
            return;
        }
}

static void trace_del(void *p)
{
    for (int i = 0; i < TRACE_MAX; i++)
        if (trace[i].p == p) {
            trace[i].p = NULL;
            return;
        }
}

static size_t charged(void *p)
{
    return malloc_usable_size(p) + 8; /* glibc's chunk header */
}

static void *c_malloc(size_t n, const char *file, int line)
{
    void *p = malloc(n);
    if (p) {
        live_bytes += (int64_t)charged(p);
        live_allocs++;
        if (tracing)
            trace_add(p, charged(p), file, line);
    }
    return p;
}

static void c_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    if (p) {
        live_bytes -= (int64_t)charged(p);
        live_allocs--;
        if (tracing)
            trace_del(p);
    }
    free(p);
}

static void *c_realloc(void *p, size_t n, const char *file, int line)
{
    int64_t old = p ? (int64_t)charged(p) : 0;
    if (p && tracing)
        trace_del(p);
    void *q = realloc(p, n);
    if (q) {
        live_bytes += (int64_t)charged(q) - old;
        live_allocs += p ? 0 : 1;
        if (tracing)
            trace_add(q, charged(q), file, line);
    } else if (n == 0 && p) {
        live_bytes -= old;
        live_allocs--;
    }
    return q;
}

static void trace_print(void)
{
    static const char *const phase[] = {"", "SSL_new", "handshake", "exchange"};
    for (int ph = 1; ph <= 3; ph++)
        for (int i = 0; i < TRACE_MAX; i++)
            if (trace[i].p && trace[i].phase == ph)
                printf("trace phase=%s bytes=%zu site=%s:%d\n", phase[ph], trace[i].n,
                       trace[i].file ? trace[i].file : "?", trace[i].line);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const char *opt(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return def;
}

static struct sl_tls *client_ctx(const char *ca, const char *cert, const char *key, bool release)
{
    struct sl_tls_config tc = {.ca_file = ca, .cert_file = cert, .key_file = key, .release_buffers = release};
    enum sl_err err;
    char why[256] = "";
    struct sl_tls *t = sl_tls_new(&tc, &err, why, sizeof why);
    if (!t) {
        fprintf(stderr, "tls_bench: client TLS: %s\n", why);
        exit(2);
    }
    return t;
}

/* ---- mem ---- */

/* Drive every SSL of `s` one handshake step until all are done. */
static void handshake_all(SSL **s, const int *fd, int n, bool server)
{
    int done = 0;
    bool *ok = calloc((size_t)n, 1);
    struct pollfd *pf = calloc((size_t)n, sizeof *pf);
    while (done < n) {
        int k = 0;
        for (int i = 0; i < n; i++) {
            if (ok[i])
                continue;
            enum ctls_io rc;
            if (server) {
                enum tls_io r = tls_handshake(s[i]);
                rc = r == TLS_IO_OK           ? CTLS_OK
                     : r == TLS_IO_WANT_READ  ? CTLS_WANT_READ
                     : r == TLS_IO_WANT_WRITE ? CTLS_WANT_WRITE
                                              : CTLS_ERR_TLS;
            } else {
                rc = ctls_handshake(s[i], NULL, 0);
            }
            if (rc == CTLS_OK) {
                ok[i] = true;
                done++;
                continue;
            }
            if (rc != CTLS_WANT_READ && rc != CTLS_WANT_WRITE) {
                char e[160];
                fprintf(stderr, "tls_bench: %s handshake %d failed: %s\n", server ? "server" : "client", i,
                        tls_last_error(e, sizeof e));
                exit(1);
            }
            pf[k].fd = fd[i];
            pf[k].events = rc == CTLS_WANT_READ ? POLLIN : POLLOUT;
            k++;
        }
        if (k)
            poll(pf, (nfds_t)k, 100);
    }
    free(ok);
    free(pf);
}

static void exchange(SSL *s, bool server, bool write_first)
{
    uint8_t buf[256];
    static const uint8_t msg[160] = {0}; /* about a hello; the answer about a welcome */
    size_t n;
    for (int step = 0; step < 2; step++) {
        bool wr = (step == 0) == write_first;
        for (;;) {
            int r =
                wr ? SSL_write_ex(s, msg, server ? 40 : sizeof msg, &n) : SSL_read_ex(s, buf, sizeof buf, &n);
            if (r == 1)
                break;
            int e = SSL_get_error(s, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                fprintf(stderr, "tls_bench: exchange failed (%d)\n", e);
                exit(1);
            }
            struct pollfd p = {SSL_get_fd(s), e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, 0};
            poll(&p, 1, 1000);
        }
    }
}

static int mode_mem(int argc, char **argv)
{
    int n = atoi(opt(argc, argv, "--conns", "2000"));
    const char *cert = opt(argc, argv, "--cert", NULL), *key = opt(argc, argv, "--key", NULL);
    const char *ca = opt(argc, argv, "--ca", NULL), *client_ca = opt(argc, argv, "--client-ca", "");
    const char *dcert = opt(argc, argv, "--dev-cert", NULL), *dkey = opt(argc, argv, "--dev-key", NULL);
    bool tls12 = atoi(opt(argc, argv, "--tls12", "0")) != 0;
    bool want_trace = atoi(opt(argc, argv, "--trace", "0")) != 0;
    bool keep_buffers = atoi(opt(argc, argv, "--keep-buffers", "0")) != 0; /* what RELEASE_BUFFERS saves */
    if (!cert || !key || !ca) {
        fprintf(stderr, "tls_bench mem: --cert, --key and --ca are required\n");
        return 2;
    }
    int *sfd = calloc((size_t)n, sizeof *sfd), *cfd = calloc((size_t)n, sizeof *cfd);
    for (int i = 0; i < n; i++) {
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp) != 0) {
            perror("socketpair (raise ulimit -n)");
            return 2;
        }
        sfd[i] = sp[0];
        cfd[i] = sp[1];
    }
    pid_t pid = fork();
    if (pid == 0) { /* the devices */
        struct sl_tls *t = client_ctx(ca, dcert, dkey, true);
        SSL_CTX *ctx = ctls_ctx_ref(t);
        if (tls12)
            SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
        SSL **c = calloc((size_t)n, sizeof *c);
        SSL_SESSION **sess = calloc((size_t)n, sizeof *sess);
        for (int i = 0; i < n; i++) {
            close(sfd[i]);
            c[i] = ctls_conn_new(ctx, cfd[i], "127.0.0.1", &sess[i]);
        }
        handshake_all(c, cfd, n, false);
        for (int i = 0; i < n; i++)
            exchange(c[i], false, true);
        pause(); /* until the parent is done measuring */
        _exit(0);
    }
    for (int i = 0; i < n; i++)
        close(cfd[i]);
    char err[256];
    struct tls *t =
        tls_new(&(struct tls_files){.cert = cert, .key = key, .client_ca = client_ca, .ticket_keys = ""}, err,
                sizeof err);
    if (!t) {
        fprintf(stderr, "tls_bench: %s\n", err);
        return 2;
    }
    /* one connection first, so one-off lazy state (providers, caches) is not charged to the N */
    {
        int sp[2];
        socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
        SSL *x = tls_conn_new(t, sp[0]);
        tls_conn_free(x);
        close(sp[0]);
        close(sp[1]);
    }
    int64_t b0 = live_bytes, a0 = live_allocs;
    SSL **s = calloc((size_t)n, sizeof *s);
    tracing = want_trace;
    trace_phase = 1;
    for (int i = 0; i < n; i++) {
        s[i] = tls_conn_new(t, sfd[i]);
        if (keep_buffers)
            SSL_clear_mode(s[i], SSL_MODE_RELEASE_BUFFERS);
    }
    int64_t b1 = live_bytes, a1 = live_allocs;
    trace_phase = 2;
    handshake_all(s, sfd, n, true);
    int64_t b2 = live_bytes;
    trace_phase = 3;
    for (int i = 0; i < n; i++)
        exchange(s[i], true, false);
    int64_t b3 = live_bytes, a3 = live_allocs;
    tracing = false;
    if (want_trace)
        trace_print();
    /* what the sessions alone hold (with mutual TLS the client's certificate) */
    SSL_SESSION **ses = calloc((size_t)n, sizeof *ses);
    for (int i = 0; i < n; i++) {
        ses[i] = SSL_get1_session(s[i]);
        SSL_set_quiet_shutdown(s[i], 1);
        SSL_free(s[i]);
    }
    int64_t b4 = live_bytes, a4 = live_allocs;
    for (int i = 0; i < n; i++)
        SSL_SESSION_free(ses[i]);
    int64_t b5 = live_bytes;
    /* a socket BIO alone */
    BIO **bio = calloc((size_t)n, sizeof *bio);
    for (int i = 0; i < n; i++)
        bio[i] = BIO_new_socket(sfd[i], BIO_NOCLOSE);
    int64_t bio_b = (live_bytes - b5) / n;
    for (int i = 0; i < n; i++)
        BIO_free(bio[i]);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    printf(
        "result mode=mem conns=%d tls=%s mtls=%d keep_buffers=%d ssl_new_bytes=%lld ssl_new_allocs=%lld "
        "after_handshake_bytes=%lld idle_bytes=%lld idle_allocs=%lld session_bytes=%lld session_allocs=%lld "
        "bio_bytes=%lld\n",
        n, tls12 ? "1.2" : "1.3", *client_ca != 0, keep_buffers, (long long)((b1 - b0) / n),
        (long long)((a1 - a0) / n), (long long)((b2 - b0) / n), (long long)((b3 - b0) / n),
        (long long)((a3 - a0) / n), (long long)((b4 - b5) / n), (long long)((a4 - live_allocs) / n),
        (long long)bio_b);
    tls_destroy(&t);
    return 0;
}

/* ---- hs ---- */

static uint64_t proc_cpu_ticks(int pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* comm may hold spaces */
    if (!p)
        return 0;
    unsigned long long ut = 0, st = 0;
    /* after ") ": state(3) ... utime is field 14, stime 15 */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return ut + st;
}

struct slot {
    int fd;
    SSL *ssl;
    SSL_SESSION *sess;
    bool handshaking;
};

static int mode_hs(int argc, char **argv)
{
    const char *edge = opt(argc, argv, "--edge", NULL), *ca = opt(argc, argv, "--ca", NULL);
    const char *dcert = opt(argc, argv, "--dev-cert", NULL), *dkey = opt(argc, argv, "--dev-key", NULL);
    int conc = atoi(opt(argc, argv, "--conc", "32"));
    double secs = atof(opt(argc, argv, "--seconds", "10"));
    bool resume = atoi(opt(argc, argv, "--resume", "0")) != 0;
    bool plain = atoi(opt(argc, argv, "--plain", "0")) != 0; /* connect + close, no TLS: the baseline */
    int edge_pid = atoi(opt(argc, argv, "--edge-pid", "0"));
    if (!edge || !ca || !strrchr(edge, ':')) {
        fprintf(stderr, "tls_bench hs: --edge HOST:PORT and --ca are required\n");
        return 2;
    }
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(strrchr(edge, ':') - edge), edge);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, strrchr(edge, ':') + 1, &hints, &ai) != 0) {
        fprintf(stderr, "tls_bench: cannot resolve %s\n", edge);
        return 2;
    }
    struct sl_tls *t = client_ctx(ca, dcert, dkey, false);
    SSL_CTX *ctx = ctls_ctx_ref(t);
    struct slot *sl = calloc((size_t)conc, sizeof *sl);
    struct pollfd *pf = calloc((size_t)conc, sizeof *pf);
    uint64_t done = 0, resumed = 0, failed = 0;
    long hz = sysconf(_SC_CLK_TCK);
    uint64_t cpu0 = edge_pid ? proc_cpu_ticks(edge_pid) : 0;
    uint64_t t0 = now_us(), end = t0 + (uint64_t)(secs * 1e6);
    for (int i = 0; i < conc; i++)
        sl[i].fd = -1;
    while (now_us() < end) {
        for (int i = 0; i < conc; i++) {
            struct slot *x = &sl[i];
            if (x->fd < 0) {
                x->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
                int one = 1;
                setsockopt(x->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                if (connect(x->fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
                    close(x->fd);
                    x->fd = -1;
                    failed++;
                    continue;
                }
                if (!resume)
                    ctls_session_free(&x->sess);
                pf[i].revents = 0;
                if (!plain)
                    x->ssl = ctls_conn_new(ctx, x->fd, host, &x->sess);
            }
            if (plain) { /* connected (writable): count it and close */
                int soerr = 0;
                socklen_t len = sizeof soerr;
                if (pf[i].revents & (POLLOUT | POLLERR | POLLHUP)) {
                    getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
                    if (soerr)
                        failed++;
                    else
                        done++;
                    close(x->fd);
                    x->fd = -1;
                    pf[i].fd = -1;
                    continue;
                }
                pf[i].fd = x->fd;
                pf[i].events = POLLOUT;
                continue;
            }
            enum ctls_io rc = ctls_handshake(x->ssl, NULL, 0);
            if (rc == CTLS_OK) {
                done++;
                resumed += ctls_resumed(x->ssl);
                if (resume && SSL_version(x->ssl) == TLS1_3_VERSION) {
                    /* TLS 1.3: the ticket follows the handshake; read it */
                    uint8_t b[64];
                    size_t got;
                    struct pollfd p = {x->fd, POLLIN, 0};
                    int k = 0;
                    for (; k < 20 && !(x->sess && SSL_SESSION_is_resumable(x->sess)); k++) {
                        int r = SSL_read_ex(x->ssl, b, sizeof b, &got);
                        if (r != 1 && SSL_get_error(x->ssl, r) != SSL_ERROR_WANT_READ)
                            break;
                        poll(&p, 1, 5);
                    }
                    if (getenv("TLS_BENCH_DEBUG"))
                        fprintf(stderr, "resumed=%d waited=%d resumable=%d\n", ctls_resumed(x->ssl), k,
                                x->sess && SSL_SESSION_is_resumable(x->sess));
                }
                ctls_conn_free(&x->ssl, true, &x->sess);
                close(x->fd);
                x->fd = -1;
                i--; /* start the next one on this slot now */
                continue;
            }
            if (rc != CTLS_WANT_READ && rc != CTLS_WANT_WRITE) {
                failed++;
                ctls_conn_free(&x->ssl, false, &x->sess);
                close(x->fd);
                x->fd = -1;
                continue;
            }
            pf[i].fd = x->fd;
            pf[i].events = rc == CTLS_WANT_READ ? POLLIN : POLLOUT;
        }
        for (int i = 0; i < conc; i++) {
            pf[i].revents = 0;
            if (sl[i].fd < 0)
                pf[i].fd = -1;
        }
        poll(pf, (nfds_t)conc, 10);
    }
    double el = (double)(now_us() - t0) / 1e6;
    uint64_t cpu1 = edge_pid ? proc_cpu_ticks(edge_pid) : 0;
    double cpu_s = edge_pid ? (double)(cpu1 - cpu0) / (double)hz : 0;
    printf(
        "result mode=%s resume=%d conc=%d seconds=%.1f handshakes=%llu resumed=%llu failed=%llu per_s=%.0f",
        plain ? "connect" : "hs", resume, conc, el, (unsigned long long)done, (unsigned long long)resumed,
        (unsigned long long)failed, (double)done / el);
    if (edge_pid && done)
        printf(" edge_cpu_s=%.2f edge_cpu_us_per_hs=%.0f per_core_per_s=%.0f", cpu_s,
               cpu_s * 1e6 / (double)done, cpu_s > 0 ? (double)done / cpu_s : 0.0);
    printf("\n");
    return failed > done / 100 ? 1 : 0;
}

int main(int argc, char **argv)
{
    /* before OpenSSL allocates anything */
    CRYPTO_set_mem_functions(c_malloc, c_realloc, c_free);
    signal(SIGPIPE, SIG_IGN);
    const char *mode = opt(argc, argv, "--mode", "");
    if (strcmp(mode, "mem") == 0)
        return mode_mem(argc, argv);
    if (strcmp(mode, "hs") == 0)
        return mode_hs(argc, argv);
    fprintf(stderr, "usage: tls_bench --mode mem|hs ... (see bench/tls_bench.c)\n");
    return 2;
}
