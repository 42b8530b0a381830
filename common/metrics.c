/* SPDX-License-Identifier: Apache-2.0 */
/* metrics.c - a fixed-size Prometheus registry and the /metrics /healthz /readyz server.
 *
 * Series live in one static array (METRICS_MAX_SERIES), so the pointers that
 * registration hands out stay valid for the life of the process and updates
 * are plain relaxed atomics on them: no lock and no allocation on any hot
 * path. A mutex only guards registration against a concurrent scrape.
 * Rendering groups series by metric name, so HELP and TYPE appear once per
 * name whatever the order of registration of its label sets.
 *
 * The HTTP side is libmicrohttpd with its own polling thread; a scrape
 * renders into a heap buffer sized by a first pass (scrapes are rare; the
 * services never allocate for metrics otherwise).
 *
 * Deliberately not here: summaries, label parsing or escaping (callers pass
 * the label text verbatim), push gateways, unregistration. */
#define _GNU_SOURCE
#include "sl/metrics.h"

#include "sl/log.h"
#include "sl/version.h"

#include <assert.h>
#include <dirent.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define METRICS_MAX_SERIES 512
#define METRICS_MAX_CONNS  64u /* HTTP connections at once, all clients */
#define METRICS_PER_IP     8u  /* ... from one address */

enum kind { K_COUNTER, K_GAUGE, K_HIST, K_GAUGE_FN, K_GAUGE_FAMILY };

struct series {
    enum kind kind;
    bool micro; /* a counter kept in millionths of its unit, rendered in the unit */
    char *name;
    char *help;
    char *labels; /* NULL or the text inside the braces */
    union {
        struct metric_counter c;
        struct metric_gauge g;
        struct metric_hist h;
        struct {
            double (*fn)(void *);
            void *ud;
        } f;
        struct {
            size_t (*fn)(void *, struct metrics_sample *, size_t);
            void *ud;
            char *label;
        } fam;
    } u;
};

static struct series g_series[METRICS_MAX_SERIES];
static int g_n;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic bool g_ready;
static pthread_mutex_t g_ready_mu = PTHREAD_MUTEX_INITIALIZER; /* guards g_ready_detail */
static char g_ready_detail[128];
static struct MHD_Daemon *g_mhd;
static char *g_admin_token; /* set once before the server starts; NULL = /admin/ off */
static size_t g_admin_len;
static metrics_admin_fn g_admin_fn;
static void *g_admin_ud;
static void (*g_collect)(void *); /* guarded by g_mu */
static void *g_collect_ud;

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static bool same_labels(const char *a, const char *b)
{
    if (!a || !*a)
        return !b || !*b;
    return b && strcmp(a, b) == 0;
}

static void __attribute__((noreturn)) fatal(const char *what, const char *name)
{
    /* Registration happens at startup; a wrong table is a programmer error
     * and the process must not run with metrics silently missing. */
    fprintf(stderr, "metrics: %s: %s\n", what, name);
    abort();
}

/* Find or create the series (name, labels). Called with g_mu held. */
static struct series *reg(enum kind k, const char *name, const char *help, const char *labels)
{
    for (int i = 0; i < g_n; i++) {
        struct series *s = &g_series[i];
        if (strcmp(s->name, name) == 0) {
            bool same_kind = s->kind == k || (s->kind == K_GAUGE_FN && k == K_GAUGE) ||
                             (s->kind == K_GAUGE && k == K_GAUGE_FN);
            if (!same_kind)
                fatal("metric registered twice with different types", name);
            if (same_labels(s->labels, labels) && s->kind == k)
                return s; /* idempotent: e.g. every worker registering the same series */
        }
    }
    if (g_n == METRICS_MAX_SERIES)
        fatal("too many series (raise METRICS_MAX_SERIES)", name);
    struct series *s = &g_series[g_n];
    memset(s, 0, sizeof *s);
    s->kind = k;
    s->name = strdup(name);
    s->help = dup_or_null(help);
    s->labels = labels && *labels ? strdup(labels) : NULL;
    if (!s->name || (help && !s->help) || (labels && *labels && !s->labels))
        fatal("out of memory registering", name);
    g_n++;
    return s;
}

struct metric_counter *metrics_counter(const char *name, const char *help, const char *labels)
{
    pthread_mutex_lock(&g_mu);
    struct series *s = reg(K_COUNTER, name, help, labels);
    pthread_mutex_unlock(&g_mu);
    return &s->u.c;
}

struct metric_counter *metrics_counter_micro(const char *name, const char *help, const char *labels)
{
    pthread_mutex_lock(&g_mu);
    struct series *s = reg(K_COUNTER, name, help, labels);
    s->micro = true;
    pthread_mutex_unlock(&g_mu);
    return &s->u.c;
}

void metrics_counters(const struct metrics_counter_def *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *d[i].out = metrics_counter(d[i].name, d[i].help, NULL);
}

struct metric_gauge *metrics_gauge(const char *name, const char *help, const char *labels)
{
    pthread_mutex_lock(&g_mu);
    struct series *s = reg(K_GAUGE, name, help, labels);
    pthread_mutex_unlock(&g_mu);
    return &s->u.g;
}

struct metric_hist *metrics_hist(const char *name, const char *help, const char *labels, const double *bounds,
                                 int nb)
{
    if (nb < 0 || nb > METRICS_MAX_BUCKETS)
        fatal("too many histogram buckets", name);
    for (int i = 1; i < nb; i++)
        if (!(bounds[i] > bounds[i - 1]))
            fatal("histogram bounds not ascending", name);
    pthread_mutex_lock(&g_mu);
    struct series *s = reg(K_HIST, name, help, labels);
    if (s->u.h.nb == 0 && nb > 0) {
        s->u.h.nb = nb;
        memcpy(s->u.h.bounds, bounds, (size_t)nb * sizeof *bounds);
    }
    pthread_mutex_unlock(&g_mu);
    return &s->u.h;
}

void metrics_gauge_fn(const char *name, const char *help, double (*fn)(void *), void *ud)
{
    pthread_mutex_lock(&g_mu);
    struct series *s = reg(K_GAUGE_FN, name, help, NULL);
    s->u.f.fn = fn;
    s->u.f.ud = ud;
    pthread_mutex_unlock(&g_mu);
}

void metrics_gauge_family_fn(const char *name, const char *help, const char *label,
                             size_t (*fn)(void *ud, struct metrics_sample *out, size_t cap), void *ud)
{
    pthread_mutex_lock(&g_mu);
    struct series *s = reg(K_GAUGE_FAMILY, name, help, NULL);
    s->u.fam.fn = fn;
    s->u.fam.ud = ud;
    free(s->u.fam.label);
    if ((s->u.fam.label = strdup(label)) == NULL)
        fatal("out of memory registering", name);
    pthread_mutex_unlock(&g_mu);
}

void metric_observe(struct metric_hist *h, double value)
{
    int i = 0;
    while (i < h->nb && !(value <= h->bounds[i]))
        i++;
    /* le is inclusive; index nb is the +Inf overflow bucket (NaN lands there). */
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    if (isfinite(value)) {
        int64_t micro = (int64_t)llround(value * 1e6);
        /* Two's-complement wrap makes negative observations subtract. */
        atomic_fetch_add_explicit(&h->sum_micro, (uint64_t)micro, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&h->n, 1, memory_order_relaxed);
}

void metric_counter_set(struct metric_counter *c, uint64_t v)
{
    atomic_store_explicit(&c->v, v, memory_order_relaxed);
}

void metric_hist_set(struct metric_hist *h, const struct stat_hist *src)
{
    assert(h->nb == src->nb);
    if (h->nb != src->nb)
        return; /* registered with other bounds: a startup bug, caught by the assert in tests */
    uint64_t n = 0;
    for (int i = 0; i <= h->nb; i++) {
        uint64_t k = stat_get(&src->counts[i]);
        atomic_store_explicit(&h->counts[i], k, memory_order_relaxed);
        n += k;
    }
    atomic_store_explicit(&h->sum_micro, stat_get(&src->sum_micro), memory_order_relaxed);
    atomic_store_explicit(&h->n, n, memory_order_relaxed);
}

void metrics_set_collect(void (*fn)(void *ud), void *ud)
{
    pthread_mutex_lock(&g_mu);
    g_collect = fn;
    g_collect_ud = ud;
    pthread_mutex_unlock(&g_mu);
}

/* Called with g_mu held. */
static void collect(void)
{
    if (g_collect)
        g_collect(g_collect_ud);
}

void metrics_set_ready(bool ready)
{
    atomic_store(&g_ready, ready);
}

void metrics_set_ready_detail(const char *detail)
{
    pthread_mutex_lock(&g_ready_mu);
    snprintf(g_ready_detail, sizeof g_ready_detail, "%s", detail ? detail : "");
    pthread_mutex_unlock(&g_ready_mu);
}

/* ---- rendering ------------------------------------------------------------ */

struct out {
    char *buf;
    size_t cap;
    size_t len; /* bytes the full text needs, may exceed cap */
};

static void __attribute__((format(printf, 2, 3))) put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

static void put_double(struct out *o, double v)
{
    if (isnan(v))
        put(o, "NaN");
    else if (isinf(v))
        put(o, v > 0 ? "+Inf" : "-Inf");
    else
        put(o, "%.15g", v);
}

static const char *type_text(enum kind k)
{
    switch (k) {
    case K_COUNTER: return "counter";
    case K_HIST: return "histogram";
    case K_GAUGE:
    case K_GAUGE_FN:
    case K_GAUGE_FAMILY: break;
    }
    return "gauge";
}

/* `name{labels}` with an optional extra label (the histogram's le). */
static void put_name(struct out *o, const char *name, const char *suffix, const char *labels,
                     const char *extra)
{
    put(o, "%s%s", name, suffix);
    if (labels || extra)
        put(o, "{%s%s%s}", labels ? labels : "", labels && extra ? "," : "", extra ? extra : "");
    put(o, " ");
}

/* A label value as the exposition format wants it: \\, \" and \n escaped. */
static void put_label_value(struct out *o, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            put(o, "\\\\");
        else if (*v == '"')
            put(o, "\\\"");
        else if (*v == '\n')
            put(o, "\\n");
        else
            put(o, "%c", *v);
    }
}

static void render_series(struct out *o, const struct series *s)
{
    switch (s->kind) {
    case K_COUNTER: {
        uint64_t v = atomic_load_explicit(&s->u.c.v, memory_order_relaxed);
        put_name(o, s->name, "", s->labels, NULL);
        if (s->micro)
            put(o, "%llu.%06llu\n", (unsigned long long)(v / 1000000u), (unsigned long long)(v % 1000000u));
        else
            put(o, "%llu\n", (unsigned long long)v);
        break;
    }
    case K_GAUGE:
        put_name(o, s->name, "", s->labels, NULL);
        put(o, "%lld\n", (long long)atomic_load_explicit(&s->u.g.v, memory_order_relaxed));
        break;
    case K_GAUGE_FN:
        put_name(o, s->name, "", s->labels, NULL);
        put_double(o, s->u.f.fn ? s->u.f.fn(s->u.f.ud) : NAN);
        put(o, "\n");
        break;
    case K_GAUGE_FAMILY: {
        /* Static: rendering holds g_mu, so one render at a time uses it. */
        static struct metrics_sample samples[METRICS_FAMILY_MAX];
        size_t n = s->u.fam.fn ? s->u.fam.fn(s->u.fam.ud, samples, METRICS_FAMILY_MAX) : 0;
        for (size_t i = 0; i < n && i < METRICS_FAMILY_MAX; i++) {
            put(o, "%s{%s=\"", s->name, s->u.fam.label);
            samples[i].value[sizeof samples[i].value - 1] = '\0';
            put_label_value(o, samples[i].value);
            put(o, "\"} ");
            put_double(o, samples[i].v);
            put(o, "\n");
        }
        break;
    }
    case K_HIST: {
        const struct metric_hist *h = &s->u.h;
        uint64_t cum = 0;
        char le[64];
        for (int i = 0; i <= h->nb; i++) {
            cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
            if (i < h->nb)
                snprintf(le, sizeof le, "le=\"%.15g\"", h->bounds[i]);
            else
                snprintf(le, sizeof le, "le=\"+Inf\"");
            put_name(o, s->name, "_bucket", s->labels, le);
            put(o, "%llu\n", (unsigned long long)cum);
        }
        /* _count is the +Inf bucket, not h->n read separately, so a scrape
         * racing an observation still shows _count == the +Inf bucket. */
        int64_t micro = (int64_t)atomic_load_explicit(&h->sum_micro, memory_order_relaxed);
        put_name(o, s->name, "_sum", s->labels, NULL);
        put_double(o, (double)micro / 1e6);
        put(o, "\n");
        put_name(o, s->name, "_count", s->labels, NULL);
        put(o, "%llu\n", (unsigned long long)cum);
        break;
    }
    }
}

/* Render everything; returns the length the full text needs (like snprintf). */
static size_t render(char *buf, size_t cap)
{
    struct out o = {buf, cap, 0};
    pthread_mutex_lock(&g_mu);
    collect();
    for (int i = 0; i < g_n; i++) {
        const struct series *s = &g_series[i];
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = strcmp(g_series[j].name, s->name) == 0;
        if (seen)
            continue; /* already rendered with the first series of its name */
        if (s->help)
            put(&o, "# HELP %s %s\n", s->name, s->help);
        put(&o, "# TYPE %s %s\n", s->name, type_text(s->kind));
        for (int j = i; j < g_n; j++)
            if (strcmp(g_series[j].name, s->name) == 0)
                render_series(&o, &g_series[j]);
    }
    pthread_mutex_unlock(&g_mu);
    if (cap > 0)
        buf[o.len < cap ? o.len : cap - 1] = '\0';
    return o.len;
}

size_t metrics_render(char *buf, size_t cap)
{
    size_t n = render(buf, cap);
    if (cap == 0)
        return 0;
    return n < cap ? n : cap - 1;
}

/* ---- process gauges --------------------------------------------------------- */

static double rss_bytes(void *ud)
{
    (void)ud;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return NAN;
    unsigned long size = 0, resident = 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    if (n != 2)
        return NAN;
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

static double open_fds(void *ud)
{
    (void)ud;
    /* Counting /proc/self/fd is a readdir per scrape: cheap at scrape rates. */
    int count = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return NAN;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            count++;
    closedir(d);
    return (double)(count - 1); /* minus the directory handle itself */
}

/* Register a built-in gauge unless the service already registered that
 * name (its own function then stays). */
static void gauge_fn_default(const char *name, const char *help, double (*fn)(void *))
{
    pthread_mutex_lock(&g_mu);
    bool have = false;
    for (int i = 0; i < g_n && !have; i++)
        have = strcmp(g_series[i].name, name) == 0;
    pthread_mutex_unlock(&g_mu);
    if (!have)
        metrics_gauge_fn(name, help, fn, NULL);
}

/* ---- HTTP ------------------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int status, const char *ctype, void *body,
                             size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

struct metrics_req {
    struct MHD_Connection *c;
};

const char *metrics_req_arg(struct metrics_req *req, const char *key)
{
    return MHD_lookup_connection_value(req->c, MHD_GET_ARGUMENT_KIND, key);
}

int metrics_set_admin(const char *token, size_t n, metrics_admin_fn fn, void *ud)
{
    char *t = malloc(n + 1);
    if (!t)
        return -1;
    memcpy(t, token, n);
    t[n] = 0;
    g_admin_token = t;
    g_admin_len = n;
    g_admin_fn = fn;
    g_admin_ud = ud;
    return 0;
}

/* Whether got (gn bytes) is the admin token. The loop runs over the whole
 * configured token whatever got holds, and accumulates differences
 * instead of stopping at the first, so the time says nothing about how
 * much of a guess was right (only the configured length is not secret). */
static bool admin_token_ok(const char *got, size_t gn)
{
    volatile unsigned char diff = gn != g_admin_len;
    for (size_t i = 0; i < g_admin_len; i++)
        diff |= (unsigned char)(g_admin_token[i] ^ (i < gn ? got[i] : 0));
    return g_admin_len > 0 && diff == 0;
}

/* POST /admin/<name>: called once the whole request (any body ignored)
 * has arrived. */
static enum MHD_Result admin(struct MHD_Connection *c, const char *name)
{
    static const char json[] = "application/json";
    if (!g_admin_fn)
        return reply(c, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", (void *)"not found", 9,
                     MHD_RESPMEM_PERSISTENT);
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    static const char bearer[] = "Bearer ";
    if (!auth || strncmp(auth, bearer, sizeof bearer - 1) != 0 ||
        !admin_token_ok(auth + sizeof bearer - 1, strlen(auth + sizeof bearer - 1))) {
        log_warn("event=admin_refused"); /* not the URL: a stranger's text */
        static const char no[] = "{\"error\":\"unauthorized\"}";
        return reply(c, MHD_HTTP_UNAUTHORIZED, json, (void *)no, sizeof no - 1, MHD_RESPMEM_PERSISTENT);
    }
    char body[512];
    struct metrics_req req = {c};
    body[0] = 0;
    unsigned status = g_admin_fn(g_admin_ud, name, &req, body, sizeof body);
    return reply(c, status, json, body, strlen(body), MHD_RESPMEM_MUST_COPY);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_size,
                              void **req_cls)
{
    (void)cls;
    (void)version;
    (void)upload_data;
    static const char text[] = "text/plain; charset=utf-8";
    if (strcmp(method, "POST") == 0 && strncmp(url, "/admin/", 7) == 0) {
        /* libmicrohttpd calls a POST's handler once for the headers, then
         * per body chunk, then once more with nothing: answer that last. */
        static int seen;
        if (!*req_cls) {
            *req_cls = &seen;
            return MHD_YES;
        }
        if (*upload_size) {
            *upload_size = 0; /* a body is not used */
            return MHD_YES;
        }
        return admin(c, url + 7);
    }
    (void)upload_size;
    (void)req_cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, text, (void *)"method not allowed", 18,
                     MHD_RESPMEM_PERSISTENT);
    if (strcmp(url, "/metrics") == 0) {
        size_t cap = 16384;
        for (;;) {
            char *buf = malloc(cap);
            if (!buf)
                return MHD_NO;
            size_t need = render(buf, cap);
            if (need < cap)
                return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", buf, need,
                             MHD_RESPMEM_MUST_FREE);
            free(buf);
            cap = need + 1024; /* a gauge may have grown between passes */
        }
    }
    if (strcmp(url, "/healthz") == 0)
        return reply(c, MHD_HTTP_OK, text, (void *)"ok", 2, MHD_RESPMEM_PERSISTENT);
    if (strcmp(url, "/readyz") == 0) {
        pthread_mutex_lock(&g_mu);
        collect(); /* the service may set readiness there */
        pthread_mutex_unlock(&g_mu);
        bool ready = atomic_load(&g_ready);
        char body[sizeof g_ready_detail + 16];
        pthread_mutex_lock(&g_ready_mu);
        int n = snprintf(body, sizeof body, "%s%s%s", ready ? "ready" : "not ready",
                         g_ready_detail[0] ? " " : "", g_ready_detail);
        pthread_mutex_unlock(&g_ready_mu);
        return reply(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, text, body, (size_t)n,
                     MHD_RESPMEM_MUST_COPY);
    }
    return reply(c, MHD_HTTP_NOT_FOUND, text, (void *)"not found", 9, MHD_RESPMEM_PERSISTENT);
}

/* Split "host:port", "[v6]:port", ":port" or "port". host is "" for any. */
static int split_listen(const char *listen, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon;
    host[0] = '\0';
    if (listen[0] == '[') {
        const char *rb = strchr(listen, ']');
        if (!rb || rb[1] != ':')
            return -1;
        size_t hl = (size_t)(rb - listen - 1);
        if (hl >= hcap)
            return -1;
        memcpy(host, listen + 1, hl);
        host[hl] = '\0';
        colon = rb + 1;
    } else {
        colon = strrchr(listen, ':');
        if (colon) {
            size_t hl = (size_t)(colon - listen);
            if (hl >= hcap)
                return -1;
            memcpy(host, listen, hl);
            host[hl] = '\0';
        }
    }
    const char *p = colon ? colon + 1 : listen;
    if (!*p || strlen(p) >= pcap || strspn(p, "0123456789") != strlen(p))
        return -1;
    snprintf(port, pcap, "%s", p);
    return 0;
}

int metrics_start(const char *listen)
{
    if (!listen || !*listen)
        return 0;
    char host[256], port[16];
    if (split_listen(listen, host, sizeof host, port, sizeof port) < 0) {
        log_error("event=metrics_listen_bad listen=%s", listen);
        return -1;
    }
    if (atoi(port) == 0)
        return 0; /* port 0 = metrics off */
    if (atoi(port) > 65535) {
        log_error("event=metrics_listen_bad listen=%s", listen);
        return -1;
    }
    if (g_mhd)
        return 0;

    gauge_fn_default("process_resident_memory_bytes", "Resident memory size in bytes.", rss_bytes);
    gauge_fn_default("process_open_fds", "Number of open file descriptors.", open_fds);
    char lab[128];
    snprintf(lab, sizeof lab, "version=\"%s\",commit=\"%s\"", sl_version, sl_commit);
    metric_set(metrics_gauge("sluice_build_info",
                             "The version and commit this program was built from (always 1)", lab),
               1);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host[0] && strcmp(host, "*") != 0 ? host : NULL, port, &hints, &res);
    if (gai != 0 || !res) {
        log_error("event=metrics_listen_bad listen=%s err=\"%s\"", listen, gai_strerror(gai));
        return -1;
    }
    /* Prefer IPv4: getaddrinfo may list :: or ::1 first ("localhost"), and
     * probes usually come to 127.0.0.1 or the pod's v4 address. An explicit
     * [v6] host resolves to v6 only and is honoured. */
    struct addrinfo *ai = res;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (a->ai_family == AF_INET) {
            ai = a;
            break;
        }
    /* epoll, not MHD's default select(): the edge holds tens of thousands of
     * fds, so a scrape's accepted socket is far above FD_SETSIZE. */
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* 64 connections in all, METRICS_PER_IP from one address, 10 s each:
     * one client holding slow sockets cannot take the places the kubelet's
     * probes and Prometheus need (a failed liveness probe restarts the pod). */
    g_mhd = MHD_start_daemon(flags, (uint16_t)atoi(port), NULL, NULL, handle, NULL, MHD_OPTION_SOCK_ADDR,
                             ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, METRICS_MAX_CONNS,
                             MHD_OPTION_PER_IP_CONNECTION_LIMIT, METRICS_PER_IP,
                             MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    freeaddrinfo(res);
    if (!g_mhd) {
        log_error("event=metrics_listen_fail listen=%s", listen);
        return -1;
    }
    return 0;
}

void metrics_stop(void)
{
    if (g_mhd) {
        MHD_stop_daemon(g_mhd);
        g_mhd = NULL;
    }
    if (g_admin_token) { /* the server is gone: nobody compares against it any more */
        explicit_bzero(g_admin_token, g_admin_len);
        free(g_admin_token);
        g_admin_token = NULL;
        g_admin_fn = NULL;
    }
}
