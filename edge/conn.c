/* SPDX-License-Identifier: Apache-2.0 */
/* conn.c - device connections of one worker: accept, reads, the frame
 * decoder, coalesced writes, output caps, one deadline timer each and the
 * deferred close. Accepting is split so both --accept modes share it:
 * conn_accept/conn_admit run on whichever thread owns a listener (a
 * worker, or the acceptor thread of acceptor.c), conn_adopt on the worker
 * that takes the connection.
 *
 * Reads go into the table's one scratch buffer; a connection borrows a
 * max_frame buffer from a fixed pool only while a frame body spans reads,
 * and an empty pool means "stop reading" for connections that would need
 * one, never malloc. Sockets are registered once, edge-triggered, for
 * IN|OUT|RDHUP: pausing reads (cap per wake-up, persister backpressure,
 * empty pool) just parks the connection on a to-read list, so a pause
 * costs no epoll_ctl per connection. Output is a chain of pooled chunks,
 * written with one writev per connection per loop iteration; a
 * connection over --out-cap is closed. conn_close() only marks and links;
 * conn_free_closed frees after the event batch (redis freeClientAsync).
 *
 * It deliberately does not know messages: frames go up through
 * conn_ops.frame, frames come down already encoded (conn_send's encoder,
 * conn_cfg.busy), and it never touches ZeroMQ. */
#define _GNU_SOURCE
#include "conn.h"
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
#include "sl/limits.h"
#include "sl/log.h"
#include "proxy.h"
#include "record.h"
#include "tls.h"

#define SCRATCH_CAP      (256u * 1024u) /* table-wide read buffer */
#define READS_PER_WAKE   16             /* per connection per wake-up (libuv uses 32) */
#define ACCEPTS_PER_WAKE 64
#define OUT_CHUNK_SIZE   4096u
#define IOV_BATCH        64
#define ENC_SLACK        512u /* a frame's header and fields around a max_frame body */
#define TAIL_MIN         64u  /* encode in place only if the last chunk has this much room */

enum conn_flag {
    CONN_F_FLUSH = 1,     /* on the flush list */
    CONN_F_READY = 2,     /* on a to-read list (unread input pending) */
    CONN_F_EARLY = 4,     /* before conn_promote: small frames, early pool */
    CONN_F_EARLY_BUF = 8, /* dec.buf came from the early pool */
    CONN_F_HOLD = 16,     /* not read until conn_release (read_budget said 0) */
    CONN_F_TLS = 32,      /* bytes go through t->tls_side[slot].ssl */
    CONN_F_HS = 64,       /* the TLS handshake is not done yet */
    CONN_F_PROXY = 128,   /* the PROXY header is not read yet */
};

#define TLS_WBUF (16u * 1024u) /* one TLS record: output is coalesced into it */

/* What a TLS connection needs beyond struct conn, in a side table that only
 * TLS connections touch (a plain edge pays nothing for it). */
struct tls_side {
    SSL *ssl;
    uint32_t wpend; /* bytes of a write OpenSSL asked to retry (WANT_*): the same bytes next time */
};

struct out_chunk {
    struct out_chunk *next;
    uint32_t off, len;
    uint8_t data[OUT_CHUNK_SIZE - 16];
};
#define CHUNK_DATA ((uint32_t)sizeof(((struct out_chunk *)0)->data))

struct conn_table {
    struct conn_cfg cfg;
    struct loop *loop;
    const struct conn_ops *ops;
    void *ud;

    /* Slots: nslots zeroed structs (calloc, backed only once used), slots
     * [0, nfresh) ever used, a stack of freed ones. */
    struct conn *conns;
    uint32_t nslots, nfresh;
    uint32_t *free_slots;
    uint32_t nfree;
    _Atomic uint32_t open; /* one writer (this thread); read by the acceptor */

    struct conn *flush_head; /* output queued this iteration */
    struct conn *read_head;  /* input left unread (cap, pause, pool) */
    struct conn *pool_wait;  /* waiting for a read buffer */
    struct conn *close_head; /* CLOSING, freed after the batch */
    bool paused;

    uint8_t *scratch; /* table-wide read buffer */
    uint32_t scratch_cap;
    uint8_t **rbufs; /* free max_frame read buffers */
    uint32_t nrbufs;
    uint8_t *rbuf_mem;
    uint8_t **ebufs; /* free hello_max buffers of the early pool */
    uint32_t nebufs;
    uint8_t *ebuf_mem;
    struct conn *early_wait; /* early connections waiting for an early buffer */

    struct out_chunk *chunk_free; /* output chunk pool */
    uint32_t chunks_alloc, chunks_max, chunks_nfree;
    uint8_t *enc; /* encode buffer for frames that span chunks */
    uint32_t enc_cap;

    int lfd[2];        /* --accept reuseport: own listeners, -1 otherwise */
    unsigned lkind[2]; /* their enum conn_kind bits */
    int spare_fd;      /* closed and reopened on EMFILE */
    _Atomic bool listening;

    struct tls_side *tls_side; /* [nslots], only with cfg.tls */
    uint8_t *tls_wbuf;         /* TLS_WBUF: a write's coalesced bytes */
    uint32_t hs_left;          /* TLS handshake steps left this iteration */

    struct loop_timer listen_timer; /* accepting paused by the layer above until it fires */

    struct conn_counts cnt;
};

static const char *const reason_names[CR_COUNT] = {
    "eof",      "io",   "out_cap",  "frame",   "decode",   "proto", "auth",
    "replaced", "busy", "draining", "timeout", "shutdown", "tls",   "proxy",
};

const char *conn_reason_str(enum conn_reason r)
{
    return (unsigned)r < CR_COUNT ? reason_names[r] : "unknown";
}

enum conn_reason conn_reason_of(enum sl_err e)
{
    switch (e) {
    case SL_FRAME: return CR_FRAME;
    case SL_DECODE: return CR_DECODE;
    case SL_PROTO: return CR_PROTO;
    case SL_AUTH: return CR_AUTH;
    case SL_REPLACED: return CR_REPLACED;
    case SL_BUSY: return CR_BUSY;
    case SL_DRAINING: return CR_DRAINING;
    case SL_TIMEOUT: return CR_TIMEOUT;
    default: return CR_IO;
    }
}

static struct record_conn rec_id(const struct conn *c)
{
    struct record_conn id = {c->t->cfg.worker, c->slot, c->gen};
    return id;
}

/* ---- pools ------------------------------------------------------------ */

/* Move every connection parked on *wait back to the to-read list. */
static void unpark_all(struct conn_table *t, struct conn **wait)
{
    if (!*wait)
        return;
    struct conn *x = *wait;
    while (x->next_read)
        x = x->next_read;
    x->next_read = t->read_head;
    t->read_head = *wait;
    *wait = NULL;
}

/* A read buffer for c's partial frame from its pool (early or max_frame),
 * or NULL when that pool is empty. */
static uint8_t *rbuf_get(struct conn_table *t, struct conn *c)
{
    if (c->flags & CONN_F_EARLY) {
        if (!t->nebufs)
            return NULL;
        c->flags |= CONN_F_EARLY_BUF;
        return t->ebufs[--t->nebufs];
    }
    return t->nrbufs ? t->rbufs[--t->nrbufs] : NULL;
}

/* Give c's read buffer back to the pool it came from; connections parked
 * for lack of one may read again. */
static void rbuf_put(struct conn_table *t, struct conn *c)
{
    if (c->flags & CONN_F_EARLY_BUF) {
        t->ebufs[t->nebufs++] = c->dec.buf;
        c->flags &= (uint8_t)~CONN_F_EARLY_BUF;
        unpark_all(t, &t->early_wait);
    } else {
        t->rbufs[t->nrbufs++] = c->dec.buf;
        unpark_all(t, &t->pool_wait);
    }
    c->dec.buf = NULL;
}

static bool pool_empty(const struct conn_table *t, const struct conn *c)
{
    return (c->flags & CONN_F_EARLY) ? t->nebufs == 0 : t->nrbufs == 0;
}

static struct out_chunk *chunk_get(struct conn_table *t)
{
    struct out_chunk *k = t->chunk_free;
    if (k) {
        t->chunk_free = k->next;
        t->chunks_nfree--;
    } else {
        if (t->chunks_alloc >= t->chunks_max)
            return NULL;
        k = malloc(sizeof *k); /* grows to a steady size, then recycles */
        if (!k)
            return NULL;
        t->chunks_alloc++;
    }
    k->next = NULL;
    k->off = k->len = 0;
    return k;
}

static void chunk_put(struct conn_table *t, struct out_chunk *k)
{
    k->next = t->chunk_free;
    t->chunk_free = k;
    t->chunks_nfree++;
}

static uint32_t chunks_available(const struct conn_table *t)
{
    return t->chunks_nfree + (t->chunks_max - t->chunks_alloc);
}

/* ---- lists ------------------------------------------------------------ */

static void flush_link(struct conn *c)
{
    if (c->flags & CONN_F_FLUSH)
        return;
    c->flags |= CONN_F_FLUSH;
    c->next_flush = c->t->flush_head;
    c->t->flush_head = c;
}

/* Park c until it may read again: next iteration (a cap or a pause), or
 * when its pool gives a buffer back (pool). */
static void read_park(struct conn *c, bool pool)
{
    if (c->flags & CONN_F_READY)
        return;
    struct conn_table *t = c->t;
    c->flags |= CONN_F_READY;
    struct conn **head = !pool ? &t->read_head : (c->flags & CONN_F_EARLY) ? &t->early_wait : &t->pool_wait;
    if (pool && (c->flags & CONN_F_EARLY))
        stat_inc(&t->cnt.early_buf_waits);
    c->next_read = *head;
    *head = c;
}

/* ---- output ----------------------------------------------------------- */

static void out_release(struct conn *c)
{
    struct out_chunk *k = c->out_head;
    while (k) {
        struct out_chunk *n = k->next;
        chunk_put(c->t, k);
        k = n;
    }
    c->out_head = c->out_tail = NULL;
    c->out_len = 0;
}

static enum sl_err out_append(struct conn *c, const uint8_t *p, uint32_t n)
{
    struct conn_table *t = c->t;
    uint32_t room = c->out_tail ? CHUNK_DATA - c->out_tail->len : 0;
    uint32_t need = n > room ? (n - room + CHUNK_DATA - 1) / CHUNK_DATA : 0;
    if (need > chunks_available(t)) {
        stat_inc(&t->cnt.out_pool_exhausted);
        return SL_NOMEM;
    }
    while (n) {
        if (!c->out_tail || c->out_tail->len == CHUNK_DATA) {
            struct out_chunk *k = chunk_get(t);
            if (!k)
                return SL_NOMEM; /* malloc failed: counted by the caller's close */
            if (c->out_tail)
                c->out_tail->next = k;
            else
                c->out_head = k;
            c->out_tail = k;
        }
        struct out_chunk *k = c->out_tail;
        uint32_t take = CHUNK_DATA - k->len;
        if (take > n)
            take = n;
        memcpy(k->data + k->len, p, take);
        k->len += take;
        p += take;
        n -= take;
        c->out_len += take;
    }
    return SL_OK;
}

enum sl_err conn_send(struct conn *c, conn_encode_fn *enc, const void *arg)
{
    if (c->state != CONN_OPEN)
        return SL_AGAIN;
    struct conn_table *t = c->t;
    size_t len = 0;
    enum sl_err rc = SL_TOOBIG;
    struct out_chunk *k = c->out_tail;
    const uint8_t *fb = t->enc; /* the encoded frame, for the recorder */
    /* Small frames (ack, pong) encode straight into the tail chunk. */
    if (k && CHUNK_DATA - k->len >= TAIL_MIN) {
        rc = enc(arg, k->data + k->len, CHUNK_DATA - k->len, &len);
        if (rc == SL_OK) {
            fb = k->data + k->len;
            if (c->out_len + len > t->cfg.out_cap) {
                conn_close(c, CR_OUT_CAP);
                return SL_NOMEM;
            }
            k->len += (uint32_t)len;
            c->out_len += (uint32_t)len;
        }
    }
    if (rc != SL_OK) {
        if (enc(arg, t->enc, t->enc_cap, &len) != SL_OK)
            return SL_TOOBIG;
        if (c->out_len + len > t->cfg.out_cap || out_append(c, t->enc, (uint32_t)len) != SL_OK) {
            conn_close(c, CR_OUT_CAP);
            return SL_NOMEM;
        }
    }
    if (t->cfg.rec)
        record_out(t->cfg.rec, rec_id(c), fb, len);
    c->frames_out++;
    stat_inc(&t->cnt.frames_out);
    flush_link(c);
    return SL_OK;
}

/* Drop the first n written bytes from c's output chunks. */
static void out_consume(struct conn *c, size_t n)
{
    struct conn_table *t = c->t;
    c->bytes_out += n;
    stat_add(&t->cnt.bytes_out, n);
    c->out_len -= (uint32_t)n;
    while (n && c->out_head) {
        struct out_chunk *k = c->out_head;
        uint32_t avail = k->len - k->off;
        if (n >= avail) {
            n -= avail;
            c->out_head = k->next;
            chunk_put(t, k);
        } else {
            k->off += (uint32_t)n;
            n = 0;
        }
    }
    if (!c->out_head)
        c->out_tail = NULL;
}

/* TLS: SSL_write takes one buffer, not a chunk list: coalesce up to one
 * record's worth, write it, and after WANT_* write the same bytes again. */
static int out_write_tls(struct conn *c, int *err)
{
    struct conn_table *t = c->t;
    struct tls_side *ts = &t->tls_side[c->slot];
    while (c->out_head) {
        size_t want = ts->wpend ? ts->wpend : (c->out_len < TLS_WBUF ? c->out_len : TLS_WBUF);
        size_t got = 0;
        for (struct out_chunk *k = c->out_head; k && got < want; k = k->next) {
            size_t take = k->len - k->off;
            if (take > want - got)
                take = want - got;
            memcpy(t->tls_wbuf + got, k->data + k->off, take);
            got += take;
        }
        size_t put = 0;
        enum tls_io rc = tls_write(ts->ssl, t->tls_wbuf, want, &put);
        if (rc == TLS_IO_OK) {
            ts->wpend = 0;
            out_consume(c, put);
            continue;
        }
        if (rc == TLS_IO_WANT_WRITE || rc == TLS_IO_WANT_READ) {
            ts->wpend = (uint32_t)want; /* epoll (IN|OUT, edge-triggered) brings us back */
            return 0;
        }
        *err = EPIPE;
        return -1;
    }
    return 0;
}

/* One writev of as much queued output as fits. 0 = all written or would
 * block, -1 = socket error (errno value in *err). */
static int out_write(struct conn *c, int *err)
{
    if (c->flags & CONN_F_TLS)
        return c->flags & CONN_F_HS ? 0 : out_write_tls(c, err); /* nothing before the handshake */
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
        out_consume(c, (size_t)wr);
        if (c->out_head && (size_t)wr < 16 * 1024)
            return 0; /* short write: the socket buffer is full */
    }
    return 0;
}

void conn_flush_all(struct conn_table *t)
{
    struct conn *c = t->flush_head;
    t->flush_head = NULL;
    while (c) {
        struct conn *next = c->next_flush;
        c->flags &= (uint8_t)~CONN_F_FLUSH;
        if (c->state == CONN_CLOSING) {
            c->next_flush = t->close_head; /* its output goes out in conn_free */
            t->close_head = c;
        } else if (c->state == CONN_OPEN) {
            int err = 0;
            if (out_write(c, &err) < 0)
                conn_close(c, CR_IO);
        }
        c = next;
    }
}

/* ---- close ------------------------------------------------------------ */

void conn_close(struct conn *c, enum conn_reason r)
{
    if (c->state != CONN_OPEN)
        return;
    struct conn_table *t = c->t;
    /* CLOSING before the callback: whatever the layer above does in it
     * (emit a disconnect, answer a command) can no longer reach c. */
    c->state = CONN_CLOSING;
    c->close_reason = (uint8_t)r;
    loop_timer_stop(t->loop, &c->timer);
    t->ops->closing(t->ud, c, r);
    if (r == CR_OUT_CAP)
        out_release(c); /* a device that does not read gets nothing more */
    if (!(c->flags & CONN_F_FLUSH)) {
        c->next_flush = t->close_head;
        t->close_head = c;
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
    struct conn_table *t = c->t;
    int err = 0;
    if (c->out_head)
        (void)out_write(c, &err); /* best effort: the err frame */
    if (c->flags & CONN_F_TLS) {
        tls_conn_free(t->tls_side[c->slot].ssl); /* close_notify after it */
        t->tls_side[c->slot] = (struct tls_side){0};
    }
    loop_forget(t->loop, c->fd); /* close() below leaves the epoll set */
    /* FIN after what was written, and swallow pending input so close()
     * does not turn into an RST that could destroy the err in flight.
     * After EOF the input is drained already and close() sends the FIN
     * itself: two syscalls less for the commonest close, and for every
     * connect-and-close a churning client makes. */
    if (c->close_reason != CR_EOF) {
        shutdown(c->fd, SHUT_WR);
        for (int i = 0; i < 4; i++)
            if (read(c->fd, t->scratch, t->scratch_cap) <= 0)
                break;
    }
    close(c->fd);
    if (t->cfg.rec)
        record_close(t->cfg.rec, rec_id(c), c->close_reason, conn_reason_str(c->close_reason));
    stat_inc(&t->cnt.closed[c->close_reason]);
    out_release(c);
    if (c->dec.buf)
        rbuf_put(t, c);
    uint32_t gen = c->gen + 1;
    uint32_t slot = c->slot;
    memset(c, 0, sizeof *c);
    c->t = t;
    c->slot = slot;
    c->gen = gen;
    c->fd = -1;
    t->free_slots[t->nfree++] = slot;
    atomic_store_explicit(&t->open, atomic_load_explicit(&t->open, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    atomic_fetch_sub(t->cfg.open_total, 1);
}

void conn_free_closed(struct conn_table *t)
{
    bool parked = false;
    for (struct conn *c = t->close_head; c; c = c->next_flush)
        if (c->flags & CONN_F_READY)
            parked = true;
    if (parked) {
        unpark_closing(&t->read_head);
        unpark_closing(&t->pool_wait);
        unpark_closing(&t->early_wait);
    }
    struct conn *c = t->close_head;
    t->close_head = NULL;
    while (c) {
        struct conn *next = c->next_flush;
        conn_free(c);
        c = next;
    }
}

/* ---- input ------------------------------------------------------------ */

static void feed(struct conn *c, const uint8_t *p, size_t n)
{
    struct conn_table *t = c->t;
    while (n > 0) {
        size_t used = 0;
        struct sl_slice pl;
        enum frame_rc rc = frame_dec_feed(&c->dec, p, n, &used, &pl);
        p += used;
        n -= used;
        switch (rc) {
        case FRAME_READY:
            c->frames_in++;
            stat_inc(&t->cnt.frames_in);
            t->ops->frame(t->ud, c, pl.p, pl.n);
            if (c->state != CONN_OPEN)
                return;
            if (c->dec.buf && frame_dec_idle(&c->dec))
                rbuf_put(t, c);
            break;
        case FRAME_NEED_BUF:
            /* conn_read only reads when the pool has one for us. */
            c->dec.buf = rbuf_get(t, c);
            if (!c->dec.buf) {
                t->ops->broken(t->ud, c, SL_FRAME, "internal: no read buffer");
                return;
            }
            break;
        case FRAME_NEED_MORE: break;
        case FRAME_ERR_EMPTY: t->ops->broken(t->ud, c, SL_FRAME, "frame length 0"); return;
        case FRAME_ERR_TOOBIG: t->ops->broken(t->ud, c, SL_FRAME, "frame length above max"); return;
        }
    }
}

/* The PROXY header, read without reading past it: peek, parse, then
 * consume exactly its bytes, so what follows (frames, or a TLS ClientHello
 * for OpenSSL to read from the socket itself) stays in the socket. true
 * once it is read (and the layer above told); false: wait or closed. */
static bool proxy_step(struct conn *c)
{
    struct conn_table *t = c->t;
    uint8_t buf[PROXY_HDR_MAX];
    ssize_t n = recv(c->fd, buf, sizeof buf, MSG_PEEK);
    if (n == 0) {
        conn_close(c, CR_EOF);
        return false;
    }
    if (n < 0) {
        int e = errno;
        if (e != EAGAIN && e != EWOULDBLOCK && e != EINTR)
            conn_close(c, CR_IO);
        return false;
    }
    size_t used = 0;
    struct addr peer;
    bool local = false;
    enum proxy_rc rc = proxy_parse(buf, (size_t)n, &used, &peer, &local);
    if (rc == PROXY_MORE)
        return false; /* edge-triggered epoll reports the rest when it comes */
    if (rc == PROXY_BAD) {
        /* A device that speaks frames gets a readable answer; a TLS client
         * would not understand one. */
        if (c->flags & CONN_F_TLS)
            conn_close(c, CR_PROXY);
        else
            t->ops->broken(t->ud, c, SL_PROTO, "expected a PROXY protocol v2 header");
        return false;
    }
    ssize_t k = recv(c->fd, buf, used, 0);
    if (k != (ssize_t)used) {
        conn_close(c, CR_IO);
        return false;
    }
    c->bytes_in += used;
    if (!local)
        c->peer = peer;
    c->flags &= (uint8_t)~CONN_F_PROXY;
    t->ops->proxied(t->ud, c, local);
    return c->state == CONN_OPEN;
}

/* One step of the TLS handshake, at most handshakes_per_wake for the whole
 * table per loop iteration (a storm of handshakes must not delay the acks
 * of established devices); the rest wait for the next iteration. true once
 * done. */
static bool hs_step(struct conn *c)
{
    struct conn_table *t = c->t;
    if (t->hs_left == 0) {
        read_park(c, false);
        return false;
    }
    t->hs_left--;
    switch (tls_handshake(t->tls_side[c->slot].ssl)) {
    case TLS_IO_OK:
        c->flags &= (uint8_t)~CONN_F_HS;
        stat_inc(&t->cnt.tls_handshakes);
        if (tls_resumed(t->tls_side[c->slot].ssl))
            stat_inc(&t->cnt.tls_resumed);
        if (c->out_head)
            flush_link(c);
        return true;
    case TLS_IO_WANT_READ:
    case TLS_IO_WANT_WRITE: return false; /* epoll (IN|OUT, edge-triggered) calls again */
    default:
        stat_inc(&t->cnt.tls_failed);
        if (log_enabled(SL_LOG_DEBUG)) {
            char peer[ADDR_STR_MAX], e[160];
            addr_str(&c->peer, peer, sizeof peer);
            log_debug("event=tls_failed worker=%u peer=%s err=\"%s\"", t->cfg.worker, peer,
                      tls_last_error(e, sizeof e));
        }
        conn_close(c, CR_TLS);
        return false;
    }
}

/* One read of c: plain bytes, or decrypted ones. > 0 bytes; 0 = the peer
 * closed; -1 = nothing now (*again) or an error (closed here). */
static ssize_t io_read(struct conn *c, uint8_t *buf, size_t cap, bool *again)
{
    *again = false;
    if (!(c->flags & CONN_F_TLS)) {
        for (;;) {
            ssize_t n = read(c->fd, buf, cap);
            if (n >= 0)
                return n;
            int e = errno;
            if (e == EINTR)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK) {
                *again = true;
                return -1;
            }
            conn_close(c, CR_IO);
            return -1;
        }
    }
    size_t got = 0;
    switch (tls_read(c->t->tls_side[c->slot].ssl, buf, cap, &got)) {
    case TLS_IO_OK: return (ssize_t)got;
    case TLS_IO_WANT_READ: *again = true; return -1;
    case TLS_IO_WANT_WRITE: /* a TLS 1.3 key update to answer: try again next iteration */
        read_park(c, false);
        *again = true;
        return -1;
    case TLS_IO_EOF: return 0;
    default:
        stat_inc(&c->t->cnt.tls_failed);
        conn_close(c, CR_TLS);
        return -1;
    }
}

static void conn_read(struct conn *c)
{
    struct conn_table *t = c->t;
    if ((c->flags & CONN_F_PROXY) && !proxy_step(c))
        return;
    if ((c->flags & CONN_F_HS) && !hs_step(c))
        return;
    for (int i = 0; i < READS_PER_WAKE; i++) {
        if (c->flags & CONN_F_HOLD)
            return; /* conn_release parks it for a read */
        if (t->paused) {
            read_park(c, false);
            return;
        }
        if (!c->dec.buf && pool_empty(t, c)) {
            read_park(c, true);
            return;
        }
        size_t cap = t->scratch_cap;
        if (t->cfg.budgeted) {
            size_t b = t->ops->read_budget(t->ud, c);
            if (b == 0) {
                c->flags |= CONN_F_HOLD;
                return;
            }
            if (b < cap)
                cap = b;
        }
        bool again;
        ssize_t n = io_read(c, t->scratch, cap, &again);
        if (n > 0) {
            if (t->cfg.rec) /* what the device sent, decrypted */
                record_in(t->cfg.rec, rec_id(c), t->scratch, (size_t)n);
            c->bytes_in += (uint64_t)n;
            stat_add(&t->cnt.bytes_in, (uint64_t)n);
            feed(c, t->scratch, (size_t)n);
            if (c->state != CONN_OPEN)
                return;
            /* Drained: edge-triggered epoll reports new data. Not with TLS:
             * a TLS read returns one record at most, and further records
             * already in the socket (or bytes OpenSSL holds) bring no event;
             * read on until OpenSSL wants more (again). */
            if ((size_t)n < cap && !(c->flags & CONN_F_TLS))
                return;
            continue;
        }
        if (n == 0)
            conn_close(c, CR_EOF);
        return; /* again, or closed */
    }
    read_park(c, false); /* more may be waiting: continue next iteration */
}

static void on_conn_event(struct loop *l, int fd, uint32_t events, void *ud)
{
    (void)l;
    (void)fd;
    struct conn *c = ud;
    if (c->state != CONN_OPEN)
        return;
    if ((c->flags & (CONN_F_PROXY | CONN_F_HS)) && !(c->flags & CONN_F_READY)) {
        conn_read(c); /* a handshake step may wait for either direction */
        return;
    }
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

static void on_conn_timer(struct loop *l, void *ud)
{
    (void)l;
    struct conn *c = ud;
    if (c->state == CONN_OPEN)
        c->t->ops->timer(c->t->ud, c);
}

void conn_promote(struct conn *c)
{
    if (!(c->flags & CONN_F_EARLY))
        return;
    /* A partial frame already in an early buffer stays there until it is
     * whole (its length was checked against hello_max); the next one is
     * checked against max_frame and uses the max_frame pool. */
    c->flags &= (uint8_t)~CONN_F_EARLY;
    frame_dec_set_max(&c->dec, c->t->cfg.max_frame);
}

void conn_read_now(struct conn *c)
{
    if (c->state == CONN_OPEN && !(c->flags & CONN_F_READY))
        conn_read(c);
}

void conn_release(struct conn *c)
{
    if (c->state != CONN_OPEN || !(c->flags & CONN_F_HOLD))
        return;
    c->flags &= (uint8_t)~CONN_F_HOLD;
    /* Input may have arrived meanwhile: edge-triggered epoll will not say so
     * again, so read it next iteration. */
    read_park(c, false);
}

bool conn_early(const struct conn *c)
{
    return c->flags & CONN_F_EARLY;
}

void conn_timer(struct conn *c, uint64_t ms)
{
    if (c->state == CONN_OPEN)
        loop_timer_start(c->t->loop, &c->timer, ms);
}

bool conn_read_pending(const struct conn_table *t)
{
    return t->read_head && !t->paused;
}

void conn_set_paused(struct conn_table *t, bool paused)
{
    t->paused = paused;
}

void conn_after(struct conn_table *t)
{
    t->hs_left = t->cfg.handshakes_per_wake;
    if (t->paused || !t->read_head)
        return;
    struct conn *c = t->read_head;
    t->read_head = NULL;
    while (c) {
        struct conn *next = c->next_read;
        c->flags &= (uint8_t)~CONN_F_READY;
        c->next_read = NULL;
        if (c->state == CONN_OPEN)
            conn_read(c);
        c = next;
    }
}

/* ---- accept ----------------------------------------------------------- */

void conn_refuse(int fd, struct sl_slice frame)
{
    if (frame.n)
        (void)!write(fd, frame.p, frame.n);
    shutdown(fd, SHUT_WR);
    close(fd);
}

bool conn_admit(_Atomic uint32_t *open_total, uint32_t max)
{
    if (atomic_fetch_add(open_total, 1) >= max) {
        atomic_fetch_sub(open_total, 1);
        return false;
    }
    return true;
}

int conn_accept(int lfd, int *spare_fd, struct addr *peer, const char *who)
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
        addr_from_sockaddr(peer, (const struct sockaddr *)&sa);
        return fd;
    }
}

/* A refused fd gives its place under --max-conns back. */
static void refuse_admitted(struct conn_table *t, int fd)
{
    atomic_fetch_sub(t->cfg.open_total, 1);
    conn_refuse(fd, t->cfg.busy);
    stat_inc(&t->cnt.refused);
}

bool conn_adopt(struct conn_table *t, int fd, const struct addr *peer, unsigned kind)
{
    if (t->nfree == 0 && t->nfresh == t->nslots) {
        refuse_admitted(t, fd);
        return false;
    }
    /* TCP_NODELAY comes from the listener (conn_listen_socket): an
     * accepted socket inherits it, one syscall less per connection. */
    /* Reuse a freed slot (LIFO, keeps the touched set small) before
     * touching a fresh one: an untouched slot costs no RSS. */
    uint32_t slot = t->nfree ? t->free_slots[--t->nfree] : t->nfresh++;
    struct conn *c = &t->conns[slot];
    c->t = t;
    c->slot = slot;
    c->fd = fd;
    c->state = CONN_OPEN;
    c->flags = CONN_F_EARLY;
    c->upper = 0;
    c->peer = *peer;
    if (kind & CONN_KIND_PROXY)
        c->flags |= CONN_F_PROXY;
    if (kind & CONN_KIND_TLS) {
        SSL *ssl = t->tls_side ? tls_conn_new(t->cfg.tls, fd) : NULL;
        if (!ssl) {
            c->state = CONN_CLOSING; /* out of memory: no callback names it */
            c->close_reason = CR_TLS;
            c->next_flush = t->close_head;
            t->close_head = c;
            atomic_store_explicit(&t->open, atomic_load_explicit(&t->open, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
            return false;
        }
        t->tls_side[slot] = (struct tls_side){.ssl = ssl};
        c->flags |= CONN_F_TLS | CONN_F_HS;
    }
    frame_dec_init(&c->dec, t->cfg.hello_max);
    loop_timer_init(&c->timer, on_conn_timer, c);
    atomic_store_explicit(&t->open, atomic_load_explicit(&t->open, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (t->cfg.rec)
        record_open(t->cfg.rec, rec_id(c), &c->peer); /* after the set-up it records, before any read */
    if (loop_add(t->loop, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, on_conn_event, c) != 0) {
        /* Never opened for the layer above: no `closing` for it. */
        c->state = CONN_CLOSING;
        c->close_reason = CR_IO;
        c->next_flush = t->close_head;
        t->close_head = c;
        return false; /* freed after the batch; `opened` never ran */
    }
    t->ops->opened(t->ud, c);
    return true;
}

static void on_accept(struct loop *l, int lfd, uint32_t events, void *ud);

/* Accepting resumes after a pause the layer above asked for. */
static void on_listen_timer(struct loop *l, void *ud)
{
    struct conn_table *t = ud;
    for (int i = 0; i < 2; i++)
        if (t->lfd[i] >= 0)
            loop_mod(l, t->lfd[i], EPOLLIN, on_accept, t);
}

static void on_accept(struct loop *l, int lfd, uint32_t events, void *ud)
{
    (void)events;
    struct conn_table *t = ud;
    char who[32];
    snprintf(who, sizeof who, "worker=%u", t->cfg.worker);
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        uint32_t wait = t->ops->accept_wait(t->ud);
        if (wait) {
            /* Leave the rest in the kernel's backlog for a while: the
             * listeners are level-triggered, so they are switched off, not
             * just left unread. */
            for (int k = 0; k < 2; k++)
                if (t->lfd[k] >= 0)
                    loop_mod(l, t->lfd[k], 0, on_accept, t);
            loop_timer_start(l, &t->listen_timer, wait);
            return;
        }
        struct addr peer;
        int fd = conn_accept(lfd, &t->spare_fd, &peer, who);
        if (fd < 0)
            return;
        stat_inc(&t->cnt.accepted);
        t->ops->accepted(t->ud, fd, &peer, t->lfd[1] == lfd ? t->lkind[1] : t->lkind[0]);
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
        /* Inherited by every accepted socket (Linux copies it on accept):
         * acks and welcomes leave at once, without a setsockopt per
         * connection. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    return fd < 0 ? -err : fd;
}

int conn_listen(struct conn_table *t, const char *spec, unsigned kind)
{
    int i = t->lfd[0] < 0 ? 0 : 1;
    if (t->lfd[i] >= 0)
        return -EBUSY;
    int fd = conn_listen_socket(spec);
    if (fd < 0)
        return fd;
    int rc = loop_add(t->loop, fd, EPOLLIN, on_accept, t);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    t->lfd[i] = fd;
    t->lkind[i] = kind;
    atomic_store(&t->listening, true);
    return 0;
}

void conn_stop_listening(struct conn_table *t)
{
    loop_timer_stop(t->loop, &t->listen_timer);
    for (int i = 0; i < 2; i++) {
        if (t->lfd[i] < 0)
            continue;
        loop_del(t->loop, t->lfd[i]);
        close(t->lfd[i]);
        t->lfd[i] = -1;
    }
    atomic_store(&t->listening, false);
}

bool conn_is_tls(const struct conn *c)
{
    return c->flags & CONN_F_TLS;
}

bool conn_proxy_pending(const struct conn *c)
{
    return c->flags & CONN_F_PROXY;
}

bool conn_peer_is(const struct conn *c, const char *dev, size_t n)
{
    if (!(c->flags & CONN_F_TLS))
        return true;
    return tls_peer_is(c->t->tls_side[c->slot].ssl, dev, n);
}

bool conn_listening(const struct conn_table *t)
{
    return atomic_load(&t->listening);
}

uint32_t conn_open_count(const struct conn_table *t)
{
    return atomic_load_explicit(&t->open, memory_order_relaxed);
}

const struct conn_counts *conn_counts(const struct conn_table *t)
{
    return &t->cnt;
}

/* ---- table ------------------------------------------------------------ */

struct conn_table *conn_table_new(const struct conn_cfg *cfg, struct loop *l, const struct conn_ops *ops,
                                  void *ud)
{
    struct conn_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->cfg = *cfg;
    t->loop = l;
    t->ops = ops;
    t->ud = ud;
    t->lfd[0] = t->lfd[1] = -1;
    t->hs_left = cfg->handshakes_per_wake;
    loop_timer_init(&t->listen_timer, on_listen_timer, t);
    t->nslots = cfg->slots;
    /* calloc: slots and buffers stay unbacked until used (LIFO reuse keeps
     * the touched set small), so the table costs RSS only per live conn.
     * Hence no loop over the slots here: a zeroed slot is CONN_FREE with
     * generation 0, and conn_adopt fills in t/slot/fd when it first uses it
     * (initialising every slot cost 2 x max_conns x sizeof(struct conn)
     * of RSS up front, ~10 MiB at --max-conns 19100). */
    t->conns = calloc(t->nslots, sizeof *t->conns);
    t->free_slots = malloc(t->nslots * sizeof *t->free_slots);
    t->scratch_cap = SCRATCH_CAP;
    t->scratch = malloc(t->scratch_cap);
    t->nrbufs = cfg->read_bufs;
    t->rbufs = malloc(t->nrbufs * sizeof *t->rbufs);
    t->rbuf_mem = malloc((size_t)t->nrbufs * cfg->max_frame);
    t->nebufs = cfg->early_bufs;
    t->ebufs = malloc(t->nebufs * sizeof *t->ebufs);
    t->ebuf_mem = malloc((size_t)t->nebufs * cfg->hello_max);
    t->enc_cap = cfg->max_frame + SL_FRAME_HDR + ENC_SLACK;
    t->enc = malloc(t->enc_cap);
    t->chunks_max = (uint32_t)((uint64_t)cfg->out_pool_mb * 1024 * 1024 / sizeof(struct out_chunk));
    t->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (cfg->tls) {
        /* calloc: a slot's side entry is backed only once a TLS connection uses it */
        t->tls_side = calloc(t->nslots, sizeof *t->tls_side);
        t->tls_wbuf = malloc(TLS_WBUF);
        if (!t->tls_side || !t->tls_wbuf) {
            conn_table_destroy(&t);
            return NULL;
        }
    }
    if (!t->conns || !t->free_slots || !t->scratch || !t->rbufs || !t->rbuf_mem || !t->ebufs ||
        !t->ebuf_mem || !t->enc) {
        conn_table_destroy(&t);
        return NULL;
    }
    for (uint32_t i = 0; i < t->nrbufs; i++)
        t->rbufs[i] = t->rbuf_mem + (size_t)(t->nrbufs - 1 - i) * cfg->max_frame;
    for (uint32_t i = 0; i < t->nebufs; i++)
        t->ebufs[i] = t->ebuf_mem + (size_t)(t->nebufs - 1 - i) * cfg->hello_max;
    return t;
}

void conn_table_destroy(struct conn_table **pt)
{
    struct conn_table *t = *pt;
    if (!t)
        return;
    if (t->conns) {
        for (uint32_t i = 0; i < t->nfresh; i++)
            conn_close(&t->conns[i], CR_SHUTDOWN);
        conn_flush_all(t);
        conn_free_closed(t);
    }
    conn_stop_listening(t);
    while (t->chunk_free) {
        struct out_chunk *k = t->chunk_free;
        t->chunk_free = k->next;
        free(k);
    }
    if (t->spare_fd >= 0)
        close(t->spare_fd);
    free(t->conns);
    free(t->free_slots);
    free(t->scratch);
    free(t->rbufs);
    free(t->rbuf_mem);
    free(t->ebufs);
    free(t->ebuf_mem);
    free(t->tls_side);
    free(t->tls_wbuf);
    free(t->enc);
    free(t);
    *pt = NULL;
}

/* ---- lookups ---------------------------------------------------------- */

struct conn *conn_get(struct conn_table *t, uint32_t slot, uint32_t gen)
{
    if (slot >= t->nslots)
        return NULL;
    struct conn *c = &t->conns[slot];
    return c->state == CONN_OPEN && c->gen == gen ? c : NULL;
}

struct conn *conn_at(struct conn_table *t, uint32_t slot)
{
    return &t->conns[slot];
}

struct conn *conn_next_open(struct conn_table *t, uint32_t *cursor)
{
    for (uint32_t i = 0; i < t->nfresh; i++) {
        uint32_t s = (*cursor + i) % t->nfresh;
        if (t->conns[s].state == CONN_OPEN) {
            *cursor = s + 1;
            return &t->conns[s];
        }
    }
    return NULL;
}
