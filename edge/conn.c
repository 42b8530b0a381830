/* conn.c - device connections of one worker: accept, reads, the frame
 * decoder, coalesced writes, output caps and the deferred close. Accepting
 * is split so both --accept modes share it: conn_accept/conn_admit run on
 * whichever thread owns a listener (a worker, or the acceptor thread of
 * acceptor.c), conn_adopt on the worker that takes the connection.
 *
 * Reads go into the worker's one scratch buffer; a connection borrows a
 * max_frame buffer from a fixed pool only while a frame body spans reads,
 * and an empty pool means "stop reading" for connections that would need
 * one, never malloc. Sockets are registered once, edge-triggered, for
 * IN|OUT|RDHUP: pausing reads (cap per wake-up, persister backpressure,
 * empty pool) just parks the connection on a to-read list, so a pause
 * costs no epoll_ctl per connection. Output is a chain of pooled chunks,
 * written with one writev per connection per loop iteration; a
 * connection over --out-cap is closed. conn_close() only marks and links;
 * the after-hook frees after the event batch (redis freeClientAsync).
 *
 * It deliberately does not parse messages (session.c) or touch ZeroMQ. */
#define _GNU_SOURCE
#include "conn.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include "sl/log.h"
#include "bus.h"
#include "record.h"
#include "session.h"
#include "worker.h"

#define SCRATCH_CAP      (256u * 1024u) /* loop-wide read buffer */
#define READS_PER_WAKE   16             /* per connection per wake-up (libuv uses 32) */
#define ACCEPTS_PER_WAKE 64
#define OUT_CHUNK_SIZE   4096u
#define IOV_BATCH        64

struct out_chunk {
    struct out_chunk *next;
    uint32_t off, len;
    uint8_t data[OUT_CHUNK_SIZE - 16];
};
#define CHUNK_DATA ((uint32_t)sizeof(((struct out_chunk *)0)->data))

/* ---- pools ------------------------------------------------------------ */

static uint8_t *rbuf_get(struct worker *w)
{
    return w->nrbufs ? w->rbufs[--w->nrbufs] : NULL;
}

static void rbuf_put(struct worker *w, uint8_t *b)
{
    w->rbufs[w->nrbufs++] = b;
    /* Connections parked for lack of a buffer may read again. */
    if (w->pool_wait) {
        struct conn *x = w->pool_wait;
        while (x->next_read)
            x = x->next_read;
        x->next_read = w->read_head;
        w->read_head = w->pool_wait;
        w->pool_wait = NULL;
    }
}

static struct out_chunk *chunk_get(struct worker *w)
{
    struct out_chunk *k = w->chunk_free;
    if (k) {
        w->chunk_free = k->next;
        w->chunks_nfree--;
    } else {
        if (w->chunks_alloc >= w->chunks_max)
            return NULL;
        k = malloc(sizeof *k); /* grows to a steady size, then recycles */
        if (!k)
            return NULL;
        w->chunks_alloc++;
    }
    k->next = NULL;
    k->off = k->len = 0;
    return k;
}

static void chunk_put(struct worker *w, struct out_chunk *k)
{
    k->next = w->chunk_free;
    w->chunk_free = k;
    w->chunks_nfree++;
}

static uint32_t chunks_available(const struct worker *w)
{
    return w->chunks_nfree + (w->chunks_max - w->chunks_alloc);
}

/* ---- lists ------------------------------------------------------------ */

static void flush_link(struct conn *c)
{
    if (c->flags & CONN_F_FLUSH)
        return;
    c->flags |= CONN_F_FLUSH;
    c->next_flush = c->w->flush_head;
    c->w->flush_head = c;
}

static void read_park(struct conn *c, bool pool)
{
    if (c->flags & CONN_F_READY)
        return;
    struct worker *w = c->w;
    c->flags |= CONN_F_READY;
    struct conn **head = pool ? &w->pool_wait : &w->read_head;
    c->next_read = *head;
    *head = c;
}

/* ---- output ----------------------------------------------------------- */

static void out_release(struct conn *c)
{
    struct out_chunk *k = c->out_head;
    while (k) {
        struct out_chunk *n = k->next;
        chunk_put(c->w, k);
        k = n;
    }
    c->out_head = c->out_tail = NULL;
    c->out_len = 0;
}

static enum sl_err out_append(struct conn *c, const uint8_t *p, uint32_t n)
{
    struct worker *w = c->w;
    uint32_t room = c->out_tail ? CHUNK_DATA - c->out_tail->len : 0;
    uint32_t need = n > room ? (n - room + CHUNK_DATA - 1) / CHUNK_DATA : 0;
    if (need > chunks_available(w)) {
        metric_inc(stats.out_pool_exhausted);
        return SL_NOMEM;
    }
    while (n) {
        if (!c->out_tail || c->out_tail->len == CHUNK_DATA) {
            struct out_chunk *k = chunk_get(w);
            if (!k)
                return SL_NOMEM; /* malloc failed: counted by the caller's close */
            if (c->out_tail)
                c->out_tail->next = k;
            else
                c->out_head = k;
            c->out_tail = k;
        }
        struct out_chunk *t = c->out_tail;
        uint32_t take = CHUNK_DATA - t->len;
        if (take > n)
            take = n;
        memcpy(t->data + t->len, p, take);
        t->len += take;
        p += take;
        n -= take;
        c->out_len += take;
    }
    return SL_OK;
}

enum sl_err conn_send_frame(struct conn *c, const struct msg *m)
{
    if (c->state != CONN_HELLO && c->state != CONN_READY)
        return SL_AGAIN;
    struct worker *w = c->w;
    size_t len = 0;
    enum sl_err rc = SL_TOOBIG;
    struct out_chunk *t = c->out_tail;
    const uint8_t *fb = w->enc; /* the encoded frame, for the recorder */
    /* Small frames (ack, pong) encode straight into the tail chunk. */
    if (t && CHUNK_DATA - t->len >= 64) {
        rc = msg_encode_frame(m, t->data + t->len, CHUNK_DATA - t->len, &len);
        if (rc == SL_OK) {
            fb = t->data + t->len;
            if (c->out_len + len > w->e->cfg.out_cap) {
                conn_close(c, CR_OUT_CAP);
                return SL_NOMEM;
            }
            t->len += (uint32_t)len;
            c->out_len += (uint32_t)len;
        }
    }
    if (rc != SL_OK) {
        rc = msg_encode_frame(m, w->enc, w->enc_cap, &len);
        if (rc != SL_OK) {
            log_warn("event=frame_too_big dev=%s type=%s", c->dev, msg_type_name(m->t));
            return SL_TOOBIG;
        }
        if (c->out_len + len > w->e->cfg.out_cap || out_append(c, w->enc, (uint32_t)len) != SL_OK) {
            conn_close(c, CR_OUT_CAP);
            return SL_NOMEM;
        }
    }
    if (w->e->rec)
        record_out(w->e->rec, c, fb, len);
    c->frames_out++;
    metric_inc(stats.frames_out);
    flush_link(c);
    return SL_OK;
}

/* One writev of as much queued output as fits. 0 = all written or would
 * block, -1 = socket error (errno value in *err). */
static int out_write(struct conn *c, int *err)
{
    while (c->out_head) {
        struct iovec iov[IOV_BATCH];
        int n = 0;
        for (struct out_chunk *k = c->out_head; k && n < IOV_BATCH; k = k->next) {
            iov[n].iov_base = k->data + k->off;
            iov[n].iov_len = k->len - k->off;
            n++;
        }
        ssize_t wr = writev(c->fd, iov, n);
        if (wr < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK)
                return 0; /* EPOLLOUT (edge-triggered) will bring us back */
            *err = e;
            return -1;
        }
        size_t left = (size_t)wr;
        c->bytes_out += left;
        metric_add(stats.bytes_out, left);
        c->out_len -= (uint32_t)left;
        while (left && c->out_head) {
            struct out_chunk *k = c->out_head;
            uint32_t avail = k->len - k->off;
            if (left >= avail) {
                left -= avail;
                c->out_head = k->next;
                chunk_put(c->w, k);
            } else {
                k->off += (uint32_t)left;
                left = 0;
            }
        }
        if (!c->out_head)
            c->out_tail = NULL;
        if (c->out_head && (size_t)wr < 16 * 1024)
            return 0; /* short write: the socket buffer is full */
    }
    return 0;
}

void conn_flush_all(struct worker *w)
{
    struct conn *c = w->flush_head;
    w->flush_head = NULL;
    while (c) {
        struct conn *next = c->next_flush;
        c->flags &= (uint8_t)~CONN_F_FLUSH;
        if (c->state == CONN_CLOSING) {
            c->next_flush = w->close_head; /* its output goes out in conn_free */
            w->close_head = c;
        } else if (c->state != CONN_FREE) {
            int err = 0;
            if (out_write(c, &err) < 0)
                conn_close(c, CR_IO);
        }
        c = next;
    }
}

/* ---- close ------------------------------------------------------------ */

void conn_close(struct conn *c, enum close_reason r)
{
    if (c->state != CONN_HELLO && c->state != CONN_READY)
        return;
    session_closed(c, r);
    c->state = CONN_CLOSING;
    c->close_reason = (uint8_t)r;
    if (r == CR_OUT_CAP)
        out_release(c); /* a device that does not read gets nothing more */
    if (!(c->flags & CONN_F_FLUSH)) {
        c->next_flush = c->w->close_head;
        c->w->close_head = c;
    }
    /* else conn_flush_all moves it to the close list */
}

static void unpark_closing(struct conn **head)
{
    while (*head) {
        struct conn *c = *head;
        if (c->state == CONN_CLOSING) {
            c->flags &= (uint8_t)~CONN_F_READY;
            *head = c->next_read;
        } else {
            head = &c->next_read;
        }
    }
}

static void conn_free(struct conn *c)
{
    struct worker *w = c->w;
    int err = 0;
    if (c->out_head)
        (void)out_write(c, &err); /* best effort: the err frame */
    loop_del(w->loop, c->fd);
    /* FIN after what was written, and swallow pending input so close()
     * does not turn into an RST that could destroy the err in flight. */
    shutdown(c->fd, SHUT_WR);
    for (int i = 0; i < 4; i++)
        if (read(c->fd, w->scratch, w->scratch_cap) <= 0)
            break;
    close(c->fd);
    if (w->e->rec)
        record_close(w->e->rec, c);
    if (log_enabled(SL_LOG_DEBUG)) {
        char peer[64];
        conn_peer_str(c, peer, sizeof peer);
        log_debug("event=conn_close worker=%u slot=%u dev=%s peer=%s reason=%s frames_in=%u frames_out=%u "
                  "bytes_in=%llu bytes_out=%llu",
                  w->idx, c->slot, c->dev_len ? c->dev : "-", peer, close_reason_str(c->close_reason),
                  c->frames_in, c->frames_out, (unsigned long long)c->bytes_in,
                  (unsigned long long)c->bytes_out);
    }
    metric_inc(stats.closed[c->close_reason]);
    metric_gadd(stats.open, -1);
    metric_gadd(w->open_g, -1);
    out_release(c);
    if (c->dec.buf) {
        rbuf_put(w, c->dec.buf);
        c->dec.buf = NULL;
    }
    uint32_t gen = c->gen + 1;
    uint32_t slot = c->slot;
    memset(c, 0, sizeof *c);
    c->w = w;
    c->slot = slot;
    c->gen = gen;
    c->fd = -1;
    w->free_slots[w->nfree++] = slot;
    w->open--;
    atomic_fetch_sub(&w->e->open_total, 1);
}

void conn_free_closed(struct worker *w)
{
    bool parked = false;
    for (struct conn *c = w->close_head; c; c = c->next_flush)
        if (c->flags & CONN_F_READY)
            parked = true;
    if (parked) {
        unpark_closing(&w->read_head);
        unpark_closing(&w->pool_wait);
    }
    struct conn *c = w->close_head;
    w->close_head = NULL;
    while (c) {
        struct conn *next = c->next_flush;
        conn_free(c);
        c = next;
    }
}

/* ---- input ------------------------------------------------------------ */

static void feed(struct conn *c, const uint8_t *p, size_t n)
{
    struct worker *w = c->w;
    while (n > 0) {
        size_t used = 0;
        struct sl_slice pl;
        enum frame_rc rc = frame_dec_feed(&c->dec, p, n, &used, &pl);
        p += used;
        n -= used;
        switch (rc) {
        case FRAME_READY:
            c->frames_in++;
            metric_inc(stats.frames_in);
            session_on_frame(c, pl.p, pl.n);
            if (c->state == CONN_CLOSING)
                return;
            if (c->dec.buf && frame_dec_idle(&c->dec)) {
                rbuf_put(w, c->dec.buf);
                c->dec.buf = NULL;
            }
            break;
        case FRAME_NEED_BUF:
            /* conn_read only reads when the pool has one for us. */
            c->dec.buf = rbuf_get(w);
            if (!c->dec.buf) {
                session_fail(c, SL_FRAME, "internal: no read buffer");
                return;
            }
            break;
        case FRAME_NEED_MORE: break;
        case FRAME_ERR_EMPTY: session_fail(c, SL_FRAME, "frame length 0"); return;
        case FRAME_ERR_TOOBIG: session_fail(c, SL_FRAME, "frame length above max"); return;
        }
    }
}

static void conn_read(struct conn *c)
{
    struct worker *w = c->w;
    for (int i = 0; i < READS_PER_WAKE; i++) {
        if (bus_paused(w->bus)) {
            read_park(c, false);
            return;
        }
        if (!c->dec.buf && w->nrbufs == 0) {
            read_park(c, true);
            return;
        }
        ssize_t n = read(c->fd, w->scratch, w->scratch_cap);
        if (n > 0) {
            if (w->e->rec)
                record_in(w->e->rec, c, w->scratch, (size_t)n);
            c->bytes_in += (uint64_t)n;
            metric_add(stats.bytes_in, (uint64_t)n);
            feed(c, w->scratch, (size_t)n);
            if (c->state != CONN_HELLO && c->state != CONN_READY)
                return;
            if ((size_t)n < w->scratch_cap)
                return; /* drained: edge-triggered epoll reports new data */
            continue;
        }
        if (n == 0) {
            conn_close(c, CR_EOF);
            return;
        }
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == EAGAIN || e == EWOULDBLOCK)
            return;
        conn_close(c, CR_IO);
        return;
    }
    read_park(c, false); /* more may be waiting: continue next iteration */
}

static void on_conn_event(struct loop *l, int fd, uint32_t events, void *ud)
{
    (void)l;
    (void)fd;
    struct conn *c = ud;
    if (c->state != CONN_HELLO && c->state != CONN_READY)
        return;
    if ((events & EPOLLOUT) && c->out_head)
        flush_link(c);
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if ((events & EPOLLERR) && !(events & EPOLLIN)) {
            conn_close(c, CR_IO);
            return;
        }
        if (!(c->flags & CONN_F_READY))
            conn_read(c);
    }
}

bool conn_read_pending(const struct worker *w)
{
    return w->read_head && !bus_paused(w->bus);
}

void conn_after(struct worker *w)
{
    if (bus_paused(w->bus) || !w->read_head)
        return;
    struct conn *c = w->read_head;
    w->read_head = NULL;
    while (c) {
        struct conn *next = c->next_read;
        c->flags &= (uint8_t)~CONN_F_READY;
        c->next_read = NULL;
        if (c->state == CONN_HELLO || c->state == CONN_READY)
            conn_read(c);
        c = next;
    }
}

/* ---- accept ----------------------------------------------------------- */

static void refuse_busy(int fd)
{
    uint8_t buf[128];
    size_t len = 0;
    struct msg m = {.t = MSG_ERR};
    const char *code = sl_wire_code(SL_BUSY), *text = "edge full: reconnect later";
    m.u.err.code.p = (const uint8_t *)code;
    m.u.err.code.n = (uint32_t)strlen(code);
    m.u.err.msg.p = (const uint8_t *)text;
    m.u.err.msg.n = (uint32_t)strlen(text);
    if (msg_encode_frame(&m, buf, sizeof buf, &len) == SL_OK)
        (void)!write(fd, buf, len);
    shutdown(fd, SHUT_WR);
    close(fd);
    metric_inc(stats.errors[SL_BUSY]);
    metric_inc(stats.closed[CR_BUSY]);
}

void conn_refuse(struct edge *e, int fd)
{
    atomic_fetch_sub(&e->open_total, 1);
    refuse_busy(fd);
}

bool conn_admit(struct edge *e, int fd)
{
    if (atomic_fetch_add(&e->open_total, 1) >= e->cfg.max_conns) {
        conn_refuse(e, fd);
        return false;
    }
    return true;
}

int conn_accept(int lfd, int *spare_fd, struct conn_peer *peer, const char *who)
{
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EINTR)
                continue;
            if ((err == EMFILE || err == ENFILE) && *spare_fd >= 0) {
                /* Out of fds: use the spare to accept and drop one, so the
                 * listener does not spin on a pending connection. */
                close(*spare_fd);
                int x = accept(lfd, NULL, NULL);
                if (x >= 0)
                    close(x);
                *spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                log_warn("event=accept_emfile %s", who);
            }
            return -1;
        }
        metric_inc(stats.accepted);
        memset(peer, 0, sizeof *peer);
        if (sa.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
            memcpy(peer->ip, &s6->sin6_addr, 16);
            peer->port = ntohs(s6->sin6_port);
            peer->v6 = true;
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
            memcpy(peer->ip, &s4->sin_addr, 4);
            peer->port = ntohs(s4->sin_port);
        }
        return fd;
    }
}

void conn_adopt(struct worker *w, int fd, const struct conn_peer *peer)
{
    struct edge *e = w->e;
    if (w->nfree == 0 && w->nfresh == w->nslots) {
        conn_refuse(e, fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Reuse a freed slot (LIFO, keeps the touched set small) before
     * touching a fresh one: an untouched slot costs no RSS. */
    uint32_t slot = w->nfree ? w->free_slots[--w->nfree] : w->nfresh++;
    struct conn *c = &w->conns[slot];
    c->w = w;
    c->slot = slot;
    c->fd = fd;
    c->state = CONN_HELLO;
    c->flags = peer->v6 ? CONN_F_V6 : 0;
    frame_dec_init(&c->dec, e->cfg.max_frame);
    memcpy(c->peer_ip, peer->ip, sizeof c->peer_ip);
    c->peer_port = peer->port;
    w->open++;
    metric_gadd(stats.open, 1);
    metric_gadd(w->open_g, 1);
    if (e->rec)
        record_open(e->rec, c); /* after the set-up it records, before any read */
    if (loop_add(w->loop, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, on_conn_event, c) != 0) {
        c->state = CONN_CLOSING;
        c->close_reason = CR_IO;
        c->next_flush = w->close_head;
        w->close_head = c;
        return;
    }
    session_open(c);
}

static void on_accept(struct loop *l, int lfd, uint32_t events, void *ud)
{
    (void)l;
    (void)events;
    struct worker *w = ud;
    char who[32];
    snprintf(who, sizeof who, "worker=%u", w->idx);
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        struct conn_peer peer;
        int fd = conn_accept(lfd, &w->spare_fd, &peer, who);
        if (fd < 0)
            return;
        if (conn_admit(w->e, fd))
            conn_adopt(w, fd, &peer);
    }
}

int conn_listen_socket(const char *spec)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= sizeof host)
        return -EINVAL;
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = 0;
    char *h = host;
    if (h[0] == '[') { /* [::1]:7000 */
        h++;
        char *rb = strchr(h, ']');
        if (rb)
            *rb = 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(*h ? h : NULL, colon + 1, &hints, &ai) != 0 || !ai)
        return -EINVAL;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        /* reuseport mode: one listener per worker, the kernel spreads the
         * connections. Both modes: a replacement edge can bind the port
         * while this one drains. */
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    return fd < 0 ? -err : fd;
}

int conn_listen(struct worker *w)
{
    int fd = conn_listen_socket(w->e->cfg.listen);
    if (fd < 0)
        return fd;
    int rc = loop_add(w->loop, fd, EPOLLIN, on_accept, w);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    w->lfd = fd;
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    atomic_store(&w->listening, true);
    return 0;
}

void conn_stop_listening(struct worker *w)
{
    if (w->lfd < 0)
        return;
    loop_del(w->loop, w->lfd);
    close(w->lfd);
    w->lfd = -1;
    atomic_store(&w->listening, false);
}

/* ---- table ------------------------------------------------------------ */

int conn_worker_init(struct worker *w)
{
    const struct edge_cfg *cfg = &w->e->cfg;
    w->nslots = cfg->max_conns;
    /* calloc: slots and buffers stay unbacked until used (LIFO reuse keeps
     * the touched set small), so the table costs RSS only per live conn.
     * Hence no loop over the slots here: a zeroed slot is CONN_FREE with
     * generation 0, and accept fills in w/slot/fd when it first uses it
     * (initialising every slot cost 2 x max_conns x sizeof(struct conn)
     * of RSS up front, ~10 MiB at --max-conns 19100). */
    w->conns = calloc(w->nslots, sizeof *w->conns);
    w->free_slots = malloc(w->nslots * sizeof *w->free_slots);
    w->scratch_cap = SCRATCH_CAP;
    w->scratch = malloc(w->scratch_cap);
    w->nrbufs = cfg->read_bufs;
    w->rbufs = malloc(w->nrbufs * sizeof *w->rbufs);
    w->rbuf_mem = malloc((size_t)w->nrbufs * cfg->max_frame);
    w->enc_cap = cfg->max_frame + SL_FRAME_HDR + 512;
    w->enc = malloc(w->enc_cap);
    w->chunks_max = (uint32_t)((uint64_t)cfg->out_pool_mb * 1024 * 1024 / sizeof(struct out_chunk));
    if (!w->conns || !w->free_slots || !w->scratch || !w->rbufs || !w->rbuf_mem || !w->enc)
        return -ENOMEM;
    for (uint32_t i = 0; i < w->nrbufs; i++)
        w->rbufs[i] = w->rbuf_mem + (size_t)(w->nrbufs - 1 - i) * cfg->max_frame;
    w->nfree = 0;
    w->nfresh = 0;
    w->lfd = -1;
    return 0;
}

void conn_worker_fini(struct worker *w)
{
    if (w->conns) {
        for (uint32_t i = 0; i < w->nfresh; i++)
            if (w->conns[i].state == CONN_HELLO || w->conns[i].state == CONN_READY)
                conn_close(&w->conns[i], CR_SHUTDOWN);
        conn_flush_all(w);
        conn_free_closed(w);
    }
    conn_stop_listening(w);
    while (w->chunk_free) {
        struct out_chunk *k = w->chunk_free;
        w->chunk_free = k->next;
        free(k);
    }
    if (w->spare_fd >= 0)
        close(w->spare_fd);
    w->spare_fd = -1;
    free(w->conns);
    free(w->free_slots);
    free(w->scratch);
    free(w->rbufs);
    free(w->rbuf_mem);
    free(w->enc);
    w->conns = NULL;
}

/* ---- lookups and cross-connection actions ----------------------------- */

struct conn *conn_find(struct worker *w, uint32_t slot, uint32_t gen, struct sl_slice dev)
{
    if (slot >= w->nslots)
        return NULL;
    struct conn *c = &w->conns[slot];
    if (c->state != CONN_READY || c->gen != gen || c->dev_len != dev.n || memcmp(c->dev, dev.p, dev.n) != 0)
        return NULL;
    return c;
}

void conn_kick(struct worker *w, struct devmap_ref ref, enum sl_err code)
{
    if (ref.worker != w->idx) {
        if (!worker_post_kick(w->e->workers[ref.worker], ref.slot, ref.gen, (int)code))
            log_warn("event=kick_queue_full worker=%u", ref.worker);
        return;
    }
    if (ref.slot >= w->nslots)
        return;
    struct conn *c = &w->conns[ref.slot];
    if (c->gen != ref.gen || (c->state != CONN_READY && c->state != CONN_HELLO))
        return;
    session_fail(c, code, code == SL_REPLACED ? "the device connected again" : sl_strerror(code));
}

uint32_t conn_peer_str(const struct conn *c, char *out, uint32_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (!inet_ntop((c->flags & CONN_F_V6) ? AF_INET6 : AF_INET, c->peer_ip, ip, sizeof ip))
        strcpy(ip, "?");
    int n = snprintf(out, cap, (c->flags & CONN_F_V6) ? "[%s]:%u" : "%s:%u", ip, c->peer_port);
    if (n < 0)
        n = 0;
    return (uint32_t)n < cap ? (uint32_t)n : cap - 1;
}

uint32_t conn_evict(struct worker *w, uint32_t n)
{
    uint32_t done = 0;
    for (uint32_t i = 0; i < w->nfresh && done < n; i++) {
        uint32_t s = (w->drain_cursor + i) % w->nfresh;
        struct conn *c = &w->conns[s];
        if (c->state == CONN_HELLO || c->state == CONN_READY) {
            session_fail(c, SL_DRAINING, "edge draining: reconnect elsewhere");
            done++;
            w->drain_cursor = s + 1;
        }
    }
    return done;
}
