/* mqtt.c - one MQTT 3.1.1 client connection on the notifier's event loop
 * (see mqtt.h): TCP or TLS (OpenSSL), a list of brokers with failover and
 * return, QoS 0 or 1 publishes batched into few writes, subscriptions with
 * acknowledgements the caller may defer.
 *
 * Buffers, all fixed at mqtt_new:
 *   pub  [ack_off, win_off) packets handed to the socket and not yet
 *                           acknowledged (QoS 1; at most max_inflight),
 *        [wr_off ...]       of which the bytes from wr_off are still unwritten,
 *        [win_off, end)     packets waiting for room in the window;
 *   ctl  CONNECT, SUBSCRIBE, PUBACK, PINGREQ, DISCONNECT: written before pub;
 *   in   bytes read, parsed packet by packet (mqttc_parse) in place.
 * A broker acknowledges QoS 1 publishes in the order it received them
 * (MQTT 3.1.1 4.6), so the packet at ack_off is always the one a PUBACK
 * names; anything else is a protocol error and restarts the connection,
 * which resends everything unacknowledged. Packet ids are taken in sequence
 * when a publish is appended; fewer than 60,000 packets are ever held, so an
 * id is never in use twice.
 *
 * Connecting: brokers are tried in list order, each with its own deadline
 * (resolve + TCP + TLS + CONNACK within CONNECT_TIMEOUT_MS); a failed round
 * waits (2 s before the first connection ever, then 1..8 s) and starts again
 * from the first. A lost connection that had lasted STABLE_MS reconnects at
 * once. While on another broker than the first, a TCP probe of the first
 * every RETURN_MIN_MS (doubling to RETURN_MAX_MS while returns fail) brings
 * the client back to it once it answers.
 *
 * A refused connection is logged once per cause, not per retry: again only
 * for a cause other than the last two logged, or after REMIND_MS. TLS
 * verification failures and refused credentials are errors, everything
 * else (broker down, timeouts) warnings.
 *
 * Deliberately not here: topics, JSON, what a message means (the callers),
 * processes (pubproc.c uses this as its client library, never the reverse). */
#define _GNU_SOURCE
#include "mqtt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "mqttc.h"
#include "sl/log.h"
#include "sl/loop.h"

#define TICK_MS            50u
#define CONNECT_TIMEOUT_MS 5000u
#define FIRST_RETRY_MS     2000u
#define RETRY_MIN_MS       1000u
#define RETRY_MAX_MS       8000u
#define STABLE_MS          5000u
#define RETURN_MIN_MS      5000u
#define RETURN_MAX_MS      60000u
#define PROBE_TIMEOUT_MS   2000u
#define RESOLVED_TTL_MS    30000u
#define REMIND_MS          (10u * 60u * 1000u)
#define CTL_CAP            (64u * 1024u)
#define MAX_PACKETS        60000u /* held at once: packet ids (16 bits) never repeat among them */
#define READS_PER_WAKE     16

enum state {
    ST_IDLE = 0,   /* no connection; the next round starts at next_try_ms */
    ST_RESOLVING,  /* getaddrinfo_a of brokers[cur] in flight */
    ST_CONNECTING, /* TCP connect in flight */
    ST_TLS,        /* TLS handshake */
    ST_CONNACK,    /* CONNECT sent, waiting for CONNACK */
    ST_UP,         /* connected: publishes flow */
};

struct broker {
    char uri[256];
    char host[256];
    char port[8];
    bool tls;
    /* the host's first address, from getaddrinfo_a (or inet_pton) */
    struct gaicb gai;
    struct addrinfo hints;
    bool gai_active;
    struct sockaddr_storage addr;
    socklen_t alen;
    bool have;
    uint64_t resolved_ms;
};

struct tok {
    uint64_t seq, token;
    bool once; /* never resent: dropped (done not ok) if its connection is lost before the PUBACK */
};

struct mqtt {
    struct mqtt_cfg cfg;
    struct mqtt_ops ops;
    struct loop *loop;
    struct loop_timer timer;
    struct loop_timer coal; /* read_every_ms: turns reading back on */
    bool coal_wait;         /* reading is off until coal fires */
    uint64_t last_read_ms;
    char *client_id, *username, *password, *tls_ca;
    char **subs;
    struct broker b[MQTT_MAX_BROKERS];
    int nb;
    SSL_CTX *ctx;
    SSL *ssl;

    enum state st;
    int fd;
    uint32_t events; /* registered with the loop */
    int cur;         /* broker being tried or connected to */
    int last_up;     /* broker of the previous connection, -1 before the first */
    uint32_t gen;    /* connections made: stale ack handles are told apart */
    uint64_t deadline_ms, next_try_ms, last_rx_ms, last_tx_ms, up_ms, ping_ms;
    bool ping_out, ever, acked_this_conn;
    bool room_due;   /* acknowledgements freed room: tell ops.room after this wake-up's reads */
    uint32_t closes; /* connections closed: a callback that closed ours is told apart */
    uint32_t retry_ms;

    uint8_t ctl[CTL_CAP];
    size_t ctl_len, ctl_off;
    uint8_t *pub;
    size_t pub_cap, ack_off, win_off, wr_off, end;
    uint32_t win_pkts, queued;
    uint16_t next_id;
    uint64_t seq_acked, seq_end; /* publishes ever finished / appended */
    struct tok *tok; /* publishes with a token, in seq order: tok[tok_head .. tok_head + tok_len) */
    size_t tok_cap, tok_head, tok_len;
    uint8_t head_tries;
    int tls_retry;  /* an SSL_write to repeat as it was: 1 = ctl, 2 = pub */
    size_t tls_len; /* its length */
    bool want_out;  /* the last write stopped at EAGAIN */

    uint8_t *in;
    size_t in_len;
    bool in_blocked;  /* ctl full: stop reading until PUBACKs are written */
    bool resume;      /* reading was unblocked: handle what was already read */
    bool dispatching; /* inside the packet loop: flushes wait for its end */
    bool subscribed;
    bool sub_switched; /* `switched` of this connection, for ops.up at the SUBACK */
    uint16_t sub_id;

    char why[192], why_prev[192];
    uint32_t fails;
    uint64_t why_ms;

    int probe_fd;
    uint64_t next_probe_ms, probe_deadline_ms;
    uint32_t return_ms;

    struct mqtt_stats s;
};

static void on_io(struct loop *l, int fd, uint32_t ev, void *ud);
static void on_timer(struct loop *l, void *ud);
static void on_coal(struct loop *l, void *ud);
static void probe_done(struct mqtt *m, uint32_t ev);
static void attempt(struct mqtt *m, int i);
static void lost(struct mqtt *m, const char *why);
static int write_out(struct mqtt *m);

static uint64_t now_ms(void)
{
    return loop_clock_ms();
}

/* ---- configuration ---- */

static int parse_uri(const char *s, size_t n, struct broker *b)
{
    static const struct {
        const char *p;
        bool tls;
    } schemes[] = {{"tcp://", false}, {"mqtt://", false}, {"ssl://", true}, {"mqtts://", true}};
    if (n >= sizeof b->uri)
        return -1;
    memcpy(b->uri, s, n);
    b->uri[n] = '\0';
    const char *rest = NULL;
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        if (strncmp(b->uri, schemes[i].p, strlen(schemes[i].p)) == 0) {
            rest = b->uri + strlen(schemes[i].p);
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

struct mqtt *mqtt_new(const struct mqtt_cfg *cfg, const struct mqtt_ops *ops, struct loop *l)
{
    if (!cfg->uris || !cfg->client_id || cfg->qos < 0 || cfg->qos > 1 || cfg->max_inflight < 1 ||
        cfg->nsubs < 0 || cfg->nsubs > 16 || cfg->buf_bytes < 4096 || cfg->max_in < 64)
        return NULL;
    struct mqtt *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cfg = *cfg;
    if (ops)
        m->ops = *ops;
    m->loop = l;
    m->fd = m->probe_fd = -1;
    m->last_up = -1;
    m->s.broker = -1;
    m->retry_ms = RETRY_MIN_MS;
    m->return_ms = RETURN_MIN_MS;
    m->next_id = 1;
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
            free(m);
            return NULL;
        }
        m->nb++;
        p += n;
        if (*p == ',')
            p++;
    }
    if (m->nb == 0) {
        refuse("what=broker", "no broker URI");
        free(m);
        return NULL;
    }
    bool has_ca = cfg->tls_ca && cfg->tls_ca[0], any_tls = false;
    for (int i = 0; i < m->nb; i++) {
        any_tls |= m->b[i].tls;
        if (has_ca && !m->b[i].tls) {
            /* Asked for TLS but the URI is plain TCP: connecting would send
             * the password and every message in clear. */
            char w[300];
            snprintf(w, sizeof w, "broker=%s", m->b[i].uri);
            refuse(w, "--tls-ca is set but the broker URI is not ssl://");
            free(m);
            return NULL;
        }
    }
    if (has_ca && access(cfg->tls_ca, R_OK) != 0) {
        int e = errno;
        char w[600];
        snprintf(w, sizeof w, "tls_ca=%s", cfg->tls_ca);
        refuse(w, strerror(e));
        free(m);
        return NULL;
    }
    m->client_id = dup_or_empty(cfg->client_id);
    m->username = dup_or_empty(cfg->username);
    m->password = dup_or_empty(cfg->password);
    m->tls_ca = dup_or_empty(cfg->tls_ca);
    m->subs = calloc((size_t)cfg->nsubs + 1, sizeof *m->subs);
    m->pub_cap = cfg->buf_bytes;
    m->pub = malloc(m->pub_cap);
    m->in = malloc(cfg->max_in);
    m->tok_cap = 1024;
    m->tok = malloc(m->tok_cap * sizeof *m->tok);
    bool ok = m->client_id && m->username && m->password && m->tls_ca && m->subs && m->pub && m->in && m->tok;
    for (int i = 0; ok && i < cfg->nsubs; i++)
        ok = (m->subs[i] = strdup(cfg->subs[i])) != NULL;
    m->cfg.client_id = m->client_id;
    m->cfg.username = m->username;
    m->cfg.password = m->password;
    m->cfg.tls_ca = m->tls_ca;
    m->cfg.subs = (const char *const *)m->subs;
    if (ok && any_tls) {
        m->ctx = SSL_CTX_new(TLS_client_method());
        ok = m->ctx != NULL;
        if (ok) {
            SSL_CTX_set_min_proto_version(m->ctx, TLS1_2_VERSION);
            SSL_CTX_set_verify(m->ctx, SSL_VERIFY_PEER, NULL); /* the chain must verify */
            SSL_CTX_set_mode(m->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
            int r = has_ca ? SSL_CTX_load_verify_locations(m->ctx, m->tls_ca, NULL)
                           : SSL_CTX_set_default_verify_paths(m->ctx);
            if (r != 1) {
                char w[600], e[256];
                snprintf(w, sizeof w, "tls_ca=%s", has_ca ? m->tls_ca : "(default store)");
                ERR_error_string_n(ERR_get_error(), e, sizeof e);
                refuse(w, e);
                mqtt_destroy(&m);
                return NULL;
            }
        }
    }
    if (!ok) {
        mqtt_destroy(&m);
        return NULL;
    }
    loop_timer_init(&m->timer, on_timer, m);
    loop_timer_init(&m->coal, on_coal, m);
    loop_timer_start(l, &m->timer, TICK_MS);
    attempt(m, 0);
    return m;
}

/* ---- failures, logged once per cause ---- */

/* A connection attempt to brokers[cur] failed with why; refused: a
 * configuration error (TLS verification, credentials). */
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

/* ---- connection lifecycle ---- */

static void set_events(struct mqtt *m, uint32_t ev)
{
    if (m->fd < 0 || ev == m->events)
        return;
    if (loop_mod(m->loop, m->fd, ev, on_io, m) == 0)
        m->events = ev;
}

static void sync_events(struct mqtt *m)
{
    uint32_t ev = 0;
    switch (m->st) {
    case ST_CONNECTING: ev = EPOLLOUT; break;
    case ST_TLS: ev = m->events ? m->events : EPOLLIN; break; /* what the handshake asked for */
    case ST_CONNACK:
    case ST_UP: ev = (m->in_blocked || m->coal_wait ? 0 : EPOLLIN) | (m->want_out ? EPOLLOUT : 0); break;
    default: return;
    }
    set_events(m, ev);
}

static void close_conn(struct mqtt *m)
{
    m->closes++;
    if (m->ssl) {
        SSL_free(m->ssl);
        m->ssl = NULL;
    }
    if (m->fd >= 0) {
        loop_del(m->loop, m->fd);
        close(m->fd);
        m->fd = -1;
    }
    m->events = 0;
    m->in_len = 0;
    m->ctl_len = m->ctl_off = 0;
    m->tls_retry = 0;
    m->want_out = m->in_blocked = m->resume = m->subscribed = m->ping_out = m->coal_wait = false;
    loop_timer_stop(m->loop, &m->coal);
}

/* The connection is gone: publishes marked `once` that it had not
 * acknowledged are dropped (they may or may not have reached the broker;
 * their owner decides what that means), from the newest down so the seq
 * of each one still left is known. Rare: only at a connection loss. */
static void drop_once(struct mqtt *m)
{
    for (size_t k = m->tok_len; k-- > 0;) {
        struct tok t = m->tok[m->tok_head + k];
        uint64_t nth = t.seq - m->seq_acked; /* 1 = the packet at ack_off */
        if (!t.once || t.seq <= m->seq_acked || nth > m->win_pkts)
            continue;
        size_t off = m->ack_off;
        for (uint64_t i = 1; i < nth; i++)
            off += mqttc_packet_len(m->pub + off, m->end - off);
        size_t len = mqttc_packet_len(m->pub + off, m->end - off);
        memmove(m->pub + off, m->pub + off + len, m->end - off - len);
        m->end -= len;
        m->win_off -= len;
        if (m->wr_off > off)
            m->wr_off = m->wr_off >= off + len ? m->wr_off - len : off;
        m->win_pkts--;
        m->seq_end--;
        for (size_t j = k + 1; j < m->tok_len; j++) /* later publishes move up one seq */
            m->tok[m->tok_head + j - 1] = (struct tok){
                m->tok[m->tok_head + j].seq - 1, m->tok[m->tok_head + j].token, m->tok[m->tok_head + j].once};
        m->tok_len--;
        m->s.failed++;
        if (m->ops.done)
            m->ops.done(m->ops.ud, t.token, false);
    }
}

/* Everything handed to the last connection and not acknowledged goes out
 * again, in order, on the next one (except `once` publishes). */
static void rewind_window(struct mqtt *m)
{
    if (m->cfg.qos == 1 && m->tok_len > 0)
        drop_once(m);
    if (m->cfg.qos == 1) {
        m->s.resent += m->win_pkts;
        m->queued += m->win_pkts;
        m->win_pkts = 0;
        m->wr_off = m->win_off = m->ack_off;
    } else if (m->wr_off > m->ack_off) {
        /* A QoS 0 packet cut in the middle: write it whole again. */
        m->wr_off = m->win_off = m->ack_off;
    }
}

static void next_round(struct mqtt *m, uint32_t delay_ms)
{
    m->st = ST_IDLE;
    m->next_try_ms = now_ms() + delay_ms;
}

/* The attempt on brokers[cur] failed: the next broker, or wait for a new round. */
static void attempt_failed(struct mqtt *m, bool refused, int code, const char *why)
{
    close_conn(m);
    log_failure(m, refused, code, why);
    if (m->cur + 1 < m->nb) {
        attempt(m, m->cur + 1);
        return;
    }
    uint32_t d = m->ever ? m->retry_ms : FIRST_RETRY_MS;
    if (m->ever && m->retry_ms < RETRY_MAX_MS)
        m->retry_ms *= 2;
    next_round(m, d);
}

static void failf(struct mqtt *m, bool refused, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void failf(struct mqtt *m, bool refused, int code, const char *fmt, ...)
{
    char why[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    attempt_failed(m, refused, code, why);
}

static void drop_head(struct mqtt *m);

static void lost(struct mqtt *m, const char *why)
{
    uint64_t now = now_ms();
    char q[256];
    log_warn("event=mqtt_connection_lost client=%s broker=%s err=%s", m->client_id, m->b[m->cur].uri,
             log_q(q, sizeof q, why, strlen(why)));
    bool stable = now - m->up_ms >= STABLE_MS;
    close_conn(m);
    if (m->cfg.qos == 1 && m->win_pkts > 0 && !m->acked_this_conn && ++m->head_tries >= MQTT_MAX_TRIES)
        drop_head(m);
    rewind_window(m);
    m->s.connected = 0;
    m->s.broker = -1;
    if (stable) {
        m->retry_ms = RETRY_MIN_MS;
        attempt(m, 0);
        return;
    }
    uint32_t d = m->retry_ms;
    if (m->retry_ms < RETRY_MAX_MS)
        m->retry_ms *= 2;
    next_round(m, d);
}

static int put_ctl(struct mqtt *m, size_t n)
{
    if (n == 0)
        return -1;
    m->ctl_len += n;
    return 0;
}

static bool ctl_room(struct mqtt *m, size_t n)
{
    if (m->ctl_off == m->ctl_len)
        m->ctl_len = m->ctl_off = 0;
    if (m->ctl_off > 0 && CTL_CAP - m->ctl_len < n && !m->tls_retry) {
        memmove(m->ctl, m->ctl + m->ctl_off, m->ctl_len - m->ctl_off);
        m->ctl_len -= m->ctl_off;
        m->ctl_off = 0;
    }
    return CTL_CAP - m->ctl_len >= n;
}

static uint16_t take_id(struct mqtt *m)
{
    uint16_t id = m->next_id++;
    if (m->next_id == 0)
        m->next_id = 1;
    return id;
}

static void send_connect(struct mqtt *m)
{
    m->ctl_len = m->ctl_off = 0;
    put_ctl(m, mqttc_connect(m->ctl, CTL_CAP, m->client_id, m->username, m->password, m->cfg.keepalive_s));
    m->st = ST_CONNACK;
    m->events = 0;
    set_events(m, EPOLLIN);
    if (write_out(m) != 0)
        failf(m, false, -1, "connection closed by the broker during the MQTT handshake");
}

static void tls_cause(struct mqtt *m, int sslerr, int saved_errno)
{
    long vr = SSL_get_verify_result(m->ssl);
    if (vr != X509_V_OK) {
        bool host = vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH;
        failf(m, true, (int)vr, "TLS: certificate verify failed (%s%s)", X509_verify_cert_error_string(vr),
              host ? ": the certificate does not name the host" : "");
        return;
    }
    unsigned long e = ERR_get_error();
    if (e) {
        const char *r = ERR_reason_error_string(e);
        failf(m, false, (int)ERR_GET_REASON(e), "TLS: %s", r ? r : "handshake failed");
        return;
    }
    if (sslerr == SSL_ERROR_SYSCALL && saved_errno)
        failf(m, false, saved_errno, "TLS handshake: %s", strerror(saved_errno));
    else
        failf(m, false, -1, "TLS handshake: connection closed (not a TLS listener?)");
}

static void tls_step(struct mqtt *m)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_connect(m->ssl);
    int se = errno;
    if (r == 1) {
        send_connect(m);
        return;
    }
    int e = SSL_get_error(m->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        set_events(m, EPOLLIN);
    else if (e == SSL_ERROR_WANT_WRITE)
        set_events(m, EPOLLOUT);
    else
        tls_cause(m, e, se);
}

static bool is_ip(const char *h)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

static void tls_start(struct mqtt *m)
{
    struct broker *b = &m->b[m->cur];
    m->ssl = SSL_new(m->ctx);
    if (!m->ssl || SSL_set_fd(m->ssl, m->fd) != 1) {
        failf(m, false, -1, "TLS: out of memory");
        return;
    }
    SSL_set_connect_state(m->ssl);
    /* The certificate must name the URI's host (an IP address for an
     * ssl://a.b.c.d URI: an IP subjectAltName). */
    if (is_ip(b->host)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(m->ssl), b->host);
    } else {
        SSL_set1_host(m->ssl, b->host);
        SSL_set_tlsext_host_name(m->ssl, b->host);
    }
    m->st = ST_TLS;
    m->events = 0;
    set_events(m, EPOLLOUT);
    tls_step(m);
}

static int connect_to(const struct broker *b, int *fd_out)
{
    int fd = socket(b->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* batching is ours */
    if (connect(fd, (const struct sockaddr *)&b->addr, b->alen) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return e;
    }
    *fd_out = fd;
    return 0;
}

static void tcp_start(struct mqtt *m)
{
    int e = connect_to(&m->b[m->cur], &m->fd);
    if (e) {
        failf(m, false, e, "TCP connect: %s", strerror(e));
        return;
    }
    m->st = ST_CONNECTING;
    m->events = EPOLLOUT;
    if (loop_add(m->loop, m->fd, EPOLLOUT, on_io, m) != 0) {
        close(m->fd);
        m->fd = -1;
        failf(m, false, -1, "event loop refused the socket");
    }
}

/* Fill b's address from a numeric host without any lookup; false if it is a name. */
static bool numeric(struct broker *b)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)&b->addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&b->addr;
    uint16_t port = (uint16_t)atoi(b->port);
    memset(&b->addr, 0, sizeof b->addr);
    if (inet_pton(AF_INET, b->host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        b->alen = sizeof *v4;
    } else if (inet_pton(AF_INET6, b->host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        b->alen = sizeof *v6;
    } else {
        return false;
    }
    b->have = true;
    b->resolved_ms = UINT64_MAX / 2; /* never stale */
    return true;
}

static int resolve_start(struct broker *b)
{
    if (b->gai_active)
        return 0;
    memset(&b->gai, 0, sizeof b->gai);
    memset(&b->hints, 0, sizeof b->hints);
    b->hints.ai_socktype = SOCK_STREAM;
    b->gai.ar_name = b->host;
    b->gai.ar_service = b->port;
    b->gai.ar_request = &b->hints;
    struct gaicb *list[1] = {&b->gai};
    int r = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
    if (r != 0)
        return r;
    b->gai_active = true;
    return 0;
}

/* 0 resolved (b->addr set), EAI_INPROGRESS, or a getaddrinfo error. */
static int resolve_poll(struct broker *b)
{
    if (!b->gai_active)
        return b->have ? 0 : EAI_FAIL;
    int r = gai_error(&b->gai);
    if (r == EAI_INPROGRESS)
        return r;
    b->gai_active = false;
    struct addrinfo *ai = b->gai.ar_result;
    if (r == 0 && ai && ai->ai_addrlen <= sizeof b->addr) {
        memcpy(&b->addr, ai->ai_addr, ai->ai_addrlen);
        b->alen = ai->ai_addrlen;
        b->have = true;
        b->resolved_ms = now_ms();
    } else if (r == 0) {
        r = EAI_FAIL;
    }
    if (ai)
        freeaddrinfo(ai);
    b->gai.ar_result = NULL;
    return r;
}

static void attempt(struct mqtt *m, int i)
{
    struct broker *b = &m->b[i];
    m->cur = i;
    m->deadline_ms = now_ms() + CONNECT_TIMEOUT_MS;
    if ((b->have && now_ms() - b->resolved_ms < RESOLVED_TTL_MS) || numeric(b)) {
        tcp_start(m);
        return;
    }
    int r = resolve_start(b);
    if (r != 0) {
        failf(m, false, r, "cannot resolve %s: %s", b->host, gai_strerror(r));
        return;
    }
    m->st = ST_RESOLVING;
}

static void up(struct mqtt *m)
{
    uint64_t now = now_ms();
    m->st = ST_UP;
    m->up_ms = m->last_rx_ms = m->last_tx_ms = now;
    m->gen++;
    m->acked_this_conn = false;
    if (m->ever)
        m->s.reconnects++;
    bool switched = m->last_up >= 0 && m->last_up != m->cur;
    m->ever = true;
    m->last_up = m->cur;
    log_info("event=mqtt_connected client=%s broker=%s failures=%u", m->client_id, m->b[m->cur].uri,
             m->fails);
    m->fails = 0;
    m->why[0] = m->why_prev[0] = '\0';
    m->s.connected = 1;
    m->s.broker = m->cur;
    if (m->cur == 0)
        m->return_ms = RETURN_MIN_MS;
    m->next_probe_ms = now + m->return_ms;
    m->subscribed = false;
    m->sub_switched = switched;
    if (m->cfg.nsubs > 0) {
        int qos[16];
        int n = m->cfg.nsubs < 16 ? m->cfg.nsubs : 16;
        for (int i = 0; i < n; i++)
            qos[i] = 1;
        m->sub_id = take_id(m);
        put_ctl(m, mqttc_subscribe(m->ctl + m->ctl_len, CTL_CAP - m->ctl_len, m->sub_id,
                                   (const char *const *)m->subs, qos, n));
    } else if (m->ops.up) {
        m->ops.up(m->ops.ud, m->cur, switched);
    }
}

/* ---- the publish buffer ---- */

static uint16_t pkt_id(const uint8_t *p)
{
    size_t i = 1;
    while (p[i] & 128u)
        i++;
    size_t tl = (size_t)p[i + 1] << 8 | p[i + 2];
    const uint8_t *q = p + i + 3 + tl;
    return (uint16_t)(q[0] << 8 | q[1]);
}

/* One publish finished (acknowledged, written at QoS 0, or dropped): its token's fate. */
static void finish(struct mqtt *m, bool ok)
{
    m->seq_acked++;
    while (m->tok_len > 0) {
        struct tok *t = &m->tok[m->tok_head];
        if (t->seq > m->seq_acked)
            break;
        uint64_t token = t->token;
        bool mine = t->seq == m->seq_acked;
        m->tok_head++;
        m->tok_len--;
        if (mine && m->ops.done)
            m->ops.done(m->ops.ud, token, ok);
    }
}

static void compact(struct mqtt *m)
{
    if (m->ack_off == m->end) {
        m->ack_off = m->win_off = m->wr_off = m->end = 0;
        return;
    }
    if (m->ack_off > m->pub_cap / 2 && !(m->tls_retry == 2)) {
        size_t d = m->ack_off;
        memmove(m->pub, m->pub + d, m->end - d);
        m->ack_off = 0;
        m->win_off -= d;
        m->wr_off -= d;
        m->end -= d;
    }
}

/* The packet at ack_off failed MQTT_MAX_TRIES connections: drop it. */
static void drop_head(struct mqtt *m)
{
    size_t n = mqttc_packet_len(m->pub + m->ack_off, m->end - m->ack_off);
    log_error("event=mqtt_publish_dropped client=%s tries=%u bytes=%zu", m->client_id, m->head_tries, n);
    m->ack_off += n;
    if (m->win_off < m->ack_off)
        m->win_off = m->ack_off;
    if (m->wr_off < m->ack_off)
        m->wr_off = m->ack_off;
    if (m->win_pkts > 0)
        m->win_pkts--;
    else if (m->queued > 0)
        m->queued--;
    m->head_tries = 0;
    m->s.failed++;
    finish(m, false);
    compact(m);
}

/* Let packets into the window: QoS 1 up to max_inflight unacknowledged. */
static void open_window(struct mqtt *m)
{
    while (m->win_off < m->end && (m->cfg.qos == 0 || m->win_pkts < (uint32_t)m->cfg.max_inflight)) {
        m->win_off += mqttc_packet_len(m->pub + m->win_off, m->end - m->win_off);
        m->win_pkts++;
        m->queued--;
    }
}

/* QoS 0: every packet written whole is done. */
static void written_qos0(struct mqtt *m)
{
    while (m->ack_off < m->wr_off) {
        size_t n = mqttc_packet_len(m->pub + m->ack_off, m->wr_off - m->ack_off);
        if (n == 0 || m->ack_off + n > m->wr_off)
            break;
        m->ack_off += n;
        m->win_pkts--;
        m->s.published++;
        m->room_due = true; /* written is done at QoS 0: the publisher may hand more */
        finish(m, true);
    }
    compact(m);
}

static void on_puback(struct mqtt *m, uint16_t id)
{
    if (m->cfg.qos != 1 || m->win_pkts == 0 || m->ack_off >= m->wr_off || pkt_id(m->pub + m->ack_off) != id) {
        /* Brokers acknowledge in order (MQTT 3.1.1 4.6): a reconnect resends
         * what is unacknowledged, so nothing is lost by starting over. */
        char why[64];
        snprintf(why, sizeof why, "PUBACK %u out of order", id);
        lost(m, why);
        return;
    }
    m->ack_off += mqttc_packet_len(m->pub + m->ack_off, m->end - m->ack_off);
    m->win_pkts--;
    m->head_tries = 0;
    m->acked_this_conn = true;
    m->room_due = true;
    m->s.published++;
    finish(m, true);
    compact(m);
}

int mqtt_publish(struct mqtt *m, const char *topic, size_t topic_len, const void *payload, size_t len,
                 bool retained, uint64_t token, bool once)
{
    size_t need = mqttc_publish_size(topic_len, len, m->cfg.qos);
    if (token && m->tok_head + m->tok_len == m->tok_cap && m->tok_head > 0) {
        memmove(m->tok, m->tok + m->tok_head, m->tok_len * sizeof *m->tok);
        m->tok_head = 0;
    }
    if (topic_len == 0 || topic_len > MQTT_TOPIC_MAX || !mqtt_room(m, topic_len, len) ||
        (token && m->tok_len == m->tok_cap)) {
        m->s.refused++;
        return -1;
    }
    if (m->pub_cap - m->end < need) {
        /* mqtt_room said it fits once the acknowledged front is gone */
        size_t d = m->ack_off;
        memmove(m->pub, m->pub + d, m->end - d);
        m->ack_off = 0;
        m->win_off -= d;
        m->wr_off -= d;
        m->end -= d;
    }
    uint16_t id = m->cfg.qos ? take_id(m) : 0;
    size_t n = mqttc_publish(m->pub + m->end, m->pub_cap - m->end, topic, topic_len, payload, len, m->cfg.qos,
                             retained, id);
    if (n == 0) {
        m->s.refused++;
        return -1;
    }
    m->end += n;
    m->queued++;
    m->seq_end++;
    if (token) {
        m->tok[m->tok_head + m->tok_len] = (struct tok){m->seq_end, token, once};
        m->tok_len++;
    }
    return 0;
}

bool mqtt_room(const struct mqtt *m, size_t topic_len, size_t len)
{
    size_t need = mqttc_publish_size(topic_len, len, m->cfg.qos);
    /* the acknowledged front is reclaimable, unless a TLS write must be
     * repeated from the same bytes */
    size_t free_bytes = m->pub_cap - m->end + (m->tls_retry == 2 ? 0 : m->ack_off);
    return free_bytes >= need && m->win_pkts + m->queued < MAX_PACKETS;
}

/* ---- writing ---- */

/* One write of up to two regions. Returns bytes written, 0 on EAGAIN, -1 on
 * a broken connection. With TLS a write that wanted more room is repeated
 * with the same bytes (OpenSSL's rule). */
static ssize_t tls_write(struct mqtt *m, int which, const uint8_t *p, size_t n)
{
    size_t len = m->tls_retry ? m->tls_len : n;
    ERR_clear_error();
    int r = SSL_write(m->ssl, p, (int)(len > INT32_MAX ? INT32_MAX : len));
    if (r > 0) {
        m->tls_retry = 0;
        return r;
    }
    int e = SSL_get_error(m->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        m->tls_retry = which;
        m->tls_len = len;
        return 0;
    }
    return -1;
}

static int write_out(struct mqtt *m)
{
    if (m->st != ST_UP && m->st != ST_CONNACK)
        return 0;
    if (m->dispatching)
        return 0; /* the packet loop writes once it is done */
    for (;;) {
        if (m->st == ST_UP)
            open_window(m);
        size_t cn = m->ctl_len - m->ctl_off;
        size_t pn = m->st == ST_UP ? m->win_off - m->wr_off : 0;
        if (cn == 0 && pn == 0) {
            m->want_out = false;
            break;
        }
        ssize_t w;
        size_t wc = 0, wp = 0;
        if (m->ssl) {
            /* a write OpenSSL asked to repeat goes first, whatever came since */
            int which = m->tls_retry ? m->tls_retry : cn ? 1 : 2;
            w = which == 1 ? tls_write(m, 1, m->ctl + m->ctl_off, cn)
                           : tls_write(m, 2, m->pub + m->wr_off, pn);
            if (w > 0) {
                if (which == 1)
                    wc = (size_t)w;
                else
                    wp = (size_t)w;
            }
        } else {
            struct iovec iov[2] = {{m->ctl + m->ctl_off, cn}, {m->pub + m->wr_off, pn}};
            w = writev(m->fd, cn ? iov : iov + 1, cn ? (pn ? 2 : 1) : 1);
            if (w < 0 && (errno == EAGAIN || errno == EINTR))
                w = 0;
            if (w > 0) {
                wc = (size_t)w < cn ? (size_t)w : cn;
                wp = (size_t)w - wc;
            }
        }
        if (w < 0)
            return -1;
        if (w == 0) {
            m->want_out = true;
            break;
        }
        m->last_tx_ms = now_ms();
        m->ctl_off += wc;
        m->wr_off += wp;
        if (m->cfg.qos == 0 && wp)
            written_qos0(m);
    }
    if (m->ctl_off == m->ctl_len)
        m->ctl_len = m->ctl_off = 0;
    if (m->in_blocked && CTL_CAP - m->ctl_len >= CTL_CAP / 2) {
        /* PUBACKs are out: read on. What waits in `in` or inside OpenSSL
         * gets no epoll event: on_io and on_timer resume it (resume_read). */
        m->in_blocked = false;
        m->resume = true;
    }
    sync_events(m);
    return 0;
}

void mqtt_flush(struct mqtt *m)
{
    if (write_out(m) != 0)
        lost(m, "write failed (connection reset)");
}

/* ---- reading ---- */

static void ack_inbound(struct mqtt *m, uint16_t id)
{
    if (ctl_room(m, 4))
        put_ctl(m, mqttc_puback(m->ctl + m->ctl_len, CTL_CAP - m->ctl_len, id));
}

void mqtt_ack(struct mqtt *m, uint64_t handle)
{
    if (handle == 0 || m->st != ST_UP || (uint32_t)(handle >> 16) != m->gen)
        return; /* an earlier connection's message: the broker has let it go */
    ack_inbound(m, (uint16_t)handle);
}

/* Handle one packet; false when the connection was closed by it. */
static bool handle(struct mqtt *m, const struct mqttc_pkt *k)
{
    uint32_t closes = m->closes;
    switch (k->type) {
    case MQTTC_CONNACK:
        if (m->st != ST_CONNACK) {
            lost(m, "CONNACK on an open connection");
            return false;
        }
        if (k->rc != 0) {
            const char *s = mqttc_connack_str(k->rc);
            failf(m, k->rc >= 4, k->rc, "broker refused the connection: %s (CONNACK %u)",
                  s ? s : "unknown reason", k->rc);
            return false;
        }
        up(m);
        break;
    case MQTTC_PUBACK:
        if (m->st != ST_UP) {
            lost(m, "PUBACK before CONNACK");
            return false;
        }
        on_puback(m, k->id);
        break;
    case MQTTC_SUBACK:
        if (m->st == ST_UP && k->id == m->sub_id && !m->subscribed) {
            for (uint32_t i = 0; i < k->acks.n; i++)
                if (k->acks.p[i] == 0x80)
                    log_error("event=mqtt_subscribe_failed client=%s topic=%s", m->client_id,
                              i < (uint32_t)m->cfg.nsubs ? m->subs[i] : "?");
            m->subscribed = true;
            if (m->ops.up)
                m->ops.up(m->ops.ud, m->cur, m->sub_switched);
        }
        break;
    case MQTTC_PUBLISH: {
        if (m->st != ST_UP) {
            lost(m, "PUBLISH before CONNACK");
            return false;
        }
        struct mqtt_msg mm = {.topic = (const char *)k->topic.p,
                              .topic_len = k->topic.n,
                              .payload = k->payload.p,
                              .len = k->payload.n,
                              .retained = k->retain,
                              .ack = k->qos ? ((uint64_t)m->gen << 16 | k->id) : 0};
        bool now = m->ops.msg ? m->ops.msg(m->ops.ud, &mm) : true;
        if (m->closes == closes && k->qos && now)
            ack_inbound(m, k->id);
        break;
    }
    case MQTTC_PINGRESP: m->ping_out = false; break;
    default: lost(m, "unexpected packet"); return false;
    }
    return m->closes == closes;
}

/* Parse and handle every whole packet in the input buffer. False when the
 * connection was closed meanwhile (the buffer is gone). */
static bool dispatch(struct mqtt *m)
{
    size_t off = 0;
    bool open = true;
    m->dispatching = true;
    while (off < m->in_len) {
        if (!ctl_room(m, 64)) { /* PUBACKs are not going out: stop reading until they are */
            m->in_blocked = true;
            break;
        }
        struct mqttc_pkt k;
        size_t used;
        enum mqttc_parse_rc rc = mqttc_parse(m->in + off, m->in_len - off, m->cfg.max_in, &k, &used);
        if (rc == MQTTC_NEED_MORE)
            break;
        if (rc != MQTTC_READY) {
            m->dispatching = false;
            const char *why = rc == MQTTC_ERR_TOOBIG ? "too big a packet from the broker"
                                                     : "malformed packet from the broker";
            if (m->st == ST_UP)
                lost(m, why);
            else
                failf(m, false, -1, "%s", why);
            return false;
        }
        m->dispatching = true;
        if (!handle(m, &k)) {
            open = false;
            break;
        }
        off += used;
    }
    m->dispatching = false;
    if (!open)
        return false;
    if (off) {
        memmove(m->in, m->in + off, m->in_len - off);
        m->in_len -= off;
    }
    return true;
}

/* Read what is there (bounded per wake-up) and handle it. */
static void do_read(struct mqtt *m)
{
    uint32_t closes = m->closes;
    for (int k = 0; k < READS_PER_WAKE && !m->in_blocked; k++) {
        size_t room = m->cfg.max_in - m->in_len;
        ssize_t r;
        int err = 0;
        if (m->ssl) {
            ERR_clear_error();
            int n = SSL_read(m->ssl, m->in + m->in_len, (int)(room > INT32_MAX ? INT32_MAX : room));
            if (n > 0) {
                r = n;
            } else {
                int e = SSL_get_error(m->ssl, n);
                err = errno;
                r = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? -2
                    : e == SSL_ERROR_ZERO_RETURN                          ? 0
                                                                          : -1;
            }
        } else {
            r = read(m->fd, m->in + m->in_len, room);
            if (r < 0) {
                err = errno;
                if (err == EAGAIN || err == EINTR)
                    r = -2;
            }
        }
        if (r == -2)
            break;
        if (r <= 0) {
            const char *why = r == 0 ? "connection closed by the broker" : strerror(err ? err : EIO);
            if (m->st == ST_UP)
                lost(m, why);
            else
                failf(m, false, err, "%s during the MQTT handshake", why);
            return;
        }
        m->last_rx_ms = now_ms();
        m->in_len += (size_t)r;
        if (!dispatch(m) || m->closes != closes)
            return;
        if (m->in_len == m->cfg.max_in) {
            lost(m, "packet larger than the input buffer");
            return;
        }
    }
}

/* After a block on full PUBACK output ended: bytes read before it, and
 * records OpenSSL has decrypted, get no new epoll event. */
static void resume_read(struct mqtt *m)
{
    if (!m->resume || m->in_blocked || (m->st != ST_UP && m->st != ST_CONNACK))
        return;
    m->resume = false;
    uint32_t closes = m->closes;
    if (m->in_len > 0 && !dispatch(m))
        return;
    if (m->closes == closes && (m->ssl ? SSL_pending(m->ssl) > 0 : true))
        do_read(m);
}

static void on_io(struct loop *l, int fd, uint32_t ev, void *ud)
{
    (void)l;
    struct mqtt *m = ud;
    if (fd == m->probe_fd) {
        probe_done(m, ev);
        return;
    }
    uint32_t closes = m->closes;
    switch (m->st) {
    case ST_CONNECTING: {
        int e = 0;
        socklen_t el = sizeof e;
        getsockopt(m->fd, SOL_SOCKET, SO_ERROR, &e, &el);
        if (e) {
            failf(m, false, e, "TCP connect: %s", strerror(e));
            return;
        }
        if (m->b[m->cur].tls)
            tls_start(m);
        else
            send_connect(m);
        return;
    }
    case ST_TLS: tls_step(m); return;
    case ST_CONNACK:
    case ST_UP:
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            uint64_t now = loop_now_ms(m->loop);
            if (m->st == ST_UP && m->cfg.read_every_ms && now - m->last_read_ms < m->cfg.read_every_ms &&
                !(ev & (EPOLLERR | EPOLLHUP))) {
                /* Too soon after the last read: let acknowledgements gather. */
                m->coal_wait = true;
                sync_events(m);
                loop_timer_start(m->loop, &m->coal, m->cfg.read_every_ms);
            } else {
                m->last_read_ms = now;
                do_read(m);
            }
        }
        if (m->closes != closes)
            return;
        mqtt_flush(m);
        if (m->closes == closes)
            resume_read(m);
        if (m->closes == closes && m->room_due) {
            m->room_due = false;
            if (m->ops.room)
                m->ops.room(m->ops.ud);
        }
        return;
    default: return;
    }
}

static void on_coal(struct loop *l, void *ud)
{
    (void)l;
    struct mqtt *m = ud;
    if (!m->coal_wait)
        return;
    m->coal_wait = false;
    sync_events(m);
    on_io(m->loop, m->fd, EPOLLIN, m); /* level-triggered: anything pending is read now */
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

static void probe_done(struct mqtt *m, uint32_t ev)
{
    int e = 0;
    socklen_t el = sizeof e;
    getsockopt(m->probe_fd, SOL_SOCKET, SO_ERROR, &e, &el);
    if (e || !(ev & EPOLLOUT)) {
        probe_failed(m);
        return;
    }
    probe_close(m);
    if (m->st != ST_UP || m->cur == 0)
        return;
    /* The first broker answers again: leave this one cleanly and start a
     * round from the first. What is unacknowledged is resent there. If the
     * first refuses MQTT after all, the round ends up here again and the
     * next probe waits twice as long. */
    log_info("event=mqtt_broker_return client=%s from=%s to=%s", m->client_id, m->b[m->cur].uri, m->b[0].uri);
    if (ctl_room(m, 2))
        put_ctl(m, mqttc_disconnect(m->ctl + m->ctl_len, CTL_CAP - m->ctl_len));
    (void)write_out(m);
    if (m->return_ms < RETURN_MAX_MS)
        m->return_ms *= 2;
    close_conn(m);
    rewind_window(m);
    m->s.connected = 0;
    m->s.broker = -1;
    attempt(m, 0);
}

static void probe_start(struct mqtt *m)
{
    struct broker *b = &m->b[0];
    uint64_t now = now_ms();
    if (!(b->have && now - b->resolved_ms < RESOLVED_TTL_MS) && !numeric(b)) {
        int r = resolve_poll(b);
        if (r == EAI_INPROGRESS)
            return;
        if (r != 0 && resolve_start(b) == 0)
            return; /* resolving in the background; polled on the next ticks */
        if (r != 0) {
            m->next_probe_ms = now + m->return_ms;
            return;
        }
    }
    if (connect_to(b, &m->probe_fd) != 0 || loop_add(m->loop, m->probe_fd, EPOLLOUT, on_io, m) != 0) {
        if (m->probe_fd >= 0)
            close(m->probe_fd);
        m->probe_fd = -1;
        m->next_probe_ms = now + m->return_ms;
        return;
    }
    m->probe_deadline_ms = now + PROBE_TIMEOUT_MS;
}

/* ---- timers ---- */

static void on_timer(struct loop *l, void *ud)
{
    struct mqtt *m = ud;
    uint64_t now = now_ms();
    uint64_t ka = (uint64_t)m->cfg.keepalive_s * 1000u;
    switch (m->st) {
    case ST_IDLE:
        if (now >= m->next_try_ms)
            attempt(m, 0);
        break;
    case ST_RESOLVING: {
        struct broker *b = &m->b[m->cur];
        int r = resolve_poll(b);
        if (r == 0)
            tcp_start(m);
        else if (r != EAI_INPROGRESS)
            failf(m, false, r, "cannot resolve %s: %s", b->host, gai_strerror(r));
        else if (now >= m->deadline_ms)
            failf(m, false, -1, "resolving %s timed out", b->host);
        break;
    }
    case ST_CONNECTING:
    case ST_TLS:
    case ST_CONNACK:
        if (now >= m->deadline_ms)
            failf(m, false, ETIMEDOUT, "no %s within %u ms",
                  m->st == ST_CONNECTING ? "TCP connection"
                  : m->st == ST_TLS      ? "TLS handshake"
                                         : "CONNACK",
                  CONNECT_TIMEOUT_MS);
        break;
    case ST_UP:
        if (m->ping_out && now - m->ping_ms >= ka / 2) {
            lost(m, "no answer to PINGREQ");
            break;
        }
        if (!m->ping_out && now - m->last_tx_ms >= ka / 2 && ctl_room(m, 2)) {
            put_ctl(m, mqttc_pingreq(m->ctl + m->ctl_len, CTL_CAP - m->ctl_len));
            m->ping_out = true;
            m->ping_ms = now;
            mqtt_flush(m);
        }
        if (m->st != ST_UP)
            break;
        if (m->probe_fd >= 0 && now >= m->probe_deadline_ms)
            probe_failed(m);
        else if (m->cur > 0 && m->probe_fd < 0 && now >= m->next_probe_ms)
            probe_start(m);
        if (m->want_out || m->ctl_len > m->ctl_off)
            mqtt_flush(m);
        if (m->st == ST_UP)
            resume_read(m);
        break;
    }
    loop_timer_start(l, &m->timer, m->st == ST_RESOLVING ? 5 : TICK_MS);
}

/* ---- the rest of the API ---- */

bool mqtt_ready(const struct mqtt *m)
{
    return m->st == ST_UP && m->queued < (uint32_t)m->cfg.max_inflight;
}

bool mqtt_connected(const struct mqtt *m)
{
    return m->st == ST_UP && (m->cfg.nsubs == 0 || m->subscribed);
}

int64_t mqtt_outstanding(const struct mqtt *m)
{
    return (int64_t)m->win_pkts + m->queued;
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
    if (m->st == ST_UP && ctl_room(m, 2)) {
        put_ctl(m, mqttc_disconnect(m->ctl + m->ctl_len, CTL_CAP - m->ctl_len));
        (void)write_out(m);
    }
    close_conn(m);
    probe_close(m);
    if (m->loop) {
        loop_timer_stop(m->loop, &m->timer);
        loop_timer_stop(m->loop, &m->coal);
    }
    bool leak = false;
    for (int i = 0; i < m->nb; i++) {
        struct broker *b = &m->b[i];
        if (!b->gai_active)
            continue;
        /* getaddrinfo_a's thread writes into b until it is done */
        if (gai_cancel(&b->gai) == EAI_NOTCANCELED) {
            const struct gaicb *list[1] = {&b->gai};
            struct timespec ts = {0, 200 * 1000 * 1000};
            gai_suspend(list, 1, &ts);
        }
        if (gai_error(&b->gai) == EAI_INPROGRESS)
            leak = true; /* a lookup hanging at exit: leave its memory to it */
        else if (b->gai.ar_result)
            freeaddrinfo(b->gai.ar_result);
    }
    if (m->ctx)
        SSL_CTX_free(m->ctx);
    for (int i = 0; m->subs && i < m->cfg.nsubs; i++)
        free(m->subs[i]);
    free(m->subs);
    free(m->client_id);
    free(m->username);
    free(m->password);
    free(m->tls_ca);
    free(m->pub);
    free(m->in);
    free(m->tok);
    if (!leak)
        free(m);
    *pm = NULL;
}
