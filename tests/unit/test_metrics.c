/* SPDX-License-Identifier: Apache-2.0 */
/* test_metrics.c - the exposition text is exact (HELP/TYPE once per name,
 * label sets grouped under it, cumulative histogram buckets with +Inf, _sum
 * and _count), and the HTTP server answers /metrics, /healthz and /readyz
 * (503 until metrics_set_ready(true)) on 127.0.0.1, read with a plain socket.
 * The collect hook runs before every render and /readyz answer, and mirrors
 * counts a core keeps itself (sl/stat.h) exactly, histograms included. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "sl/metrics.h"
#include "sl/version.h"

#define PORT 25101

static const char expected[] = "# HELP t_closed_total Closed connections.\n"
                               "# TYPE t_closed_total counter\n"
                               "t_closed_total{reason=\"idle\"} 3\n"
                               "t_closed_total{reason=\"auth\"} 1\n"
                               "# HELP t_conns Open connections.\n"
                               "# TYPE t_conns gauge\n"
                               "t_conns -2\n"
                               "# HELP t_lat_seconds Latency.\n"
                               "# TYPE t_lat_seconds histogram\n"
                               "t_lat_seconds_bucket{le=\"0.005\"} 2\n"
                               "t_lat_seconds_bucket{le=\"0.1\"} 3\n"
                               "t_lat_seconds_bucket{le=\"1\"} 3\n"
                               "t_lat_seconds_bucket{le=\"+Inf\"} 4\n"
                               "t_lat_seconds_sum 2.056\n"
                               "t_lat_seconds_count 4\n"
                               "t_lat_seconds_bucket{op=\"w\",le=\"10\"} 1\n"
                               "t_lat_seconds_bucket{op=\"w\",le=\"+Inf\"} 1\n"
                               "t_lat_seconds_sum{op=\"w\"} 7\n"
                               "t_lat_seconds_count{op=\"w\"} 1\n"
                               "# HELP t_fn Computed.\n"
                               "# TYPE t_fn gauge\n"
                               "t_fn 1.5\n";

static double fn_val(void *ud)
{
    return *(double *)ud;
}
static double fnv = 1.5;

static void test_render(void **state)
{
    (void)state;
    /* Interleave registrations: the label sets must still be grouped. */
    struct metric_counter *idle = metrics_counter("t_closed_total", "Closed connections.", "reason=\"idle\"");
    struct metric_gauge *conns = metrics_gauge("t_conns", "Open connections.", NULL);
    const double b[] = {0.005, 0.1, 1};
    struct metric_hist *lat = metrics_hist("t_lat_seconds", "Latency.", NULL, b, 3);
    struct metric_counter *auth = metrics_counter("t_closed_total", "Closed connections.", "reason=\"auth\"");
    const double b2[] = {10};
    struct metric_hist *w = metrics_hist("t_lat_seconds", "Latency.", "op=\"w\"", b2, 1);
    metrics_gauge_fn("t_fn", "Computed.", fn_val, &fnv);

    /* Registering the same series again returns the same storage. */
    assert_ptr_equal(metrics_counter("t_closed_total", "Closed connections.", "reason=\"idle\""), idle);
    assert_ptr_not_equal(idle, auth);

    metric_inc(idle);
    metric_add(idle, 2);
    metric_inc(auth);
    metric_set(conns, 5);
    metric_gadd(conns, -7);
    metric_observe(lat, 0.001);
    metric_observe(lat, 0.005); /* le is inclusive */
    metric_observe(lat, 0.05);
    metric_observe(lat, 2.0);
    metric_observe(w, 7);

    char buf[8192];
    size_t n = metrics_render(buf, sizeof buf);
    assert_string_equal(buf, expected);
    assert_int_equal(n, strlen(expected));

    /* Truncation: cap-1 bytes and a NUL. */
    char small[40];
    n = metrics_render(small, sizeof small);
    assert_int_equal(n, sizeof small - 1);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_memory_equal(small, expected, sizeof small - 1);
}

/* A table registers each row as metrics_counter would, in order. */
static void test_counter_table(void **state)
{
    (void)state;
    struct metric_counter *a = NULL, *b = NULL;
    const struct metrics_counter_def d[] = {{&a, "t_tab_a_total", "A."}, {&b, "t_tab_b_total", "B."}};
    metrics_counters(d, 2);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_ptr_equal(metrics_counter("t_tab_a_total", "A.", NULL), a);
    assert_ptr_equal(metrics_counter("t_tab_b_total", "B.", NULL), b);
}

struct resp {
    int status;
    char body[65536];
};

/* A socket connected to the server from source address src (host order). */
static int connect_from(uint32_t src)
{
    /* dup2 onto a high number so the client side is above FD_SETSIZE too. */
    int fd0 = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd0 >= 0);
    int fd = fcntl(fd0, F_DUPFD, 1200);
    assert_true(fd >= 1200);
    close(fd0);
    struct sockaddr_in me = {.sin_family = AF_INET};
    me.sin_addr.s_addr = htonl(src);
    assert_int_equal(bind(fd, (struct sockaddr *)&me, sizeof me), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(PORT)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static int probe_timeout_s; /* 0: wait as long as it takes */

/* One HTTP/1.0 GET with a plain socket; the server closes after replying.
 * With probe_timeout_s, a read that waits longer fails the test. */
static void http_req_from(uint32_t src, const char *req, struct resp *r)
{
    int fd = connect_from(src);
    if (probe_timeout_s) {
        struct timeval tv = {.tv_sec = probe_timeout_s};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    size_t rl = strlen(req);
    assert_int_equal(write(fd, req, rl), (ssize_t)rl);
    static char raw[131072];
    size_t n = 0;
    ssize_t k;
    while (n + 1 < sizeof raw && (k = read(fd, raw + n, sizeof raw - 1 - n)) > 0)
        n += (size_t)k;
    assert_true(k == 0); /* the server closed: not a timeout */
    raw[n] = '\0';
    close(fd);
    assert_int_equal(sscanf(raw, "HTTP/1.%*d %d", &r->status), 1);
    char *body = strstr(raw, "\r\n\r\n");
    assert_non_null(body);
    snprintf(r->body, sizeof r->body, "%s", body + 4);
}

static void http_get_from(uint32_t src, const char *path, struct resp *r)
{
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    http_req_from(src, req, r);
}

/* POST path with "Authorization: <auth>" unless auth is NULL. */
static void http_post(const char *path, const char *auth, struct resp *r)
{
    char req[512];
    snprintf(req, sizeof req, "POST %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s%s%sContent-Length: 0\r\n\r\n", path,
             auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : "");
    http_req_from(INADDR_LOOPBACK, req, r);
}

static void http_get(const char *path, struct resp *r)
{
    http_get_from(INADDR_LOOPBACK, path, r);
}

static int admin_calls;

static unsigned admin_echo(void *ud, const char *name, struct metrics_req *req, char *body, size_t cap)
{
    (void)ud;
    admin_calls++;
    const char *n = metrics_req_arg(req, "n");
    snprintf(body, cap, "{\"name\":\"%s\",\"n\":\"%s\"}", name, n ? n : "-");
    return 202;
}

/* POST /admin/NAME: 404 until a service sets a token, then 401 for every
 * token but the exact one (missing, wrong, a prefix, longer, another
 * scheme), and the handler's status and body for it. */
static void test_admin(void **state)
{
    (void)state;
    static struct resp r;
    assert_int_equal(metrics_start("127.0.0.1:25101"), 0);
    http_post("/admin/shed", "Bearer s3cret", &r);
    assert_int_equal(r.status, 404);
    metrics_stop();

    assert_int_equal(metrics_set_admin("s3cret", 6, admin_echo, NULL), 0);
    assert_int_equal(metrics_start("127.0.0.1:25101"), 0);
    const char *bad[] = {NULL,      "Bearer s3creX", "Bearer s3cre", "Bearer s3cret1",
                         "Bearer ", "Basic s3cret",  "s3cret"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http_post("/admin/shed?n=1", bad[i], &r);
        assert_int_equal(r.status, 401);
    }
    assert_int_equal(admin_calls, 0);
    http_post("/admin/shed?n=42", "Bearer s3cret", &r);
    assert_int_equal(r.status, 202);
    assert_string_equal(r.body, "{\"name\":\"shed\",\"n\":\"42\"}");
    assert_int_equal(admin_calls, 1);
    http_get("/admin/shed?n=42", &r); /* only POST reaches it */
    assert_int_equal(r.status, 404);
    assert_int_equal(admin_calls, 1);
    metrics_stop();

    /* metrics_stop forgot the token: a later server has no admin. */
    assert_int_equal(metrics_start("127.0.0.1:25101"), 0);
    http_post("/admin/shed", "Bearer s3cret", &r);
    assert_int_equal(r.status, 404);
    metrics_stop();
}

static _Atomic int64_t ready_src;

static void ready_from(void *ud)
{
    metrics_set_ready(stat_gget(ud) != 0);
}

/* A counter kept in millionths renders in the base unit, exactly. */
static void test_micro_counter(void **state)
{
    (void)state;
    struct metric_counter *c = metrics_counter_micro("t_paused_seconds_total", "t", NULL);
    metric_add(c, 2500001); /* 2.500001 s */
    static char buf[1 << 16];
    metrics_render(buf, sizeof buf);
    assert_non_null(strstr(buf, "\nt_paused_seconds_total 2.500001\n"));
    assert_non_null(strstr(buf, "# TYPE t_paused_seconds_total counter\n"));
    metric_add(c, 999999);
    metrics_render(buf, sizeof buf);
    assert_non_null(strstr(buf, "\nt_paused_seconds_total 3.500000\n"));
}

static void test_http(void **state)
{
    (void)state;
    assert_int_equal(metrics_start("127.0.0.1:0"), 0); /* port 0 = off: no server, no error */
    assert_int_equal(metrics_start("nonsense"), -1);
    /* Push fds past FD_SETSIZE first: a select()-based server would fail to
     * start or to accept here (the edge runs with tens of thousands of fds). */
    int low = open("/dev/null", O_RDONLY);
    assert_true(low >= 0);
    int fill;
    while ((fill = dup(low)) >= 0 && fill < 1100) {
    } /* every fd below 1100 is now taken: the server's sockets come above */
    assert_true(fill >= 1100);
    assert_int_equal(metrics_start("127.0.0.1:"
                                   "25101"),
                     0);
    static struct resp r;

    http_get("/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok");

    http_get("/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "not ready");
    metrics_set_ready(true);
    http_get("/readyz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ready");
    metrics_set_ready(false);
    http_get("/readyz", &r);
    assert_int_equal(r.status, 503);
    /* Detail text after the verdict (per-dependency state), then none again. */
    metrics_set_ready_detail("persister=up notifier=down");
    http_get("/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "not ready persister=up notifier=down");
    metrics_set_ready(true);
    http_get("/readyz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ready persister=up notifier=down");
    char longer[300];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = 0;
    metrics_set_ready_detail(longer); /* truncated, never overflows */
    http_get("/readyz", &r);
    assert_int_equal(strlen(r.body), strlen("ready ") + 127);
    metrics_set_ready_detail(NULL);
    metrics_set_ready(false);
    http_get("/readyz", &r);
    assert_string_equal(r.body, "not ready");

    http_get("/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, expected));
    /* The server registered the process gauges; RSS is a positive number. */
    char *rss = strstr(r.body, "\nprocess_resident_memory_bytes ");
    assert_non_null(rss);
    assert_true(strtod(rss + strlen("\nprocess_resident_memory_bytes "), NULL) > 1e5);
    assert_non_null(strstr(r.body, "# TYPE process_resident_memory_bytes gauge\n"));
    assert_non_null(strstr(r.body, "\nprocess_open_fds "));
    /* What build this is, with the version and commit --version prints. */
    char info[200];
    snprintf(info, sizeof info, "\nsluice_build_info{version=\"%s\",commit=\"%s\"} 1\n", sl_version,
             sl_commit);
    assert_non_null(strstr(r.body, info));
    assert_true(strlen(sl_version) > 0 && strlen(sl_commit) > 0);

    /* The collect hook runs before /readyz answers: readiness can follow a
     * core's state without anyone calling metrics_set_ready meanwhile. */
    metrics_set_collect(ready_from, &ready_src);
    ready_src = 1;
    http_get("/readyz", &r);
    assert_int_equal(r.status, 200);
    ready_src = 0;
    http_get("/readyz", &r);
    assert_int_equal(r.status, 503);
    metrics_set_collect(NULL, NULL);
    ready_src = 1;
    http_get("/readyz", &r);
    assert_int_equal(r.status, 503);

    http_get("/nope", &r);
    assert_int_equal(r.status, 404);

    /* One client holding 64 idle connections (the server's whole limit)
     * takes only its 8 per address: another address is answered at once,
     * not after the idle ones time out (10 s): the probe's own deadline is
     * 3 s here, as a kubelet's would be. */
    int idle[64];
    for (int i = 0; i < 64; i++)
        idle[i] = connect_from(INADDR_LOOPBACK);
    usleep(300 * 1000); /* the server has accepted (or refused) them all */
    probe_timeout_s = 3;
    http_get_from(INADDR_LOOPBACK + 1, "/healthz", &r); /* 127.0.0.2 */
    probe_timeout_s = 0;
    assert_int_equal(r.status, 200);
    for (int i = 0; i < 64; i++)
        close(idle[i]);
    metrics_stop();

    /* Stopped: nothing listens any more. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(PORT)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_not_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    close(fd);
}

/* Counts a "core" keeps in sl/stat.h fields, mirrored by a collect hook. */
static struct {
    _Atomic uint64_t rows;
    struct stat_hist lat;
} core;
static struct {
    struct metric_counter *rows;
    struct metric_hist *lat;
    int calls;
} mirror;

static void collect_core(void *ud)
{
    assert_ptr_equal(ud, &mirror);
    mirror.calls++;
    metric_counter_set(mirror.rows, stat_get(&core.rows));
    metric_hist_set(mirror.lat, &core.lat);
}

static void test_collect(void **state)
{
    (void)state;
    static const double b[] = {1, 10};
    stat_hist_init(&core.lat, b, 2);
    mirror.rows = metrics_counter("t_core_rows_total", "Rows.", NULL);
    mirror.lat = metrics_hist("t_core_lat", "Lat.", NULL, core.lat.bounds, core.lat.nb);
    metrics_set_collect(collect_core, &mirror);

    stat_add(&core.rows, 5);
    stat_inc(&core.rows);
    stat_hist_observe(&core.lat, 0.5);
    stat_hist_observe(&core.lat, 1); /* le is inclusive, as metric_observe */
    stat_hist_observe(&core.lat, 5);
    stat_hist_observe(&core.lat, 100);
    stat_hist_observe(&core.lat, NAN); /* +Inf, adds nothing to the sum */
    static char buf[16384];
    metrics_render(buf, sizeof buf);
    assert_int_equal(mirror.calls, 1);
    assert_non_null(strstr(buf, "# HELP t_core_rows_total Rows.\n# TYPE t_core_rows_total counter\n"
                                "t_core_rows_total 6\n"));
    assert_non_null(strstr(buf, "# TYPE t_core_lat histogram\n"
                                "t_core_lat_bucket{le=\"1\"} 2\n"
                                "t_core_lat_bucket{le=\"10\"} 3\n"
                                "t_core_lat_bucket{le=\"+Inf\"} 5\n"
                                "t_core_lat_sum 106.5\n"
                                "t_core_lat_count 5\n"));

    /* Every scrape copies afresh; nothing is lost between scrapes. */
    stat_add(&core.rows, 10);
    for (int i = 0; i < 1000; i++)
        stat_hist_observe(&core.lat, 2);
    metrics_render(buf, sizeof buf);
    assert_int_equal(mirror.calls, 2);
    assert_non_null(strstr(buf, "\nt_core_rows_total 16\n"));
    assert_non_null(strstr(buf, "t_core_lat_bucket{le=\"10\"} 1003\n"));
    assert_non_null(strstr(buf, "t_core_lat_sum 2106.5\nt_core_lat_count 1005\n"));

    /* Without the hook the series keep their last copy. */
    metrics_set_collect(NULL, NULL);
    stat_add(&core.rows, 1);
    metrics_render(buf, sizeof buf);
    assert_int_equal(mirror.calls, 2);
    assert_non_null(strstr(buf, "\nt_core_rows_total 16\n"));
}

/* A family's series come from its function at each scrape, label values
 * escaped; with fn NULL the family shows no series. */
static size_t family_fn(void *ud, struct metrics_sample *out, size_t cap)
{
    size_t *n = ud;
    const char *vals[] = {"edge-a", "we\"ird\\edge\n"};
    for (size_t i = 0; i < *n && i < cap && i < 2; i++) {
        snprintf(out[i].value, sizeof out[i].value, "%s", vals[i]);
        out[i].v = i == 0 ? -0.25 : 3;
    }
    return *n < cap ? *n : cap;
}

static void test_family(void **state)
{
    (void)state;
    size_t n = 2;
    metrics_gauge_family_fn("t_skew_seconds", "Skew.", "edge", family_fn, &n);
    char buf[16384];
    metrics_render(buf, sizeof buf);
    assert_non_null(strstr(buf, "# TYPE t_skew_seconds gauge\n"
                                "t_skew_seconds{edge=\"edge-a\"} -0.25\n"
                                "t_skew_seconds{edge=\"we\\\"ird\\\\edge\\n\"} 3\n"));
    n = 1; /* an edge gone: its series goes */
    metrics_render(buf, sizeof buf);
    assert_non_null(strstr(buf, "t_skew_seconds{edge=\"edge-a\"} -0.25\n"));
    assert_null(strstr(buf, "ird"));
    metrics_gauge_family_fn("t_skew_seconds", "Skew.", "edge", NULL, NULL);
    metrics_render(buf, sizeof buf);
    assert_non_null(strstr(buf, "# TYPE t_skew_seconds gauge\n"));
    assert_null(strstr(buf, "t_skew_seconds{"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render), cmocka_unit_test(test_micro_counter), cmocka_unit_test(test_http),
        cmocka_unit_test(test_admin),  cmocka_unit_test(test_counter_table), cmocka_unit_test(test_collect),
        cmocka_unit_test(test_family),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
