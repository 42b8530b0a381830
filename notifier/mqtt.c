/* SPDX-License-Identifier: Apache-2.0 */
/* mqtt.c - one MQTT client of the notifier on paho.mqtt.c (MQTTAsync), its
 * results delivered on the caller's event loop (see mqtt.h).
 *
 * Threads: paho calls back on its own threads. Those callbacks only append
 * an event (a publish's fate, a connection change, an inbound message) to
 * a mutex-protected queue and, when it was empty, write an eventfd the loop
 * watches; they never touch the records, the caller or its state. On the
 * loop's thread, on_events drains the queue and calls struct mqtt_ops.
 * Everything else here runs on the loop's thread.
 *
 * Records: every publish is copied into a record of a fixed ring (its
 * buffer grows to the largest message it held, then is reused), in publish
 * order, until its fate is known. mqtt_flush hands waiting records to paho
 * in that order while fewer than max_inflight are with paho (paho copies
 * them again: one malloc per publish inside paho that we cannot avoid).
 * cleansession=1 and no paho persistence: on a lost connection paho fails
 * what it held, and every record handed to paho on that connection is
 * handed again, in order, on the next one (at least once), except the
 * `once` ones, which are dropped with ops.done(token, false). A callback
 * of an earlier connection is told apart by the connection number carried
 * in its context and ignored.
 *
 * Brokers: every connect names one broker (paho's serverURIs with one
 * entry: with the whole list paho would try them all but report the first
 * as connected whichever answered), and a failed one goes on to the next
 * of the list, so a round tries them in order and the first that accepts is
 * used. We reconnect ourselves (paho's automaticReconnect off): a failed
 * round waits 2 s before the first connection ever, then 1..8 s; a lost
 * connection that had lasted STABLE_MS starts a round at once. While on
 * another broker than the first, a TCP probe of the first every
 * RETURN_MIN_MS (doubling to RETURN_MAX_MS while returns fail; a name
 * resolved by getaddrinfo_a, off the loop) makes the client disconnect and
 * connect again from the first.
 *
 * Inbound QoS 1 messages: paho sends the PUBACK before the message reaches
 * us, so an acknowledgement cannot be deferred (mqtt_ack is a no-op; the
 * window this leaves is in docs/notifier.md).
 *
 * TLS (ssl:// or mqtts://): the broker's certificate must chain to tls_ca
 * (or the system store) and name the URI's host (paho's verify = 1). A
 * refused connection is logged once per cause, not per retry: again only
 * for a cause other than the last two logged, or after REMIND_MS.
 *
 * Deliberately not here: topics, JSON, what a message means (the callers),
 * processes (pubproc.c uses this as its client library, never the reverse). */
#define _GNU_SOURCE
#include "mqtt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "sl/log.h"
#include "sl/loop.h"

#define TICK_MS           100u
#define CONNECT_TIMEOUT_S 5
#define FIRST_RETRY_MS    2000u
#define RETRY_MIN_MS      1000u
#define RETRY_MAX_MS      8000u
#define STABLE_MS         5000u
#define RETURN_MIN_MS     5000u
#define RETURN_MAX_MS     60000u
#define PROBE_TIMEOUT_MS  2000u
#define REMIND_MS         (10u * 60u * 1000u)
#define INBOUND_MAX       4096u /* inbound messages waiting for the loop; paho redelivers beyond */
#define EVENTS_PER_WAKE   4096u /* then the loop runs its other fds before we go on */
#define DESTROY_WAIT_MS   200u  /* mqtt_destroy waits this long for paho's disconnect */
#define LEAVE_MS          3000u /* a disconnect paho never reports done: connect anyway */

/* Connection state, loop thread. */
enum state {
    ST_IDLE = 0,   /* no connection; the next attempt at next_try_ms */
    ST_CONNECTING, /* MQTTAsync_connect to brokers[cur] in flight */
    ST_UP,         /* connected: publishes flow */
    ST_LEAVING,    /* disconnecting to return to the first broker */
};

/* A record's state. */
enum { R_WAIT = 0, R_SENT, R_DONE };

struct rec {
    char *buf; /* topic, NUL, payload */
    size_t cap;
    uint32_t tl, pl;
    uint64_t seq, token;
    uint16_t conn; /* connection it was handed to paho on (R_SENT) */
    uint8_t st, tries;
    bool retained, once;
};

enum ev_type { EV_CONNECTED, EV_CONN_FAILED, EV_LOST, EV_SUBACK, EV_DISCONNECTED, EV_PUB, EV_MSG };

struct ev {
    uint8_t type;
    bool ok;
    uint16_t conn;
    int broker;
    uint64_t seq;
    char *buf; /* EV_MSG: topic, NUL, payload, NUL (malloc'd by the paho thread) */
    uint32_t tl, pl;
    bool retained;
};

struct broker {
    char uri[280]; /* as paho takes it: tcp:// or ssl:// host (up to 255), port */
    char host[256];
    char port[8];
    bool tls;
    /* the first broker's address for the return probe (getaddrinfo_a: a
     * name is never resolved on the loop's thread) */
    struct gaicb gai;
    struct addrinfo hints;
    bool gai_active;
};

struct mqtt {
    struct mqtt_cfg cfg;
    struct mqtt_ops ops;
    struct loop *loop;
    struct loop_timer timer;
    char *client_id, *username, *password, *tls_ca;
    char **subs;
    struct broker b[MQTT_MAX_BROKERS];
    char *uris[MQTT_MAX_BROKERS]; /* b[i].uri, for connect options */
    int nb;
    MQTTAsync h;
    MQTTAsync_SSLOptions ssl;
    bool tls;

    /* events from paho's threads */
    int efd;
    pthread_mutex_t mu;
    struct ev *q;
    size_t q_cap, q_head, q_len;
    uint32_t inbound;  /* EV_MSG in q */
    char tls_err[128]; /* the first OpenSSL error of the current attempt (under mu) */

    /* loop thread */
    enum state st;
    uint16_t conn; /* connections made; tags what was handed to paho on each */
    int cur;       /* broker being tried or connected to */
    int last_up;   /* broker of the previous connection, -1 before the first */
    bool ever, subscribed, sub_switched, room_due;
    uint64_t next_try_ms, up_ms;
    uint32_t retry_ms;
    uint64_t msg_seq; /* handles of inbound messages */

    struct rec *r;
    uint64_t nrec;             /* power of two */
    uint64_t head, tail, scan; /* seqs: oldest unfinished, next to append, first maybe waiting */
    uint32_t nsent, nwait;
    size_t bytes;

    char why[192], why_prev[192];
    uint32_t fails;
    uint64_t why_ms;

    int probe_fd;
    uint64_t next_probe_ms, probe_deadline_ms, leave_ms;
    uint32_t return_ms;

    struct mqtt_stats s;
};

static void on_events(struct loop *l, int fd, uint32_t ev, void *ud);
static void on_timer(struct loop *l, void *ud);
static void attempt(struct mqtt *m, int i);

static uint64_t now_ms(void)
{
    return loop_clock_ms();
}

/* ---- the event queue (any thread) ---- */

static void push(struct mqtt *m, const struct ev *e)
{
    pthread_mutex_lock(&m->mu);
    if (m->q_len == m->q_cap) {
        /* Grows, rarely: bounded by the records handed to paho (each fate
         * reported at most twice: once per connection) plus INBOUND_MAX. */
        size_t nc = m->q_cap * 2;
        struct ev *n = malloc(nc * sizeof *n);
        if (!n) {
            pthread_mutex_unlock(&m->mu);
            log_error("event=mqtt_event_lost client=%s type=%d", m->client_id, e->type);
            if (e->type == EV_MSG || e->type == EV_CONN_FAILED)
                free(e->buf);
            return;
        }
        for (size_t i = 0; i < m->q_len; i++)
            n[i] = m->q[(m->q_head + i) % m->q_cap];
        free(m->q);
        m->q = n;
        m->q_cap = nc;
        m->q_head = 0;
    }
    m->q[(m->q_head + m->q_len) % m->q_cap] = *e;
    bool first = m->q_len++ == 0;
    if (e->type == EV_MSG)
        m->inbound++;
    pthread_mutex_unlock(&m->mu);
    if (first) {
        uint64_t one = 1;
        ssize_t w = write(m->efd, &one, sizeof one); /* only fails when the counter is full: awake anyway */
        (void)w;
    }
}

/* ---- paho callbacks (paho threads) ---- */

static void *pack(uint64_t seq, uint16_t conn)
{
    return (void *)(uintptr_t)(seq << 16 | conn);
}

/* paho's response options carry one pointer of context, and a publish's
 * fate must name its client, its record and the connection it went out on.
 * So the pointer is a number: seq << 16 | conn, where conn's top two bits
 * are the client's slot in this registry (a process has one or two
 * clients: the parent's control client, a child's data client) and its low
 * CONN_BITS count the client's connections. No memory is shared with paho
 * for a publish, so a late callback can never touch a reused record. */
static _Atomic(struct mqtt *) registry[4];
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_pub(void *ctx, bool ok);

static void on_pub_ok(void *ctx, MQTTAsync_successData *r)
{
    (void)r;
    on_pub(ctx, true);
}

static void on_pub_fail(void *ctx, MQTTAsync_failureData *r)
{
    (void)r;
    on_pub(ctx, false);
}

#define CONN_BITS 14u
#define CONN_MASK ((1u << CONN_BITS) - 1u)

static void on_pub(void *ctx, bool ok)
{
    uintptr_t v = (uintptr_t)ctx;
    struct mqtt *m = atomic_load(&registry[(v >> CONN_BITS) & 3u]);
    if (!m)
        return;
    struct ev e = {.type = EV_PUB, .ok = ok, .conn = (uint16_t)v, .seq = (uint64_t)v >> 16};
    push(m, &e);
}

static void on_sub_ok(void *ctx, MQTTAsync_successData *r)
{
    struct mqtt *m = atomic_load(&registry[((uintptr_t)ctx >> CONN_BITS) & 3u]);
    if (!m)
        return;
    /* A refused filter (ACL) comes back as granted QoS 0x80. */
    bool ok = true;
    if (m->cfg.nsubs == 1)
        ok = r && r->alt.qos != 0x80;
    else
        for (int i = 0; r && r->alt.qosList && i < m->cfg.nsubs; i++)
            ok = ok && r->alt.qosList[i] != 0x80;
    struct ev e = {.type = EV_SUBACK, .ok = ok, .conn = (uint16_t)(uintptr_t)ctx};
    push(m, &e);
}

static void on_sub_fail(void *ctx, MQTTAsync_failureData *r)
{
    (void)r;
    struct mqtt *m = atomic_load(&registry[((uintptr_t)ctx >> CONN_BITS) & 3u]);
    if (!m)
        return;
    struct ev e = {.type = EV_SUBACK, .ok = false, .conn = (uint16_t)(uintptr_t)ctx};
    push(m, &e);
}

static void on_conn_ok(void *ctx, MQTTAsync_successData *r)
{
    (void)r;
    struct ev e = {.type = EV_CONNECTED, .ok = true};
    push(ctx, &e);
}

/* The cause of a failed connect in words; true when it is the broker
 * refusing us (TLS verification, credentials): a configuration error that
 * retrying will not fix. */
static bool failure_cause(struct mqtt *m, const MQTTAsync_failureData *r, char *out, size_t cap)
{
    static const char *const connack[] = {NULL,
                                          "unacceptable protocol version",
                                          "client id rejected",
                                          "server unavailable",
                                          "bad user name or password",
                                          "not authorized (user name or password)"};
    int code = r ? r->code : MQTTASYNC_FAILURE;
    const char *msg = r && r->message ? r->message : "connect failed";
    if (code >= 1 && code <= 5) {
        snprintf(out, cap, "broker refused the connection: %s (CONNACK %d)", connack[code], code);
        return code >= 4;
    }
    pthread_mutex_lock(&m->mu);
    char tls_err[sizeof m->tls_err];
    memcpy(tls_err, m->tls_err, sizeof tls_err);
    m->tls_err[0] = '\0';
    pthread_mutex_unlock(&m->mu);
    if (tls_err[0]) {
        snprintf(out, cap, "TLS: %s", tls_err);
        return true;
    }
    if (m->tls) /* paho's host name check fails with no OpenSSL error: say so */
        snprintf(out, cap,
                 "%s (no TLS error text: broker down, not TLS, or its certificate does not name the host)",
                 msg);
    else
        snprintf(out, cap, "%s", msg);
    return false;
}

static void on_conn_fail(void *ctx, MQTTAsync_failureData *r)
{
    struct mqtt *m = ctx;
    char why[192];
    bool refused = failure_cause(m, r, why, sizeof why);
    struct ev e = {.type = EV_CONN_FAILED, .ok = refused, .broker = r ? r->code : 0};
    /* The text travels in the event's buffer (the loop logs it, once per cause). */
    e.buf = strdup(why);
    push(m, &e);
}

static void on_disc_ok(void *ctx, MQTTAsync_successData *r)
{
    (void)r;
    struct ev e = {.type = EV_DISCONNECTED};
    push(ctx, &e);
}

static void on_disc_fail(void *ctx, MQTTAsync_failureData *r)
{
    (void)r;
    struct ev e = {.type = EV_DISCONNECTED};
    push(ctx, &e);
}

static void on_lost(void *ctx, char *cause)
{
    (void)cause;
    struct ev e = {.type = EV_LOST};
    push(ctx, &e);
}

/* paho's ssl_error_cb: one OpenSSL error line per call, e.g.
 * "C0E6..:error:0A000086:SSL routines:tls_post_process_server_certificate:
 * certificate verify failed:../ssl/statem/statem_clnt.c:1889:". Keeps the
 * reason field (the sixth) of the first line of the attempt. */
static int on_ssl_error(const char *str, size_t len, void *u)
{
    struct mqtt *m = u;
    const char *p = str, *end = str + len;
    for (int field = 0; field < 5 && p < end; field++) {
        const char *q = memchr(p, ':', (size_t)(end - p));
        if (!q) {
            p = str; /* not that format: keep the whole line */
            break;
        }
        p = q + 1;
    }
    const char *q = memchr(p, ':', (size_t)(end - p));
    size_t n = (size_t)((q ? q : end) - p);
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == ' '))
        n--;
    pthread_mutex_lock(&m->mu);
    if (!m->tls_err[0] && n > 0)
        snprintf(m->tls_err, sizeof m->tls_err, "%.*s", (int)n, p);
    pthread_mutex_unlock(&m->mu);
    return 1;
}

static int on_message(void *ctx, char *topic, int tl, MQTTAsync_message *msg)
{
    struct mqtt *m = ctx;
    size_t tlen = tl > 0 ? (size_t)tl : strlen(topic);
    size_t plen = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    pthread_mutex_lock(&m->mu);
    uint32_t waiting = m->inbound;
    pthread_mutex_unlock(&m->mu);
    if (waiting >= INBOUND_MAX)
        return 0; /* paho delivers it again later: a burst waits instead of being lost */
    if (plen <= m->cfg.max_in && tlen <= MQTT_TOPIC_MAX) { /* bigger: dropped (only ours are expected) */
        char *buf = malloc(tlen + plen + 2);               /* control path: commands, statuses, markers */
        if (!buf)
            return 0;
        memcpy(buf, topic, tlen);
        buf[tlen] = '\0';
        if (plen)
            memcpy(buf + tlen + 1, msg->payload, plen);
        buf[tlen + 1 + plen] = '\0';
        struct ev e = {.type = EV_MSG,
                       .buf = buf,
                       .tl = (uint32_t)tlen,
                       .pl = (uint32_t)plen,
                       .retained = msg->retained != 0};
        push(m, &e);
    }
    MQTTAsync_freeMessage(&msg);
    MQTTAsync_free(topic);
    return 1;
}

/* ---- configuration ---- */

static int parse_uri(const char *s, size_t n, struct broker *b)
{
    static const struct {
        const char *p;
        bool tls;
    } schemes[] = {{"tcp://", false}, {"mqtt://", false}, {"ssl://", true}, {"mqtts://", true}};
    char in[256];
    if (n >= sizeof in)
        return -1;
    memcpy(in, s, n);
    in[n] = '\0';
    const char *rest = NULL;
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        if (strncmp(in, schemes[i].p, strlen(schemes[i].p)) == 0) {
            rest = in + strlen(schemes[i].p);
            b->tls = schemes[i].tls;
        }
    if (!rest || !*rest)
        return -1;
    const char *hs = rest, *he, *port = NULL;
    if (*rest == '[') { /* [v6]:port */
        hs = rest + 1;
        he = strchr(hs, ']');
        if (!he)
            return -1;
        if (he[1] == ':')
            port = he + 2;
        else if (he[1])
            return -1;
    } else {
        he = strchr(rest, ':');
        if (he)
            port = he + 1;
        else
            he = rest + strlen(rest);
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= sizeof b->host || memchr(hs, '/', hl))
        return -1;
    memcpy(b->host, hs, hl);
    b->host[hl] = '\0';
    const char *pp = port ? port : b->tls ? "8883" : "1883";
    char *end;
    long pv = strtol(pp, &end, 10);
    if (*pp == '\0' || *end != '\0' || pv < 1 || pv > 65535)
        return -1;
    snprintf(b->port, sizeof b->port, "%ld", pv);
    /* as paho takes it (tcp:// or ssl://, the port always named), for
     * connects and for the logs */
    bool v6 = strchr(b->host, ':') != NULL;
    char uri[sizeof b->uri];
    snprintf(uri, sizeof uri, "%s://%s%s%s:%s", b->tls ? "ssl" : "tcp", v6 ? "[" : "", b->host, v6 ? "]" : "",
             b->port);
    memcpy(b->uri, uri, sizeof uri);
    return 0;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

static void refuse(const char *what, const char *detail)
{
    char q[512];
    log_error("event=mqtt_config_refused %s err=%s", what, log_q(q, sizeof q, detail, strlen(detail)));
}

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

struct mqtt *mqtt_new(const struct mqtt_cfg *cfg, const struct mqtt_ops *ops, struct loop *l)
{
    if (!cfg->uris || !cfg->client_id || cfg->qos < 0 || cfg->qos > 1 || cfg->max_inflight < 1 ||
        cfg->max_inflight > 60000 || cfg->nsubs < 0 || cfg->nsubs > 16 || cfg->buf_bytes < 4096 ||
        cfg->max_in < 64)
        return NULL;
    struct mqtt *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cfg = *cfg;
    if (ops)
        m->ops = *ops;
    m->loop = l;
    m->efd = m->probe_fd = -1;
    m->last_up = -1;
    m->s.broker = -1;
    m->retry_ms = RETRY_MIN_MS;
    m->return_ms = RETURN_MIN_MS;
    pthread_mutex_init(&m->mu, NULL);
    if (m->cfg.keepalive_s == 0)
        m->cfg.keepalive_s = 20;
    char qb[300];
    for (const char *p = cfg->uris; *p;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        while (n && (*p == ' '))
            p++, n--;
        if (n == 0 || m->nb == MQTT_MAX_BROKERS || parse_uri(p, n, &m->b[m->nb]) != 0) {
            snprintf(qb, sizeof qb, "not a broker URI list of at most %d tcp:// or ssl:// URIs",
                     MQTT_MAX_BROKERS);
            refuse("what=broker", qb);
            mqtt_destroy(&m);
            return NULL;
        }
        m->uris[m->nb] = m->b[m->nb].uri;
        m->nb++;
        p += n;
        if (*p == ',')
            p++;
    }
    if (m->nb == 0) {
        refuse("what=broker", "no broker URI");
        mqtt_destroy(&m);
        return NULL;
    }
    bool has_ca = cfg->tls_ca && cfg->tls_ca[0];
    for (int i = 0; i < m->nb; i++) {
        m->tls |= m->b[i].tls;
        if (has_ca && !m->b[i].tls) {
            /* Asked for TLS but the URI is plain TCP: connecting would send
             * the password and every message in clear. */
            char w[300];
            snprintf(w, sizeof w, "broker=%s", m->b[i].uri);
            refuse(w, "--tls-ca is set but the broker URI is not ssl://");
            mqtt_destroy(&m);
            return NULL;
        }
    }
    if (has_ca && access(cfg->tls_ca, R_OK) != 0) {
        int e = errno;
        char w[600];
        snprintf(w, sizeof w, "tls_ca=%s", cfg->tls_ca);
        refuse(w, strerror(e));
        mqtt_destroy(&m);
        return NULL;
    }
    m->client_id = dup_or_empty(cfg->client_id);
    m->username = dup_or_empty(cfg->username);
    m->password = dup_or_empty(cfg->password);
    m->tls_ca = dup_or_empty(cfg->tls_ca);
    m->subs = calloc((size_t)cfg->nsubs + 1, sizeof *m->subs);
    /* Records: the window, what waits behind it, and the control bursts
     * the byte bound allows at ~256 B a message. */
    m->nrec = pow2_at_least((uint64_t)cfg->max_inflight * 4 + cfg->buf_bytes / 256);
    if (m->nrec > (1u << 20))
        m->nrec = 1u << 20;
    m->r = calloc(m->nrec, sizeof *m->r);
    m->q_cap = 1024;
    m->q = malloc(m->q_cap * sizeof *m->q);
    m->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    bool ok =
        m->client_id && m->username && m->password && m->tls_ca && m->subs && m->r && m->q && m->efd >= 0;
    for (int i = 0; ok && i < cfg->nsubs; i++)
        ok = (m->subs[i] = strdup(cfg->subs[i])) != NULL;
    m->cfg.client_id = m->client_id;
    m->cfg.username = m->username;
    m->cfg.password = m->password;
    m->cfg.tls_ca = m->tls_ca;
    m->cfg.subs = (const char *const *)m->subs;
    int slot = -1;
    pthread_mutex_lock(&registry_mu);
    for (int i = 0; ok && i < 4 && slot < 0; i++)
        if (!atomic_load(&registry[i])) {
            atomic_store(&registry[i], m);
            slot = i;
        }
    pthread_mutex_unlock(&registry_mu);
    if (!ok || slot < 0) {
        mqtt_destroy(&m);
        return NULL;
    }
    m->conn = (uint16_t)((unsigned)slot << CONN_BITS);
    /* paho (Debian's build, 1.3.11) records every function entry and exit
     * and formats every packet into an in-memory trace buffer unless the
     * level is raised: a global mutex, a clock read and a string copy each
     * time, a few per cent of a publish's CPU (docs/performance.md). Nothing
     * reads that buffer (no trace callback is set). Process-wide; setting
     * it again is harmless. */
    MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.sendWhileDisconnected = 0; /* records wait in our ring, in order, not in paho's buffer */
    int rc =
        MQTTAsync_createWithOptions(&m->h, m->b[0].uri, m->client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
    if (rc != MQTTASYNC_SUCCESS) {
        log_error("event=mqtt_create_failed uri=%s code=%d", m->b[0].uri, rc);
        m->h = NULL;
        mqtt_destroy(&m);
        return NULL;
    }
    MQTTAsync_setCallbacks(m->h, m, on_lost, on_message, NULL);
    if (m->tls) {
        MQTTAsync_SSLOptions s = MQTTAsync_SSLOptions_initializer;
        s.trustStore = has_ca ? m->tls_ca : NULL; /* NULL: paho loads OpenSSL's default store */
        s.enableServerCertAuth = 1;               /* chain must verify */
        s.verify = 1;                             /* and name the URI's host (X509_check_host / _ip) */
        s.ssl_error_cb = on_ssl_error;
        s.ssl_error_context = m;
        m->ssl = s;
    }
    if (loop_add(l, m->efd, EPOLLIN, on_events, m) != 0) {
        mqtt_destroy(&m);
        return NULL;
    }
    loop_timer_init(&m->timer, on_timer, m);
    loop_timer_start(l, &m->timer, TICK_MS);
    attempt(m, 0);
    return m;
}

/* ---- connection lifecycle (loop thread) ---- */

static void log_failure(struct mqtt *m, bool refused, int code, const char *why)
{
    uint64_t now = now_ms();
    uint32_t fails = ++m->fails;
    bool again = now - m->why_ms < REMIND_MS && (strcmp(why, m->why) == 0 || strcmp(why, m->why_prev) == 0);
    if (again) {
        log_debug("event=mqtt_connect_failed client=%s code=%d failures=%u", m->client_id, code, fails);
        return;
    }
    if (strcmp(why, m->why) != 0)
        memcpy(m->why_prev, m->why, sizeof m->why);
    snprintf(m->why, sizeof m->why, "%s", why);
    m->why_ms = now;
    char q[sizeof m->why + 16];
    log_at(refused ? SL_LOG_ERROR : SL_LOG_WARN,
           "event=mqtt_connect_failed client=%s broker=%s code=%d failures=%u err=%s", m->client_id,
           m->b[m->cur].uri, code, fails, log_q(q, sizeof q, why, strlen(why)));
}

/* Connect to brokers[i] (a round goes on from there on failure). */
static void attempt(struct mqtt *m, int i)
{
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    o.keepAliveInterval = m->cfg.keepalive_s;
    o.cleansession = 1; /* unacknowledged records are ours to resend */
    o.automaticReconnect = 0;
    o.maxInflight = m->cfg.max_inflight + 16;
    o.connectTimeout = CONNECT_TIMEOUT_S;
    o.MQTTVersion = MQTTVERSION_3_1_1; /* the default retries a refused connect with 3.1: two per attempt */
    o.onSuccess = on_conn_ok;
    o.onFailure = on_conn_fail;
    o.context = m;
    o.serverURIs = &m->uris[i];
    o.serverURIcount = 1;
    if (m->username[0]) {
        o.username = m->username;
        o.password = m->password[0] ? m->password : NULL;
    }
    if (m->tls)
        o.ssl = &m->ssl;
    pthread_mutex_lock(&m->mu);
    m->tls_err[0] = '\0';
    pthread_mutex_unlock(&m->mu);
    m->st = ST_CONNECTING;
    m->cur = i;
    int rc = MQTTAsync_connect(m->h, &o);
    if (rc != MQTTASYNC_SUCCESS) {
        m->st = ST_IDLE;
        m->next_try_ms = now_ms() + RETRY_MIN_MS;
        log_warn("event=mqtt_connect_failed client=%s code=%d", m->client_id, rc);
    }
}

static void retry_later(struct mqtt *m, uint32_t delay_ms)
{
    m->st = ST_IDLE;
    m->next_try_ms = now_ms() + delay_ms;
}

static struct rec *rec_of(struct mqtt *m, uint64_t seq)
{
    return &m->r[seq & (m->nrec - 1)];
}

/* One record finished (acknowledged, written at QoS 0, or dropped). */
static void finish(struct mqtt *m, struct rec *r, bool ok)
{
    if (r->st == R_SENT)
        m->nsent--;
    else if (r->st == R_WAIT)
        m->nwait--;
    r->st = R_DONE;
    m->bytes -= (size_t)r->tl + r->pl;
    if (ok)
        m->s.published++;
    else
        m->s.failed++;
    uint64_t token = r->token;
    while (m->head < m->tail && rec_of(m, m->head)->st == R_DONE)
        m->head++;
    if (m->scan < m->head)
        m->scan = m->head;
    m->room_due = true;
    if (token && m->ops.done)
        m->ops.done(m->ops.ud, token, ok);
}

/* A record with paho when its connection went: handed again on the next
 * connection, or dropped if it is `once` or failed too often. */
static void requeue(struct mqtt *m, struct rec *r)
{
    if (r->once || ++r->tries > MQTT_MAX_TRIES) {
        finish(m, r, false);
        return;
    }
    m->nsent--;
    m->nwait++;
    r->st = R_WAIT;
    if (r->seq < m->scan)
        m->scan = r->seq;
}

/* The connection is gone: everything paho held on it comes back to us. */
static void conn_gone(struct mqtt *m)
{
    m->s.connected = 0;
    m->s.broker = -1;
    m->subscribed = false;
    /* Walk a snapshot: finish() may call ops.done, which may publish. */
    uint64_t end = m->tail;
    for (uint64_t s = m->head; s < end; s++) {
        struct rec *r = rec_of(m, s);
        if (r->seq == s && r->st == R_SENT)
            requeue(m, r);
    }
    m->conn = (uint16_t)((m->conn & ~CONN_MASK) | ((m->conn + 1u) & CONN_MASK));
}

static void probe_close(struct mqtt *m);

static void up(struct mqtt *m)
{
    int broker = m->cur;
    uint64_t now = now_ms();
    m->st = ST_UP;
    m->cur = broker;
    m->up_ms = now;
    if (m->ever)
        m->s.reconnects++;
    bool switched = m->last_up >= 0 && m->last_up != broker;
    m->ever = true;
    m->last_up = broker;
    log_info("event=mqtt_connected client=%s broker=%s failures=%u", m->client_id, m->b[broker].uri,
             m->fails);
    m->fails = 0;
    m->why[0] = m->why_prev[0] = '\0';
    m->retry_ms = RETRY_MIN_MS;
    m->s.connected = 1;
    m->s.broker = broker;
    if (broker == 0)
        m->return_ms = RETURN_MIN_MS;
    m->next_probe_ms = now + m->return_ms;
    m->subscribed = false;
    if (m->cfg.nsubs > 0) {
        int qos[16];
        for (int i = 0; i < m->cfg.nsubs; i++)
            qos[i] = 1;
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.onSuccess = on_sub_ok;
        ro.onFailure = on_sub_fail;
        ro.context = (void *)(uintptr_t)m->conn;
        m->sub_switched = switched; /* for ops.up at the SUBACK */
        int rc = MQTTAsync_subscribeMany(m->h, m->cfg.nsubs, m->subs, qos, &ro);
        if (rc != MQTTASYNC_SUCCESS)
            log_error("event=mqtt_subscribe_failed client=%s code=%d", m->client_id, rc);
    } else if (m->ops.up) {
        m->ops.up(m->ops.ud, broker, switched);
    }
    mqtt_flush(m);
}

static void handle(struct mqtt *m, struct ev *e)
{
    switch (e->type) {
    case EV_CONNECTED:
        if (m->st == ST_CONNECTING)
            up(m);
        break;
    case EV_CONN_FAILED:
        if (m->st == ST_CONNECTING) {
            log_failure(m, e->ok, e->broker, e->buf ? e->buf : "connect failed");
            if (m->cur + 1 < m->nb) { /* the next of the list, at once */
                free(e->buf);
                attempt(m, m->cur + 1);
                break;
            }
            uint32_t d = m->ever ? m->retry_ms : FIRST_RETRY_MS;
            if (m->ever && m->retry_ms < RETRY_MAX_MS)
                m->retry_ms *= 2;
            retry_later(m, d);
        }
        free(e->buf);
        break;
    case EV_LOST:
        if (m->st == ST_UP) {
            bool stable = now_ms() - m->up_ms >= STABLE_MS;
            log_warn("event=mqtt_connection_lost client=%s broker=%s", m->client_id, m->b[m->cur].uri);
            conn_gone(m);
            if (stable)
                m->retry_ms = RETRY_MIN_MS;
            retry_later(m, stable ? 0 : m->retry_ms);
            if (!stable && m->retry_ms < RETRY_MAX_MS)
                m->retry_ms *= 2;
        }
        break;
    case EV_DISCONNECTED:
        if (m->st == ST_LEAVING)
            attempt(m, 0);
        break;
    case EV_SUBACK:
        if (m->st != ST_UP || e->conn != m->conn)
            break;
        if (!e->ok) {
            log_error("event=mqtt_subscribe_failed client=%s err=\"refused by the broker (ACL?)\"",
                      m->client_id);
            break;
        }
        m->subscribed = true;
        if (m->ops.up)
            m->ops.up(m->ops.ud, m->cur, m->sub_switched);
        break;
    case EV_PUB: {
        struct rec *r = rec_of(m, e->seq);
        if (r->seq != e->seq || r->st != R_SENT || r->conn != e->conn)
            break; /* of an earlier connection: already handed again or dropped */
        if (e->ok)
            finish(m, r, true);
        else if (m->st == ST_UP)
            requeue(m, r); /* refused on a live connection (rare): try again */
        break;
    }
    case EV_MSG: {
        struct mqtt_msg msg = {.topic = e->buf,
                               .topic_len = e->tl,
                               .payload = (const uint8_t *)e->buf + e->tl + 1,
                               .len = e->pl,
                               .retained = e->retained,
                               .ack = ++m->msg_seq};
        if (m->ops.msg)
            (void)m->ops.msg(m->ops.ud, &msg); /* paho acknowledged it already */
        free(e->buf);
        break;
    }
    }
}

static void on_events(struct loop *l, int fd, uint32_t evs, void *ud)
{
    (void)l;
    (void)evs;
    struct mqtt *m = ud;
    uint64_t cnt;
    ssize_t rd = read(fd, &cnt, sizeof cnt);
    (void)rd;
    struct ev batch[64];
    uint32_t done = 0;
    for (;;) {
        pthread_mutex_lock(&m->mu);
        size_t n = m->q_len < 64 ? m->q_len : 64;
        for (size_t i = 0; i < n; i++) {
            batch[i] = m->q[m->q_head];
            m->q_head = (m->q_head + 1) % m->q_cap;
            if (batch[i].type == EV_MSG)
                m->inbound--;
        }
        m->q_len -= n;
        bool more = m->q_len > 0;
        pthread_mutex_unlock(&m->mu);
        for (size_t i = 0; i < n; i++)
            handle(m, &batch[i]);
        done += (uint32_t)n;
        if (!more)
            break;
        if (done >= EVENTS_PER_WAKE) { /* let the loop breathe; come back at once */
            uint64_t one = 1;
            ssize_t w = write(m->efd, &one, sizeof one);
            (void)w;
            break;
        }
    }
    if (m->room_due) {
        m->room_due = false;
        mqtt_flush(m);
        if (m->ops.room)
            m->ops.room(m->ops.ud);
    }
}

/* ---- publishing (loop thread) ---- */

int mqtt_publish(struct mqtt *m, const char *topic, size_t topic_len, const void *payload, size_t len,
                 bool retained, uint64_t token, bool once)
{
    if (topic_len > MQTT_TOPIC_MAX || !mqtt_room(m, topic_len, len)) {
        m->s.refused++;
        return -1;
    }
    struct rec *r = rec_of(m, m->tail);
    size_t need = topic_len + 1 + len;
    if (need > r->cap) {
        char *b = realloc(r->buf, need); /* grows to the largest message seen in this slot, then reused */
        if (!b) {
            m->s.refused++;
            return -1;
        }
        r->buf = b;
        r->cap = need;
    }
    memcpy(r->buf, topic, topic_len);
    r->buf[topic_len] = '\0';
    if (len)
        memcpy(r->buf + topic_len + 1, payload, len);
    r->tl = (uint32_t)topic_len;
    r->pl = (uint32_t)len;
    r->seq = m->tail++;
    r->token = token;
    r->once = once && token != 0;
    r->retained = retained;
    r->tries = 0;
    r->st = R_WAIT;
    m->nwait++;
    m->bytes += need - 1;
    return 0;
}

bool mqtt_room(const struct mqtt *m, size_t topic_len, size_t len)
{
    return m->tail - m->head < m->nrec && m->bytes + topic_len + len <= m->cfg.buf_bytes;
}

void mqtt_flush(struct mqtt *m)
{
    if (m->st != ST_UP)
        return;
    while (m->nwait > 0 && m->nsent < (uint32_t)m->cfg.max_inflight && m->scan < m->tail) {
        struct rec *r = rec_of(m, m->scan);
        if (r->st != R_WAIT) {
            m->scan++;
            continue;
        }
        MQTTAsync_message msg = MQTTAsync_message_initializer;
        msg.payload = r->buf + r->tl + 1;
        msg.payloadlen = (int)r->pl;
        msg.qos = m->cfg.qos;
        msg.retained = r->retained;
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.onSuccess = on_pub_ok;
        ro.onFailure = on_pub_fail;
        ro.context = pack(r->seq, m->conn);
        int rc = MQTTAsync_sendMessage(m->h, r->buf, &msg, &ro);
        if (rc != MQTTASYNC_SUCCESS)
            break; /* disconnected under us, or paho full: the next flush tries again */
        if (r->tries > 0)
            m->s.resent++;
        r->st = R_SENT;
        r->conn = m->conn;
        m->nwait--;
        m->nsent++;
        m->scan++;
    }
}

void mqtt_ack(struct mqtt *m, uint64_t handle)
{
    (void)m;
    (void)handle; /* paho acknowledged the message before handing it to us */
}

/* ---- returning to the first broker ---- */

static void probe_close(struct mqtt *m)
{
    if (m->probe_fd >= 0) {
        loop_del(m->loop, m->probe_fd);
        close(m->probe_fd);
        m->probe_fd = -1;
    }
}

static void probe_failed(struct mqtt *m)
{
    probe_close(m);
    m->next_probe_ms = now_ms() + m->return_ms;
}

static void on_probe(struct loop *l, int fd, uint32_t ev, void *ud)
{
    (void)l;
    struct mqtt *m = ud;
    int e = 0;
    socklen_t el = sizeof e;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
    if (e || !(ev & EPOLLOUT)) {
        probe_failed(m);
        return;
    }
    probe_close(m);
    if (m->st != ST_UP || m->cur == 0)
        return;
    /* The first broker answers again: leave this one and connect from the
     * first. What is unacknowledged is handed again there. If the first
     * refuses MQTT after all, paho's walk of the list ends up here again
     * and the next probe waits twice as long. */
    log_info("event=mqtt_broker_return client=%s from=%s to=%s", m->client_id, m->b[m->cur].uri, m->b[0].uri);
    if (m->return_ms < RETURN_MAX_MS)
        m->return_ms *= 2;
    conn_gone(m);
    m->st = ST_LEAVING;
    m->leave_ms = now_ms() + LEAVE_MS;
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    d.timeout = 0;
    d.onSuccess = on_disc_ok;
    d.onFailure = on_disc_fail;
    d.context = m;
    if (MQTTAsync_disconnect(m->h, &d) != MQTTASYNC_SUCCESS)
        attempt(m, 0);
}

/* A non-blocking TCP connect to the first broker. Its address: a numeric
 * host at once, a name through getaddrinfo_a in the background (polled on
 * the next ticks), never a blocking lookup on the loop's thread. */
static void probe_connect(struct mqtt *m, const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        return;
    if (loop_add(m->loop, fd, EPOLLOUT, on_probe, m) != 0) {
        close(fd);
        return;
    }
    m->probe_fd = fd;
    m->probe_deadline_ms = now_ms() + PROBE_TIMEOUT_MS;
}

static void probe_start(struct mqtt *m)
{
    struct broker *b = &m->b[0];
    m->next_probe_ms = now_ms() + m->return_ms;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV},
                    *ai = NULL;
    if (getaddrinfo(b->host, b->port, &hints, &ai) == 0 && ai) { /* numeric: no lookup */
        probe_connect(m, ai);
        freeaddrinfo(ai);
        return;
    }
    if (b->gai_active)
        return;
    memset(&b->gai, 0, sizeof b->gai);
    b->hints = (struct addrinfo){.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    b->gai.ar_name = b->host;
    b->gai.ar_service = b->port;
    b->gai.ar_request = &b->hints;
    struct gaicb *list[1] = {&b->gai};
    if (getaddrinfo_a(GAI_NOWAIT, list, 1, NULL) == 0)
        b->gai_active = true;
}

/* A lookup started by probe_start finished: connect to what it found. */
static void probe_resolved(struct mqtt *m)
{
    struct broker *b = &m->b[0];
    if (gai_error(&b->gai) == EAI_INPROGRESS)
        return;
    b->gai_active = false;
    if (gai_error(&b->gai) == 0 && b->gai.ar_result && m->st == ST_UP && m->cur > 0 && m->probe_fd < 0)
        probe_connect(m, b->gai.ar_result);
    if (b->gai.ar_result)
        freeaddrinfo(b->gai.ar_result);
    b->gai.ar_result = NULL;
}

static void on_timer(struct loop *l, void *ud)
{
    struct mqtt *m = ud;
    uint64_t now = now_ms();
    if (m->st == ST_IDLE && now >= m->next_try_ms)
        attempt(m, 0);
    if (m->st == ST_LEAVING && now >= m->leave_ms)
        attempt(m, 0);
    if (m->b[0].gai_active)
        probe_resolved(m);
    if (m->st == ST_UP) {
        if (m->probe_fd >= 0 && now >= m->probe_deadline_ms)
            probe_failed(m);
        else if (m->cur > 0 && m->probe_fd < 0 && now >= m->next_probe_ms)
            probe_start(m);
        mqtt_flush(m); /* what paho refused earlier */
    }
    loop_timer_start(l, &m->timer, TICK_MS);
}

/* ---- the rest of the API ---- */

bool mqtt_ready(const struct mqtt *m)
{
    return m->st == ST_UP && m->nwait < (uint32_t)m->cfg.max_inflight;
}

bool mqtt_connected(const struct mqtt *m)
{
    return m->st == ST_UP && (m->cfg.nsubs == 0 || m->subscribed);
}

int64_t mqtt_outstanding(const struct mqtt *m)
{
    return (int64_t)(m->nsent + m->nwait);
}

void mqtt_stats(const struct mqtt *m, struct mqtt_stats *out)
{
    *out = m->s;
    out->inflight = mqtt_outstanding(m);
}

void mqtt_destroy(struct mqtt **pm)
{
    struct mqtt *m = *pm;
    if (!m)
        return;
    if (m->h) {
        /* Never waits on the broker beyond DESTROY_WAIT_MS: a frozen one
         * must not hold a SIGTERM past its bound (what was not
         * acknowledged is the caller's unflushed count). */
        MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
        d.timeout = 0;
        if (MQTTAsync_isConnected(m->h) && MQTTAsync_disconnect(m->h, &d) == MQTTASYNC_SUCCESS) {
            uint64_t until = now_ms() + DESTROY_WAIT_MS;
            while (MQTTAsync_isConnected(m->h) && now_ms() < until) {
                struct timespec ts = {0, 5 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
        }
        MQTTAsync_destroy(&m->h);
    }
    pthread_mutex_lock(&registry_mu);
    for (int i = 0; i < 4; i++)
        if (atomic_load(&registry[i]) == m)
            atomic_store(&registry[i], NULL);
    pthread_mutex_unlock(&registry_mu);
    probe_close(m);
    bool leak = false;
    struct broker *b0 = &m->b[0];
    if (b0->gai_active) { /* getaddrinfo_a's thread writes into b0 until it is done */
        if (gai_cancel(&b0->gai) == EAI_NOTCANCELED) {
            const struct gaicb *list[1] = {&b0->gai};
            struct timespec ts = {0, 200 * 1000 * 1000};
            gai_suspend(list, 1, &ts);
        }
        if (gai_error(&b0->gai) == EAI_INPROGRESS)
            leak = true; /* a lookup hanging at exit: leave its memory to it */
        else if (b0->gai.ar_result)
            freeaddrinfo(b0->gai.ar_result);
    }
    if (m->loop) {
        loop_timer_stop(m->loop, &m->timer);
        if (m->efd >= 0)
            loop_del(m->loop, m->efd);
    }
    if (m->efd >= 0)
        close(m->efd);
    for (size_t i = 0; m->q && i < m->q_len; i++) {
        struct ev *e = &m->q[(m->q_head + i) % m->q_cap];
        if (e->type == EV_MSG || e->type == EV_CONN_FAILED)
            free(e->buf);
    }
    free(m->q);
    for (uint64_t i = 0; m->r && i < m->nrec; i++)
        free(m->r[i].buf);
    free(m->r);
    for (int i = 0; m->subs && i < m->cfg.nsubs; i++)
        free(m->subs[i]);
    free(m->subs);
    free(m->client_id);
    free(m->username);
    free(m->password);
    free(m->tls_ca);
    pthread_mutex_destroy(&m->mu);
    if (!leak)
        free(m);
    *pm = NULL;
}
