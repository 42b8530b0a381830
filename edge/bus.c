/* SPDX-License-Identifier: Apache-2.0 */
/* bus.c - a worker's ZeroMQ side (docs/protocol.md §6).
 *
 * Out: envelopes are appended to per-destination batch buffers as sessions
 * produce them and sent once per loop iteration (bus_flush from the
 * after-hook), early if a batch passes BATCH_SOFT. The persister batch is
 * never dropped: when its PUSH cannot take it (HWM reached or, with
 * ZMQ_IMMEDIATE, no persister connected) the batch stays and bus_paused()
 * stops the worker's reads. Its buffer (BATCH_HARD) has room for the
 * entries one scratch-buffer read can still produce after the pause began.
 * The notifier side is one PUSH per notifier endpoint the resolver gives,
 * and every device's entries go to one notifier: the owner its id hashes to
 * on the worker's ring (ntfring.h, sl/ring.h), which the bus keeps from the
 * notifiers' heartbeat answers. Each flush builds one message per notifier:
 * its control entries, which are retried until sent (bounded by CTL_CAP;
 * routed again if the ring changed meanwhile, so a dead notifier's share
 * goes to its successor), then its data entries, which are shed and counted
 * when its PUSH would block, so MQTT never slows ingest. Each notifier
 * endpoint also gets a heartbeat every second, and at once when the ring
 * changes: `to` names the endpoint (the notifier echoes it, which is how an
 * endpoint gets its id) and `ring` lists the members (so a notifier knows
 * which devices are its own). The answer also echoes the heartbeat's at_ns,
 * which confirms the control entries sent before it: until then they are
 * kept (ntfsent.h), and if the notifier's connection drops first they are
 * routed again, so a notifier killed with a device's answer in its socket
 * does not take the answer with it.
 *
 * In: reply batches (acks, cmds, kicks) on the DEALER, handed to the worker
 * one message at a time by bus_recv, which keeps the message only until the
 * next call: the worker reads the batch while the bus is idle, so whatever
 * it emits while applying a reply goes into the out batches, never into a
 * read in progress.
 *
 * It deliberately knows neither the device protocol nor what a reply
 * means, and it calls no other edge module but peermon, ntfring and
 * ntfsent. */
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
#include "ntfring.h"
#include "ntfsent.h"
#include "peermon.h"

#define BATCH_SOFT (1024u * 1024u) /* send once a batch is this big */
#define BATCH_HARD (4096u * 1024u) /* persister buffer: SOFT + one read's worth of entries */
#define NDATA_CAP  (1024u * 1024u + 128u * 1024u)
_Static_assert(NDATA_CAP >= EDGE_MAX_FRAME + 64u * 1024u, "a max_frame data entry fits the notifier batch");
_Static_assert(NTFSENT_SLOTS == NTFRING_PEERS, "ntfsent keeps entries by ntfring slot");
#define CTL_CAP  (1024u * 1024u) /* notifier control queue */
#define NENT_CAP 32768u          /* entries indexed per notifier part; more flushes early */
#define RING_MS  100u            /* look at the notifier connections at most this often */
#define NHB_MS   1000u           /* heartbeat to each notifier endpoint */

/* One entry of a notifier part: where its bytes are and who gets it. */
struct nent {
    uint32_t off, len;
    int32_t slot; /* ntfring slot, -1 = nowhere yet */
    uint32_t ver; /* ring version slot was computed under */
};

/* One notifier endpoint: its own PUSH and monitor, slot-indexed like the ring. */
struct npeer {
    void *sock;
    struct peermon *mon;
    bool up;
    uint64_t drops; /* peermon_drops already acted on */
    uint64_t next_hb_ms;
};

struct bus {
    struct bus_cfg cfg;
    void *pp, *dl; /* persister PUSH, DEALER */
    struct zmqx_conns *c_pp, *c_pr, *c_nr;
    struct peermon *m_pp, *m_dl; /* who each socket is connected to */
    char ident[300];
    struct envelope_hdr hdr;

    uint8_t *pbuf; /* persister batch (BATCH_HARD) */
    struct envelope_writer pw;
    bool paused;
    uint64_t pause_start_us;

    uint8_t *ndata, *nctl, *nctl2; /* notifier data part, control part, and a spare for its rebuild */
    struct envelope_writer nwd, nwc;
    struct nent *ied, *iec; /* where each entry of nwd / nwc goes */
    uint32_t ned, nec;
    uint64_t ned_due;  /* loop_clock_ms by which the data part is sent (set by its first entry) */
    uint8_t nhdr[512]; /* the batch header alone, to start each notifier's message */
    size_t nhdr_len;
    struct ntfring ring;
    struct npeer np[NTFRING_PEERS];
    uint64_t np_version; /* resolver snapshot applied to np */
    uint64_t next_ring_ms;
    uint32_t mon_seq;        /* unique monitor names */
    uint64_t hb_seq;         /* open connections, from the worker's last heartbeat */
    uint64_t hb_ns;          /* at_ns of the last heartbeat to a notifier: each is unique */
    struct ntfsent sent;     /* control entries sent, not yet confirmed */
    uint64_t sent_forgotten; /* sent.forgotten already counted */

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
static void *mksock(struct bus *b, int type, int linger, const char *server_key)
{
    struct zmqx_opts o = {
        .max_msg = type == ZMQ_DEALER ? b->cfg.max_msg : 0,
        .sndhwm = b->cfg.hwm,
        .rcvhwm = b->cfg.hwm,
        .linger_ms = linger,
        .immediate = true,
        .routing_id = type == ZMQ_DEALER ? b->ident : NULL,
        .curve = b->cfg.curve,
        .curve_server_key = b->cfg.curve ? server_key : NULL,
    };
    return zmqx_socket(b->cfg.zctx, type, &o);
}

static void npeer_close(struct bus *b, int s);
static void nreclaim(struct bus *b, int s);

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
    b->pp = mksock(b, ZMQ_PUSH, 2000, NULL); /* connected through c_pp, which holds the key */
    b->dl = mksock(b, ZMQ_DEALER, 0, NULL);
    b->pbuf = malloc(BATCH_HARD);
    b->ndata = malloc(NDATA_CAP);
    b->nctl = malloc(CTL_CAP);
    b->nctl2 = malloc(CTL_CAP);
    b->ied = malloc(NENT_CAP * sizeof *b->ied);
    b->iec = malloc(NENT_CAP * sizeof *b->iec);
    ntfring_init(&b->ring);
    bool sent_ok = ntfsent_init(&b->sent) == 0;
    b->c_pp = zmqx_conns_new();
    b->c_pr = zmqx_conns_new();
    b->c_nr = zmqx_conns_new();
    if (cfg->curve && b->c_pp && b->c_pr && b->c_nr) {
        zmqx_conns_set_server_key(b->c_pp, cfg->persister_key); /* checked by main */
        zmqx_conns_set_server_key(b->c_pr, cfg->persister_key);
        zmqx_conns_set_server_key(b->c_nr, cfg->notifier_key);
    }
    /* Monitors first: the first bus_tick below connects. */
    char name[64];
    snprintf(name, sizeof name, "%u/pp", wi);
    b->m_pp = b->pp ? peermon_new(cfg->zctx, b->pp, name) : NULL;
    snprintf(name, sizeof name, "%u/dl", wi);
    b->m_dl = b->dl ? peermon_new(cfg->zctx, b->dl, name) : NULL;
    if (!sent_ok || !b->pp || !b->dl || !b->pbuf || !b->ndata || !b->nctl || !b->nctl2 || !b->ied ||
        !b->iec || !b->c_pp || !b->c_pr || !b->c_nr || !b->m_pp || !b->m_dl) {
        log_error("event=bus_init_failed worker=%u err=\"%s\"", wi, zmq_strerror(zmq_errno()));
        bus_destroy(&b);
        return NULL;
    }
    envelope_writer_begin(&b->pw, b->pbuf, BATCH_HARD, &b->hdr);
    envelope_writer_begin(&b->nwd, b->ndata, NDATA_CAP, &b->hdr);
    envelope_writer_begin(&b->nwc, b->nctl, CTL_CAP, &b->hdr);
    struct envelope_writer hw;
    envelope_writer_begin(&hw, b->nhdr, sizeof b->nhdr, &b->hdr);
    b->nhdr_len = envelope_writer_len(&hw);
    void *socks[2] = {b->pp, b->dl};
    for (int i = 0; i < 2; i++) {
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
    peermon_destroy(&b->m_dl);
    for (int s = 0; s < (int)NTFRING_PEERS; s++)
        npeer_close(b, s);
    if (b->pp)
        zmq_close(b->pp);
    if (b->dl)
        zmq_close(b->dl);
    zmqx_conns_destroy(&b->c_pp);
    zmqx_conns_destroy(&b->c_pr);
    zmqx_conns_destroy(&b->c_nr);
    free(b->pbuf);
    free(b->ndata);
    free(b->nctl);
    free(b->nctl2);
    free(b->ied);
    free(b->iec);
    ntfsent_free(&b->sent);
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

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void npeer_close(struct bus *b, int s)
{
    struct npeer *p = &b->np[s];
    peermon_destroy(&p->mon);
    if (p->sock)
        zmq_close(p->sock);
    memset(p, 0, sizeof *p);
}

/* A PUSH of its own for a new notifier endpoint. */
static void npeer_open(struct bus *b, const char *ep)
{
    int s = ntfring_add(&b->ring, ep);
    if (s < 0) {
        log_warn("event=notifier_endpoint_ignored worker=%u endpoint=%s max=%u", b->cfg.worker, ep,
                 NTFRING_PEERS);
        return;
    }
    struct npeer *p = &b->np[s];
    char name[64];
    snprintf(name, sizeof name, "%u/pn%u", b->cfg.worker, b->mon_seq++);
    p->sock = mksock(b, ZMQ_PUSH, 500, b->cfg.notifier_key); /* connected here, by zmq_connect */
    p->mon = p->sock ? peermon_new(b->cfg.zctx, p->sock, name) : NULL;
    if (!p->mon || zmq_connect(p->sock, ep) != 0) {
        log_warn("event=notifier_endpoint_failed worker=%u endpoint=%s err=\"%s\"", b->cfg.worker, ep,
                 zmq_strerror(zmq_errno()));
        npeer_close(b, s);
        ntfring_remove(&b->ring, s);
    }
}

/* Bring the peers in line with the resolver's latest list. */
static void npeers_sync(struct bus *b)
{
    char list[NTFRING_PEERS * NTFRING_EP_MAX];
    uint64_t v = zmqx_resolver_snapshot(b->cfg.notifier_push, list, sizeof list);
    if (v == b->np_version)
        return;
    b->np_version = v;
    for (int s = 0; s < (int)NTFRING_PEERS; s++) { /* gone from the list: closed */
        const struct ntfring_peer *rp = &b->ring.p[s];
        if (!rp->used)
            continue;
        size_t n = strlen(rp->ep);
        bool listed = false;
        for (const char *e = list; *e && !listed;) {
            const char *c = strchr(e, ',');
            size_t en = c ? (size_t)(c - e) : strlen(e);
            listed = en == n && memcmp(e, rp->ep, n) == 0;
            e += en + (c ? 1 : 0);
        }
        if (!listed) {
            npeer_close(b, s);
            nreclaim(b, s); /* log names the endpoint: before it is forgotten */
            ntfring_remove(&b->ring, s);
        }
    }
    for (const char *e = list; *e;) { /* new in the list: opened */
        const char *c = strchr(e, ',');
        size_t en = c ? (size_t)(c - e) : strlen(e);
        if (en > 0 && en < NTFRING_EP_MAX && ntfring_find(&b->ring, e, en) < 0) {
            char ep[NTFRING_EP_MAX];
            memcpy(ep, e, en);
            ep[en] = '\0';
            npeer_open(b, ep);
        }
        e += en + (c ? 1 : 0);
    }
}

/* "I am alive, this is the endpoint you are to me, these are my notifiers." */
static void nheartbeat(struct bus *b, int s, uint64_t now)
{
    struct npeer *p = &b->np[s];
    p->next_hb_ms = now + NHB_MS;
    const struct ntfring_peer *rp = &b->ring.p[s];
    uint64_t at = wall_ns();
    b->hb_ns = at > b->hb_ns ? at : b->hb_ns + 1; /* the answer names the heartbeat by it */
    struct envelope e = {.kind = ENV_HEARTBEAT, .seq = b->hb_seq, .at_ns = b->hb_ns};
    e.to = (struct sl_slice){(const uint8_t *)rp->ep, (uint32_t)strlen(rp->ep)};
    e.ring = (struct sl_slice){(const uint8_t *)b->ring.list, (uint32_t)strlen(b->ring.list)};
    uint8_t buf[NTFRING_EP_MAX + sizeof b->ring.list + 600];
    struct envelope_writer w;
    if (envelope_writer_begin(&w, buf, sizeof buf, &b->hdr) != SL_OK || envelope_writer_add(&w, &e) != SL_OK)
        return;
    if (zmq_send(p->sock, buf, envelope_writer_len(&w), ZMQ_DONTWAIT) >= 0) {
        stat_inc(&b->cnt.batches_notifier);
        ntfsent_mark(&b->sent, s, b->hb_ns);
    }
}

/* What ntfsent forgot since we last looked, into the counters. */
static void sent_count(struct bus *b)
{
    if (b->sent.forgotten != b->sent_forgotten) {
        stat_add(&b->cnt.notifier_ctl_forgotten, b->sent.forgotten - b->sent_forgotten);
        b->sent_forgotten = b->sent.forgotten;
    }
}

/* The control queue anew in nctl2, behind the `kept` entries w holds
 * already: the queued entries (their index from iec[from]), minus those
 * sent to a slot marked in sent (if given), in order; then nctl2 becomes
 * the queue. An entry sent to a ring member leaves the queue for ntfsent,
 * where it stays until the member confirms it. An entry that no longer
 * fits (only behind entries handed on from a dead notifier) is dropped and
 * counted. */
static void nctl_rebuild(struct bus *b, struct envelope_writer *w, uint32_t kept, uint32_t from,
                         const bool *sent)
{
    uint64_t now = loop_now_ms(b->cfg.loop);
    for (uint32_t i = 0; i < b->nec; i++) {
        struct nent x = b->iec[from + i];
        struct sl_slice ent = {b->nctl + x.off, x.len};
        if (sent && x.slot >= 0 && sent[x.slot]) {
            if (b->ring.p[x.slot].member)
                ntfsent_add(&b->sent, x.slot, ent, now);
            continue;
        }
        if (envelope_writer_add_encoded(w, ent) != SL_OK) {
            stat_inc(&b->cnt.notifier_ctl_dropped);
            continue;
        }
        x.off = (uint32_t)(envelope_writer_last(w).p - b->nctl2);
        b->iec[kept++] = x;
    }
    uint8_t *t = b->nctl;
    b->nctl = b->nctl2;
    b->nctl2 = t;
    b->nwc = *w;
    b->nec = kept;
    sent_count(b);
}

struct reclaim {
    struct bus *b;
    struct envelope_writer w; /* into nctl2 */
    uint32_t k, cap;          /* entries written, index room made for them */
};

static void reclaim_one(void *ud, struct sl_slice ent)
{
    struct reclaim *r = ud;
    struct bus *b = r->b;
    if (r->k == r->cap || envelope_writer_add_encoded(&r->w, ent) != SL_OK) {
        stat_inc(&b->cnt.notifier_ctl_dropped);
        return;
    }
    /* ver behind the ring's: nflush routes it afresh, whatever the ring is by then */
    b->iec[r->k++] = (struct nent){.off = (uint32_t)(envelope_writer_last(&r->w).p - b->nctl2),
                                   .len = ent.n,
                                   .slot = -1,
                                   .ver = b->ring.version - 1};
}

/* Slot s's connection is gone: the control entries it had not confirmed
 * go back to the front of the control queue (they are older than anything
 * there), to be routed to whoever owns their devices now. A notifier that
 * had handled them before it died may see its successor handle them again:
 * a status published twice, and a device's answer for a command it had
 * ended already, which the successor counts and drops (the marker is gone:
 * docs/notifier.md). Only a closed connection counts, not silence: a
 * notifier that hangs and then comes back reads its socket itself. */
static void nreclaim(struct bus *b, int s)
{
    uint32_t n = ntfsent_live(&b->sent, s);
    if (n == 0)
        return;
    if (n > NENT_CAP - b->nec) /* no index room for the queue behind them: make some */
        n = NENT_CAP - b->nec;
    memmove(b->iec + n, b->iec, b->nec * sizeof *b->iec);
    struct reclaim r = {.b = b, .cap = n};
    envelope_writer_begin(&r.w, b->nctl2, CTL_CAP, &b->hdr);
    uint32_t handed = ntfsent_take(&b->sent, s, loop_now_ms(b->cfg.loop), reclaim_one, &r);
    stat_add(&b->cnt.notifier_ctl_rerouted, handed);
    nctl_rebuild(b, &r.w, r.k, n, NULL); /* then the queue as it was */
    log_info("event=notifier_entries_rerouted worker=%u endpoint=%s entries=%u", b->cfg.worker,
             b->ring.p[s].ep, handed);
}

static void ring_changed(struct bus *b, uint64_t now)
{
    log_info("event=notifier_ring worker=%u members=%s fallback=%s", b->cfg.worker,
             b->ring.nm ? b->ring.list : "-", b->ring.legacy >= 0 ? b->ring.p[b->ring.legacy].ep : "-");
    for (int s = 0; s < (int)NTFRING_PEERS; s++) /* every notifier learns the new ring before new entries */
        if (b->np[s].sock)
            b->np[s].next_hb_ms = now;
}

/* Look at the notifier connections (at most every RING_MS unless forced),
 * recompute the ring, send the heartbeats that are due. */
static void nring(struct bus *b, bool force)
{
    uint64_t now = loop_now_ms(b->cfg.loop);
    if (!force && now < b->next_ring_ms)
        return;
    b->next_ring_ms = now + RING_MS;
    for (int s = 0; s < (int)NTFRING_PEERS; s++) {
        struct npeer *p = &b->np[s];
        if (!p->sock)
            continue;
        bool up = peermon_poll(p->mon) > 0;
        if (peermon_drops(p->mon) != p->drops) {
            /* A connection closed, even if another is up again since the last
             * look: what it had not confirmed may have gone with it. Before
             * any heartbeat on a new connection could confirm it. */
            p->drops = peermon_drops(p->mon);
            nreclaim(b, s);
        }
        if (up != p->up) {
            p->up = up;
            ntfring_conn(&b->ring, s, up, now);
            if (up)
                p->next_hb_ms = now; /* ask for its id at once */
        }
    }
    if (ntfring_update(&b->ring, now))
        ring_changed(b, now);
    for (int s = 0; s < (int)NTFRING_PEERS; s++)
        if (b->np[s].sock && b->np[s].up && now >= b->np[s].next_hb_ms)
            nheartbeat(b, s, now);
}

void bus_notifier_hb(struct bus *b, struct sl_slice notifier, const struct envelope *e)
{
    uint64_t now = loop_now_ms(b->cfg.loop);
    int s = ntfring_heard(&b->ring, e->to, notifier, now);
    if (s < 0)
        return;
    ntfsent_confirm(&b->sent, s, e->seq);
    if (ntfring_update(&b->ring, now)) {
        ring_changed(b, now);
        nring(b, true);
    }
}

/* The device of an encoded entry (position 3), for routing it again. */
static struct sl_slice entry_dev(const uint8_t *p, size_t n)
{
    struct mp_cur c;
    struct mp_item it;
    struct sl_slice none = {NULL, 0};
    mp_cur_init(&c, p, n);
    if (mp_next(&c, &it) != 0 || it.type != MP_ARRAY || it.n < 4)
        return none;
    for (int i = 0; i < 3; i++)
        if (mp_next(&c, &it) != 0)
            return none;
    if (mp_next(&c, &it) != 0 || it.type != MP_STR)
        return none;
    return it.data;
}

/* Bring an entry's destination up to the current ring. */
static void nroute(struct bus *b, const uint8_t *base, struct nent *x)
{
    if (x->ver == b->ring.version)
        return;
    struct sl_slice dev = entry_dev(base + x->off, x->len);
    x->slot = ntfring_owner(&b->ring, ring_key(dev.p, dev.n));
    x->ver = b->ring.version;
}

/* No notifier can take anything now: shed the data, keep the control
 * entries as they are (no copy, no routing: a notifier away for long must
 * not cost a pass over the queue per iteration). */
static bool nblocked(struct bus *b)
{
    for (int s = 0; s < (int)NTFRING_PEERS; s++)
        if (b->np[s].sock && b->np[s].up && zmqx_writable(b->np[s].sock))
            return false;
    if (b->ned) {
        stat_add(&b->cnt.notifier_shed, b->ned);
        envelope_writer_begin(&b->nwd, b->ndata, NDATA_CAP, &b->hdr);
        b->ned = 0;
    }
    return true;
}

static void nflush(struct bus *b)
{
    nring(b, false);
    if ((b->nec == 0 && b->ned == 0) || nblocked(b))
        return;
    size_t need[NTFRING_PEERS] = {0};
    for (uint32_t i = 0; i < b->nec; i++) {
        nroute(b, b->nctl, &b->iec[i]);
        if (b->iec[i].slot >= 0)
            need[b->iec[i].slot] += b->iec[i].len;
    }
    uint64_t shed = 0;
    for (uint32_t i = 0; i < b->ned; i++) {
        nroute(b, b->ndata, &b->ied[i]);
        if (b->ied[i].slot >= 0)
            need[b->ied[i].slot] += b->ied[i].len;
        else
            shed++; /* no notifier to take it */
    }
    bool sent[NTFRING_PEERS] = {false};
    for (int s = 0; s < (int)NTFRING_PEERS; s++) {
        if (!need[s] || !b->np[s].sock || !zmqx_writable(b->np[s].sock))
            continue;
        /* One message per notifier: its control entries, then its data. */
        zmq_msg_t m;
        if (zmq_msg_init_size(&m, b->nhdr_len + need[s]) != 0)
            continue;
        uint8_t *o = zmq_msg_data(&m);
        memcpy(o, b->nhdr, b->nhdr_len);
        o += b->nhdr_len;
        for (uint32_t i = 0; i < b->nec; i++)
            if (b->iec[i].slot == s) {
                memcpy(o, b->nctl + b->iec[i].off, b->iec[i].len);
                o += b->iec[i].len;
            }
        for (uint32_t i = 0; i < b->ned; i++)
            if (b->ied[i].slot == s) {
                memcpy(o, b->ndata + b->ied[i].off, b->ied[i].len);
                o += b->ied[i].len;
            }
        if (zmq_msg_send(&m, b->np[s].sock, ZMQ_DONTWAIT) >= 0) {
            sent[s] = true;
            stat_inc(&b->cnt.batches_notifier);
        } else {
            zmq_msg_close(&m);
        }
    }
    /* The live view may lose data copies, never ingest speed. */
    for (uint32_t i = 0; i < b->ned; i++)
        if (b->ied[i].slot >= 0 && !sent[b->ied[i].slot])
            shed++;
    if (shed)
        stat_add(&b->cnt.notifier_shed, shed);
    envelope_writer_begin(&b->nwd, b->ndata, NDATA_CAP, &b->hdr);
    b->ned = 0;
    /* Control entries not sent stay, in order, for the next try (copied
     * only when some left: otherwise the queue is already what stays). */
    bool moved = false;
    for (uint32_t i = 0; i < b->nec && !moved; i++)
        moved = b->iec[i].slot >= 0 && sent[b->iec[i].slot];
    if (!moved)
        return;
    struct envelope_writer w;
    envelope_writer_begin(&w, b->nctl2, CTL_CAP, &b->hdr);
    nctl_rebuild(b, &w, 0, 0, sent);
}

/* Record where the entry just appended to part w (base buf) goes. */
static void nindex(struct bus *b, bool data, const struct envelope_writer *w, const uint8_t *base,
                   struct sl_slice dev)
{
    struct nent *x = data ? &b->ied[b->ned++] : &b->iec[b->nec++];
    if (data && b->ned == 1)
        b->ned_due = loop_clock_ms() + b->cfg.ntf_window_ms;
    struct sl_slice e = envelope_writer_last(w);
    x->off = (uint32_t)(e.p - base);
    x->len = e.n;
    /* One notifier or none known: no hash to compute. */
    x->slot = b->ring.nm <= 1 ? ntfring_owner(&b->ring, 0) : ntfring_owner(&b->ring, ring_key(dev.p, dev.n));
    x->ver = b->ring.version;
}

static bool nroom(struct bus *b, bool data)
{
    return (data ? b->ned : b->nec) < NENT_CAP;
}

/* Append an entry already encoded for the persister batch. Entry bytes do
 * not depend on the batch, so a memcpy of ~60 bytes replaces a second
 * msgpack encoding per data frame. */
static void nadd_copy(struct bus *b, bool data, struct sl_slice ent, struct sl_slice dev)
{
    if (!data && b->ned)
        nflush(b); /* data waiting in its window goes before a later control entry */
    struct envelope_writer *w = data ? &b->nwd : &b->nwc;
    if (nroom(b, data) && envelope_writer_add_encoded(w, ent) == SL_OK) {
        nindex(b, data, w, data ? b->ndata : b->nctl, dev);
        if (data && envelope_writer_len(w) >= BATCH_SOFT)
            nflush(b);
        return;
    }
    nflush(b);
    if (nroom(b, data) && envelope_writer_add_encoded(w, ent) == SL_OK) {
        nindex(b, data, w, data ? b->ndata : b->nctl, dev);
        return;
    }
    stat_inc(data ? &b->cnt.notifier_shed : &b->cnt.notifier_ctl_dropped);
}

static void nadd(struct bus *b, const struct envelope *e)
{
    bool data = e->kind == ENV_DATA;
    if (!data && b->ned)
        nflush(b); /* as in nadd_copy */
    struct envelope_writer *w = data ? &b->nwd : &b->nwc;
    if (nroom(b, data) && envelope_writer_add(w, e) == SL_OK) {
        nindex(b, data, w, data ? b->ndata : b->nctl, e->dev);
        if (data && envelope_writer_len(w) >= BATCH_SOFT)
            nflush(b);
        return;
    }
    nflush(b);
    if (nroom(b, data) && envelope_writer_add(w, e) == SL_OK) {
        nindex(b, data, w, data ? b->ndata : b->nctl, e->dev);
        return;
    }
    stat_inc(data ? &b->cnt.notifier_shed : &b->cnt.notifier_ctl_dropped);
}

void bus_emit(struct bus *b, const struct envelope *e)
{
    switch (e->kind) {
    case ENV_HEARTBEAT:
        /* The persister's; each notifier gets its own (nheartbeat). */
        b->hb_seq = e->seq;
        padd(b, e);
        psoft(b);
        break;
    case ENV_DATA:
    case ENV_CONNECT:
    case ENV_DISCONNECT:
        if (padd(b, e))
            nadd_copy(b, e->kind == ENV_DATA, envelope_writer_last(&b->pw), e->dev);
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
    /* At a few messages per iteration, each message to a notifier wakes its
     * ZeroMQ I/O thread, its loop and its publisher: the window trades a few
     * ms of the live view for fewer, fuller messages (docs/performance.md). */
    if (b->nec || !b->ned || loop_clock_ms() >= b->ned_due)
        nflush(b);
}

void bus_flush_all(struct bus *b)
{
    pflush(b);
    nflush(b);
}

uint64_t bus_ntf_due(const struct bus *b)
{
    return b->ned ? b->ned_due : 0;
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
    npeers_sync(b);
    zmqx_resolver_apply(b->cfg.persister_router, b->dl, b->c_pr);
    zmqx_resolver_apply(b->cfg.notifier_router, b->dl, b->c_nr);
    /* A service is up for this worker when its PUSH has a peer (to send
     * to) and the DEALER is connected to one of its ROUTERs (to hear acks
     * or cmds). Not POLLOUT: a PUSH at its HWM is connected, only slow. */
    peermon_sync(b->m_pp, b->c_pp, NULL);
    peermon_sync(b->m_dl, b->c_pr, b->c_nr);
    nring(b, true);
    unsigned up = 0;
    if (peermon_count(b->m_pp, b->c_pp) && peermon_count(b->m_dl, b->c_pr))
        up |= BUS_UP_PERSISTER;
    bool npush = false;
    for (int s = 0; s < (int)NTFRING_PEERS; s++)
        npush |= b->np[s].up;
    if (npush && peermon_count(b->m_dl, b->c_nr))
        up |= BUS_UP_NOTIFIER;
    return up;
}

const struct bus_counts *bus_counts(const struct bus *b)
{
    return &b->cnt;
}
