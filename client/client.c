/* SPDX-License-Identifier: Apache-2.0 */
/* client.c - the device library's connection state machine (sl/client.h).
 *
 * One client = one device = at most one TCP connection. States:
 *   IDLE        no socket; reconnect_at says when to try the next edge
 *   CONNECTING  non-blocking connect() in progress (hello already queued),
 *               then with TLS the handshake (hs set)
 *   HELLO       hello written or being written; waiting for welcome
 *   CONNECTED   welcome seen: data frames flow, acks pop the queue
 *
 * The queue is a ring of `window` fixed slots, each holding a complete,
 * already-encoded data frame, so a resend is a plain write of the slot and
 * nothing is encoded or allocated per message. q_sent counts the slots from
 * the head written on this connection; rewinding it to 0 resends everything
 * unacked (after a reconnect or an ack timeout). Acks may come in any order:
 * an acked slot in the middle stays (flagged) until everything before it is
 * acked too, and is skipped by the writer.
 *
 * Control frames (hello, ping, res) go through a small separate buffer that
 * is written between data frames, never inside one.
 *
 * TLS (ctls.c) changes only the two ends: reads come from SSL_read, and
 * writes are copied into a staging buffer that is encrypted as one record
 * (coalescing small frames) and, when the socket is full, retried with
 * exactly the same bytes, as OpenSSL requires; for the queue a frame is
 * "written" once staged, as for plain TCP once in the kernel's buffer.
 *
 * Frames and messages are encoded and decoded by sl::proto (frame_dec,
 * msg_decode, msg_encode_frame); this file does no msgpack of its own. It
 * deliberately does not log, spawn threads or block (apart from DNS for a
 * non-numeric host and the rare seq/journal file writes). */
#define _GNU_SOURCE
#include "sl/client.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ctls.h"
#include "journal.h"
#include "seqfile.h"
#include "sl/frame.h"
#include "sl/limits.h"
#include "sl/mp.h"
#include "sl/msg.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* Bytes of a data frame besides the body: 4 header + map(1) + "t":"data"(7)
 * + "seq":u64(13) + "ts":i64(12) + "body"(5) = 42, rounded up. */
#define DATA_OVERHEAD 64u
/* hello is ~156 bytes with a 64-char dev; res adds its body. */
#define CTL_OVERHEAD   512u
#define READS_PER_WAKE 16
#define TLS_STAGE      4096u /* plaintext staged for one TLS record */

struct entry {
    uint64_t seq;
    uint64_t queued_ms; /* client clock at sl_client_send (or replay) */
    uint64_t sent_ms;   /* client clock of the last write start on this connection */
    uint32_t len;       /* frame bytes in the slot */
    uint16_t tries;     /* writes so far, all connections */
    uint8_t acked;
};

struct sl_client {
    struct sl_client_callbacks cb;
    uint64_t (*clock_ms)(void *ud);
    enum sl_client_state st;
    int fd;
    uint32_t gen; /* bumped at each disconnect: stops a read loop whose connection died */

    /* configuration (numbers with defaults applied) */
    uint32_t window, max_body, ack_timeout_ms, hello_timeout_ms, backoff_base_ms, backoff_max_ms;
    uint32_t ping_cfg_ms, seq_block;
    enum sl_seq_mode seq_mode;
    struct sl_seq_store store;
    char *seq_path;
    char *edges; /* NUL-separated host:port list */
    uint32_t n_edges, edge_idx;
    bool has_bind;
    struct in_addr bind;
    char dev[SL_DEV_MAX + 1];
    char tok[SL_TOKEN_HEX + 1];

    /* timers, all client-clock ms */
    uint64_t now, conn_start, last_tx, last_rx, reconnect_at;
    uint32_t attempt; /* failures in a row, for the backoff */
    uint32_t hb_ms;   /* from welcome */
    bool rewind_pending;
    uint64_t rng;

    /* seq state */
    uint64_t seq_next;  /* next seq to hand out */
    uint64_t seq_limit; /* saved reservation: seqs < limit may be used */

    /* unacked queue */
    struct entry *q;
    uint8_t *slots;
    uint32_t slot_cap, q_head, q_len, q_sent, cur_off;

    /* input */
    struct frame_dec dec;
    uint8_t *rxbuf;

    /* control output */
    uint8_t *ctl;
    uint32_t ctl_cap, ctl_len, ctl_off;

    /* TLS (cfg.tls): the context, this connection's SSL, the latest session */
    struct ssl_ctx_st *tls_ctx;
    struct ssl_st *ssl;
    struct ssl_session_st *sess;
    char *tls_name; /* cfg.tls_server_name, or NULL: each edge's host */
    bool hs;        /* TCP is up, the TLS handshake runs (state CONNECTING) */
    bool tls_ww;    /* the handshake or a read waits for the socket to be writable */
    bool w_pending; /* stage[st_off, st_len) must be written again, unchanged */
    bool w_wants_r; /* ... once the socket is readable (not writable) */
    bool tls_fatal; /* a TLS failure ended this connection: its session is not offered again */
    uint8_t *stage; /* TLS_STAGE bytes of plaintext for the next record */
    uint32_t st_off, st_len;

    bool why_set;  /* why was written for the disconnect in progress */
    char why[192]; /* sl_client_last_error */

    struct journal jr;
    struct sl_client_stats stats;
};

/* ---- small helpers ---- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t read_clock(struct sl_client *c)
{
    c->now = c->clock_ms ? c->clock_ms(c->cb.ud) : mono_ms();
    return c->now;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static struct entry *qe(const struct sl_client *c, uint32_t i)
{
    return &c->q[(c->q_head + i) % c->window];
}

static uint8_t *qslot(struct sl_client *c, uint32_t i)
{
    return c->slots + (size_t)((c->q_head + i) % c->window) * c->slot_cap;
}

static const char *edge_at(const struct sl_client *c, uint32_t idx)
{
    const char *p = c->edges;
    for (uint32_t i = 0; i < idx; i++)
        p += strlen(p) + 1;
    return p;
}

uint32_t sl_client_backoff_ms(uint32_t base_ms, uint32_t max_ms, uint32_t attempt, uint64_t rnd)
{
    if (max_ms < base_ms)
        max_ms = base_ms;
    /* The first retry too spreads over [base, 2 * base], like the second:
     * when an edge dies, all its devices lose their connection in the same
     * millisecond, and a fixed first delay brought them all back in the same
     * millisecond too (docs/performance.md, "one of two edges killed under 16,000 devices"). */
    uint64_t ceil = (uint64_t)base_ms * 2;
    for (uint32_t i = 1; i < attempt && ceil < max_ms; i++)
        ceil *= 2;
    if (ceil > max_ms)
        ceil = max_ms;
    return base_ms + (uint32_t)(rnd % (ceil - base_ms + 1));
}

/* ---- seq reservation ---- */

static int seq_save(struct sl_client *c, uint64_t next)
{
    if (c->seq_mode == SL_SEQ_FILE)
        return seqfile_save(c->seq_path, next);
    if (c->seq_mode == SL_SEQ_STORE)
        return c->store.save(c->store.ud, next);
    return 0;
}

static enum sl_err seq_take(struct sl_client *c, uint64_t *seq)
{
    if (c->seq_mode == SL_SEQ_CLOCK) {
        /* ms since epoch x 1000 + counter: a reboot can only move forward,
         * as long as the real-time clock does and < 1000 msgs/ms are sent. */
        uint64_t s = real_ms() * 1000u;
        if (s < c->seq_next)
            s = c->seq_next;
        *seq = s;
        c->seq_next = s + 1;
        return SL_OK;
    }
    if (c->seq_next >= c->seq_limit) {
        uint64_t lim = c->seq_next + c->seq_block;
        if (seq_save(c, lim) != 0)
            return SL_IO;
        c->seq_limit = lim;
    }
    *seq = c->seq_next++;
    return SL_OK;
}

enum sl_err sl_client_seq_flush(struct sl_client *c)
{
    if (c->seq_mode == SL_SEQ_CLOCK || c->seq_limit == c->seq_next)
        return SL_OK;
    if (seq_save(c, c->seq_next) != 0)
        return SL_IO;
    c->seq_limit = c->seq_next;
    return SL_OK;
}

/* ---- journal glue ---- */

static void replay_cb(void *ud, const uint8_t *frame, size_t len, uint64_t seq)
{
    struct sl_client *c = ud;
    if (frame == NULL) {
        /* ack record: flag it; popped after replay */
        for (uint32_t i = 0; i < c->q_len; i++)
            if (qe(c, i)->seq == seq)
                qe(c, i)->acked = 1;
        return;
    }
    struct msg m;
    if (len < SL_FRAME_HDR || len > c->slot_cap ||
        msg_decode(frame + SL_FRAME_HDR, len - SL_FRAME_HDR, &m) != MSG_OK || m.t != MSG_DATA)
        return;
    if (c->q_len > 0 && qe(c, c->q_len - 1)->seq >= m.u.data.seq)
        return; /* out of order: cannot be ours */
    if (c->q_len == c->window) {
        /* A smaller window than the one that wrote the journal: keep the
         * oldest, drop the rest (their seqs are still never reused). */
        if (m.u.data.seq >= c->seq_next)
            c->seq_next = m.u.data.seq + 1;
        return;
    }
    struct entry *e = qe(c, c->q_len);
    memcpy(qslot(c, c->q_len), frame, len);
    memset(e, 0, sizeof *e);
    e->seq = m.u.data.seq;
    e->len = (uint32_t)len;
    e->queued_ms = c->now;
    c->q_len++;
    if (e->seq >= c->seq_next)
        c->seq_next = e->seq + 1;
}

/* Rewrite the journal from the queue's unacked slots. */
static int journal_compact(struct sl_client *c)
{
    const uint8_t **frames = malloc(sizeof *frames * (c->q_len + 1));
    uint32_t *lens = malloc(sizeof *lens * (c->q_len + 1));
    int rc = -1;
    if (frames && lens) {
        uint32_t n = 0;
        for (uint32_t i = 0; i < c->q_len; i++) {
            if (qe(c, i)->acked)
                continue;
            frames[n] = qslot(c, i);
            lens[n++] = qe(c, i)->len;
        }
        rc = journal_rewrite(&c->jr, frames, lens, n);
    }
    free(frames);
    free(lens);
    return rc;
}

/* ---- queue ---- */

static void pop_acked(struct sl_client *c)
{
    /* The head stays while it is being written: the writer owns its bytes. */
    while (c->q_len > 0 && qe(c, 0)->acked && !(c->q_sent == 0 && c->cur_off > 0)) {
        c->q_head = (c->q_head + 1) % c->window;
        c->q_len--;
        if (c->q_sent > 0)
            c->q_sent--;
    }
    if (c->q_len == 0)
        journal_reset(&c->jr);
    else if (c->jr.fd >= 0 && c->jr.size > (uint64_t)8 * c->window * c->slot_cap)
        journal_compact(c);
}

static void on_ack_seq(struct sl_client *c, uint64_t seq)
{
    /* seqs in the ring increase from the head: binary search */
    uint32_t lo = 0, hi = c->q_len;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (qe(c, mid)->seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == c->q_len)
        return;
    struct entry *e = qe(c, lo);
    if (e->seq != seq || e->acked)
        return; /* an ack for a resend already acked: once is enough */
    e->acked = 1;
    c->stats.acked++;
    journal_ack(&c->jr, seq);
    uint64_t queued = e->queued_ms;
    pop_acked(c);
    if (c->cb.on_ack)
        c->cb.on_ack(c->cb.ud, seq, queued);
}

/* ---- connection ---- */

static void notify(struct sl_client *c, enum sl_client_state st, enum sl_err err)
{
    if (c->cb.on_state)
        c->cb.on_state(c->cb.ud, st, err);
}

/* The edge said when to come back (err{retry_ms}): the next attempt waits
 * at least that long, whatever the backoff would have chosen. */
static void disconnect_after(struct sl_client *c, enum sl_err why, uint32_t retry_ms);

static void disconnect(struct sl_client *c, enum sl_err why)
{
    disconnect_after(c, why, 0);
}

/* Say why the connection ends, for sl_client_last_error: the edge's
 * address, what failed and the detail (may be NULL). */
static void set_why(struct sl_client *c, const char *what, const char *detail, size_t dlen)
{
    if (detail == NULL)
        dlen = 0;
    snprintf(c->why, sizeof c->why, "%s: %s%s%.*s", edge_at(c, c->edge_idx), what, dlen ? ": " : "",
             (int)dlen, dlen ? detail : "");
    c->why_set = true;
}

static void disconnect_after(struct sl_client *c, enum sl_err why, uint32_t retry_ms)
{
    if (c->ssl) /* before close(): close_notify goes out on the socket */
        ctls_conn_free(&c->ssl, !c->tls_fatal, &c->sess);
    c->hs = c->tls_ww = c->w_pending = c->w_wants_r = c->tls_fatal = false;
    c->st_off = c->st_len = 0;
    if (!c->why_set)
        c->why[0] = '\0'; /* an older reason would mislead */
    c->why_set = false;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->st = SL_CLIENT_IDLE;
    c->gen++;
    c->ctl_len = c->ctl_off = 0;
    frame_dec_reset(&c->dec);
    c->q_sent = 0;
    c->cur_off = 0;
    c->rewind_pending = false;
    uint32_t delay =
        sl_client_backoff_ms(c->backoff_base_ms, c->backoff_max_ms, c->attempt, splitmix(&c->rng));
    if (delay < retry_ms)
        delay = retry_ms;
    if (c->attempt < 63)
        c->attempt++;
    c->reconnect_at = c->now + delay;
    /* Next try goes to the next edge: a dead or draining edge is left. */
    c->edge_idx = (c->edge_idx + 1) % c->n_edges;
    c->stats.disconnects++;
    pop_acked(c);
    notify(c, SL_CLIENT_IDLE, why);
}

static bool ctl_put(struct sl_client *c, const struct msg *m)
{
    size_t n = 0;
    if (msg_encode_frame(m, c->ctl + c->ctl_len, c->ctl_cap - c->ctl_len, &n) != SL_OK)
        return false;
    c->ctl_len += (uint32_t)n;
    return true;
}

/* Split "host:port" (host may be "[v6]") into host and port buffers. */
static int split_hostport(const char *s, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon[1] == '\0')
        return -1;
    const char *h = s;
    size_t hn = (size_t)(colon - s);
    if (hn >= 2 && h[0] == '[' && h[hn - 1] == ']') {
        h++;
        hn -= 2;
    }
    if (hn == 0 || hn >= hcap || strlen(colon + 1) >= pcap)
        return -1;
    memcpy(host, h, hn);
    host[hn] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

static void connect_done(struct sl_client *c);

static void connect_start(struct sl_client *c)
{
    char host[256], port[16];
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = c->has_bind ? AF_INET : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    c->conn_start = c->now;
    if (split_hostport(edge_at(c, c->edge_idx), host, sizeof host, port, sizeof port) != 0 ||
        getaddrinfo(host, port, &hints, &res) != 0 || res == NULL) {
        if (res)
            freeaddrinfo(res);
        set_why(c, "cannot resolve the address", NULL, 0);
        disconnect(c, SL_IO);
        return;
    }
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, res->ai_protocol);
    if (fd < 0) {
        int e = errno;
        freeaddrinfo(res);
        set_why(c, "socket", strerror(e), strlen(strerror(e)));
        disconnect(c, SL_IO);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->has_bind) {
        /* Pick the port at connect(), per destination: one source address
         * then serves ~28k connections to each edge instead of ~28k total. */
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_addr = c->bind;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            int e = errno;
            close(fd);
            freeaddrinfo(res);
            set_why(c, "bind", strerror(e), strlen(strerror(e)));
            disconnect(c, SL_IO);
            return;
        }
    }
    int rc = connect(fd, res->ai_addr, res->ai_addrlen);
    int e = errno;
    freeaddrinfo(res);
    if (rc != 0 && e != EINPROGRESS) {
        close(fd);
        set_why(c, "connect", strerror(e), strlen(strerror(e)));
        disconnect(c, SL_IO);
        return;
    }
    c->fd = fd;
    if (c->tls_ctx) {
        /* The SSL now, while the host is at hand; the handshake starts
         * once TCP is up (connect_done). */
        c->ssl = ctls_conn_new(c->tls_ctx, fd, c->tls_name ? c->tls_name : host, &c->sess);
        if (c->ssl == NULL) {
            set_why(c, "TLS: cannot set up a connection for this server name", NULL, 0);
            disconnect(c, SL_TLS);
            return;
        }
    }
    c->st = rc == 0 && c->ssl == NULL ? SL_CLIENT_HELLO : SL_CLIENT_CONNECTING;
    c->last_rx = c->last_tx = c->now;
    c->ctl_len = c->ctl_off = 0;
    c->q_sent = c->cur_off = 0;
    struct msg m;
    memset(&m, 0, sizeof m);
    m.t = MSG_HELLO;
    m.u.hello.v = SL_PROTO_VERSION;
    m.u.hello.dev.p = (const uint8_t *)c->dev;
    m.u.hello.dev.n = (uint32_t)strlen(c->dev);
    m.u.hello.tok.p = (const uint8_t *)c->tok;
    m.u.hello.tok.n = (uint32_t)strlen(c->tok);
    bool ok = ctl_put(c, &m);
    assert(ok); /* the control buffer is sized for it */
    (void)ok;
    notify(c, c->st, SL_OK);
    if (rc == 0 && c->ssl && c->fd == fd)
        connect_done(c); /* connected at once: start the handshake */
}

/* A TLS read, write or handshake step failed: end the connection with the
 * matching error. */
static void tls_fail(struct sl_client *c, enum ctls_io rc, const char *detail)
{
    const char *what = rc == CTLS_EOF ? "closed by the edge" : rc == CTLS_ERR_TLS ? "TLS" : "socket";
    set_why(c, what, rc == CTLS_EOF ? NULL : detail, strlen(detail));
    if (rc == CTLS_ERR_TLS) {
        c->tls_fatal = true;
        disconnect(c, SL_TLS);
    } else {
        disconnect(c, SL_IO);
    }
}

/* TLS: encrypt and send the staged bytes. 1: all sent; 0: the socket is
 * full (w_pending: the same bytes go again next time); -1: disconnected. */
static int tls_push(struct sl_client *c)
{
    char detail[160] = "";
    while (c->st_off < c->st_len) {
        size_t n = 0;
        enum ctls_io rc =
            ctls_write(c->ssl, c->stage + c->st_off, c->st_len - c->st_off, &n, detail, sizeof detail);
        if (rc == CTLS_OK) {
            c->st_off += (uint32_t)n;
            c->w_pending = false;
            continue;
        }
        if (rc == CTLS_WANT_WRITE || rc == CTLS_WANT_READ) {
            c->w_pending = true;
            c->w_wants_r = rc == CTLS_WANT_READ;
            return 0;
        }
        tls_fail(c, rc, detail);
        return -1;
    }
    c->st_off = c->st_len = 0;
    c->w_pending = c->w_wants_r = false;
    return 1;
}

/* Hand len bytes to the connection. Plain TCP: send(). TLS: copy into the
 * stage (pushed when full and at the end of flush), never while a write
 * waits to be retried. Returns the bytes taken (0: would block), or -1 if
 * the connection ended. */
static ssize_t put(struct sl_client *c, const uint8_t *p, size_t len)
{
    if (c->ssl == NULL) {
        for (;;) {
            ssize_t w = send(c->fd, p, len, MSG_NOSIGNAL);
            if (w >= 0)
                return w;
            int e = errno;
            if (e == EINTR)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK)
                return 0;
            set_why(c, "send", strerror(e), strlen(strerror(e)));
            disconnect(c, SL_IO);
            return -1;
        }
    }
    if (c->w_pending || c->st_len == TLS_STAGE) {
        int r = tls_push(c);
        if (r <= 0)
            return r;
    }
    size_t n = len < TLS_STAGE - c->st_len ? len : TLS_STAGE - c->st_len;
    memcpy(c->stage + c->st_len, p, n);
    c->st_len += (uint32_t)n;
    return (ssize_t)n;
}

/* Write what can be written: a partial data frame first, then control
 * frames, then (once welcomed) the unsent queue slots. */
static void flush(struct sl_client *c)
{
    if (c->fd < 0 || c->st == SL_CLIENT_CONNECTING)
        return;
    for (;;) {
        const uint8_t *p;
        size_t len;
        bool data;
        if (c->cur_off > 0) {
            p = qslot(c, c->q_sent) + c->cur_off;
            len = qe(c, c->q_sent)->len - c->cur_off;
            data = true;
        } else if (c->rewind_pending) {
            c->rewind_pending = false;
            c->q_sent = 0;
            continue;
        } else if (c->ctl_off < c->ctl_len) {
            p = c->ctl + c->ctl_off;
            len = c->ctl_len - c->ctl_off;
            data = false;
        } else if (c->st == SL_CLIENT_CONNECTED && c->q_sent < c->q_len) {
            while (c->q_sent < c->q_len && qe(c, c->q_sent)->acked)
                c->q_sent++;
            if (c->q_sent == c->q_len)
                break;
            p = qslot(c, c->q_sent);
            len = qe(c, c->q_sent)->len;
            data = true;
        } else {
            break;
        }
        ssize_t w = put(c, p, len);
        if (w < 0)
            return; /* disconnected */
        if (w == 0)
            break; /* would block */
        c->last_tx = c->now;
        if (data) {
            struct entry *e = qe(c, c->q_sent);
            if (c->cur_off == 0) {
                /* first bytes of this frame on this connection */
                e->sent_ms = c->now;
                c->stats.sent++;
                if (e->tries > 0)
                    c->stats.resent++;
                if (e->tries < UINT16_MAX)
                    e->tries++;
            }
            c->cur_off += (uint32_t)w;
            if (c->cur_off == qe(c, c->q_sent)->len) {
                c->cur_off = 0;
                c->q_sent++;
            }
        } else {
            c->ctl_off += (uint32_t)w;
            if (c->ctl_off == c->ctl_len)
                c->ctl_off = c->ctl_len = 0;
        }
        if ((size_t)w < len && c->ssl == NULL)
            break; /* the socket is full (TLS: the stage is, and put pushes it next time round) */
    }
    if (c->ssl && tls_push(c) < 0)
        return;
    pop_acked(c);
}

static enum sl_err err_from_code(struct sl_slice code)
{
    for (int e = SL_FRAME; e <= SL_TIMEOUT; e++) {
        const char *w = sl_wire_code((enum sl_err)e);
        if (w && sl_slice_eqs(code, w))
            return (enum sl_err)e;
    }
    return SL_PROTO;
}

static void handle_frame(struct sl_client *c, struct sl_slice pl)
{
    struct msg m;
    if (msg_decode(pl.p, pl.n, &m) != MSG_OK) {
        disconnect(c, SL_DECODE);
        return;
    }
    c->last_rx = c->now;
    switch (m.t) {
    case MSG_WELCOME:
        if (c->st != SL_CLIENT_HELLO) {
            disconnect(c, SL_PROTO);
            return;
        }
        c->st = SL_CLIENT_CONNECTED;
        c->hb_ms = (m.u.welcome.hb ? m.u.welcome.hb : SL_HB_DEFAULT_S) * 1000u;
        c->attempt = 0;
        c->q_sent = 0;
        c->stats.connects++;
        notify(c, SL_CLIENT_CONNECTED, SL_OK);
        return;
    case MSG_ACK:
        if (c->st == SL_CLIENT_CONNECTED)
            on_ack_seq(c, m.u.ack.seq);
        return;
    case MSG_PONG: return;
    case MSG_ERR:
        c->stats.errors++;
        set_why(c, "err from the edge", (const char *)m.u.err.msg.p, m.u.err.msg.n);
        disconnect_after(c, err_from_code(m.u.err.code), m.u.err.retry_ms);
        return;
    case MSG_CMD: {
        if (c->st != SL_CLIENT_CONNECTED || m.u.cmd.id.n > SL_CMD_ID_MAX) {
            disconnect(c, SL_PROTO);
            return;
        }
        char id[SL_CMD_ID_MAX + 1];
        memcpy(id, m.u.cmd.id.p, m.u.cmd.id.n);
        id[m.u.cmd.id.n] = '\0';
        if (c->cb.on_cmd)
            c->cb.on_cmd(c->cb.ud, id, m.u.cmd.body.p, m.u.cmd.body.n);
        return;
    }
    default:
        disconnect(c, SL_PROTO); /* a device-side type from the edge */
        return;
    }
}

static void feed(struct sl_client *c, const uint8_t *in, size_t n)
{
    uint32_t gen = c->gen;
    for (;;) {
        size_t used = 0;
        struct sl_slice pl = {NULL, 0};
        enum frame_rc rc = frame_dec_feed(&c->dec, in, n, &used, &pl);
        in += used;
        n -= used;
        switch (rc) {
        case FRAME_NEED_MORE: return;
        case FRAME_NEED_BUF: c->dec.buf = c->rxbuf; continue;
        case FRAME_READY:
            handle_frame(c, pl);
            if (c->gen != gen)
                return;
            continue;
        default: disconnect(c, SL_FRAME); return;
        }
    }
}

/* One step of the TLS handshake; once done, on to HELLO (the queued hello
 * goes out with the next flush). */
static void tls_step(struct sl_client *c)
{
    char detail[160] = "";
    enum ctls_io rc = ctls_handshake(c->ssl, detail, sizeof detail);
    c->tls_ww = rc == CTLS_WANT_WRITE;
    if (rc == CTLS_WANT_READ || rc == CTLS_WANT_WRITE)
        return;
    if (rc != CTLS_OK) {
        tls_fail(c, rc, detail);
        return;
    }
    c->hs = false;
    c->stats.tls_handshakes++;
    if (ctls_resumed(c->ssl))
        c->stats.tls_resumed++;
    c->st = SL_CLIENT_HELLO;
    notify(c, SL_CLIENT_HELLO, SL_OK);
}

/* A connecting socket became writable (or errored): did connect() work? */
static void connect_done(struct sl_client *c)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
        set_why(c, "connect", strerror(soerr), soerr ? strlen(strerror(soerr)) : 0);
        disconnect(c, SL_IO);
        return;
    }
    if (c->ssl) {
        c->hs = true;
        tls_step(c);
        return;
    }
    c->st = SL_CLIENT_HELLO;
    notify(c, SL_CLIENT_HELLO, SL_OK);
}

/* ---- public API ---- */

/* Common start of both fd events: a connect (and the TLS handshake) in
 * progress goes on with whichever comes first. False when there is no
 * connection ready for frames. */
static bool io_ready(struct sl_client *c)
{
    read_clock(c);
    if (c->fd >= 0 && c->st == SL_CLIENT_CONNECTING) {
        if (c->hs)
            tls_step(c);
        else
            connect_done(c);
    }
    return c->fd >= 0 && c->st != SL_CLIENT_CONNECTING;
}

/* Read and handle what has arrived. False if the connection ended. */
static bool read_in(struct sl_client *c)
{
    uint32_t gen = c->gen;
    uint8_t buf[4096];
    char detail[160] = "";
    c->tls_ww = false;
    for (int i = 0;; i++) {
        size_t n = 0;
        if (c->ssl) {
            /* Past the cap only while OpenSSL holds bytes: poll() would not
             * announce them. A TLS read returns at most one record, so a
             * short read does not mean the socket is drained. */
            if (i >= READS_PER_WAKE && !ctls_pending(c->ssl))
                break;
            enum ctls_io rc = ctls_read(c->ssl, buf, sizeof buf, &n, detail, sizeof detail);
            if (rc == CTLS_WANT_READ)
                break;
            if (rc == CTLS_WANT_WRITE) { /* a TLS 1.3 key update to answer */
                c->tls_ww = true;
                break;
            }
            if (rc != CTLS_OK) {
                tls_fail(c, rc, detail);
                return false;
            }
        } else {
            if (i >= READS_PER_WAKE)
                break;
            ssize_t r = recv(c->fd, buf, sizeof buf, 0);
            if (r == 0) {
                set_why(c, "closed by the edge", NULL, 0);
                disconnect(c, SL_IO);
                return false;
            }
            if (r < 0) {
                int e = errno;
                if (e == EINTR)
                    continue;
                if (e == EAGAIN || e == EWOULDBLOCK)
                    break;
                set_why(c, "recv", strerror(e), strlen(strerror(e)));
                disconnect(c, SL_IO);
                return false;
            }
            n = (size_t)r;
        }
        feed(c, buf, n);
        if (c->gen != gen)
            return false;
        if (c->ssl == NULL && n < sizeof buf)
            break;
    }
    return true;
}

void sl_client_on_readable(struct sl_client *c)
{
    if (io_ready(c) && read_in(c))
        flush(c);
}

void sl_client_on_writable(struct sl_client *c)
{
    if (!io_ready(c))
        return;
    if (c->tls_ww && !read_in(c))
        return;
    flush(c);
}

int sl_client_fd(const struct sl_client *c)
{
    return c->fd;
}

bool sl_client_want_write(const struct sl_client *c)
{
    if (c->fd < 0)
        return false;
    if (c->st == SL_CLIENT_CONNECTING)
        return !c->hs || c->tls_ww; /* TCP connect, or a handshake step waiting to write */
    if (c->tls_ww || (c->w_pending && !c->w_wants_r))
        return true;
    if (c->w_pending)
        return false; /* everything waits for the retried write, which waits for input */
    if (c->st_len > 0 || c->cur_off > 0 || c->ctl_off < c->ctl_len)
        return true;
    if (c->st != SL_CLIENT_CONNECTED)
        return false;
    if (c->rewind_pending)
        return c->q_len > 0;
    for (uint32_t i = c->q_sent; i < c->q_len; i++)
        if (!qe(c, i)->acked)
            return true;
    return false;
}

/* The oldest message written on this connection and not acked yet. */
static const struct entry *oldest_inflight(struct sl_client *c)
{
    for (uint32_t i = 0; i < c->q_sent; i++) {
        const struct entry *e = qe(c, i);
        if (!e->acked)
            return e;
    }
    return NULL;
}

static uint32_t ping_ms(const struct sl_client *c)
{
    uint32_t p = c->hb_ms ? c->hb_ms : SL_HB_DEFAULT_S * 1000u;
    if (c->ping_cfg_ms && c->ping_cfg_ms < p)
        p = c->ping_cfg_ms;
    return p;
}

static uint64_t idle_ms(const struct sl_client *c)
{
    /* The edge pongs our pings, so 3 x hb of silence means a dead path. */
    return (uint64_t)SL_IDLE_FACTOR * (c->hb_ms ? c->hb_ms : SL_HB_DEFAULT_S * 1000u);
}

uint64_t sl_client_deadline(const struct sl_client *c)
{
    switch (c->st) {
    case SL_CLIENT_IDLE: return c->reconnect_at;
    case SL_CLIENT_CONNECTING:
    case SL_CLIENT_HELLO: return c->conn_start + c->hello_timeout_ms;
    case SL_CLIENT_CONNECTED: {
        /* A ping waiting in the control buffer is the writer's business
         * (want_write), not a timer's. */
        uint64_t d = c->ctl_len == 0 ? c->last_tx + ping_ms(c) : UINT64_MAX;
        uint64_t idle = c->last_rx + idle_ms(c);
        if (idle < d)
            d = idle;
        if (!c->rewind_pending) {
            const struct entry *e = oldest_inflight((struct sl_client *)c);
            if (e && e->sent_ms + c->ack_timeout_ms < d)
                d = e->sent_ms + c->ack_timeout_ms;
        }
        return d;
    }
    }
    return UINT64_MAX;
}

int sl_client_timeout_ms(const struct sl_client *c)
{
    uint64_t now = c->clock_ms ? c->clock_ms(c->cb.ud) : mono_ms();
    uint64_t d = sl_client_deadline(c);
    if (d <= now)
        return 0;
    if (d - now > INT32_MAX)
        return INT32_MAX;
    return (int)(d - now);
}

void sl_client_tick(struct sl_client *c, uint64_t now_ms)
{
    if (now_ms)
        c->now = now_ms;
    else
        read_clock(c);
    switch (c->st) {
    case SL_CLIENT_IDLE:
        if (c->now >= c->reconnect_at)
            connect_start(c);
        return;
    case SL_CLIENT_CONNECTING:
    case SL_CLIENT_HELLO:
        if (c->now >= c->conn_start + c->hello_timeout_ms)
            disconnect(c, SL_TIMEOUT);
        return;
    case SL_CLIENT_CONNECTED: break;
    }
    if (c->now >= c->last_rx + idle_ms(c)) {
        disconnect(c, SL_TIMEOUT);
        return;
    }
    const struct entry *e = oldest_inflight(c);
    if (e && !c->rewind_pending && c->now >= e->sent_ms + c->ack_timeout_ms) {
        /* No ack in time on a live connection: the ack (or the data) was
         * lost somewhere behind the edge. Resend everything unacked; the
         * edge acks duplicates again and stores them once. */
        c->rewind_pending = true;
    }
    if (c->now >= c->last_tx + ping_ms(c) && c->ctl_len == 0) {
        struct msg m;
        memset(&m, 0, sizeof m);
        m.t = MSG_PING;
        if (ctl_put(c, &m))
            c->last_tx = c->now;
    }
    flush(c);
}

enum sl_err sl_client_send(struct sl_client *c, const uint8_t *body, size_t len, int64_t ts, uint64_t *seq)
{
    read_clock(c);
    if (len > c->max_body)
        return SL_TOOBIG;
    if (body == NULL || mp_check(body, len, SL_MP_MAX_DEPTH) != 0)
        return SL_INVAL;
    if (c->q_len == c->window)
        return SL_AGAIN;
    uint64_t s;
    enum sl_err err = seq_take(c, &s);
    if (err != SL_OK)
        return err;
    struct msg m;
    memset(&m, 0, sizeof m);
    m.t = MSG_DATA;
    m.u.data.seq = s;
    m.u.data.ts = ts;
    m.u.data.has_ts = ts != 0;
    m.u.data.body.p = body;
    m.u.data.body.n = (uint32_t)len;
    size_t n = 0;
    uint8_t *slot = qslot(c, c->q_len);
    if (msg_encode_frame(&m, slot, c->slot_cap, &n) != SL_OK)
        return SL_TOOBIG;
    if (journal_data(&c->jr, slot, n) != 0)
        return SL_IO;
    struct entry *e = qe(c, c->q_len);
    memset(e, 0, sizeof *e);
    e->seq = s;
    e->len = (uint32_t)n;
    e->queued_ms = c->now;
    c->q_len++;
    if (seq)
        *seq = s;
    if (c->st == SL_CLIENT_CONNECTED && c->cur_off == 0 && c->ctl_off == c->ctl_len)
        flush(c);
    return SL_OK;
}

enum sl_err sl_client_answer(struct sl_client *c, const char *id, bool ok, const uint8_t *body, size_t len)
{
    read_clock(c);
    if (c->st != SL_CLIENT_CONNECTED)
        return SL_IO;
    if (len > c->max_body)
        return SL_TOOBIG;
    if (body && len && mp_check(body, len, SL_MP_MAX_DEPTH) != 0)
        return SL_INVAL;
    struct msg m;
    memset(&m, 0, sizeof m);
    m.t = MSG_RES;
    m.u.res.id.p = (const uint8_t *)id;
    m.u.res.id.n = (uint32_t)strlen(id);
    m.u.res.ok = ok;
    m.u.res.has_body = body != NULL && len > 0;
    m.u.res.body.p = body;
    m.u.res.body.n = (uint32_t)len;
    if (!ctl_put(c, &m))
        return c->ctl_len > 0 ? SL_AGAIN : SL_TOOBIG;
    if (c->cur_off == 0)
        flush(c);
    return SL_OK;
}

enum sl_err sl_client_run_once(struct sl_client *c, int timeout_ms)
{
    sl_client_tick(c, 0);
    int t = sl_client_timeout_ms(c);
    if (timeout_ms >= 0 && timeout_ms < t)
        t = timeout_ms;
    struct pollfd p = {c->fd, POLLIN, 0};
    if (sl_client_want_write(c))
        p.events |= POLLOUT;
    int n = poll(&p, c->fd >= 0 ? 1 : 0, t);
    if (n < 0) {
        int e = errno;
        return e == EINTR ? SL_OK : SL_IO;
    }
    if (n > 0) {
        if (p.revents & (POLLIN | POLLERR | POLLHUP))
            sl_client_on_readable(c);
        if ((p.revents & POLLOUT) && c->fd == p.fd)
            sl_client_on_writable(c);
    }
    sl_client_tick(c, 0);
    return SL_OK;
}

enum sl_client_state sl_client_state(const struct sl_client *c)
{
    return c->st;
}

uint32_t sl_client_unacked(const struct sl_client *c)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->q_len; i++)
        if (!c->q[(c->q_head + i) % c->window].acked)
            n++;
    return n;
}

uint64_t sl_client_next_seq(const struct sl_client *c)
{
    return c->seq_next;
}
uint32_t sl_client_queue_free(const struct sl_client *c)
{
    return c->window - c->q_len;
}

uint32_t sl_client_unacked_seqs(const struct sl_client *c, uint64_t *out, uint32_t cap)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->q_len && n < cap; i++)
        if (!qe(c, i)->acked)
            out[n++] = qe(c, i)->seq;
    return n;
}
const struct sl_client_stats *sl_client_stats(const struct sl_client *c)
{
    return &c->stats;
}
const char *sl_client_dev(const struct sl_client *c)
{
    return c->dev;
}
const char *sl_client_last_error(const struct sl_client *c)
{
    return c->why;
}

/* ---- TLS contexts (ctls.c does the work) ---- */

struct sl_tls *sl_tls_new(const struct sl_tls_config *cfg, enum sl_err *err, char *why, size_t why_cap)
{
    return ctls_tls_new(cfg->ca_file, cfg->cert_file, cfg->key_file, cfg->release_buffers, err, why, why_cap);
}

void sl_tls_destroy(struct sl_tls **t)
{
    ctls_tls_destroy(t);
}

/* ---- lifetime ---- */

static uint32_t def(uint32_t v, uint32_t d)
{
    return v ? v : d;
}

struct sl_client *sl_client_new(const struct sl_client_config *cfg, enum sl_err *err)
{
    enum sl_err dummy;
    if (err == NULL)
        err = &dummy;
    *err = SL_INVAL;
    if (cfg->edges == NULL || cfg->edges[0] == '\0' || cfg->dev == NULL || cfg->tok == NULL)
        return NULL;
    if (!msg_valid_id((const uint8_t *)cfg->dev, strlen(cfg->dev)) || strlen(cfg->tok) > SL_TOKEN_HEX)
        return NULL;
    if (cfg->seq_mode == SL_SEQ_FILE && (cfg->seq_path == NULL || cfg->seq_path[0] == '\0'))
        return NULL;
    if (cfg->seq_mode == SL_SEQ_STORE && (cfg->store.load == NULL || cfg->store.save == NULL))
        return NULL;
    struct in_addr bind_ip = {0};
    if (cfg->bind_addr && cfg->bind_addr[0] && inet_pton(AF_INET, cfg->bind_addr, &bind_ip) != 1)
        return NULL;

    uint32_t window = def(cfg->window, 64);
    uint32_t max_body = def(cfg->max_body, 1024);
    uint32_t rx_max = def(cfg->rx_max, 4096);
    uint32_t slot_cap = max_body + DATA_OVERHEAD;
    uint32_t ctl_cap = max_body + CTL_OVERHEAD;
    if (window > (1u << 20) || max_body > SL_MAX_FRAME_DEFAULT || rx_max > (1u << 24))
        return NULL;

    /* One allocation: struct, entries, slots, rx buffer, control buffer,
     * TLS stage. */
    uint32_t stage = cfg->tls ? TLS_STAGE : 0;
    size_t sz = sizeof(struct sl_client) + (size_t)window * sizeof(struct entry) + (size_t)window * slot_cap +
                rx_max + ctl_cap + stage;
    struct sl_client *c = calloc(1, sz);
    *err = SL_NOMEM;
    if (c == NULL)
        return NULL;
    c->q = (struct entry *)(c + 1);
    c->slots = (uint8_t *)(c->q + window);
    c->rxbuf = c->slots + (size_t)window * slot_cap;
    c->ctl = c->rxbuf + rx_max;
    c->stage = stage ? c->ctl + ctl_cap : NULL;
    c->fd = -1;
    c->jr.fd = -1;
    c->window = window;
    c->max_body = max_body;
    c->slot_cap = slot_cap;
    c->ctl_cap = ctl_cap;
    frame_dec_init(&c->dec, rx_max);
    c->dec.buf = c->rxbuf;
    c->cb = cfg->cb;
    c->clock_ms = cfg->clock_ms;
    c->ack_timeout_ms = def(cfg->ack_timeout_ms, 15000);
    c->hello_timeout_ms = def(cfg->hello_timeout_ms, SL_HELLO_TIMEOUT_MS);
    c->backoff_base_ms = def(cfg->backoff_base_ms, 1000);
    c->backoff_max_ms = def(cfg->backoff_max_ms, 60000);
    c->ping_cfg_ms = cfg->ping_ms;
    c->seq_block = def(cfg->seq_block, 1000);
    c->seq_mode = cfg->seq_mode;
    c->store = cfg->store;
    c->has_bind = cfg->bind_addr && cfg->bind_addr[0];
    c->bind = bind_ip;
    strcpy(c->dev, cfg->dev);
    strcpy(c->tok, cfg->tok);
    read_clock(c);
    c->reconnect_at = c->now; /* first connect at the first tick */

    c->edges = strdup(cfg->edges);
    if (c->edges == NULL)
        goto fail;
    if (cfg->tls) {
        c->tls_ctx = ctls_ctx_ref(cfg->tls);
        if (c->tls_ctx == NULL)
            goto fail;
        if (cfg->tls_server_name && cfg->tls_server_name[0] &&
            (c->tls_name = strdup(cfg->tls_server_name)) == NULL)
            goto fail;
    }
    for (char *p = c->edges; *p; p++)
        if (*p == ',')
            *p = '\0';
    size_t total = strlen(cfg->edges);
    for (size_t i = 0; i <= total;) {
        size_t l = strlen(c->edges + i);
        if (l == 0) {
            *err = SL_INVAL; /* empty entry, e.g. "a:1,,b:2" */
            goto fail;
        }
        c->n_edges++;
        i += l + 1;
    }
    c->edge_idx = cfg->start_edge % c->n_edges;

    c->rng = cfg->seed;
    if (c->rng == 0) {
        c->rng = real_ms() ^ ((uint64_t)getpid() << 32);
        for (const char *p = c->dev; *p; p++)
            c->rng = c->rng * 131 + (uint8_t)*p;
    }

    *err = SL_IO;
    uint64_t next = 1;
    if (c->seq_mode == SL_SEQ_FILE) {
        c->seq_path = strdup(cfg->seq_path);
        if (c->seq_path == NULL || seqfile_load(c->seq_path, &next) != 0)
            goto fail;
    } else if (c->seq_mode == SL_SEQ_STORE) {
        if (c->store.load(c->store.ud, &next) != 0)
            goto fail;
    } else {
        next = real_ms() * 1000u;
    }
    if (next == 0)
        next = 1;
    c->seq_next = c->seq_limit = next;

    if (cfg->journal_path && cfg->journal_path[0]) {
        if (journal_open(&c->jr, cfg->journal_path, cfg->journal_sync, replay_cb, c) != 0)
            goto fail;
        /* Drop what the journal says was acked, then write it back compact. */
        c->cur_off = 0;
        pop_acked(c);
        if (journal_compact(c) != 0)
            goto fail;
    }
    *err = SL_OK;
    return c;
fail:
    journal_close(&c->jr);
    ctls_ctx_unref(&c->tls_ctx);
    free(c->tls_name);
    free(c->seq_path);
    free(c->edges);
    free(c);
    return NULL;
}

void sl_client_destroy(struct sl_client **pc)
{
    struct sl_client *c = *pc;
    if (c == NULL)
        return;
    if (c->ssl)
        ctls_conn_free(&c->ssl, true, &c->sess);
    ctls_session_free(&c->sess);
    ctls_ctx_unref(&c->tls_ctx);
    if (c->fd >= 0)
        close(c->fd);
    journal_close(&c->jr);
    free(c->tls_name);
    free(c->seq_path);
    free(c->edges);
    free(c);
    *pc = NULL;
}
