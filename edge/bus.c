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
 * In: reply batches (acks, cmds, kicks) on the DEALER, handed to the worker
 * one message at a time by bus_recv, which keeps the message only until the
 * next call: the worker reads the batch while the bus is idle, so whatever
 * it emits while applying a reply goes into the out batches, never into a
 * read in progress.
 *
 * It deliberately knows neither the device protocol nor what a reply
 * means, and it calls no other edge module but peermon. */
#define _GNU_SOURCE
#include "bus.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <time.h>
#include <zmq.h>
#include "sl/limits.h"
#include "sl/log.h"
#include "sl/loop.h"
#include "sl/zmqx.h"
#include "edge.h"
#include "peermon.h"

#define BATCH_SOFT (1024u * 1024u) /* send once a batch is this big */
#define BATCH_HARD (4096u * 1024u) /* persister buffer: SOFT + one read's worth of entries */
#define NDATA_CAP  (1024u * 1024u + 128u * 1024u)
_Static_assert(NDATA_CAP >= EDGE_MAX_FRAME + 64u * 1024u, "a max_frame data entry fits the notifier batch");
#define CTL_CAP (1024u * 1024u) /* notifier control queue */

struct bus {
    struct bus_cfg cfg;
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

    zmq_msg_t in; /* the reply batch bus_recv handed out last */
    bool in_open;

    struct bus_counts cnt;
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void on_zmq_fd(struct loop *l, int fd, uint32_t events, void *ud)
{
    /* Nothing to do here: the after-hook drains the DEALER and retries the
     * PUSHes on every wake-up; this registration only wakes the loop. */
    (void)l;
    (void)fd;
    (void)events;
    (void)ud;
}

/* The PUSHes only send; the DEALER receives reply batches from other
 * processes, so it gets the size cap (a bigger message disconnects the
 * sender instead of being allocated). ZMQ_IMMEDIATE on all three: nothing
 * is queued for a service that is not connected. */
static void *mksock(struct bus *b, int type, int linger)
{
    struct zmqx_opts o = {
        .max_msg = type == ZMQ_DEALER ? b->cfg.max_msg : 0,
        .sndhwm = b->cfg.hwm,
        .rcvhwm = b->cfg.hwm,
        .linger_ms = linger,
        .immediate = true,
        .routing_id = type == ZMQ_DEALER ? b->ident : NULL,
        .curve = b->cfg.curve,
    };
    return zmqx_socket(b->cfg.zctx, type, &o);
}

struct bus *bus_new(const struct bus_cfg *cfg)
{
    struct bus *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->cfg = *cfg;
    uint32_t wi = cfg->worker;
    /* "<edge-id>/<worker>/<secret>": 96 random bits, never logged, keep
     * another edge from taking this worker's identity on a service's ROUTER
     * (ZMQ_ROUTER_HANDOVER gives it to whoever connects with it last;
     * docs/security.md "Identities"). */
    uint8_t rnd[12];
    char secret[2 * sizeof rnd + 1];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        free(b);
        return NULL;
    }
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(secret + 2 * i, 3, "%02x", rnd[i]);
    snprintf(b->ident, sizeof b->ident, "%s/%u/%s", cfg->edge_id, wi, secret);
    b->hdr.v = SL_ENVELOPE_VERSION;
    b->hdr.edge.p = (const uint8_t *)cfg->edge_id;
    b->hdr.edge.n = (uint32_t)strlen(cfg->edge_id);
    b->hdr.incarnation = cfg->incarnation;
    b->hdr.reply.p = (const uint8_t *)b->ident;
    b->hdr.reply.n = (uint32_t)strlen(b->ident);
    /* Linger: data already handed to ZeroMQ may still reach the persister
     * on exit; the devices resend what was not acked anyway. */
    b->pp = mksock(b, ZMQ_PUSH, 2000);
    b->pn = mksock(b, ZMQ_PUSH, 500);
    b->dl = mksock(b, ZMQ_DEALER, 0);
    b->pbuf = malloc(BATCH_HARD);
    b->ndata = malloc(NDATA_CAP);
    b->nctl = malloc(CTL_CAP);
    b->c_pp = zmqx_conns_new();
    b->c_pn = zmqx_conns_new();
    b->c_pr = zmqx_conns_new();
    b->c_nr = zmqx_conns_new();
    if (cfg->curve && b->c_pp && b->c_pn && b->c_pr && b->c_nr) {
        zmqx_conns_set_server_key(b->c_pp, cfg->persister_key); /* checked by main */
        zmqx_conns_set_server_key(b->c_pr, cfg->persister_key);
        zmqx_conns_set_server_key(b->c_pn, cfg->notifier_key);
        zmqx_conns_set_server_key(b->c_nr, cfg->notifier_key);
    }
    /* Monitors first: the first bus_tick below connects. */
    char name[64];
    snprintf(name, sizeof name, "%u/pp", wi);
    b->m_pp = b->pp ? peermon_new(cfg->zctx, b->pp, name) : NULL;
    snprintf(name, sizeof name, "%u/pn", wi);
    b->m_pn = b->pn ? peermon_new(cfg->zctx, b->pn, name) : NULL;
    snprintf(name, sizeof name, "%u/dl", wi);
    b->m_dl = b->dl ? peermon_new(cfg->zctx, b->dl, name) : NULL;
    if (!b->pp || !b->pn || !b->dl || !b->pbuf || !b->ndata || !b->nctl || !b->c_pp || !b->c_pn || !b->c_pr ||
        !b->c_nr || !b->m_pp || !b->m_pn || !b->m_dl) {
        log_error("event=bus_init_failed worker=%u err=\"%s\"", wi, zmq_strerror(zmq_errno()));
        bus_destroy(&b);
        return NULL;
    }
    envelope_writer_begin(&b->pw, b->pbuf, BATCH_HARD, &b->hdr);
    envelope_writer_begin(&b->nwd, b->ndata, NDATA_CAP, &b->hdr);
    envelope_writer_begin(&b->nwc, b->nctl, CTL_CAP, &b->hdr);
    void *socks[3] = {b->pp, b->pn, b->dl};
    for (int i = 0; i < 3; i++) {
        int fd = zmqx_fd(socks[i]);
        if (fd < 0 || loop_add(cfg->loop, fd, EPOLLIN | EPOLLET, on_zmq_fd, b) != 0) {
            log_error("event=bus_init_failed worker=%u err=zmq_fd", wi);
            bus_destroy(&b);
            return NULL;
        }
    }
    bus_tick(b);
    return b;
}

void bus_destroy(struct bus **pb)
{
    struct bus *b = *pb;
    if (!b)
        return;
    if (b->in_open)
        zmq_msg_close(&b->in);
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
    return envelope_writer_count(&b->pw) == 0;
}

/* ---- persister -------------------------------------------------------- */

static void pflush(struct bus *b)
{
    if (envelope_writer_count(&b->pw) == 0)
        return;
    int rc = -1;
    if (zmqx_writable(b->pp))
        rc = zmq_send(b->pp, b->pbuf, envelope_writer_len(&b->pw), ZMQ_DONTWAIT);
    if (rc >= 0) {
        stat_inc(&b->cnt.batches_persister);
        envelope_writer_begin(&b->pw, b->pbuf, BATCH_HARD, &b->hdr);
        if (b->paused) {
            b->paused = false;
            stat_add(&b->cnt.bp_paused_us, mono_us() - b->pause_start_us);
            log_info("event=backpressure_end worker=%u", b->cfg.worker);
        }
        return;
    }
    if (!b->paused) {
        /* Keep the batch, stop reading: never drop, never ack locally. */
        b->paused = true;
        b->pause_start_us = mono_us();
        stat_inc(&b->cnt.bp_pauses);
        log_info("event=backpressure_begin worker=%u batch_bytes=%zu", b->cfg.worker,
                 envelope_writer_len(&b->pw));
    }
}

/* Append e to the persister batch. true: its encoded bytes are
 * envelope_writer_last(&b->pw) until the next pflush (bus_emit copies them
 * to the notifier batch instead of encoding e twice); false: dropped. */
static bool padd(struct bus *b, const struct envelope *e)
{
    if (envelope_writer_add(&b->pw, e) == SL_OK)
        return true;
    pflush(b);
    if (envelope_writer_add(&b->pw, e) == SL_OK)
        return true;
    /* Full while paused: only possible for session/heartbeat entries (reads
     * stop first); the persister uses those for its session log only. */
    stat_inc(&b->cnt.persister_ctl_dropped);
    if (e->kind == ENV_DATA)
        log_error("event=persister_batch_overflow worker=%u", b->cfg.worker);
    return false;
}

static void psoft(struct bus *b)
{
    if (!b->paused && envelope_writer_len(&b->pw) >= BATCH_SOFT)
        pflush(b);
}

/* ---- notifier --------------------------------------------------------- */

static void nflush(struct bus *b)
{
    if (envelope_writer_count(&b->nwc) == 0 && envelope_writer_count(&b->nwd) == 0)
        return;
    if (zmqx_writable(b->pn)) {
        /* One message: the control entries, then the data entries. */
        size_t size = envelope_writer_len(&b->nwc) + envelope_writer_entries(&b->nwd).n;
        zmq_msg_t m;
        struct envelope_writer out;
        if (zmq_msg_init_size(&m, size) == 0) {
            if (envelope_writer_begin(&out, zmq_msg_data(&m), size, &b->hdr) == SL_OK &&
                envelope_writer_append(&out, &b->nwc) == SL_OK &&
                envelope_writer_append(&out, &b->nwd) == SL_OK &&
                zmq_msg_send(&m, b->pn, ZMQ_DONTWAIT) >= 0) {
                stat_inc(&b->cnt.batches_notifier);
                envelope_writer_begin(&b->nwc, b->nctl, CTL_CAP, &b->hdr);
                envelope_writer_begin(&b->nwd, b->ndata, NDATA_CAP, &b->hdr);
                return;
            }
            zmq_msg_close(&m);
        }
    }
    /* The live view may lose data copies, never ingest speed. Control
     * entries stay queued for the next try. */
    if (envelope_writer_count(&b->nwd)) {
        stat_add(&b->cnt.notifier_shed, envelope_writer_count(&b->nwd));
        envelope_writer_begin(&b->nwd, b->ndata, NDATA_CAP, &b->hdr);
    }
}

/* Append an entry already encoded for the persister batch. Entry bytes do
 * not depend on the batch, so a memcpy of ~60 bytes replaces a second
 * msgpack encoding per data frame. */
static void nadd_copy(struct bus *b, bool data, struct sl_slice ent)
{
    struct envelope_writer *w = data ? &b->nwd : &b->nwc;
    if (envelope_writer_add_encoded(w, ent) == SL_OK) {
        if (data && envelope_writer_len(w) >= BATCH_SOFT)
            nflush(b);
        return;
    }
    nflush(b);
    if (envelope_writer_add_encoded(w, ent) == SL_OK)
        return;
    stat_inc(data ? &b->cnt.notifier_shed : &b->cnt.notifier_ctl_dropped);
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
    stat_inc(data ? &b->cnt.notifier_shed : &b->cnt.notifier_ctl_dropped);
}

void bus_emit(struct bus *b, const struct envelope *e)
{
    switch (e->kind) {
    case ENV_DATA:
    case ENV_CONNECT:
    case ENV_DISCONNECT:
    case ENV_HEARTBEAT:
        if (padd(b, e))
            nadd_copy(b, e->kind == ENV_DATA, envelope_writer_last(&b->pw));
        else
            nadd(b, e);
        psoft(b); /* after the copy: a flush reuses the bytes of the entry */
        break;
    case ENV_RES:
    case ENV_UNDELIVERABLE:
    case ENV_CMD_SENT:
        /* Both: the notifier answers MQTT commands, the persister keeps the
         * command store (a service ignores ids it does not know). */
        padd(b, e);
        nadd(b, e);
        psoft(b);
        break;
    default: break;
    }
}

void bus_flush(struct bus *b)
{
    pflush(b);
    nflush(b);
}

/* ---- replies ---------------------------------------------------------- */

bool bus_recv(struct bus *b, const uint8_t **p, size_t *n)
{
    if (b->in_open) {
        zmq_msg_close(&b->in);
        b->in_open = false;
    }
    /* ZMQ_FD is edge-triggered: the caller drains until ZMQ_EVENTS says empty. */
    while (zmqx_readable(b->dl)) {
        zmq_msg_init(&b->in);
        if (zmq_msg_recv(&b->in, b->dl, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&b->in);
            return false;
        }
        bool more = zmq_msg_more(&b->in);
        if (!more) {
            b->in_open = true;
            *p = zmq_msg_data(&b->in);
            *n = zmq_msg_size(&b->in);
            return true;
        }
        /* A batch is one frame: a multipart message is not ours; skip it whole. */
        while (more) {
            zmq_msg_close(&b->in);
            zmq_msg_init(&b->in);
            if (zmq_msg_recv(&b->in, b->dl, ZMQ_DONTWAIT) < 0)
                break;
            more = zmq_msg_more(&b->in);
        }
        zmq_msg_close(&b->in);
    }
    return false;
}

unsigned bus_tick(struct bus *b)
{
    zmqx_resolver_apply(b->cfg.persister_push, b->pp, b->c_pp);
    zmqx_resolver_apply(b->cfg.notifier_push, b->pn, b->c_pn);
    zmqx_resolver_apply(b->cfg.persister_router, b->dl, b->c_pr);
    zmqx_resolver_apply(b->cfg.notifier_router, b->dl, b->c_nr);
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

const struct bus_counts *bus_counts(const struct bus *b)
{
    return &b->cnt;
}
