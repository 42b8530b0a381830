/* SPDX-License-Identifier: Apache-2.0 */
/* server.c - HTTP in, JSON out (server.h).
 *
 * A request goes: route (404/405/400) -> token (401/403) -> rate (429) ->
 * body, if any (413) -> store -> reply. Everything before the body is
 * decided on libmicrohttpd's first call for the request, so a refused
 * request's body is never read. Errors are {"error": code, "message": text}
 * with a fixed code per status (docs/api.md, "Errors").
 *
 * Deliberately not here: SQL (store.c), parameter syntax (route.c), token
 * files (auth.c), flags and signals (main.c). Logs one line per 5xx, never
 * per request (the access log is the metrics). */
#define _GNU_SOURCE
#include "server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sl/log.h"
#include "sl/metrics.h"

#define JSON_TYPE   "application/json"
#define METRICS_BUF (512u * 1024u)

struct server {
    struct server_cfg cfg;
    struct MHD_Daemon *mhd;
    /* cfg.auth: read by every request thread, replaced by server_swap_auth.
     * Held only across auth_check and the copy of the token's NAME. */
    pthread_rwlock_t auth_lock;
};

/* One request's state across libmicrohttpd's calls. */
struct req {
    uint64_t t0_us;
    struct route route;
    bool routed;  /* checks done, waiting for the body */
    bool too_big; /* the body passed max_body: 413 at the end */
    char *body;
    size_t len, cap;
};

void server_stats_init(struct server_stats *s)
{
    static const double b[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
    memset(s, 0, sizeof *s);
    stat_hist_init(&s->seconds, b, (int)(sizeof b / sizeof b[0]));
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void count(struct server *s, struct req *r, unsigned status)
{
    enum server_class c = status < 400 ? SERVER_2XX : status < 500 ? SERVER_4XX : SERVER_5XX;
    unsigned id = r && r->route.id ? (unsigned)r->route.id : 0u;
    stat_inc(&s->cfg.stats->requests[id][c]);
    if (r)
        stat_hist_observe(&s->cfg.stats->seconds, (double)(mono_us() - r->t0_us) / 1e6);
}

/* Queue a reply; body is copied (MUST_COPY) unless own, then freed by
 * libmicrohttpd. Extra header: name/value or NULL. */
static enum MHD_Result reply(struct server *s, struct MHD_Connection *c, struct req *r, unsigned status,
                             const char *type, char *body, size_t len, bool own, const char *hname,
                             const char *hval)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, body, own ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (!resp) {
        if (own)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (hname)
        MHD_add_response_header(resp, hname, hval);
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    count(s, r, status);
    return ret;
}

/* {"error": code, "message": msg}: both are fixed texts of ours (no quotes
 * or control bytes in them), so no escaping is needed. */
static enum MHD_Result fail(struct server *s, struct MHD_Connection *c, struct req *r, unsigned status,
                            const char *code, const char *msg, const char *hname, const char *hval)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "{\"error\":\"%s\",\"message\":\"%s\"}\n", code, msg);
    return reply(s, c, r, status, JSON_TYPE, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1, false,
                 hname, hval);
}

static enum MHD_Result store_reply(struct server *s, struct MHD_Connection *c, struct req *r,
                                   enum store_rc rc, char *json, size_t len, unsigned ok_status,
                                   const char *what)
{
    switch (rc) {
    case STORE_OK: return reply(s, c, r, ok_status, JSON_TYPE, json, len, true, NULL, NULL);
    case STORE_NOT_FOUND: return fail(s, c, r, MHD_HTTP_NOT_FOUND, "not_found", what, NULL, NULL);
    case STORE_BAD:
        return fail(s, c, r, MHD_HTTP_BAD_REQUEST, "bad_request", "a value is out of range", NULL, NULL);
    case STORE_CONFLICT: return fail(s, c, r, MHD_HTTP_CONFLICT, "conflict", what, NULL, NULL);
    case STORE_UNAVAILABLE:
        return fail(s, c, r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "the database is not reachable now",
                    "Retry-After", "1");
    case STORE_ERROR: break;
    }
    return fail(s, c, r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "the request failed (logged)", NULL,
                NULL);
}

static const char *get_arg(void *ud, const char *key)
{
    return MHD_lookup_connection_value(ud, MHD_GET_ARGUMENT_KIND, key);
}

/* The client's address as text, for rate limits without a token. */
static void peer_key(struct MHD_Connection *c, char *out, size_t cap)
{
    snprintf(out, cap, "addr:?");
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return;
    char a[INET6_ADDRSTRLEN] = "?";
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, a, sizeof a);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, a, sizeof a);
    snprintf(out, cap, "addr:%s", a);
}

static enum MHD_Result open_route(struct server *s, struct MHD_Connection *c, struct req *r)
{
    switch (r->route.id) {
    case ROUTE_HEALTHZ: return reply(s, c, r, MHD_HTTP_OK, "text/plain", "ok\n", 3, false, NULL, NULL);
    case ROUTE_READYZ: {
        bool up = store_ping(s->cfg.store);
        metrics_set_ready(up);
        return up ? reply(s, c, r, MHD_HTTP_OK, "text/plain", "ready\n", 6, false, NULL, NULL)
                  : reply(s, c, r, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", "not ready db=down\n", 18,
                          false, NULL, NULL);
    }
    default: break;
    }
    char *buf = malloc(METRICS_BUF);
    if (!buf)
        return MHD_NO;
    size_t n = metrics_render(buf, METRICS_BUF);
    return reply(s, c, r, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", buf, n, true, NULL, NULL);
}

static enum MHD_Result submit(struct server *s, struct MHD_Connection *c, struct req *r)
{
    uint8_t *mp = malloc(CMDREQ_BODY_MAX);
    if (!mp)
        return MHD_NO;
    struct cmdreq cr;
    const char *why = NULL;
    enum MHD_Result ret;
    if (cmdreq_parse(r->body ? r->body : "", r->len, mp, &cr, &why) != 0) {
        ret = fail(s, c, r, MHD_HTTP_BAD_REQUEST, "bad_request", why, NULL, NULL);
    } else {
        /* 64 random bits: ids of several API instances never meet. */
        uint64_t rnd = 0;
        char id[24];
        if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
            ret = fail(s, c, r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "no randomness", NULL, NULL);
        } else {
            snprintf(id, sizeof id, "c-%016llx", (unsigned long long)rnd);
            char *json = NULL;
            size_t len = 0;
            enum store_rc rc =
                store_submit(s->cfg.store, r->route.arg, id, &cr, s->cfg.max_queued, &json, &len);
            ret = store_reply(s, c, r, rc, json, len, MHD_HTTP_ACCEPTED,
                              rc == STORE_CONFLICT ? "the device has --max-queued pending commands already"
                                                   : "no such device");
        }
    }
    cmdreq_fini(&cr);
    free(mp);
    return ret;
}

/* The request is checked and its body (if any) read: answer it. */
static enum MHD_Result handle(struct server *s, struct MHD_Connection *c, struct req *r)
{
    const struct route *rt = &r->route;
    if (rt->scope == ROUTE_OPEN)
        return open_route(s, c, r);
    struct route_query q;
    const char *why = NULL;
    if (route_query_parse(rt->id, get_arg, c, &q, &why) != ROUTE_OK)
        return fail(s, c, r, MHD_HTTP_BAD_REQUEST, "bad_request", why, NULL, NULL);
    char *json = NULL;
    size_t len = 0;
    enum store_rc rc;
    /* The store call first: as an argument of store_reply, json and len
     * might be read before it ran. */
    switch (rt->id) {
    case ROUTE_DEVICES:
        rc = store_devices(s->cfg.store, &q, &json, &len);
        return store_reply(s, c, r, rc, json, len, MHD_HTTP_OK, "");
    case ROUTE_DEVICE:
        rc = store_device(s->cfg.store, rt->arg, &json, &len);
        return store_reply(s, c, r, rc, json, len, MHD_HTTP_OK, "no such device");
    case ROUTE_TELEMETRY:
        rc = store_telemetry(s->cfg.store, rt->arg, &q, &json, &len);
        return store_reply(s, c, r, rc, json, len, MHD_HTTP_OK, "no such device");
    case ROUTE_DATA:
        rc = store_delete_data(s->cfg.store, rt->arg, &json, &len);
        return store_reply(s, c, r, rc, json, len, MHD_HTTP_OK, "no such device");
    case ROUTE_COMMAND:
        rc = store_command(s->cfg.store, rt->arg, &json, &len);
        return store_reply(s, c, r, rc, json, len, MHD_HTTP_OK, "no such command");
    case ROUTE_SUBMIT: return submit(s, c, r);
    case ROUTE_CONNECTION:
        rc = store_kick(s->cfg.store, rt->arg, &json, &len);
        return store_reply(s, c, r, rc, json, len, MHD_HTTP_ACCEPTED,
                           rc == STORE_CONFLICT ? "the device is not connected" : "no such device");
    default: break;
    }
    return fail(s, c, r, MHD_HTTP_NOT_IMPLEMENTED, "not_implemented", "not in this version", NULL, NULL);
}

/* First call of a request: route, token, rate. MHD_YES with r->routed to
 * go on (read the body), or a reply queued. */
static enum MHD_Result check(struct server *s, struct MHD_Connection *c, struct req *r, const char *method,
                             const char *url)
{
    enum route_rc rc = route_match(method, url, &r->route);
    if (rc == ROUTE_NOT_FOUND)
        return fail(s, c, r, MHD_HTTP_NOT_FOUND, "not_found", "no such path", NULL, NULL);
    if (rc == ROUTE_BAD_ID)
        return fail(s, c, r, MHD_HTTP_BAD_REQUEST, "bad_request", "an id must match [A-Za-z0-9._:-]{1,64}",
                    NULL, NULL);
    if (rc == ROUTE_BAD_METHOD)
        return fail(s, c, r, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", "not with this method",
                    MHD_HTTP_HEADER_ALLOW, route_method(r->route.id));
    if (r->route.scope != ROUTE_OPEN) {
        const char *name = NULL;
        char key[RATELIM_KEY_MAX + 1];
        /* name points into the tokens: copy it before a reload may free them */
        pthread_rwlock_rdlock(&s->auth_lock);
        enum auth_rc a = auth_check(
            s->cfg.auth, MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
            r->route.scope == ROUTE_WRITE, &name);
        bool named = name != NULL;
        if (named)
            snprintf(key, sizeof key, "tok:%s", name);
        pthread_rwlock_unlock(&s->auth_lock);
        if (!named)
            peer_key(c, key, sizeof key);
        /* Failed attempts count against the address too: guessing costs. */
        uint64_t retry_ms = 0;
        if (!ratelim_take(s->cfg.limit, key, mono_us(), &retry_ms)) {
            stat_inc(&s->cfg.stats->refused[SERVER_REFUSED_RATE]);
            char ra[24];
            snprintf(ra, sizeof ra, "%llu", (unsigned long long)((retry_ms + 999u) / 1000u));
            return fail(s, c, r, MHD_HTTP_TOO_MANY_REQUESTS, "rate_limited",
                        "too many requests: see Retry-After", "Retry-After", ra);
        }
        if (a == AUTH_MISSING || a == AUTH_BAD) {
            stat_inc(&s->cfg.stats->refused[SERVER_REFUSED_AUTH]);
            return fail(s, c, r, MHD_HTTP_UNAUTHORIZED, "unauthorized",
                        a == AUTH_MISSING ? "a bearer token is required" : "unknown token",
                        MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
        }
        if (a == AUTH_SCOPE) {
            stat_inc(&s->cfg.stats->refused[SERVER_REFUSED_SCOPE]);
            return fail(s, c, r, MHD_HTTP_FORBIDDEN, "forbidden", "this token is read-only", NULL, NULL);
        }
    }
    r->routed = true;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_len, void **ctx)
{
    (void)version;
    struct server *s = cls;
    struct req *r = *ctx;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->t0_us = mono_us();
        *ctx = r;
        return check(s, c, r, method, url); /* a reply is queued, or r->routed */
    }
    if (!r->routed)
        return MHD_YES; /* refused already: libmicrohttpd discards the rest */
    if (*upload_len > 0) {
        if (!r->too_big && r->len + *upload_len > s->cfg.max_body)
            r->too_big = true;
        if (!r->too_big) {
            if (r->len + *upload_len + 1 > r->cap) {
                size_t cap = r->cap ? r->cap : 4096u;
                while (cap < r->len + *upload_len + 1)
                    cap *= 2u;
                char *nb = realloc(r->body, cap);
                if (!nb)
                    return MHD_NO;
                r->body = nb;
                r->cap = cap;
            }
            memcpy(r->body + r->len, upload, *upload_len);
            r->len += *upload_len;
            r->body[r->len] = '\0';
        }
        *upload_len = 0;
        return MHD_YES;
    }
    r->routed = false; /* answered now, whatever happens */
    if (r->too_big) {
        stat_inc(&s->cfg.stats->refused[SERVER_REFUSED_SIZE]);
        return fail(s, c, r, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", "the request body is too large", NULL,
                    NULL);
    }
    return handle(s, c, r);
}

static void on_done(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_RequestTerminationCode why)
{
    (void)cls;
    (void)c;
    (void)why;
    struct req *r = *ctx;
    if (!r)
        return;
    free(r->body);
    free(r);
    *ctx = NULL;
}

/* "host:port", "[v6]:port", "*:port" -> host (maybe "") and port. */
static int split_listen(const char *l, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon;
    host[0] = '\0';
    if (l[0] == '[') {
        const char *rb = strchr(l, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - l - 1) >= hcap)
            return -1;
        memcpy(host, l + 1, (size_t)(rb - l - 1));
        host[rb - l - 1] = '\0';
        colon = rb + 1;
    } else {
        colon = strrchr(l, ':');
        if (!colon || (size_t)(colon - l) >= hcap)
            return -1;
        memcpy(host, l, (size_t)(colon - l));
        host[colon - l] = '\0';
    }
    const char *p = colon + 1;
    if (!*p || strlen(p) >= pcap || strspn(p, "0123456789") != strlen(p) || atoi(p) > 65535)
        return -1;
    snprintf(port, pcap, "%s", p);
    return 0;
}

struct server *server_new(const struct server_cfg *cfg)
{
    char host[256], port[16];
    if (split_listen(cfg->listen, host, sizeof host, port, sizeof port) != 0) {
        log_error("event=listen_bad listen=%s", cfg->listen);
        return NULL;
    }
    if (cfg->tls_cert && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        log_error("event=tls_unsupported what=\"this libmicrohttpd was built without TLS\"");
        return NULL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host[0] && strcmp(host, "*") != 0 ? host : NULL, port, &hints, &res);
    if (gai != 0 || !res) {
        log_error("event=listen_bad listen=%s err=\"%s\"", cfg->listen, gai_strerror(gai));
        return NULL;
    }
    struct addrinfo *ai = res;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (a->ai_family == AF_INET) {
            ai = a;
            break;
        }
    struct server *s = calloc(1, sizeof *s);
    if (!s) {
        freeaddrinfo(res);
        return NULL;
    }
    s->cfg = *cfg;
    /* Writer first: a reload must not wait behind a steady stream of requests. */
    pthread_rwlockattr_t la;
    pthread_rwlockattr_init(&la);
    pthread_rwlockattr_setkind_np(&la, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->auth_lock, &la);
    pthread_rwlockattr_destroy(&la);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (cfg->tls_cert)
        flags |= MHD_USE_TLS;
    struct MHD_OptionItem tls[] = {
        {cfg->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, (void *)cfg->tls_cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)cfg->tls_key},
        {MHD_OPTION_END, 0, NULL},
    };
    s->mhd = MHD_start_daemon(flags, (uint16_t)atoi(port), NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
                              ai->ai_addr, MHD_OPTION_THREAD_POOL_SIZE, cfg->threads ? cfg->threads : 1u,
                              MHD_OPTION_CONNECTION_LIMIT, cfg->max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                              cfg->per_ip, MHD_OPTION_CONNECTION_TIMEOUT, cfg->timeout_s,
                              MHD_OPTION_NOTIFY_COMPLETED, on_done, s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                              (size_t)64u * 1024u, MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
    freeaddrinfo(res);
    if (!s->mhd) {
        log_error("event=listen_failed listen=%s tls=%s", cfg->listen, cfg->tls_cert ? "on" : "off");
        pthread_rwlock_destroy(&s->auth_lock);
        free(s);
        return NULL;
    }
    log_info("event=listening listen=%s tls=%s threads=%u", cfg->listen, cfg->tls_cert ? "on" : "off",
             cfg->threads);
    return s;
}

struct auth *server_swap_auth(struct server *s, struct auth *next)
{
    assert(next);
    pthread_rwlock_wrlock(&s->auth_lock);
    struct auth *prev = s->cfg.auth;
    s->cfg.auth = next;
    pthread_rwlock_unlock(&s->auth_lock);
    return prev;
}

void server_destroy(struct server **sp)
{
    struct server *s = *sp;
    if (!s)
        return;
    /* Quiesce first: no new connections while the threads finish theirs. */
    MHD_socket fd = MHD_quiesce_daemon(s->mhd);
    MHD_stop_daemon(s->mhd);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    pthread_rwlock_destroy(&s->auth_lock);
    free(s);
    *sp = NULL;
}
