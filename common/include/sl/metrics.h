/* SPDX-License-Identifier: Apache-2.0 */
/* sl/metrics.h - Prometheus metrics and the health endpoints.
 *
 * Metrics are registered once at startup (not thread-safe) and then updated
 * from any thread with relaxed atomics (lock-free, no allocation). An HTTP
 * server (libmicrohttpd, its own thread) serves:
 *   /metrics  text exposition format 0.0.4
 *   /healthz  200 "ok" while the process runs
 *   /readyz   200 "ready" or 503 "not ready" per metrics_set_ready(), then
 *             a space and the text of metrics_set_ready_detail() if any
 *   /admin/NAME  POST with a bearer token, when the service set one
 *             (metrics_set_admin)
 * Series with labels are registered one per label set: the `labels` string
 * is the text inside the braces, e.g. "reason=\"idle\"", or NULL. Registering
 * the same name and labels again returns the same storage; a name reused
 * with another type, or more than 512 series, aborts (a startup bug).
 * metrics_start also registers process_resident_memory_bytes and
 * process_open_fds (unless the service registered those names itself) and
 * sluice_build_info{version,commit} 1 (sl/version.h). */
#ifndef SL_METRICS_H
#define SL_METRICS_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/stat.h"

struct metric_counter {
    _Atomic uint64_t v;
};
struct metric_gauge {
    _Atomic int64_t v;
};

#define METRICS_MAX_BUCKETS 16
struct metric_hist {
    int nb;
    double bounds[METRICS_MAX_BUCKETS]; /* upper bounds, ascending; +Inf implied */
    _Atomic uint64_t counts[METRICS_MAX_BUCKETS + 1];
    _Atomic uint64_t sum_micro; /* sum of observations x 1e6, kept as an integer for atomics */
    _Atomic uint64_t n;
};

/* Registration returns storage owned by the registry (lives until exit). */
struct metric_counter *metrics_counter(const char *name, const char *help, const char *labels);
struct metric_gauge *metrics_gauge(const char *name, const char *help, const char *labels);

/* A counter of seconds (or any base unit) kept as an integer number of
 * millionths: add microseconds, /metrics shows seconds with 6 decimals
 * (the base units of docs/metrics.md without a float in the hot path). */
struct metric_counter *metrics_counter_micro(const char *name, const char *help, const char *labels);

/* A service's unlabelled counters as one table, registered in order:
 * *d[i].out = metrics_counter(d[i].name, d[i].help, NULL). */
struct metrics_counter_def {
    struct metric_counter **out;
    const char *name, *help;
};
void metrics_counters(const struct metrics_counter_def *d, size_t n);
/* bounds in seconds (for *_seconds histograms) or plain units; nb <= METRICS_MAX_BUCKETS. */
struct metric_hist *metrics_hist(const char *name, const char *help, const char *labels, const double *bounds,
                                 int nb);

static inline void metric_inc(struct metric_counter *c)
{
    atomic_fetch_add_explicit(&c->v, 1, memory_order_relaxed);
}
static inline void metric_add(struct metric_counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}
static inline void metric_set(struct metric_gauge *g, int64_t v)
{
    atomic_store_explicit(&g->v, v, memory_order_relaxed);
}
static inline void metric_gadd(struct metric_gauge *g, int64_t d)
{
    atomic_fetch_add_explicit(&g->v, d, memory_order_relaxed);
}

/* Observe one value (seconds for *_seconds histograms). Lock-free. */
void metric_observe(struct metric_hist *h, double value);

/* Mirrors of counts a core keeps itself (sl/stat.h), for a collect hook:
 * c shows v, h shows exactly src's buckets and sum. Nothing else may update
 * c or h, v must never decrease, and h must have been registered with src's
 * bounds (metrics_hist(..., src->bounds, src->nb)). Lock-free. */
void metric_counter_set(struct metric_counter *c, uint64_t v);
void metric_hist_set(struct metric_hist *h, const struct stat_hist *src);

/* fn(ud) runs before every /metrics render (metrics_render too) and every
 * /readyz answer, on the thread serving it, with the registry lock held (so
 * it must not register metrics): the place to copy a core's counts into
 * their metrics and set readiness, so a scrape sees them as of that moment.
 * One hook per process; NULL removes it (do so before ud is freed). */
void metrics_set_collect(void (*fn)(void *ud), void *ud);

/* A gauge computed on scrape (e.g. RSS); fn is called on the HTTP thread
 * under the registry lock, so it must not register metrics itself. */
void metrics_gauge_fn(const char *name, const char *help, double (*fn)(void *), void *ud);

/* A gauge family whose label values are known only at scrape time (one
 * series per edge a service hears from, say): fn fills at most cap samples
 * and returns how many. It runs on the HTTP thread under the registry lock
 * (so it must not register metrics, and should only copy). The renderer
 * escapes the values; a scrape shows at most METRICS_FAMILY_MAX series.
 * Registering the name again replaces fn and ud; fn NULL shows no series
 * (do so before ud is freed). */
#define METRICS_FAMILY_MAX 128
struct metrics_sample {
    char value[256]; /* the label's value, NUL-terminated */
    double v;
};
void metrics_gauge_family_fn(const char *name, const char *help, const char *label,
                             size_t (*fn)(void *ud, struct metrics_sample *out, size_t cap), void *ud);
/* Authenticated admin requests: POST /admin/<name>?k=v&... with the header
 * "Authorization: Bearer <token>". Without metrics_set_admin (or with fn
 * NULL) /admin/ answers 404. A missing or wrong token answers 401 (the
 * comparison takes the same time whatever the token sent, for a token of
 * the configured length). Otherwise fn(ud, name, req, body, cap) runs on
 * the HTTP thread (not under the registry lock: it may not block long),
 * reads arguments with metrics_req_arg, writes a NUL-terminated JSON body
 * of at most cap-1 bytes, and returns the HTTP status. token (n bytes) is
 * copied; call before metrics_start, once. 0, or -1 if out of memory. */
struct metrics_req;
typedef unsigned (*metrics_admin_fn)(void *ud, const char *name, struct metrics_req *req, char *body,
                                     size_t cap);
int metrics_set_admin(const char *token, size_t n, metrics_admin_fn fn, void *ud);
/* A query argument of req, or NULL (borrowed: valid during fn only). */
const char *metrics_req_arg(struct metrics_req *req, const char *key);

/* Start the HTTP server (at most 64 connections, 8 from one address, idle
 * ones closed after 10 s) on "host:port" (port 0 = disabled). Returns 0 or -1
 * (logged). The server thread runs until metrics_stop(). */
int metrics_start(const char *listen);
void metrics_stop(void);
void metrics_set_ready(bool ready);
/* Text appended to the /readyz body (e.g. "persister=up notifier=down"),
 * NULL or "" for none; truncated to 127 bytes. Thread-safe. */
void metrics_set_ready_detail(const char *detail);

/* Render the exposition text into buf (for tests). Returns bytes written
 * (truncated to cap-1, NUL-terminated). */
size_t metrics_render(char *buf, size_t cap);

#endif
