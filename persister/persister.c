/* SPDX-License-Identifier: Apache-2.0 */
/* persister.c - the persister's loop: ZeroMQ in, batches to PostgreSQL
 * through the writer lanes (lane.c), acks out after each batch's COMMIT.
 *
 * Group commit (docs/internals.md, "persister: group commit"): the loop
 * fills one batch while the lanes commit others. A batch goes to a lane as
 * soon as one is free (or, with --batch-ms, when it is full or its first row
 * that old): at low load a lane commits a few rows at once, under load the
 * batch grows by itself while every lane is busy. Nothing more is pulled
 * while the filling batch is full and no lane is free, or while one more
 * message could take the bytes held past --max-pending-bytes, so ZeroMQ's
 * high-water marks push back to the edges. When a lane hands a batch back,
 * one ROUTER message per (reply identity, incarnation) carries the acks of
 * its rows (duplicates and dead letters included: both are durable). Batches
 * on different lanes commit in either order; an ack never waits for another
 * batch, and acks of one device may arrive out of order (protocol.md §2).
 *
 * Each pulled message is kept in a holder (never moved: small messages keep
 * their bytes inside the zmq_msg_t, and rows point at them) with a count of
 * the batches whose rows point into it: a message that fills one batch half
 * way is finished in the next, and freed when both are done. The bytes of
 * the messages held are counted (held_bytes): rows bound the batches, but a
 * row may come with a message of up to --zmq-max-msg bytes.
 *
 * Also here: per (edge_id, incarnation) liveness from any entry it sends
 * (heartbeats every 2 s); an incarnation silent for --edge-timeout-ms has
 * its open sessions closed with reason 'edge_lost' (by maint.c).
 *
 * It counts in struct persister_stats (relaxed atomics, one writer: this
 * loop; the maintenance thread has a struct of its own) and never touches a
 * metric; main.c exports the structs (stats.c).
 *
 * Deliberately not here: SQL (db.c), the transaction (writer.c), retries
 * and reconnects (lane.c), partitions and retention (maint.c), mapping
 * (rows.c), flags and metrics (main.c, stats.c). */
#define _GNU_SOURCE
#include "persister.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "lane.h"
#include "devwriter.h"
#include "maint.h"
#include "rows.h"
#include "sl/envelope.h"
#include "sl/limits.h"
#include "sl/log.h"
#include "sl/loop.h"
#include "sl/stat.h"
#include "sl/tojson.h"
#include "sl/zmqx.h"

#define EDGES_MAX 1024u
#define ACK_BUF   (256u * 1024u)
#define TICK_MS   1000u
#define PULL_HWM  1000
/* While a lane is committing, another lane takes the filling batch only
 * once it is this old or this big (docs/internals.md, "persister: group
 * commit"): a second commit of a few rows costs PostgreSQL as much CPU as a
 * commit of a hundred, and on a box where it is short of CPU that costs
 * everyone latency. A row waits at most this long for the overlap. */
#define OVERLAP_US   1000u
#define OVERLAP_ROWS 128u

struct edge_seen {
    uint8_t id[ROWS_EDGE_MAX];
    uint16_t n;
    bool used;
    uint64_t inc;
    uint64_t last_ms;
};

/* One pulled ZeroMQ message and the number of batches pointing into it. */
struct held {
    zmq_msg_t m;
    uint32_t refs;
    struct held *next_free;
};

/* A batch and the messages its rows point into. Free (empty, no lane),
 * filling (p->fill) or committing (lane != NULL). */
struct slot {
    struct batch batch;
    struct held **msgs;
    uint32_t nmsgs, cap_msgs;
    uint64_t first_ms; /* monotonic ms of its first row */
    uint64_t first_us; /* the same in microseconds */
    struct lane *lane;
};

struct persister {
    struct persister_cfg cfg;
    void *ctx, *pull, *router;
    struct zap *zap; /* CURVE on: the context's ZAP handler */
    char self[128];
    int efd; /* eventfd the lanes write when a batch is done */

    struct lane **lanes;
    unsigned nlanes;
    struct maint *maint;
    struct devwriter *devices; /* the devices table, fed by the lanes: made before them, destroyed after */
    struct cmdq *cmdq;
    void *cmdq_pull; /* inproc: cmd batches from cmdq, forwarded on the ROUTER */

    struct slot *slots;
    unsigned nslots;
    struct slot *fill;
    struct held *holders, *free_holders;
    size_t held_bytes; /* sizes of the messages in holders with refs > 0 */

    /* The message being read: the last of fill's messages, perhaps begun in
     * an earlier batch. */
    struct held *cur;
    bool reading;
    struct envelope_reader rd;
    int cur_peer;             /* its peer index in fill's batch, -1 = look up */
    bool cur_peer_new;        /* that peer entry was created for this message */
    bool cur_tracked;         /* its edge incarnation is in edges (liveness, clock) */
    uint32_t cur_rows_before; /* fill's rows when it started (or fill changed) */
    struct envelope held;     /* an entry read but not added: the batch was full */
    bool has_held;

    uint64_t next_tick, last_version_log, stalled_since;
    bool stopping;

    struct edge_seen *edges;
    uint8_t *ackbuf;
    struct persister_stats st;
};

void persister_stats_init(struct persister_stats *s)
{
    static const double rows_b[] = {1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000};
    static const double sec_b[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    memset(s, 0, sizeof *s);
    /* no silence timeout: edges_expire forgets an edge with its sessions */
    edgeclock_init(&s->clocks, 0);
    stat_hist_init(&s->batch_rows, rows_b, (int)(sizeof rows_b / sizeof rows_b[0]));
    stat_hist_init(&s->commit_seconds, sec_b, (int)(sizeof sec_b / sizeof sec_b[0]));
}

const struct persister_stats *persister_stats(const struct persister *p)
{
    return &p->st;
}

const struct zap_counts *persister_zap_counts(const struct persister *p)
{
    return p->zap ? zap_counts(p->zap) : NULL;
}

/* ---- holders and slots ------------------------------------------------ */

static struct held *held_get(struct persister *p)
{
    struct held *h = p->free_holders;
    if (h) {
        p->free_holders = h->next_free;
        h->refs = 0;
    }
    return h;
}

static void held_put(struct persister *p, struct held *h)
{
    h->next_free = p->free_holders;
    p->free_holders = h;
}

static void held_unref(struct persister *p, struct held *h)
{
    assert(h->refs > 0);
    if (--h->refs > 0)
        return;
    assert(p->held_bytes >= zmq_msg_size(&h->m));
    p->held_bytes -= zmq_msg_size(&h->m);
    zmq_msg_close(&h->m);
    held_put(p, h);
}

static void slot_add_msg(struct slot *s, struct held *h)
{
    assert(s->nmsgs < s->cap_msgs);
    h->refs++;
    s->msgs[s->nmsgs++] = h;
}

/* Forget a committed (or never used) slot's rows and messages. */
static void slot_release(struct persister *p, struct slot *s)
{
    for (uint32_t i = 0; i < s->nmsgs; i++)
        held_unref(p, s->msgs[i]);
    s->nmsgs = 0;
    batch_reset(&s->batch);
    s->first_ms = 0;
    s->first_us = 0;
    s->lane = NULL;
}

static bool slot_room(const struct slot *s)
{
    return !batch_full(&s->batch) && s->nmsgs < s->cap_msgs;
}

/* Whether a message as big as --zmq-max-msg still fits under
 * --max-pending-bytes: its size is known only once it is received, and a
 * received message cannot be given back. */
static bool bytes_room(const struct persister *p)
{
    return p->held_bytes + (uint64_t)p->cfg.max_msg <= (uint64_t)p->cfg.max_pending_bytes;
}

static uint32_t rows_held(const struct persister *p)
{
    uint32_t n = 0;
    for (unsigned i = 0; i < p->nslots; i++)
        n += p->slots[i].batch.nrows;
    return n;
}

struct persister *persister_new(const struct persister_cfg *cfg)
{
    struct persister *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->cfg = *cfg;
    p->efd = -1;
    if (cfg->max_pending_bytes < cfg->max_msg) {
        log_error("event=config_invalid what=max_pending_bytes max_pending_bytes=%lld max_msg=%lld "
                  "err=\"smaller than one message\"",
                  (long long)cfg->max_pending_bytes, (long long)cfg->max_msg);
        free(p);
        return NULL;
    }
    p->nlanes = cfg->connections > 0 ? (unsigned)cfg->connections : 1u;
    p->nslots = p->nlanes + 1u; /* one per lane, one filling */
    /* max-pending bounds the rows of every batch together. */
    int64_t per = cfg->max_pending / (int64_t)p->nslots;
    uint32_t cap = (uint32_t)(cfg->batch_max < per ? cfg->batch_max : per);
    if (cap < 1)
        cap = 1;
    /* Room for a typical ~100-200 B JSON body per row, and always for one
     * maximal frame's worth of JSON so any single body fits an empty batch. */
    size_t json = cfg->json_bytes > 0 ? (size_t)cfg->json_bytes : (size_t)cap * 1024u;
    size_t one = tojson_bound(SL_MAX_FRAME_DEFAULT) + 1024u;
    if (json < one)
        json = one;
    char host[64] = "unknown";
    gethostname(host, sizeof host - 1);
    snprintf(p->self, sizeof p->self, "persister@%s:%d", host, (int)getpid());
    persister_stats_init(&p->st);

    uint32_t cap_msgs = cap + 1u; /* a message kept adds a row, but for the one being read */
    p->slots = calloc(p->nslots, sizeof *p->slots);
    p->holders = calloc((size_t)p->nslots * cap_msgs, sizeof *p->holders);
    p->lanes = calloc(p->nlanes, sizeof *p->lanes);
    p->edges = calloc(EDGES_MAX, sizeof *p->edges);
    p->ackbuf = malloc(ACK_BUF);
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    bool ok = p->slots && p->holders && p->lanes && p->edges && p->ackbuf && p->efd >= 0;
    for (unsigned i = 0; ok && i < p->nslots; i++) {
        struct slot *s = &p->slots[i];
        s->cap_msgs = cap_msgs;
        s->msgs = calloc(cap_msgs, sizeof *s->msgs);
        ok = s->msgs && batch_init(&s->batch, cap, json) == 0;
    }
    if (!ok) {
        log_error("event=alloc_failed rows=%u json_bytes=%zu batches=%u", cap, json, p->nslots);
        persister_destroy(&p);
        return NULL;
    }
    for (size_t i = (size_t)p->nslots * cap_msgs; i-- > 0;) {
        p->holders[i].next_free = p->free_holders;
        p->free_holders = &p->holders[i];
    }
    p->fill = &p->slots[0];
    p->cur_peer = -1;
    p->ctx = zmq_ctx_new();
    /* With CURVE, the ZAP handler first: a CURVE socket bound before it
     * would admit any key. */
    if (p->ctx && cfg->curve && !(p->zap = zap_new(p->ctx, cfg->curve_allow))) {
        persister_destroy(&p);
        return NULL;
    }
    /* Both sockets hear from edges (the ROUTER only what a DEALER might
     * send, which is drained and dropped): both carry the size cap. */
    const struct zmqx_opts pull = {
        .bind = cfg->pull, .max_msg = cfg->max_msg, .rcvhwm = PULL_HWM, .curve = cfg->curve, .zap = p->zap};
    /* Acks to a gone edge fail (counted) instead of vanishing, and a
     * restarted edge worker takes its identity back. */
    const struct zmqx_opts router = {.bind = cfg->router,
                                     .max_msg = cfg->max_msg,
                                     .router_mandatory = true,
                                     .router_handover = true,
                                     .curve = cfg->curve,
                                     .zap = p->zap};
    if (!p->ctx || !(p->pull = zmqx_socket(p->ctx, ZMQ_PULL, &pull)) ||
        !(p->router = zmqx_socket(p->ctx, ZMQ_ROUTER, &router))) {
        persister_destroy(&p);
        return NULL;
    }
    const struct devwriter_cfg dc = {.conninfo = cfg->db};
    if (!(p->devices = devwriter_new(&dc, &p->st.devices))) {
        persister_destroy(&p);
        return NULL;
    }
    for (unsigned i = 0; i < p->nlanes; i++) {
        const struct lane_cfg lc = {.conninfo = cfg->db,
                                    .cap_rows = cap,
                                    .part_days = (int)cfg->partition_days,
                                    .conflicts_max = (int)cfg->conflicts_max,
                                    .notify_fd = p->efd,
                                    .devices = p->devices,
                                    .id = i};
        if (!(p->lanes[i] = lane_new(&lc))) {
            persister_destroy(&p);
            return NULL;
        }
    }
    /* The command queue's batches come in on an inproc PULL bound before
     * its thread connects. */
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://sluice-cmdq-%p", (void *)p);
    p->cmdq_pull = zmq_socket(p->ctx, ZMQ_PULL);
    const struct cmdq_cfg qc = {.conninfo = cfg->db,
                                .zctx = p->ctx,
                                .endpoint = ep,
                                .self = p->self,
                                .max_attempts = cfg->max_attempts};
    if (!p->cmdq_pull || zmq_bind(p->cmdq_pull, ep) != 0 || !(p->cmdq = cmdq_new(&qc, &p->st.cmdq))) {
        persister_destroy(&p);
        return NULL;
    }
    const struct maint_cfg mc = {.conninfo = cfg->db,
                                 .part_days = (int)cfg->partition_days,
                                 .ahead_days = (int)cfg->partition_ahead_days,
                                 .retention_days = (int)cfg->retention_days};
    if (!(p->maint = maint_new(&mc, &p->st.maint))) {
        persister_destroy(&p);
        return NULL;
    }
    log_info("event=start pull=%s router=%s connections=%u batch_rows=%u batch_ms=%lld json_bytes=%zu"
             " partition_days=%lld retention_days=%lld self=%s curve=%s",
             cfg->pull, cfg->router, p->nlanes, cap, (long long)cfg->batch_ms, json,
             (long long)cfg->partition_days, (long long)cfg->retention_days, p->self,
             cfg->curve ? "on" : "off");
    return p;
}

void persister_destroy(struct persister **pp)
{
    struct persister *p = *pp;
    if (!p)
        return;
    /* Threads first: a lane may still point into a batch. */
    for (unsigned i = 0; p->lanes && i < p->nlanes; i++)
        lane_destroy(&p->lanes[i]);
    devwriter_destroy(&p->devices);
    maint_destroy(&p->maint);
    cmdq_destroy(&p->cmdq);
    for (unsigned i = 0; p->slots && i < p->nslots; i++) {
        struct slot *s = &p->slots[i];
        if (s->msgs)
            slot_release(p, s);
        free(s->msgs);
        batch_fini(&s->batch);
    }
    if (p->pull)
        zmq_close(p->pull);
    if (p->router)
        zmq_close(p->router);
    if (p->cmdq_pull)
        zmq_close(p->cmdq_pull);
    zap_destroy(&p->zap); /* after the CURVE sockets it guards */
    if (p->ctx)
        zmq_ctx_term(p->ctx);
    if (p->efd >= 0)
        close(p->efd);
    free(p->slots);
    free(p->holders);
    free(p->lanes);
    free(p->edges);
    free(p->ackbuf);
    free(p);
    *pp = NULL;
}

/* ---- edge liveness ---------------------------------------------------- */

/* Returns whether the incarnation is tracked (false: the table is full). */
static bool edge_heard(struct persister *p, const struct envelope_hdr *h, uint64_t now)
{
    if (h->edge.n == 0 || h->edge.n > ROWS_EDGE_MAX)
        return false;
    struct edge_seen *free_slot = NULL;
    for (uint32_t i = 0; i < EDGES_MAX; i++) {
        struct edge_seen *e = &p->edges[i];
        if (!e->used) {
            if (!free_slot)
                free_slot = e;
            continue;
        }
        if (e->inc == h->incarnation && e->n == h->edge.n && memcmp(e->id, h->edge.p, e->n) == 0) {
            e->last_ms = now;
            return true;
        }
    }
    if (!free_slot)
        return false; /* more edge processes than we track: they just never time out here */
    memcpy(free_slot->id, h->edge.p, h->edge.n);
    free_slot->n = (uint16_t)h->edge.n;
    free_slot->inc = h->incarnation;
    free_slot->last_ms = now;
    free_slot->used = true;
    return true;
}

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Time the loop could not pull (every lane stuck on the database) is not
 * silence from the edges: their heartbeats are waiting in ZeroMQ. */
static void edges_forgive(struct persister *p, uint64_t now)
{
    for (uint32_t i = 0; i < EDGES_MAX; i++)
        if (p->edges[i].used && p->edges[i].last_ms < now)
            p->edges[i].last_ms = now;
}

static void edges_expire(struct persister *p, uint64_t now)
{
    for (uint32_t i = 0; i < EDGES_MAX; i++) {
        struct edge_seen *e = &p->edges[i];
        if (!e->used || now - e->last_ms < (uint64_t)p->cfg.edge_timeout_ms)
            continue;
        /* The maintenance thread closes its sessions (and retries until it
         * could); a full queue is asked again next tick. */
        if (!maint_edge_lost(p->maint, e->id, e->n, e->inc))
            return;
        stat_inc(&p->st.edges_lost);
        edgeclock_forget(&p->st.clocks, e->id, e->n, e->inc);
        e->used = false;
    }
}

/* ---- acks --------------------------------------------------------------- */

static void ack_send(struct persister *p, const struct batch_peer *peer, struct envelope_writer *w)
{
    uint32_t n = envelope_writer_count(w);
    if (n == 0)
        return;
    int rc = -1;
    if (peer->reply.n > 0) {
        rc = zmq_send(p->router, peer->reply.p, peer->reply.n, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        if (rc >= 0)
            rc = zmq_send(p->router, p->ackbuf, envelope_writer_len(w), ZMQ_DONTWAIT);
    }
    if (rc < 0)
        stat_add(&p->st.acks_unroutable, n); /* EHOSTUNREACH or full: the device resends */
    else
        stat_add(&p->st.acks_sent, n);
}

static void send_acks(struct persister *p, const struct batch *b)
{
    for (uint32_t pi = 0; pi < b->npeers; pi++) {
        const struct batch_peer *peer = &b->peers[pi];
        if (peer->first == ROWS_NONE)
            continue;
        struct envelope_hdr h = {
            .v = SL_ENVELOPE_VERSION,
            .edge = {(const uint8_t *)p->self, (uint32_t)strlen(p->self)},
            .incarnation = peer->incarnation,
            .reply = {(const uint8_t *)"", 0},
        };
        struct envelope_writer w;
        if (envelope_writer_begin(&w, p->ackbuf, ACK_BUF, &h) != SL_OK)
            continue;
        for (uint32_t i = peer->first; i != ROWS_NONE; i = b->rows[i].next) {
            const struct row *r = &b->rows[i];
            if (r->state != ROW_STORED && r->state != ROW_DEAD)
                continue;
            struct envelope e = {
                .kind = ENV_ACK, .slot = r->slot, .gen = r->gen, .dev = r->dev, .seq = r->seq};
            if (envelope_writer_add(&w, &e) == SL_TOOBIG) {
                ack_send(p, peer, &w);
                envelope_writer_begin(&w, p->ackbuf, ACK_BUF, &h);
                envelope_writer_add(&w, &e);
            }
        }
        ack_send(p, peer, &w);
    }
}

/* ---- lanes ------------------------------------------------------------ */

static void update_up(struct persister *p)
{
    /* Ready only with every connection up: a lane that cannot connect holds
     * its batch (and the rows' acks) until it can. */
    bool up = true;
    for (unsigned i = 0; i < p->nlanes; i++)
        up = up && lane_up(p->lanes[i]);
    stat_set(&p->st.pg_up, up ? 1 : 0); /* stats.c makes /readyz follow it */
}

/* Ack and release every batch a lane has finished. Returns -1 if a lane
 * abandoned its batch (shutdown deadline), else 0. */
static int collect_done(struct persister *p)
{
    int result = 0;
    for (unsigned i = 0; i < p->nslots; i++) {
        struct slot *s = &p->slots[i];
        struct lane_result r;
        if (!s->lane || !lane_take(s->lane, &r))
            continue;
        const struct writer_stats *st = &r.st;
        if (r.rc != 0) {
            result = -1; /* not acked: the devices resend */
        } else {
            if (st->dead || st->dropped)
                log_warn("event=poison_rows rejected=%llu dropped=%llu attempts=%llu",
                         (unsigned long long)st->dead, (unsigned long long)st->dropped,
                         (unsigned long long)st->attempts);
            if (st->conflicts)
                log_warn("event=conflicts found=%llu kept=%llu", (unsigned long long)st->conflicts,
                         (unsigned long long)st->conflicts_kept);
            send_acks(p, &s->batch);
            if (st->sessions)
                cmdq_kick(p->cmdq); /* a device may have connected: its queued commands */
            stat_add(&p->st.rows_committed, st->stored);
            stat_add(&p->st.rows_inserted, st->inserted);
            stat_add(&p->st.rows_duplicate, st->stored - st->inserted);
            stat_add(&p->st.rows_rejected, st->dead);
            stat_add(&p->st.rows_dropped, st->dropped);
            stat_add(&p->st.sessions, st->sessions);
            stat_add(&p->st.partitions_created, st->partitions);
            stat_add(&p->st.conflicts, st->conflicts);
            stat_hist_observe(&p->st.batch_rows, (double)s->batch.nrows);
            stat_hist_observe(&p->st.commit_seconds, (double)r.busy_us / 1e6);
        }
        stat_add(&p->st.retries, r.retries);
        slot_release(p, s);
    }
    update_up(p);
    return result;
}

static struct lane *free_lane(struct persister *p)
{
    for (unsigned i = 0; i < p->nlanes; i++)
        if (!lane_busy(p->lanes[i]))
            return p->lanes[i];
    return NULL;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static bool lanes_busy(struct persister *p)
{
    for (unsigned i = 0; i < p->nslots; i++)
        if (p->slots[i].lane)
            return true;
    return false;
}

/* When the filling batch may go to a free lane: microseconds from now, 0 =
 * at once, UINT64_MAX = not before something changes (rows, a lane done). */
static uint64_t due_in_us(struct persister *p, uint64_t now)
{
    const struct slot *f = p->fill;
    if (f->batch.nrows == 0)
        return UINT64_MAX;
    if (!slot_room(f) || p->stopping)
        return 0;
    if (p->cfg.batch_ms > 0) {
        uint64_t at = f->first_ms + (uint64_t)p->cfg.batch_ms;
        return at > now ? (at - now) * 1000u : 0;
    }
    if (!lanes_busy(p) || f->batch.nrows >= OVERLAP_ROWS)
        return 0;
    uint64_t at = f->first_us + OVERLAP_US, us = mono_us();
    return at > us ? at - us : 0;
}

/* Hand the filling batch to a free lane when it is due; fill another. */
static bool dispatch(struct persister *p, uint64_t now)
{
    struct slot *f = p->fill;
    if (due_in_us(p, now) != 0)
        return false;
    struct lane *l = free_lane(p);
    if (!l)
        return false;
    struct slot *next = NULL;
    for (unsigned i = 0; i < p->nslots && !next; i++)
        if (&p->slots[i] != f && !p->slots[i].lane && p->slots[i].batch.nrows == 0)
            next = &p->slots[i];
    assert(next); /* nslots = lanes + 1, and a lane was free */
    f->lane = l;
    lane_submit(l, &f->batch);
    p->fill = next;
    if (p->reading) {
        /* The message being read goes on in the new batch. */
        slot_add_msg(next, p->cur);
        p->cur_peer = -1;
        p->cur_rows_before = 0;
    }
    return true;
}

/* ---- reading messages ------------------------------------------------- */

static void version_refused(struct persister *p, const struct envelope_hdr *h, uint64_t now)
{
    stat_inc(&p->st.batches_refused);
    /* One line a minute at most: a fleet of old edges must not flood the log. */
    if (p->last_version_log && now - p->last_version_log < 60000u)
        return;
    p->last_version_log = now;
    char id[ROWS_EDGE_MAX * 4 + 8];
    log_q(id, sizeof id, (const char *)h->edge.p, h->edge.n);
    log_warn("event=batch_refused reason=version v=%u edge=%s", h->v, id);
}

/* Map entries of the current message into the filling batch until it ends
 * (returns true) or the batch is full (returns false: dispatch, then call
 * again). */
static bool read_entries(struct persister *p, uint64_t now)
{
    struct batch *b = &p->fill->batch;
    for (;;) {
        if (p->cur_peer < 0) {
            uint32_t before = b->npeers;
            int pi = batch_peer(b, &p->rd.hdr);
            if (pi < 0)
                return false; /* peer table full (header validity was checked on arrival) */
            p->cur_peer = pi;
            p->cur_peer_new = b->npeers > before;
        }
        struct envelope e;
        if (p->has_held) {
            e = p->held;
        } else {
            enum sl_err rc = envelope_reader_next(&p->rd, &e);
            if (rc == SL_AGAIN)
                return true;
            if (rc != SL_OK) {
                stat_inc(&p->st.batches_refused); /* rows read so far stay: they were well formed */
                return true;
            }
            const char *why = NULL;
            enum sl_err ok = envelope_check(&e, &why);
            if (ok == SL_AGAIN)
                continue; /* a kind of a later version */
            if (ok != SL_OK) {
                stat_inc(&p->st.entries_skipped); /* outside the contract: never stored, never acked */
                continue;
            }
            if (e.kind == ENV_RES || e.kind == ENV_CMD_SENT || e.kind == ENV_UNDELIVERABLE) {
                if (!cmdq_post(p->cmdq, &e)) /* for the command store, not a row */
                    stat_inc(&p->st.cmd_reports_dropped);
                continue;
            }
        }
        /* only tracked edges: edges_expire forgets their clocks */
        if (e.kind == ENV_HEARTBEAT && !p->has_held && p->cur_tracked)
            edgeclock_sample(&p->st.clocks, p->rd.hdr.edge.p, p->rd.hdr.edge.n, p->rd.hdr.incarnation,
                             e.at_ns, wall_ns(), now);
        enum sl_err rc = batch_add(b, (uint16_t)p->cur_peer, &e);
        if (rc == SL_NOMEM) {
            p->held = e;
            p->has_held = true;
            return false;
        }
        p->has_held = false;
        if (rc == SL_OK && b->nrows == 1) {
            p->fill->first_ms = now;
            p->fill->first_us = mono_us();
        }
        if (rc == SL_AGAIN && e.kind != ENV_HEARTBEAT && e.kind != ENV_RES && e.kind != ENV_UNDELIVERABLE)
            stat_inc(&p->st.entries_skipped);
    }
}

/* Finish with the message being read: keep it if rows point into it. */
static void end_message(struct persister *p)
{
    struct slot *f = p->fill;
    p->reading = false;
    p->has_held = false;
    if (f->batch.nrows == p->cur_rows_before) {
        /* A peer entry made for this message points into it (edge and reply
         * are slices of its header): drop the entry with the message, or a
         * later message of the same worker would match freed bytes and its
         * acks would go to whatever identity those bytes became. */
        if (p->cur_peer >= 0 && p->cur_peer_new) {
            assert((uint32_t)p->cur_peer == f->batch.npeers - 1);
            f->batch.npeers--;
        }
        assert(f->nmsgs > 0 && f->msgs[f->nmsgs - 1] == p->cur);
        f->nmsgs--;
        held_unref(p, p->cur);
    }
    p->cur = NULL;
    p->cur_peer = -1;
}

/* Continue the current message; returns false when the batch must be dispatched first. */
static bool continue_message(struct persister *p, uint64_t now)
{
    if (!p->reading)
        return true;
    if (!read_entries(p, now))
        return false;
    end_message(p);
    return true;
}

/* Take one message from PULL (non-blocking) into the filling batch.
 * Returns false if none. */
static bool pull_one(struct persister *p, uint64_t now)
{
    struct held *h = held_get(p);
    if (!h)
        return false; /* cannot happen while fill has room: each batch holds at most cap_msgs */
    zmq_msg_init(&h->m);
    if (zmq_msg_recv(&h->m, p->pull, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&h->m);
        held_put(p, h);
        return false;
    }
    /* Any further frames of a multipart message are not ours: drop them. */
    while (zmq_msg_more(&h->m)) {
        zmq_msg_t extra;
        zmq_msg_init(&extra);
        zmq_msg_recv(&extra, p->pull, 0);
        zmq_msg_close(&extra);
    }
    enum sl_err rc = envelope_reader_begin(&p->rd, zmq_msg_data(&h->m), zmq_msg_size(&h->m));
    const char *why = NULL;
    if (rc != SL_OK || p->rd.hdr.edge.n == 0 || p->rd.hdr.edge.n > ROWS_EDGE_MAX ||
        p->rd.hdr.reply.n > ROWS_EDGE_MAX || envelope_hdr_check(&p->rd.hdr, &why) != SL_OK) {
        if (rc == SL_VERSION)
            version_refused(p, &p->rd.hdr, now);
        else
            stat_inc(&p->st.batches_refused);
        zmq_msg_close(&h->m);
        held_put(p, h);
        return true;
    }
    /* CURVE: the sender's key must be bound to the edge id and reply
     * address the header claims (dropped, counted and logged in zap.c). */
    if (!zap_sender_ok(p->zap, &h->m, p->rd.hdr.edge.p, p->rd.hdr.edge.n, p->rd.hdr.reply.p,
                       p->rd.hdr.reply.n)) {
        zmq_msg_close(&h->m);
        held_put(p, h);
        return true;
    }
    p->cur_tracked = edge_heard(p, &p->rd.hdr, now);
    p->held_bytes += zmq_msg_size(&h->m);
    slot_add_msg(p->fill, h);
    p->cur = h;
    p->reading = true;
    p->cur_peer = -1;
    p->cur_rows_before = p->fill->batch.nrows;
    return true;
}

/* Forward the command queue's batches: [worker identity][batch] each. */
static void forward_cmds(struct persister *p)
{
    zmq_msg_t id, batch;
    for (int k = 0; k < 64; k++) {
        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, p->cmdq_pull, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&id);
            return;
        }
        zmq_msg_init(&batch);
        int rc = zmq_msg_more(&id) ? zmq_msg_recv(&batch, p->cmdq_pull, 0) : -1;
        if (rc >= 0)
            rc = zmq_send(p->router, zmq_msg_data(&id), zmq_msg_size(&id), ZMQ_SNDMORE | ZMQ_DONTWAIT);
        if (rc >= 0)
            rc = zmq_send(p->router, zmq_msg_data(&batch), zmq_msg_size(&batch), ZMQ_DONTWAIT);
        stat_inc(rc >= 0 ? &p->st.cmd_batches_sent : &p->st.cmd_batches_unroutable);
        zmq_msg_close(&batch);
        zmq_msg_close(&id);
    }
}

static void drain_router(struct persister *p)
{
    /* Edges do not talk to us on the ROUTER; anything arriving is discarded
     * so it cannot pile up. */
    zmq_msg_t m;
    zmq_msg_init(&m);
    for (int k = 0; k < 64 && zmq_msg_recv(&m, p->router, ZMQ_DONTWAIT) >= 0; k++)
        ;
    zmq_msg_close(&m);
}

/* A stall (nothing could be pulled: the filling batch full and every lane
 * busy, or the bytes held at --max-pending-bytes) begins or ends; at its
 * end the edges are forgiven the silence. */
static void stall(struct persister *p, bool stalled, uint64_t now)
{
    if (stalled && !p->stalled_since) {
        p->stalled_since = now;
    } else if (!stalled && p->stalled_since) {
        if (now - p->stalled_since >= TICK_MS)
            edges_forgive(p, now);
        p->stalled_since = 0;
    }
}

int persister_run(struct persister *p, volatile sig_atomic_t *stop)
{
    uint64_t now = loop_clock_ms();
    p->next_tick = now + TICK_MS;
    update_up(p);
    int result = 0;
    for (;;) {
        now = loop_clock_ms();
        if (*stop && !p->stopping) {
            p->stopping = true;
            for (unsigned i = 0; i < p->nlanes; i++)
                lane_give_up_at(p->lanes[i], now + (uint64_t)p->cfg.shutdown_ms);
        }
        if (collect_done(p) != 0)
            result = -1;
        /* A message being read goes first: it may fill the batch. */
        if (p->reading && !continue_message(p, now)) {
            if (dispatch(p, now))
                continue; /* read on into the new batch */
        }
        dispatch(p, now);
        stat_set(&p->st.pending, rows_held(p));
        stat_set(&p->st.pending_bytes, (int64_t)p->held_bytes);
        bool room = slot_room(p->fill) && !p->reading && bytes_room(p);
        stall(p, !room, now);
        if (p->stopping && !p->reading && p->fill->batch.nrows == 0 && !lanes_busy(p))
            break; /* nothing held: queued messages were never acked, devices resend them */
        if (now >= p->next_tick) {
            p->next_tick = now + TICK_MS;
            update_up(p);
            if (!p->stalled_since)
                edges_expire(p, now);
            edgeclock_publish(&p->st.clocks, now);
        }

        int timeout = (int)(p->next_tick > now ? p->next_tick - now : 0);
        uint64_t due = due_in_us(p, now);
        if (due != UINT64_MAX && free_lane(p)) {
            int left = (int)((due + 999u) / 1000u); /* zmq_poll counts ms: never wake early */
            if (left < timeout)
                timeout = left;
        }
        zmq_pollitem_t items[4] = {
            {p->pull, 0, (short)(room && !p->stopping ? ZMQ_POLLIN : 0), 0},
            {p->router, 0, ZMQ_POLLIN, 0},
            {NULL, p->efd, ZMQ_POLLIN, 0},
            {p->cmdq_pull, 0, ZMQ_POLLIN, 0},
        };
        if (zmq_poll(items, 4, timeout) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            log_error("event=poll_failed err=\"%s\"", zmq_strerror(zmq_errno()));
            result = -1;
            break;
        }
        if (items[1].revents & ZMQ_POLLIN)
            drain_router(p);
        if (items[3].revents & ZMQ_POLLIN)
            forward_cmds(p);
        if (items[2].revents & ZMQ_POLLIN) {
            uint64_t ev; /* reset the eventfd: lane_take tells which batches are done */
            ssize_t n = read(p->efd, &ev, sizeof ev);
            (void)n;
        }
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        now = loop_clock_ms();
        /* Take messages until the batch is full, the bytes held reach the
         * cap or PULL is empty. */
        while (!*stop && slot_room(p->fill) && bytes_room(p) && pull_one(p, now)) {
            if (!continue_message(p, now))
                break;
        }
    }
    /* Every lane is idle here (or the poll failed: lane_destroy waits). */
    if (result == 0)
        log_info("event=stopped");
    return result;
}
