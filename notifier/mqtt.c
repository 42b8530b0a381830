/* mqtt.c - paho.mqtt.c async client pool for the notifier.
 *
 * Each client is an MQTTAsync handle with no persistence
 * (MQTTCLIENT_PERSISTENCE_NONE) and cleansession=1. Every publish occupies
 * one of the client's fixed slots (copies of topic and payload, buffers
 * reused) until its PUBACK; a publish paho fails (connection lost) goes
 * back into the client's retry set and is sent again, in its original
 * order, once the client is connected. So "at least once" holds across
 * broker restarts without paho's own cleansession=0 resend path (which in
 * paho 1.3.11 read freed memory under ASan and sent malformed packets).
 * The slots bound what is held; what the process holds when it crashes is
 * lost from the live view (PostgreSQL is the record).
 *
 * Threads: the callbacks below run on paho's threads and touch only
 * atomics, the inbound queue (mutex) and loop_wake(). The control FIFO and
 * everything else belong to the main thread.
 *
 * TLS (ssl:// or mqtts://): the broker's certificate must chain to
 * --tls-ca (or the system store) and name the host of the URI (paho's
 * verify = 1). A refused connection is logged once per client with its
 * cause (OpenSSL's reason, or the CONNACK code in words), not once per
 * retry: retries go on every 2 s (1..8 s once connected) and only a cause
 * other than the last two logged, or 10 minutes, logs again.
 *
 * Deliberately not here: JSON, topics, presence; reconnect policy beyond
 * paho's own backoff (1..8 s) and the retry of a first connect; publisher
 * processes (pubproc.c uses this file as its client library, so this file
 * must never call pubproc: the dependency goes one way). */
#define _POSIX_C_SOURCE 200809L
#include "mqtt.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <MQTTAsync.h>

#include "sl/log.h"
#include "sl/loop.h"
#include "topics.h"

#define CTRL_HEADROOM 1024              /* slots beyond max_inflight, for status and results */
#define MAX_TRIES     20                /* a message paho fails this often is dropped (counted) */
#define REMIND_MS     (10 * 60 * 1000u) /* an unchanged connect failure is logged again after this */

struct mqtt;

struct client {
    struct mqtt *m;
    int idx;
    MQTTAsync h;
    char id[256];
    _Atomic int connected;
    _Atomic int connecting;        /* a connect call is outstanding (first connect only) */
    _Atomic int ever;              /* connected once: paho reconnects by itself from then */
    _Atomic int subscribed;        /* client 0: the SUBACK of this connection arrived */
    _Atomic int64_t data_inflight; /* data slots in use (sent or waiting for a resend) */
    _Atomic int64_t ctrl_inflight;
    uint64_t next_try_ms;
    MQTTAsync_SSLOptions ssl; /* m->ssl with this client as ssl_error_context */

    /* Connect failures (paho threads, under mu): the first OpenSSL error of
     * the current attempt, and the last two causes logged, so a failure that
     * repeats every retry is logged once, and so is one that alternates with
     * another (a loaded broker dropping some handshakes: "unexpected eof"). */
    char tls_err[128];
    char why[192], why_prev[192];
    uint32_t fails; /* since the last successful connect */
    uint64_t why_ms;

    /* Slots: free stack and retry set are shared with paho's threads (mu). */
    pthread_mutex_t mu;
    struct slot *slots;
    uint32_t nslots;
    uint32_t *free_stack, nfree;
    uint32_t *retry, nretry; /* failed, to resend in seq order */
    uint64_t next_seq;       /* main thread */
};

struct slot {
    struct client *c;
    char *topic;
    size_t tcap;
    void *payload;
    size_t pcap, len;
    uint64_t seq; /* send order within the client */
    bool retained, ctrl;
    uint8_t tries;
};

struct inmsg {
    char *topic;
    size_t tl;
    char *payload;
    size_t pl;
};

struct ctrlmsg {
    int client;
    bool retained;
    char *topic;
    void *payload;
    size_t len;
};

struct mqtt {
    struct mqtt_cfg cfg;
    struct loop *loop;
    struct client *c;
    int n;
    MQTTAsync_connectOptions copts;
    MQTTAsync_SSLOptions ssl;
    bool tls;

    pthread_mutex_t in_mu;
    struct inmsg *in;
    size_t in_cap, in_head, in_len;

    struct ctrlmsg *cq; /* main thread only */
    size_t cq_cap, cq_head, cq_len;

    _Atomic uint64_t published, failed, data_lost, ctrl_lost, reconnects, ctrl_queued;
    _Atomic int want_wake; /* main stopped pulling: wake it when room appears */
};

static void wake(struct mqtt *m)
{
    loop_wake(m->loop);
}

/* ---- paho callbacks (paho threads) ---- */

static void slot_done(struct slot *sl)
{
    struct client *c = sl->c;
    /* Read before the slot is freed: send_msg may take it and rewrite ctrl
     * the moment the lock is released. */
    bool ctrl = sl->ctrl;
    pthread_mutex_lock(&c->mu);
    c->free_stack[c->nfree++] = (uint32_t)(sl - c->slots);
    pthread_mutex_unlock(&c->mu);
    atomic_fetch_sub(ctrl ? &c->ctrl_inflight : &c->data_inflight, 1);
}

static void on_pub_ok(void *ctx, MQTTAsync_successData *r)
{
    (void)r;
    struct slot *sl = ctx;
    struct mqtt *m = sl->c->m;
    slot_done(sl);
    atomic_fetch_add_explicit(&m->published, 1, memory_order_relaxed);
    if (atomic_exchange(&m->want_wake, 0))
        wake(m);
}

/* Connection lost with the message unacknowledged (cleansession=1 makes
 * paho fail it): keep it for a resend after the reconnect. */
static void on_pub_fail(void *ctx, MQTTAsync_failureData *r)
{
    (void)r;
    struct slot *sl = ctx;
    struct client *c = sl->c;
    pthread_mutex_lock(&c->mu);
    c->retry[c->nretry++] = (uint32_t)(sl - c->slots);
    pthread_mutex_unlock(&c->mu);
    atomic_fetch_add_explicit(&c->m->failed, 1, memory_order_relaxed);
    wake(c->m);
}

static void on_sub_ok(void *ctx, MQTTAsync_successData *r)
{
    (void)r;
    struct client *c = ctx;
    atomic_store(&c->subscribed, 1);
    wake(c->m);
}

static void on_sub_fail(void *ctx, MQTTAsync_failureData *r)
{
    (void)ctx;
    log_error("event=mqtt_subscribe_failed code=%d", r ? r->code : 0);
}

static void subscribe(struct client *c)
{
    /* Status first: the broker sends the retained statuses before any
     * command that arrives on the second subscription, so routing is
     * rebuilt before commands are judged. */
    char *topics[2] = {(char *)c->m->cfg.sub_status, (char *)c->m->cfg.sub_cmd};
    int qos[2] = {1, 1};
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = on_sub_ok;
    ro.onFailure = on_sub_fail;
    ro.context = c;
    int rc = MQTTAsync_subscribeMany(c->h, 2, topics, qos, &ro);
    if (rc != MQTTASYNC_SUCCESS)
        log_error("event=mqtt_subscribe_failed code=%d", rc);
}

static void on_connected(void *ctx, char *cause)
{
    (void)cause;
    struct client *c = ctx;
    if (atomic_exchange(&c->ever, 1))
        atomic_fetch_add(&c->m->reconnects, 1);
    atomic_store(&c->connecting, 0);
    atomic_store(&c->connected, 1);
    if (c->idx == 0 && c->m->cfg.subscribe)
        subscribe(c);
    pthread_mutex_lock(&c->mu);
    uint32_t fails = c->fails;
    c->fails = 0;
    c->why[0] = c->why_prev[0] = '\0';
    c->tls_err[0] = '\0';
    pthread_mutex_unlock(&c->mu);
    log_info("event=mqtt_connected client=%s failures=%u", c->id, fails);
    wake(c->m);
}

/* paho's ssl_error_cb: one OpenSSL error line per call, e.g.
 * "C0E6..:error:0A000086:SSL routines:tls_post_process_server_certificate:
 * certificate verify failed:../ssl/statem/statem_clnt.c:1889:". Keeps the
 * reason field (the sixth) of the first line of the attempt. */
static int on_ssl_error(const char *str, size_t len, void *u)
{
    struct client *c = u;
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
    pthread_mutex_lock(&c->mu);
    if (!c->tls_err[0] && n > 0)
        snprintf(c->tls_err, sizeof c->tls_err, "%.*s", (int)n, p);
    pthread_mutex_unlock(&c->mu);
    return 1;
}

/* The cause of a failed connect in words; true when it is the broker
 * refusing us (TLS verification, credentials): a configuration error that
 * retrying will not fix. Called under c->mu. */
static bool failure_cause(struct client *c, const MQTTAsync_failureData *r, char *out, size_t cap)
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
    if (c->tls_err[0]) {
        snprintf(out, cap, "TLS: %s", c->tls_err);
        return true;
    }
    if (c->m->tls) /* paho's host name check fails with no OpenSSL error: say so */
        snprintf(out, cap,
                 "%s (no TLS error text: broker down, not TLS, or its certificate does not name the host)",
                 msg);
    else
        snprintf(out, cap, "%s", msg);
    return false;
}

static void on_conn_fail(void *ctx, MQTTAsync_failureData *r)
{
    struct client *c = ctx;
    atomic_store(&c->connecting, 0);
    char why[sizeof c->why];
    uint64_t now = loop_clock_ms();
    pthread_mutex_lock(&c->mu);
    bool refused = failure_cause(c, r, why, sizeof why);
    c->tls_err[0] = '\0';
    uint32_t fails = ++c->fails;
    bool again = now - c->why_ms < REMIND_MS && (strcmp(why, c->why) == 0 || strcmp(why, c->why_prev) == 0);
    if (!again) {
        if (strcmp(why, c->why) != 0)
            memcpy(c->why_prev, c->why, sizeof why);
        memcpy(c->why, why, sizeof why);
        c->why_ms = now;
    }
    pthread_mutex_unlock(&c->mu);
    char q[sizeof why + 16];
    log_q(q, sizeof q, why, strlen(why));
    if (!again)
        log_at(refused ? SL_LOG_ERROR : SL_LOG_WARN,
               "event=mqtt_connect_failed client=%s broker=%s code=%d failures=%u err=%s", c->id,
               c->m->cfg.uri, r ? r->code : 0, fails, q);
    else
        log_debug("event=mqtt_connect_failed client=%s code=%d failures=%u", c->id, r ? r->code : 0, fails);
}

static void on_lost(void *ctx, char *cause)
{
    (void)cause;
    struct client *c = ctx;
    atomic_store(&c->connected, 0);
    atomic_store(&c->subscribed, 0);
    pthread_mutex_lock(&c->mu);
    c->tls_err[0] = '\0'; /* an error of the lost session is not the cause of the next connect's failure */
    pthread_mutex_unlock(&c->mu);
    log_warn("event=mqtt_connection_lost client=%s", c->id);
    wake(c->m);
}

static int on_message(void *ctx, char *topic, int tl, MQTTAsync_message *msg)
{
    struct client *c = ctx;
    struct mqtt *m = c->m;
    size_t tlen = tl > 0 ? (size_t)tl : strlen(topic);
    size_t plen = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    pthread_mutex_lock(&m->in_mu);
    if (m->in_len == m->in_cap) {
        /* Full: returning 0 makes paho deliver it again later, so a burst
         * of commands waits instead of being lost. */
        pthread_mutex_unlock(&m->in_mu);
        wake(m);
        return 0;
    }
    char *buf = malloc(tlen + plen + 2); /* control path: commands and statuses only */
    if (!buf) {
        pthread_mutex_unlock(&m->in_mu);
        return 0;
    }
    memcpy(buf, topic, tlen);
    buf[tlen] = '\0';
    if (plen)
        memcpy(buf + tlen + 1, msg->payload, plen);
    buf[tlen + 1 + plen] = '\0';
    struct inmsg *e = &m->in[(m->in_head + m->in_len) % m->in_cap];
    e->topic = buf;
    e->tl = tlen;
    e->payload = buf + tlen + 1;
    e->pl = plen;
    m->in_len++;
    pthread_mutex_unlock(&m->in_mu);
    MQTTAsync_freeMessage(&msg);
    MQTTAsync_free(topic);
    wake(m);
    return 1;
}

/* ---- main thread ---- */

static void start_connect(struct client *c)
{
    if (atomic_exchange(&c->connecting, 1))
        return;
    MQTTAsync_connectOptions o = c->m->copts;
    o.context = c;
    if (o.ssl)
        o.ssl = &c->ssl;
    int rc = MQTTAsync_connect(c->h, &o);
    if (rc != MQTTASYNC_SUCCESS) {
        atomic_store(&c->connecting, 0);
        log_warn("event=mqtt_connect_failed client=%s code=%d", c->id, rc);
    }
}

struct mqtt *mqtt_new(const struct mqtt_cfg *cfg, struct loop *l)
{
    if (cfg->pool < 1 || cfg->max_inflight < 1 || 2 * cfg->max_inflight + CTRL_HEADROOM > 65535)
        return NULL;
    bool tls = strncmp(cfg->uri, "ssl://", 6) == 0 || strncmp(cfg->uri, "mqtts://", 8) == 0;
    bool has_ca = cfg->tls_ca && cfg->tls_ca[0];
    if (has_ca && !tls) {
        /* Asked for TLS but the URI is plain TCP: connecting would send the
         * password and every message in clear. */
        log_error(
            "event=mqtt_config_refused broker=%s err=\"--tls-ca is set but the broker URI is not ssl://\"",
            cfg->uri);
        return NULL;
    }
    if (has_ca && access(cfg->tls_ca, R_OK) != 0) {
        int e = errno;
        log_error("event=mqtt_config_refused tls_ca=%s err=\"%s\"", cfg->tls_ca, strerror(e));
        return NULL;
    }
    struct mqtt *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cfg = *cfg;
    m->tls = tls;
    m->loop = l;
    m->n = cfg->pool;
    pthread_mutex_init(&m->in_mu, NULL);
    m->in_cap = (size_t)(cfg->inbound_queue > 0 ? cfg->inbound_queue : 4096);
    m->in = calloc(m->in_cap, sizeof *m->in);
    m->cq_cap = (size_t)(cfg->ctrl_queue > 0 ? cfg->ctrl_queue : 65536);
    m->cq = calloc(m->cq_cap, sizeof *m->cq);
    m->c = calloc((size_t)m->n, sizeof *m->c);
    if (!m->in || !m->cq || !m->c) {
        mqtt_destroy(&m, 0);
        return NULL;
    }

    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    o.keepAliveInterval = 20;
    o.cleansession = 1; /* unacknowledged messages come back through on_pub_fail; we resend */
    o.automaticReconnect = 1;
    o.minRetryInterval = 1;
    o.maxRetryInterval = 8;
    o.maxInflight = 2 * cfg->max_inflight + CTRL_HEADROOM;
    o.connectTimeout = 5;
    o.MQTTVersion = MQTTVERSION_3_1_1; /* the default retries a refused connect with 3.1: two per attempt */
    o.onFailure = on_conn_fail;
    if (cfg->username && cfg->username[0]) {
        o.username = cfg->username;
        o.password = cfg->password && cfg->password[0] ? cfg->password : NULL;
    }
    if (m->tls) {
        MQTTAsync_SSLOptions s = MQTTAsync_SSLOptions_initializer;
        s.trustStore = has_ca ? cfg->tls_ca : NULL; /* NULL: paho loads OpenSSL's default store */
        s.enableServerCertAuth = 1;                 /* chain must verify */
        s.verify = 1;                               /* and name the URI's host (X509_check_host / _ip) */
        s.ssl_error_cb = on_ssl_error;              /* context: the client, set below */
        m->ssl = s;
        o.ssl = &m->ssl;
    }
    m->copts = o;

    for (int i = 0; i < m->n; i++) {
        struct client *c = &m->c[i];
        c->m = m;
        c->idx = i;
        c->ssl = m->ssl;
        c->ssl.ssl_error_context = c;
        pthread_mutex_init(&c->mu, NULL);
        /* Pulling stops at max_inflight, but a batch already pulled may
         * carry many entries: room for twice that, plus control messages. */
        c->nslots = (uint32_t)(2 * cfg->max_inflight + CTRL_HEADROOM);
        c->slots = calloc(c->nslots, sizeof *c->slots);
        c->free_stack = calloc(c->nslots, sizeof *c->free_stack);
        c->retry = calloc(c->nslots, sizeof *c->retry);
        if (!c->slots || !c->free_stack || !c->retry) {
            mqtt_destroy(&m, 0);
            return NULL;
        }
        for (uint32_t k = 0; k < c->nslots; k++) {
            c->slots[k].c = c;
            c->free_stack[k] = c->nslots - 1 - k;
        }
        c->nfree = c->nslots;
        snprintf(c->id, sizeof c->id, "%s-%d", cfg->client_id, cfg->name_index + i);
        MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
        /* Refused while disconnected: the message stays in its slot's
         * retry set, in order, instead of paho's buffer. */
        co.sendWhileDisconnected = 0;
        int rc = MQTTAsync_createWithOptions(&c->h, cfg->uri, c->id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
        if (rc != MQTTASYNC_SUCCESS) {
            log_error("event=mqtt_create_failed uri=%s code=%d", cfg->uri, rc);
            c->h = NULL;
            mqtt_destroy(&m, 0);
            return NULL;
        }
        MQTTAsync_setCallbacks(c->h, c, on_lost, on_message, NULL);
        MQTTAsync_setConnected(c->h, c, on_connected);
        start_connect(c);
    }
    return m;
}

void mqtt_destroy(struct mqtt **pm, int timeout_ms)
{
    struct mqtt *m = *pm;
    if (!m)
        return;
    for (int i = 0; m->c && i < m->n; i++) {
        struct client *c = &m->c[i];
        if (!c->h)
            continue;
        MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
        d.timeout = timeout_ms;
        MQTTAsync_disconnect(c->h, &d);
    }
    /* Give the disconnects a moment, then tear down (destroy joins nothing;
     * paho's threads stop when the last client goes). */
    for (int i = 0; m->c && i < m->n; i++) {
        uint64_t until = loop_clock_ms() + (uint64_t)timeout_ms;
        while (m->c[i].h && MQTTAsync_isConnected(m->c[i].h) && loop_clock_ms() < until) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    for (int i = 0; m->c && i < m->n; i++) {
        struct client *c = &m->c[i];
        if (c->h)
            MQTTAsync_destroy(&c->h);
        for (uint32_t k = 0; c->slots && k < c->nslots; k++) {
            free(c->slots[k].topic);
            free(c->slots[k].payload);
        }
        free(c->slots);
        free(c->free_stack);
        free(c->retry);
        if (c->m)
            pthread_mutex_destroy(&c->mu);
    }
    for (size_t k = 0; m->in && k < m->in_len; k++)
        free(m->in[(m->in_head + k) % m->in_cap].topic);
    for (size_t k = 0; m->cq && k < m->cq_len; k++) {
        struct ctrlmsg *q = &m->cq[(m->cq_head + k) % m->cq_cap];
        free(q->topic);
    }
    free(m->in);
    free(m->cq);
    free(m->c);
    pthread_mutex_destroy(&m->in_mu);
    free(m);
    *pm = NULL;
}

bool mqtt_ready(struct mqtt *m)
{
    for (int i = 0; i < m->n; i++) {
        struct client *c = &m->c[i];
        if (!atomic_load(&c->connected) || atomic_load(&c->data_inflight) >= m->cfg.max_inflight) {
            atomic_store(&m->want_wake, 1);
            return false;
        }
    }
    return true;
}

bool mqtt_connected(struct mqtt *m)
{
    return atomic_load(&m->c[0].connected) != 0 && atomic_load(&m->c[0].subscribed) != 0;
}

static int send_slot(struct client *c, struct slot *sl)
{
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    msg.payload = sl->payload;
    msg.payloadlen = (int)sl->len;
    msg.qos = 1;
    msg.retained = sl->retained;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = on_pub_ok;
    ro.onFailure = on_pub_fail;
    ro.context = sl;
    return MQTTAsync_sendMessage(c->h, sl->topic, &msg, &ro) == MQTTASYNC_SUCCESS ? 0 : -1;
}

static int by_seq(const void *a, const void *b, void *ud)
{
    const struct slot *s = ud;
    uint64_t x = s[*(const uint32_t *)a].seq, y = s[*(const uint32_t *)b].seq;
    return x < y ? -1 : x > y;
}

/* Main thread: resend what paho failed, oldest first, while connected.
 * Returns true when nothing waits any more. */
static bool resend(struct client *c)
{
    if (!atomic_load(&c->connected))
        return false;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        if (c->nretry == 0) {
            pthread_mutex_unlock(&c->mu);
            return true;
        }
        /* Small and rare (a reconnect): find the oldest by a scan. */
        uint32_t best = 0;
        for (uint32_t k = 1; k < c->nretry; k++)
            if (by_seq(&c->retry[k], &c->retry[best], c->slots) < 0)
                best = k;
        uint32_t idx = c->retry[best];
        c->retry[best] = c->retry[--c->nretry];
        pthread_mutex_unlock(&c->mu);
        struct slot *sl = &c->slots[idx];
        if (++sl->tries > MAX_TRIES) {
            atomic_fetch_add(sl->ctrl ? &c->m->ctrl_lost : &c->m->data_lost, 1);
            slot_done(sl);
            continue;
        }
        if (send_slot(c, sl) != 0) {
            pthread_mutex_lock(&c->mu);
            c->retry[c->nretry++] = idx;
            pthread_mutex_unlock(&c->mu);
            return false;
        }
    }
}

/* Take a slot, copy the message in, send it (or queue it behind earlier
 * failures, keeping the client's order). -1 if no slot is free. */
static int send_msg(struct client *c, bool ctrl, const char *topic, const void *payload, size_t len,
                    bool retained)
{
    pthread_mutex_lock(&c->mu);
    if (c->nfree == 0 || (!ctrl && c->nfree <= CTRL_HEADROOM)) { /* data leaves control its reserve */
        pthread_mutex_unlock(&c->mu);
        return -1;
    }
    uint32_t idx = c->free_stack[--c->nfree];
    pthread_mutex_unlock(&c->mu);
    struct slot *sl = &c->slots[idx];
    size_t tl = strlen(topic) + 1;
    if (tl > sl->tcap) {
        char *t = realloc(sl->topic, tl);
        if (!t)
            goto nomem;
        sl->topic = t;
        sl->tcap = tl;
    }
    if (len > sl->pcap) {
        void *p = realloc(sl->payload, len); /* grows to the largest payload seen, then reused */
        if (!p)
            goto nomem;
        sl->payload = p;
        sl->pcap = len;
    }
    memcpy(sl->topic, topic, tl);
    if (len)
        memcpy(sl->payload, payload, len);
    sl->len = len;
    sl->retained = retained;
    sl->ctrl = ctrl;
    sl->tries = 0;
    sl->seq = ++c->next_seq;
    atomic_fetch_add(ctrl ? &c->ctrl_inflight : &c->data_inflight, 1);
    pthread_mutex_lock(&c->mu);
    bool behind = c->nretry > 0;
    pthread_mutex_unlock(&c->mu);
    if (behind || send_slot(c, sl) != 0) {
        pthread_mutex_lock(&c->mu);
        c->retry[c->nretry++] = idx;
        pthread_mutex_unlock(&c->mu);
    }
    return 0;
nomem:
    pthread_mutex_lock(&c->mu);
    c->free_stack[c->nfree++] = idx;
    pthread_mutex_unlock(&c->mu);
    return -1;
}

static bool cq_push(struct mqtt *m, int client, const char *topic, const void *payload, size_t len,
                    bool retained)
{
    if (m->cq_len == m->cq_cap)
        return false;
    size_t tl = strlen(topic);
    char *buf = malloc(tl + 1 + len + 1);
    if (!buf)
        return false;
    memcpy(buf, topic, tl + 1);
    if (len)
        memcpy(buf + tl + 1, payload, len);
    struct ctrlmsg *q = &m->cq[(m->cq_head + m->cq_len) % m->cq_cap];
    q->client = client;
    q->retained = retained;
    q->topic = buf;
    q->payload = buf + tl + 1;
    q->len = len;
    m->cq_len++;
    atomic_fetch_add_explicit(&m->ctrl_queued, 1, memory_order_relaxed);
    return true;
}

int mqtt_publish(struct mqtt *m, bool ctrl, const char *dev, size_t dev_len, const char *topic,
                 size_t topic_len, const void *payload, size_t len, bool retained)
{
    char t[MQTT_TOPIC_MAX + 1];
    if (topic_len > MQTT_TOPIC_MAX || len > INT32_MAX) {
        atomic_fetch_add(ctrl ? &m->ctrl_lost : &m->data_lost, 1);
        return -1;
    }
    memcpy(t, topic, topic_len);
    t[topic_len] = '\0';
    uint32_t h = topics_hash((const uint8_t *)dev, dev_len);
    int ci = (int)(h % (uint32_t)m->n);
    struct client *c = &m->c[ci];
    if (!ctrl) {
        if (send_msg(c, false, t, payload, len, retained) != 0) {
            atomic_fetch_add_explicit(&m->data_lost, 1, memory_order_relaxed);
            return -1;
        }
        return 0;
    }
    /* Control keeps its order: once anything waits, everything after waits. */
    if (m->cq_len == 0 && send_msg(c, true, t, payload, len, retained) == 0)
        return 0;
    if (!cq_push(m, ci, t, payload, len, retained)) {
        atomic_fetch_add_explicit(&m->ctrl_lost, 1, memory_order_relaxed);
        log_error("event=mqtt_ctrl_lost topic=%s", t);
    }
    return 0;
}

void mqtt_tick(struct mqtt *m, uint64_t now_ms)
{
    for (int i = 0; i < m->n; i++)
        resend(&m->c[i]);
    while (m->cq_len > 0) {
        struct ctrlmsg *q = &m->cq[m->cq_head];
        if (send_msg(&m->c[q->client], true, q->topic, q->payload, q->len, q->retained) != 0)
            break;
        free(q->topic);
        m->cq_head = (m->cq_head + 1) % m->cq_cap;
        m->cq_len--;
    }
    for (int i = 0; i < m->n; i++) {
        struct client *c = &m->c[i];
        if (atomic_load(&c->ever) || atomic_load(&c->connecting) || now_ms < c->next_try_ms)
            continue;
        c->next_try_ms = now_ms + 2000;
        start_connect(c);
    }
}

void mqtt_poll(struct mqtt *m, mqtt_msg_cb *cb, void *ud)
{
    for (;;) {
        pthread_mutex_lock(&m->in_mu);
        if (m->in_len == 0) {
            pthread_mutex_unlock(&m->in_mu);
            return;
        }
        struct inmsg e = m->in[m->in_head];
        m->in_head = (m->in_head + 1) % m->in_cap;
        m->in_len--;
        pthread_mutex_unlock(&m->in_mu);
        cb(ud, e.topic, e.tl, e.payload, e.pl);
        free(e.topic);
    }
}

int64_t mqtt_outstanding(struct mqtt *m)
{
    int64_t n = (int64_t)m->cq_len;
    for (int i = 0; i < m->n; i++)
        n += atomic_load(&m->c[i].data_inflight) + atomic_load(&m->c[i].ctrl_inflight);
    return n;
}

void mqtt_stats(struct mqtt *m, struct mqtt_stats *o)
{
    memset(o, 0, sizeof *o);
    o->published = atomic_load(&m->published);
    o->failed = atomic_load(&m->failed);
    o->data_lost = atomic_load(&m->data_lost);
    o->ctrl_lost = atomic_load(&m->ctrl_lost);
    o->reconnects = atomic_load(&m->reconnects);
    o->ctrl_queued = atomic_load(&m->ctrl_queued);
    o->ctrl_waiting = (int64_t)m->cq_len;
    for (int i = 0; i < m->n; i++) {
        o->inflight += atomic_load(&m->c[i].data_inflight) + atomic_load(&m->c[i].ctrl_inflight);
        o->connected += atomic_load(&m->c[i].connected);
    }
}
