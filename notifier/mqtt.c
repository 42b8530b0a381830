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
 * another broker than the first, a TCP probe of the first every few
 * seconds (brokers.c, shared with mqttsync.c) makes the client disconnect
 * and connect again from the first.
 *
 * Inbound QoS 1 messages: paho sends the PUBACK before the message reaches
 * us, so an acknowledgement cannot be deferred (mqtt_ack is a no-op; the
 * window this leaves is in docs/notifier.md).
 *
 * TLS (ssl:// or mqtts://): the broker's certificate must chain to tls_ca
 * (or the system store) and name the URI's host (paho's verify = 1). A
 * refused connection is logged once per cause, not per retry (brokers.c).
 *
 * Deliberately not here: topics, JSON, what a message means (the callers),
 * processes (pubproc.c uses this as its client library, never the reverse). */
#define _GNU_SOURCE
#include "mqtt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "brokers.h"
#include "sl/log.h"
#include "sl/loop.h"

_Static_assert(MQTT_MAX_BROKERS == BROKERS_MAX, "mqtt.h promises what brokers.c takes");

#define TICK_MS           100u
#define CONNECT_TIMEOUT_S 5
#define FIRST_RETRY_MS    2000u
#define RETRY_MIN_MS      1000u
#define RETRY_MAX_MS      8000u
#define STABLE_MS         5000u
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

struct mqtt {
    struct mqtt_cfg cfg;
    struct mqtt_ops ops;
    struct loop *loop;
    struct loop_timer timer;
    const char *client_id; /* bs's copy */
    char **subs;
    struct brokers bs; /* the list, the failure log, the return probe */
    bool bs_init;
    MQTTAsync h;
    MQTTAsync_SSLOptions ssl;

    /* events from paho's threads */
    int efd;
    pthread_mutex_t mu;
    struct ev *q;
    size_t q_cap, q_head, q_len;
    uint32_t inbound; /* EV_MSG in q */

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

    uint64_t leave_ms;

    struct mqtt_stats s;
};

static void on_events(struct loop *l, int fd, uint32_t ev, void *ud);
static void on_timer(struct loop *l, void *ud);
static void attempt(struct mqtt *m, int i);
static void on_back(void *ud);

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

static void on_conn_fail(void *ctx, MQTTAsync_failureData *r)
{
    struct mqtt *m = ctx;
    char why[192];
    bool refused =
        brokers_cause(&m->bs, r ? r->code : MQTTASYNC_FAILURE, r ? r->message : NULL, why, sizeof why);
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
    m->efd = -1;
    m->last_up = -1;
    m->s.broker = -1;
    m->retry_ms = RETRY_MIN_MS;
    pthread_mutex_init(&m->mu, NULL);
    if (m->cfg.keepalive_s == 0)
        m->cfg.keepalive_s = 20;
    m->bs_init = true;
    if (brokers_init(&m->bs, cfg->uris, cfg->username, cfg->password, cfg->tls_ca, cfg->client_id, l, on_back,
                     m) != 0) {
        mqtt_destroy(&m);
        return NULL;
    }
    m->client_id = m->bs.client_id;
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
    bool ok = m->subs && m->r && m->q && m->efd >= 0;
    for (int i = 0; ok && i < cfg->nsubs; i++)
        ok = (m->subs[i] = strdup(cfg->subs[i])) != NULL;
    m->cfg.client_id = m->client_id;
    m->cfg.username = m->bs.username;
    m->cfg.password = m->bs.password;
    m->cfg.tls_ca = m->bs.tls_ca;
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
    int rc = MQTTAsync_createWithOptions(&m->h, m->bs.b[0].uri, m->client_id, MQTTCLIENT_PERSISTENCE_NONE,
                                         NULL, &co);
    if (rc != MQTTASYNC_SUCCESS) {
        log_error("event=mqtt_create_failed uri=%s code=%d", m->bs.b[0].uri, rc);
        m->h = NULL;
        mqtt_destroy(&m);
        return NULL;
    }
    MQTTAsync_setCallbacks(m->h, m, on_lost, on_message, NULL);
    if (m->bs.tls) {
        MQTTAsync_SSLOptions s = MQTTAsync_SSLOptions_initializer;
        BROKERS_TLS_OPTIONS(s, &m->bs);
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

/* Connect to brokers[i] (a round goes on from there on failure). */
static void attempt(struct mqtt *m, int i)
{
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    BROKERS_CONNECT_OPTIONS(o, &m->bs, i,
                            m->cfg.keepalive_s); /* clean: unacknowledged records are ours to resend */
    o.automaticReconnect = 0;
    o.maxInflight = m->cfg.max_inflight + 16;
    o.connectTimeout = CONNECT_TIMEOUT_S;
    o.onSuccess = on_conn_ok;
    o.onFailure = on_conn_fail;
    o.context = m;
    if (m->bs.tls)
        o.ssl = &m->ssl;
    brokers_attempt(&m->bs);
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
    brokers_up(&m->bs, broker, " api=async");
    m->retry_ms = RETRY_MIN_MS;
    m->s.connected = 1;
    m->s.broker = broker;
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
            brokers_log_failure(&m->bs, m->cur, e->ok, e->broker, e->buf ? e->buf : "connect failed");
            if (m->cur + 1 < m->bs.n) { /* the next of the list, at once */
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
            log_warn("event=mqtt_connection_lost client=%s broker=%s", m->client_id, m->bs.b[m->cur].uri);
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

/* The first broker answers the probe again (brokers.c): leave this one
 * and connect from the first. What is unacknowledged is handed again
 * there. */
static void on_back(void *ud)
{
    struct mqtt *m = ud;
    if (m->st != ST_UP || m->cur == 0)
        return;
    brokers_leave(&m->bs, m->cur);
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

static void on_timer(struct loop *l, void *ud)
{
    struct mqtt *m = ud;
    uint64_t now = now_ms();
    if (m->st == ST_IDLE && now >= m->next_try_ms)
        attempt(m, 0);
    if (m->st == ST_LEAVING && now >= m->leave_ms)
        attempt(m, 0);
    brokers_tick(&m->bs, m->st == ST_UP ? m->cur : 0);
    if (m->st == ST_UP)
        mqtt_flush(m); /* what paho refused earlier */
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
    bool leak = m->bs_init && brokers_fini(&m->bs);
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
    pthread_mutex_destroy(&m->mu);
    if (!leak)
        free(m);
    *pm = NULL;
}
