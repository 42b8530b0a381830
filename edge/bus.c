/* bus.c - a worker's ZeroMQ side (docs/protocol.md §6).
 *
 * Out: envelopes are appended to per-destination batch buffers as sessions
 * produce them and sent once per loop iteration (bus_flush from the
 * after-hook), early if a batch passes BATCH_SOFT. The persister batch is
 * never dropped: when its PUSH cannot take it (HWM reached or, with
 * ZMQ_IMMEDIATE, no persister connected) the batch stays and bus_paused()
 * stops the worker's reads. Its buffer (BATCH_HARD) has room for the
 * entries one scratch-buffer read can still produce after the pause began.
 * The notifier message is built from two parts: control entries, which are
 * retried until sent (bounded by CTL_CAP), and data entries, which are
 * shed and counted when the PUSH would block, so MQTT never slows ingest.
 *
 * In: ack, cmd and kick batches on the DEALER, drained after every wake-up
 * (ZMQ_FD is edge-triggered). An ack or kick is applied only if its
 * connection id and device still match (conn_find); the rest are counted as
 * stale. A cmd goes to the device's current connection on this edge,
 * whichever worker holds it (cmdfwd.c).
 *
 * It deliberately does not know the device protocol: it calls session_*
 * to write frames. */
#define _GNU_SOURCE
#include "bus.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <zmq.h>
#include "sl/log.h"
#include "sl/zmqx.h"
#include "cmdfwd.h"
#include "conn.h"
#include "peermon.h"
#include "session.h"
#include "stats.h"
#include "worker.h"

#define BATCH_SOFT   (1024u * 1024u) /* send once a batch is this big */
#define BATCH_HARD   (4096u * 1024u) /* persister buffer: SOFT + one read's worth of entries */
#define NDATA_CAP    (1024u * 1024u + 128u * 1024u)
#define CTL_CAP      (1024u * 1024u) /* notifier control queue */
#define HEARTBEAT_MS 2000u

struct bus {
    struct worker *w;
    void *pp, *pn, *dl; /* persister PUSH, notifier PUSH, DEALER */
    struct zmqx_conns *c_pp, *c_pn, *c_pr, *c_nr;
    struct peermon *m_pp, *m_pn, *m_dl; /* who each socket is connected to */
    char ident[300];
    struct envelope_hdr hdr;

    uint8_t *pbuf; /* persister batch (BATCH_HARD) */
    struct envelope_writer pw;
    bool paused;
    uint64_t pause_start_us;

    uint8_t *ndata, *nctl; /* notifier data part, control part */
    struct envelope_writer nwd, nwc;
    size_t hdr_len;

    uint64_t next_hb_ms;
    bool warned_version;
};

static void on_zmq_fd(struct loop *l, int fd, uint32_t events, void *ud)
{
    /* Nothing to do here: the after-hook drains the DEALER and retries the
     * PUSHes on every wake-up; this registration only wakes the loop. */
    (void)l;
    (void)fd;
    (void)events;
    (void)ud;
}

static void *mksock(struct bus *b, int type, int linger, bool immediate)
{
    void *s = zmq_socket(b->w->e->zctx, type);
    if (!s)
        return NULL;
    int hwm = b->w->e->cfg.zmq_hwm;
    if (zmqx_setup(s, linger, hwm, hwm, immediate) != 0) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

struct bus *bus_new(struct worker *w)
{
    struct bus *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->w = w;
    struct edge *e = w->e;
    snprintf(b->ident, sizeof b->ident, "%s/%u", e->cfg.edge_id, w->idx);
    b->hdr.v = SL_ENVELOPE_VERSION;
    b->hdr.edge.p = (const uint8_t *)e->cfg.edge_id;
    b->hdr.edge.n = (uint32_t)strlen(e->cfg.edge_id);
    b->hdr.incarnation = e->incarnation;
    b->hdr.reply.p = (const uint8_t *)b->ident;
    b->hdr.reply.n = (uint32_t)strlen(b->ident);
    /* Linger: data already handed to ZeroMQ may still reach the persister
     * on exit; the devices resend what was not acked anyway. */
    b->pp = mksock(b, ZMQ_PUSH, 2000, true);
    b->pn = mksock(b, ZMQ_PUSH, 500, true);
    b->dl = mksock(b, ZMQ_DEALER, 0, true);
    b->pbuf = malloc(BATCH_HARD);
    b->ndata = malloc(NDATA_CAP);
    b->nctl = malloc(CTL_CAP);
    b->c_pp = zmqx_conns_new();
    b->c_pn = zmqx_conns_new();
    b->c_pr = zmqx_conns_new();
    b->c_nr = zmqx_conns_new();
    /* Monitors first: the first bus_tick below connects. */
    char name[64];
    snprintf(name, sizeof name, "%u/pp", w->idx);
    b->m_pp = b->pp ? peermon_new(e->zctx, b->pp, name) : NULL;
    snprintf(name, sizeof name, "%u/pn", w->idx);
    b->m_pn = b->pn ? peermon_new(e->zctx, b->pn, name) : NULL;
    snprintf(name, sizeof name, "%u/dl", w->idx);
    b->m_dl = b->dl ? peermon_new(e->zctx, b->dl, name) : NULL;
    if (!b->pp || !b->pn || !b->dl || !b->pbuf || !b->ndata || !b->nctl || !b->c_pp || !b->c_pn || !b->c_pr ||
        !b->c_nr || !b->m_pp || !b->m_pn || !b->m_dl) {
        log_error("event=bus_init_failed worker=%u err=\"%s\"", w->idx, zmq_strerror(zmq_errno()));
        bus_destroy(&b);
        return NULL;
    }
    zmq_setsockopt(b->dl, ZMQ_ROUTING_ID, b->ident, strlen(b->ident));
    envelope_writer_begin(&b->pw, b->pbuf, BATCH_HARD, &b->hdr);
    envelope_writer_begin(&b->nwd, b->ndata, NDATA_CAP, &b->hdr);
    envelope_writer_begin(&b->nwc, b->nctl, CTL_CAP, &b->hdr);
    b->hdr_len = envelope_writer_len(&b->nwc);
    void *socks[3] = {b->pp, b->pn, b->dl};
    for (int i = 0; i < 3; i++) {
        int fd = zmqx_fd(socks[i]);
        if (fd < 0 || loop_add(w->loop, fd, EPOLLIN | EPOLLET, on_zmq_fd, b) != 0) {
            log_error("event=bus_init_failed worker=%u err=zmq_fd", w->idx);
            bus_destroy(&b);
            return NULL;
        }
    }
    bus_tick(b, 0);
    return b;
}

void bus_destroy(struct bus **pb)
{
    struct bus *b = *pb;
    if (!b)
        return;
    peermon_destroy(&b->m_pp);
    peermon_destroy(&b->m_pn);
    peermon_destroy(&b->m_dl);
    if (b->pp)
        zmq_close(b->pp);
    if (b->pn)
        zmq_close(b->pn);
    if (b->dl)
        zmq_close(b->dl);
    zmqx_conns_destroy(&b->c_pp);
    zmqx_conns_destroy(&b->c_pn);
    zmqx_conns_destroy(&b->c_pr);
    zmqx_conns_destroy(&b->c_nr);
    free(b->pbuf);
    free(b->ndata);
    free(b->nctl);
    free(b);
    *pb = NULL;
}

bool bus_paused(const struct bus *b)
{
    return b->paused;
}

/* Only the persister batch counts: the notifier queue may wait forever on
 * an absent notifier and holds nothing that is the record. */
bool bus_idle(const struct bus *b)
{
    return b->pw.count == 0;
}

/* ---- persister -------------------------------------------------------- */

static void pflush(struct bus *b)
{
    if (b->pw.count == 0)
        return;
    int rc = -1;
    if (zmqx_writable(b->pp))
        rc = zmq_send(b->pp, b->pbuf, envelope_writer_len(&b->pw), ZMQ_DONTWAIT);
    if (rc >= 0) {
        metric_inc(stats.batches_out_p);
        envelope_writer_begin(&b->pw, b->pbuf, BATCH_HARD, &b->hdr);
        if (b->paused) {
            b->paused = false;
            metric_add(stats.bp_paused_us, session_now_us() - b->pause_start_us);
            log_info("event=backpressure_end worker=%u", b->w->idx);
        }
        return;
    }
    if (!b->paused) {
        /* Keep the batch, stop reading: never drop, never ack locally. */
        b->paused = true;
        b->pause_start_us = session_now_us();
        metric_inc(stats.bp_pauses);
        log_info("event=backpressure_begin worker=%u batch_bytes=%zu", b->w->idx,
                 envelope_writer_len(&b->pw));
    }
}

/* Append e to the persister batch. true: its encoded bytes are at
 * (*ent, *entn) until the next pflush (bus_emit copies them to the notifier
 * batch instead of encoding e twice); false: dropped. */
static bool padd(struct bus *b, const struct envelope *e, const uint8_t **ent, size_t *entn)
{
    size_t mark = envelope_writer_len(&b->pw);
    if (envelope_writer_add(&b->pw, e) != SL_OK) {
        pflush(b);
        mark = envelope_writer_len(&b->pw);
        if (envelope_writer_add(&b->pw, e) != SL_OK) {
            /* Full while paused: only possible for session/heartbeat entries
             * (reads stop first); the persister uses those for its session
             * log only. */
            metric_inc(stats.persister_ctl_dropped);
            if (e->kind == ENV_DATA)
                log_error("event=persister_batch_overflow worker=%u", b->w->idx);
            return false;
        }
    }
    *ent = b->pbuf + mark;
    *entn = envelope_writer_len(&b->pw) - mark;
    return true;
}

static void psoft(struct bus *b)
{
    if (!b->paused && envelope_writer_len(&b->pw) >= BATCH_SOFT)
        pflush(b);
}

/* ---- notifier --------------------------------------------------------- */

static void nflush(struct bus *b)
{
    if (b->nwc.count == 0 && b->nwd.count == 0)
        return;
    if (zmqx_writable(b->pn)) {
        size_t lc = envelope_writer_len(&b->nwc) - b->hdr_len;
        size_t ld = envelope_writer_len(&b->nwd) - b->hdr_len;
        zmq_msg_t m;
        if (zmq_msg_init_size(&m, b->hdr_len + lc + ld) == 0) {
            uint8_t *p = zmq_msg_data(&m);
            memcpy(p, b->nctl, b->hdr_len + lc);
            memcpy(p + b->hdr_len + lc, b->ndata + b->hdr_len, ld);
            if (zmq_msg_send(&m, b->pn, ZMQ_DONTWAIT) >= 0) {
                metric_inc(stats.batches_out_n);
                envelope_writer_begin(&b->nwc, b->nctl, CTL_CAP, &b->hdr);
                envelope_writer_begin(&b->nwd, b->ndata, NDATA_CAP, &b->hdr);
                return;
            }
            zmq_msg_close(&m);
        }
    }
    /* The live view may lose data copies, never ingest speed. Control
     * entries stay queued for the next try. */
    if (b->nwd.count) {
        metric_add(stats.notifier_shed, b->nwd.count);
        envelope_writer_begin(&b->nwd, b->ndata, NDATA_CAP, &b->hdr);
    }
}

/* Append an entry already encoded for the persister batch. Entry bytes do
 * not depend on the batch (both batches share b->hdr), so a memcpy of ~60
 * bytes replaces a second msgpack encoding per data frame. */
static enum sl_err writer_copy(struct envelope_writer *w, const uint8_t *p, size_t n)
{
    if (w->buf.overflow || w->buf.cap - w->buf.len < n)
        return SL_TOOBIG;
    memcpy(w->buf.p + w->buf.len, p, n);
    w->buf.len += n;
    w->count++;
    return SL_OK;
}

static void nadd_copy(struct bus *b, bool data, const uint8_t *p, size_t n)
{
    struct envelope_writer *w = data ? &b->nwd : &b->nwc;
    if (writer_copy(w, p, n) == SL_OK) {
        if (data && envelope_writer_len(w) >= BATCH_SOFT)
            nflush(b);
        return;
    }
    nflush(b);
    if (writer_copy(w, p, n) == SL_OK)
        return;
    metric_inc(data ? stats.notifier_shed : stats.notifier_ctl_dropped);
}

static void nadd(struct bus *b, const struct envelope *e)
{
    bool data = e->kind == ENV_DATA;
    struct envelope_writer *w = data ? &b->nwd : &b->nwc;
    if (envelope_writer_add(w, e) == SL_OK) {
        if (data && envelope_writer_len(w) >= BATCH_SOFT)
            nflush(b);
        return;
    }
    nflush(b);
    if (envelope_writer_add(w, e) == SL_OK)
        return;
    metric_inc(data ? stats.notifier_shed : stats.notifier_ctl_dropped);
}

void bus_emit(struct bus *b, const struct envelope *e)
{
    switch (e->kind) {
    case ENV_DATA:
    case ENV_CONNECT:
    case ENV_DISCONNECT:
    case ENV_HEARTBEAT: {
        const uint8_t *ent;
        size_t n;
        if (padd(b, e, &ent, &n))
            nadd_copy(b, e->kind == ENV_DATA, ent, n);
        else
            nadd(b, e);
        psoft(b); /* after the copy: a flush reuses the bytes at ent */
        break;
    }
    case ENV_RES:
    case ENV_UNDELIVERABLE: nadd(b, e); break;
    default: break;
    }
}

void bus_flush(struct bus *b)
{
    pflush(b);
    nflush(b);
}

/* ---- replies ---------------------------------------------------------- */

static void apply(struct bus *b, const struct envelope *e)
{
    struct worker *w = b->w;
    struct conn *c;
    switch (e->kind) {
    case ENV_ACK:
        c = conn_find(w, e->slot, e->gen, e->dev);
        if (c)
            session_ack(c, e->seq);
        else
            metric_inc(stats.stale_acks);
        break;
    case ENV_CMD:
        cmdfwd_route(w, e); /* here, on the worker holding dev, or undeliverable */
        break;
    case ENV_KICK:
        c = conn_find(w, e->slot, e->gen, e->dev);
        if (c) {
            metric_inc(stats.kicks);
            session_fail(c, SL_REPLACED, "the device connected to another edge");
        } else {
            metric_inc(stats.stale_acks);
        }
        break;
    default: break;
    }
}

static void handle_batch(struct bus *b, const uint8_t *p, size_t n)
{
    struct envelope_reader r;
    enum sl_err rc = envelope_reader_begin(&r, p, n);
    if (rc != SL_OK) {
        metric_inc(stats.stale_batches);
        if (!b->warned_version) {
            b->warned_version = true;
            log_warn("event=reply_batch_refused worker=%u err=%s", b->w->idx, sl_strerror(rc));
        }
        return;
    }
    if (r.hdr.incarnation != b->w->e->incarnation) {
        metric_inc(stats.stale_batches); /* meant for an earlier run of this edge */
        return;
    }
    struct envelope e;
    while ((rc = envelope_reader_next(&r, &e)) == SL_OK)
        apply(b, &e);
    if (rc == SL_DECODE)
        metric_inc(stats.stale_batches);
}

void bus_recv(struct bus *b)
{
    /* ZMQ_FD is edge-triggered: drain until ZMQ_EVENTS says empty. */
    while (zmqx_readable(b->dl)) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, b->dl, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        bool first_only = zmq_msg_more(&m);
        handle_batch(b, zmq_msg_data(&m), zmq_msg_size(&m));
        zmq_msg_close(&m);
        while (first_only) { /* a batch is one frame; skip anything else */
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, b->dl, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                break;
            }
            first_only = zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
    }
}

unsigned bus_tick(struct bus *b, uint32_t open_conns)
{
    struct edge *e = b->w->e;
    zmqx_resolver_apply(e->r_pp, b->pp, b->c_pp);
    zmqx_resolver_apply(e->r_np, b->pn, b->c_pn);
    zmqx_resolver_apply(e->r_pr, b->dl, b->c_pr);
    zmqx_resolver_apply(e->r_nr, b->dl, b->c_nr);
    uint64_t now = loop_now_ms(b->w->loop);
    if (now >= b->next_hb_ms) {
        b->next_hb_ms = now + HEARTBEAT_MS;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct envelope hb = {.kind = ENV_HEARTBEAT,
                              .seq = open_conns,
                              .at_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec};
        bus_emit(b, &hb);
    }
    /* A service is up for this worker when its PUSH has a peer (to send
     * to) and the DEALER is connected to one of its ROUTERs (to hear acks
     * or cmds). Not POLLOUT: a PUSH at its HWM is connected, only slow. */
    peermon_sync(b->m_pp, b->c_pp, NULL);
    peermon_sync(b->m_pn, b->c_pn, NULL);
    peermon_sync(b->m_dl, b->c_pr, b->c_nr);
    unsigned up = 0;
    if (peermon_count(b->m_pp, b->c_pp) && peermon_count(b->m_dl, b->c_pr))
        up |= BUS_UP_PERSISTER;
    if (peermon_count(b->m_pn, b->c_pn) && peermon_count(b->m_dl, b->c_nr))
        up |= BUS_UP_NOTIFIER;
    return up;
}
