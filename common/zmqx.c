/* zmqx.c - ZeroMQ helpers: socket creation with the options every Sluice
 * socket needs, readiness via ZMQ_EVENTS, and the endpoint resolver that
 * keeps an edge connected to every address of a service.
 *
 * zmqx_socket is the one place sockets get their protections, so a service
 * cannot forget one: it refuses a receiving socket without a message size
 * cap rather than create it uncapped (libzmq's default is unlimited, and a
 * peer's length prefix alone would make it allocate that much).
 *
 * The resolver owns one thread. It resolves the spec once synchronously in
 * zmqx_resolver_new (so a process started with a valid host connects at
 * once), then every period_ms. Results are published as one sorted list of
 * numeric endpoints with a version number under a mutex. The socket's own
 * thread calls zmqx_resolver_apply, which compares the version it last
 * applied and, only when it changed, diffs the lists and calls zmq_connect /
 * zmq_disconnect. A name that fails to resolve keeps its previous addresses,
 * so a DNS hiccup never disconnects a healthy peer.
 *
 * CURVE: a server socket must name the ZAP handler of its context
 * (sl/zap.h), checked here, because libzmq 4.3 admits every client key when
 * no handler is bound (ZMQ_ZAP_ENFORCE_DOMAIN, which would fail closed, is
 * draft API and not in Debian's build). A client's server key is set
 * immediately before each zmq_connect: libzmq copies the socket's options
 * into the connection at that moment, so one DEALER can hold connections
 * to servers with different keys.
 *
 * Deliberately not here: the sockets themselves, any sending policy, and
 * transports other than tcp:// (other endpoints pass through unchanged). */
#define _GNU_SOURCE
#include "sl/zmqx.h"

#include "sl/log.h"
#include "sl/zap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <zmq.h>

#define EP_MAX 300 /* "tcp://[" + 45-char v6 + "]:" + port, or a long passthrough */

bool zmqx_readable(void *sock)
{
    int ev = 0;
    size_t len = sizeof ev;
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &len) != 0)
        return false;
    return (ev & ZMQ_POLLIN) != 0;
}

bool zmqx_writable(void *sock)
{
    int ev = 0;
    size_t len = sizeof ev;
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &len) != 0)
        return false;
    return (ev & ZMQ_POLLOUT) != 0;
}

int zmqx_fd(void *sock)
{
    int fd = -1;
    size_t len = sizeof fd;
    if (zmq_getsockopt(sock, ZMQ_FD, &fd, &len) != 0)
        return -1;
    return fd;
}

/* Socket types that never receive a message from their peers. */
static bool send_only(int type)
{
    return type == ZMQ_PUSH || type == ZMQ_PUB;
}

static const char *type_name(int type)
{
    switch (type) {
    case ZMQ_PAIR: return "PAIR";
    case ZMQ_PUB: return "PUB";
    case ZMQ_SUB: return "SUB";
    case ZMQ_REQ: return "REQ";
    case ZMQ_REP: return "REP";
    case ZMQ_DEALER: return "DEALER";
    case ZMQ_ROUTER: return "ROUTER";
    case ZMQ_PULL: return "PULL";
    case ZMQ_PUSH: return "PUSH";
    default: return "other";
    }
}

/* Set one option; on failure name it (the caller logs once). */
static int opt(void *s, int name, const void *v, size_t n, const char *what, const char **failed)
{
    if (zmq_setsockopt(s, name, v, n) == 0)
        return 0;
    *failed = what;
    return -1;
}

static bool z85_key(const char *k)
{
    uint8_t bin[32];
    return k && strlen(k) == 40 && zmq_z85_decode(bin, k) != NULL;
}

/* The CURVE fields make sense together (see struct zmqx_opts). */
static bool curve_consistent(void *ctx, const struct zmqx_opts *o)
{
    if (!o->curve)
        return !o->zap && !o->curve_server_key;
    if (!z85_key(o->curve->public_key) || !z85_key(o->curve->secret_key))
        return false;
    if (o->zap && o->curve_server_key)
        return false;
    if (o->zap && zap_ctx(o->zap) != ctx)
        return false;
    return !o->curve_server_key || z85_key(o->curve_server_key);
}

static int apply_curve(void *s, const struct zmqx_opts *o, const char **failed)
{
    int one = 1;
    if (opt(s, ZMQ_CURVE_PUBLICKEY, o->curve->public_key, 40, "curve_publickey", failed) != 0 ||
        opt(s, ZMQ_CURVE_SECRETKEY, o->curve->secret_key, 40, "curve_secretkey", failed) != 0)
        return -1;
    if (o->zap)
        return opt(s, ZMQ_ZAP_DOMAIN, ZMQX_ZAP_DOMAIN, strlen(ZMQX_ZAP_DOMAIN), "zap_domain", failed) != 0 ||
                       opt(s, ZMQ_CURVE_SERVER, &one, sizeof one, "curve_server", failed) != 0
                   ? -1
                   : 0;
    if (o->curve_server_key)
        return opt(s, ZMQ_CURVE_SERVERKEY, o->curve_server_key, 40, "curve_serverkey", failed);
    return 0;
}

static int apply_opts(void *s, const struct zmqx_opts *o, const char **failed)
{
    int one = 1;
    if (opt(s, ZMQ_LINGER, &o->linger_ms, sizeof o->linger_ms, "linger", failed) != 0 ||
        opt(s, ZMQ_IPV6, &one, sizeof one, "ipv6", failed) != 0)
        return -1;
    if (o->max_msg != 0 && opt(s, ZMQ_MAXMSGSIZE, &o->max_msg, sizeof o->max_msg, "max_msg", failed) != 0)
        return -1;
    if (o->sndhwm > 0 && opt(s, ZMQ_SNDHWM, &o->sndhwm, sizeof o->sndhwm, "sndhwm", failed) != 0)
        return -1;
    if (o->rcvhwm > 0 && opt(s, ZMQ_RCVHWM, &o->rcvhwm, sizeof o->rcvhwm, "rcvhwm", failed) != 0)
        return -1;
    if (o->immediate && opt(s, ZMQ_IMMEDIATE, &one, sizeof one, "immediate", failed) != 0)
        return -1;
    if (o->router_mandatory &&
        opt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one, "router_mandatory", failed) != 0)
        return -1;
    if (o->router_handover && opt(s, ZMQ_ROUTER_HANDOVER, &one, sizeof one, "router_handover", failed) != 0)
        return -1;
    if (o->routing_id &&
        opt(s, ZMQ_ROUTING_ID, o->routing_id, strlen(o->routing_id), "routing_id", failed) != 0)
        return -1;
    if (o->curve && apply_curve(s, o, failed) != 0)
        return -1;
    return 0;
}

void *zmqx_socket(void *ctx, int type, const struct zmqx_opts *o)
{
    if (o->max_msg == 0 && !send_only(type)) {
        /* A programmer error, but refused at run time too: an assert would
         * vanish from release builds and leave the socket uncapped. */
        log_error("event=zmq_socket_failed type=%s what=max_msg err=\"a receiving socket needs a size cap\"",
                  type_name(type));
        errno = EINVAL;
        return NULL;
    }
    if (!curve_consistent(ctx, o)) {
        log_error("event=zmq_socket_failed type=%s what=curve err=\"%s\"", type_name(type),
                  !o->curve                          ? "a ZAP handler or server key without a key pair"
                  : o->zap && o->curve_server_key    ? "both server and client"
                  : o->zap && zap_ctx(o->zap) != ctx ? "the ZAP handler serves another context"
                                                     : "a key that is not 40 characters of Z85");
        errno = EINVAL;
        return NULL;
    }
    void *s = zmq_socket(ctx, type);
    if (!s) {
        int e = zmq_errno();
        log_error("event=zmq_socket_failed type=%s what=socket err=\"%s\"", type_name(type), zmq_strerror(e));
        errno = e;
        return NULL;
    }
    const char *failed = NULL;
    if (apply_opts(s, o, &failed) != 0) {
        int e = zmq_errno();
        log_error("event=zmq_socket_failed type=%s what=%s err=\"%s\"", type_name(type), failed,
                  zmq_strerror(e));
        zmq_close(s);
        errno = e;
        return NULL;
    }
    if (o->bind && zmq_bind(s, o->bind) != 0) {
        int e = zmq_errno();
        log_error("event=bind_failed type=%s endpoint=%s err=\"%s\"", type_name(type), o->bind,
                  zmq_strerror(e));
        zmq_close(s);
        errno = e;
        return NULL;
    }
    if (o->connect && zmq_connect(s, o->connect) != 0) {
        int e = zmq_errno();
        log_error("event=connect_failed type=%s endpoint=%s err=\"%s\"", type_name(type), o->connect,
                  zmq_strerror(e));
        zmq_close(s);
        errno = e;
        return NULL;
    }
    return s;
}

int zmqx_setup(void *sock, int linger_ms, int sndhwm, int rcvhwm, bool immediate)
{
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_LINGER, &linger_ms, sizeof linger_ms) != 0)
        return -1;
    if (sndhwm >= 0 && zmq_setsockopt(sock, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm) != 0)
        return -1;
    if (rcvhwm >= 0 && zmq_setsockopt(sock, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm) != 0)
        return -1;
    if (immediate && zmq_setsockopt(sock, ZMQ_IMMEDIATE, &one, sizeof one) != 0)
        return -1;
    /* Dual stack: binds on "*" accept IPv4 and IPv6 (libzmq falls back to
     * IPv4 where IPv6 is off), and connects may use [v6] endpoints. */
    if (zmq_setsockopt(sock, ZMQ_IPV6, &one, sizeof one) != 0)
        return -1;
    return 0;
}

int zmqx_send_take(void *sock, zmq_msg_t *msg, int flags)
{
    if (zmq_msg_send(msg, sock, flags) >= 0)
        return 0; /* libzmq leaves msg empty after a successful send */
    int err = zmq_errno();
    zmq_msg_close(msg);
    zmq_msg_init(msg);
    return -err;
}

/* ---- endpoint lists ----------------------------------------------------------- */

struct eplist {
    char (*ep)[EP_MAX];
    int n, cap;
};

static int ep_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int eplist_add(struct eplist *l, const char *ep)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->ep[i], ep) == 0)
            return 0;
    if (l->n == l->cap) {
        int ncap = l->cap ? l->cap * 2 : 8;
        void *p = realloc(l->ep, (size_t)ncap * sizeof *l->ep);
        if (!p)
            return -1;
        l->ep = p;
        l->cap = ncap;
    }
    snprintf(l->ep[l->n++], EP_MAX, "%s", ep);
    return 0;
}

static void eplist_sort(struct eplist *l)
{
    if (l->n > 1)
        qsort(l->ep, (size_t)l->n, sizeof *l->ep, ep_cmp);
}

static bool eplist_equal(const struct eplist *a, const struct eplist *b)
{
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->ep[i], b->ep[i]) != 0)
            return false;
    return true;
}

static int eplist_copy(struct eplist *dst, const struct eplist *src)
{
    dst->n = 0;
    for (int i = 0; i < src->n; i++)
        if (eplist_add(dst, src->ep[i]) < 0)
            return -1;
    return 0;
}

/* ---- the resolver ---------------------------------------------------------------- */

struct entry {
    char raw[EP_MAX]; /* as written in the spec */
    char host[256];   /* empty for a passthrough entry */
    char port[16];
    struct eplist last; /* last successful resolution */
    bool failing;       /* last attempt failed: log transitions, not every period */
};

struct zmqx_resolver {
    struct entry *ent;
    int nent;
    int period_ms;
    pthread_t th;
    bool th_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    struct eplist pub; /* guarded by mu */
    uint64_t version;  /* guarded by mu; bumped whenever pub changes */
};

struct zmqx_conns {
    struct eplist cur; /* endpoints this socket is connected to */
    struct eplist next;
    uint64_t version;
    char server_key[41]; /* CURVE server key for new connects, "" for none */
};

/* Split one spec item. Only tcp://name:port with a non-numeric name needs
 * resolving; everything else (numeric IPs, "*", [v6], other transports)
 * passes through as written. */
static int parse_entry(struct entry *e, const char *item)
{
    memset(e, 0, sizeof *e);
    if (snprintf(e->raw, sizeof e->raw, "%s", item) >= (int)sizeof e->raw)
        return -1;
    if (strncmp(item, "tcp://", 6) != 0)
        return strstr(item, "://") ? 0 : -1;
    const char *hp = item + 6;
    if (hp[0] == '[')
        return strchr(hp, ']') ? 0 : -1; /* numeric IPv6 */
    const char *colon = strrchr(hp, ':');
    if (!colon || colon == hp || !colon[1])
        return -1;
    size_t hl = (size_t)(colon - hp);
    if (hl >= sizeof e->host || strlen(colon + 1) >= sizeof e->port)
        return -1;
    char host[256];
    memcpy(host, hp, hl);
    host[hl] = '\0';
    unsigned char tmp[16];
    if (strcmp(host, "*") == 0 || inet_pton(AF_INET, host, tmp) == 1)
        return 0;
    /* A ZeroMQ "interface;host" source-address form is left alone too. */
    if (strchr(host, ';'))
        return 0;
    memcpy(e->host, host, hl + 1);
    snprintf(e->port, sizeof e->port, "%s", colon + 1);
    return 0;
}

/* Resolve one entry into e->last. Keeps e->last on failure. Blocking. */
static void resolve_entry(struct entry *e)
{
    if (!e->host[0]) {
        if (e->last.n == 0)
            eplist_add(&e->last, e->raw);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(e->host, e->port, &hints, &res);
    if (rc != 0 || !res) {
        if (!e->failing)
            log_warn("event=resolve_fail host=%s err=\"%s\" kept=%d", e->host, gai_strerror(rc), e->last.n);
        e->failing = true;
        return;
    }
    if (e->failing)
        log_info("event=resolve_ok host=%s", e->host);
    e->failing = false;
    struct eplist fresh = {0};
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        char ip[INET6_ADDRSTRLEN], ep[EP_MAX];
        if (a->ai_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)a->ai_addr)->sin_addr, ip, sizeof ip);
            snprintf(ep, sizeof ep, "tcp://%s:%s", ip, e->port);
        } else if (a->ai_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)a->ai_addr)->sin6_addr, ip, sizeof ip);
            snprintf(ep, sizeof ep, "tcp://[%s]:%s", ip, e->port);
        } else {
            continue;
        }
        if (eplist_add(&fresh, ep) < 0)
            break;
    }
    freeaddrinfo(res);
    if (fresh.n > 0) {
        eplist_sort(&fresh);
        free(e->last.ep);
        e->last = fresh;
    } else {
        free(fresh.ep);
    }
}

/* Resolve every entry (blocking, without the lock) and publish if changed. */
static void resolve_all(struct zmqx_resolver *r)
{
    struct eplist all = {0};
    for (int i = 0; i < r->nent; i++) {
        resolve_entry(&r->ent[i]);
        for (int j = 0; j < r->ent[i].last.n; j++)
            eplist_add(&all, r->ent[i].last.ep[j]);
    }
    eplist_sort(&all);
    pthread_mutex_lock(&r->mu);
    if (r->version == 0 || !eplist_equal(&all, &r->pub)) {
        free(r->pub.ep);
        r->pub = all;
        r->version++;
        all.ep = NULL;
    }
    pthread_mutex_unlock(&r->mu);
    free(all.ep);
}

static void *resolver_main(void *arg)
{
    struct zmqx_resolver *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += r->period_ms / 1000;
        ts.tv_nsec += (long)(r->period_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!r->stop && pthread_cond_timedwait(&r->cv, &r->mu, &ts) != ETIMEDOUT) {
        }
        if (r->stop)
            break;
        pthread_mutex_unlock(&r->mu);
        resolve_all(r);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

struct zmqx_resolver *zmqx_resolver_new(const char *spec, int period_ms)
{
    if (!spec)
        return NULL;
    struct zmqx_resolver *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->period_ms = period_ms > 0 ? period_ms : 1000;
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);

    /* Split the comma list; blanks around items are ignored. */
    char *copy = strdup(spec);
    if (!copy)
        goto fail;
    int cap = 1;
    for (const char *p = spec; *p; p++)
        cap += *p == ',';
    r->ent = calloc((size_t)cap, sizeof *r->ent);
    if (!r->ent) {
        free(copy);
        goto fail;
    }
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        size_t tl = strlen(tok);
        while (tl > 0 && (tok[tl - 1] == ' ' || tok[tl - 1] == '\t'))
            tok[--tl] = '\0';
        if (!*tok)
            continue;
        if (parse_entry(&r->ent[r->nent], tok) < 0) {
            log_error("event=endpoint_bad endpoint=%s", tok);
            free(copy);
            goto fail;
        }
        r->nent++;
    }
    free(copy);

    resolve_all(r); /* first resolution is ready when _new returns */
    if (pthread_create(&r->th, NULL, resolver_main, r) != 0)
        goto fail;
    r->th_started = true;
    return r;
fail:
    zmqx_resolver_destroy(&r);
    return NULL;
}

void zmqx_resolver_destroy(struct zmqx_resolver **rp)
{
    if (!rp || !*rp)
        return;
    struct zmqx_resolver *r = *rp;
    if (r->th_started) {
        pthread_mutex_lock(&r->mu);
        r->stop = true;
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
        /* May wait for a getaddrinfo in flight (bounded by the resolver's
         * own timeouts). */
        pthread_join(r->th, NULL);
    }
    for (int i = 0; i < r->nent; i++)
        free(r->ent[i].last.ep);
    free(r->ent);
    free(r->pub.ep);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
    *rp = NULL;
}

uint64_t zmqx_resolver_snapshot(struct zmqx_resolver *r, char *buf, size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return 0;
    buf[0] = '\0';
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->pub.n && o + 1 < cap; i++) {
        int k = snprintf(buf + o, cap - o, "%s%s", i ? "," : "", r->pub.ep[i]);
        if (k < 0)
            break;
        o += (size_t)k;
    }
    uint64_t v = r->version;
    pthread_mutex_unlock(&r->mu);
    return v;
}

struct zmqx_conns *zmqx_conns_new(void)
{
    return calloc(1, sizeof(struct zmqx_conns));
}

void zmqx_conns_destroy(struct zmqx_conns **cp)
{
    if (!cp || !*cp)
        return;
    free((*cp)->cur.ep);
    free((*cp)->next.ep);
    free(*cp);
    *cp = NULL;
}

int zmqx_conns_set_server_key(struct zmqx_conns *c, const char *z85)
{
    if (!z85 || !*z85) {
        c->server_key[0] = '\0';
        return 0;
    }
    if (!z85_key(z85)) {
        errno = EINVAL;
        return -1;
    }
    memcpy(c->server_key, z85, 41);
    return 0;
}

static bool eplist_has(const struct eplist *l, const char *ep)
{
    return l->n > 0 && bsearch(ep, l->ep, (size_t)l->n, sizeof *l->ep, ep_cmp) != NULL;
}

void zmqx_ep_canon(const char *ep, char *out, size_t cap)
{
    static const char pre[] = "tcp://[::ffff:";
    const size_t n = sizeof pre - 1;
    const char *end = strncasecmp(ep, pre, n) == 0 ? strstr(ep + n, "]:") : NULL;
    if (end && memchr(ep + n, '.', (size_t)(end - (ep + n))))
        snprintf(out, cap, "tcp://%.*s%s", (int)(end - (ep + n)), ep + n, end + 1);
    else
        snprintf(out, cap, "%s", ep);
}

bool zmqx_conns_has(const struct zmqx_conns *c, const char *ep)
{
    /* A few endpoints per socket, looked up once a second: a linear scan
     * in canonical form (the list is sorted by the raw text). */
    char a[EP_MAX], b[EP_MAX];
    zmqx_ep_canon(ep, a, sizeof a);
    for (int i = 0; i < c->cur.n; i++) {
        zmqx_ep_canon(c->cur.ep[i], b, sizeof b);
        if (strcmp(a, b) == 0)
            return true;
    }
    return false;
}

int zmqx_resolver_apply(struct zmqx_resolver *r, void *sock, struct zmqx_conns *c)
{
    pthread_mutex_lock(&r->mu);
    if (c->version == r->version) {
        pthread_mutex_unlock(&r->mu);
        return c->cur.n;
    }
    /* Copy under the lock (allocates only when the list grows); the zmq
     * calls happen after releasing it. */
    int rc = eplist_copy(&c->next, &r->pub);
    uint64_t ver = r->version;
    pthread_mutex_unlock(&r->mu);
    if (rc < 0)
        return c->cur.n;

    for (int i = 0; i < c->cur.n; i++) {
        if (eplist_has(&c->next, c->cur.ep[i]))
            continue;
        /* ENOENT if libzmq already dropped it; either way it is gone. */
        zmq_disconnect(sock, c->cur.ep[i]);
        log_info("event=zmq_disconnect endpoint=%s", c->cur.ep[i]);
    }
    struct eplist now = {0};
    for (int i = 0; i < c->next.n; i++) {
        const char *ep = c->next.ep[i];
        if (!eplist_has(&c->cur, ep)) {
            if (strncmp(ep, "tcp://[", 7) == 0) {
                int one = 1;
                zmq_setsockopt(sock, ZMQ_IPV6, &one, sizeof one);
            }
            /* Copied into this connection by zmq_connect, so each of the
             * socket's connections keeps its own server's key. */
            if (c->server_key[0] && zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, c->server_key, 40) != 0) {
                log_warn("event=zmq_connect_fail endpoint=%s err=\"curve server key: %s\"", ep,
                         zmq_strerror(zmq_errno()));
                continue;
            }
            if (zmq_connect(sock, ep) != 0) {
                int err = zmq_errno();
                log_warn("event=zmq_connect_fail endpoint=%s err=\"%s\"", ep, zmq_strerror(err));
                continue; /* retried when the resolution next changes */
            }
            log_info("event=zmq_connect endpoint=%s", ep);
        }
        eplist_add(&now, ep);
    }
    free(c->cur.ep);
    c->cur = now; /* sorted: built in next's sorted order */
    c->version = ver;
    return c->cur.n;
}
