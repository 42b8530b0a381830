/* persister.c - the persister's I/O loop: ZeroMQ in, batches to PostgreSQL
 * through writer.c, acks out after COMMIT.
 *
 * Flow: zmq_poll on the PULL socket; each message is kept (zmq_msg_t) while
 * its entries are mapped into the batch (rows.c), so row slices point into
 * it and no per-message copy or allocation happens. The batch commits when
 * it holds batch-max rows or its oldest row is batch-ms old. A commit that
 * fails transiently is retried with exponential backoff and jitter,
 * reconnecting as needed; no new message is pulled meanwhile, so ZeroMQ's
 * HWM pushes back. After COMMIT, one ROUTER message per (reply identity,
 * incarnation) carries the acks of its rows (duplicates and dead letters
 * included: both are durable).
 *
 * Also here: per (edge_id, incarnation) liveness from any entry it sends
 * (heartbeats every 2 s); an incarnation silent for --edge-timeout-ms has
 * its open sessions closed with reason 'edge_lost'.
 *
 * It counts in struct persister_stats (relaxed atomics, one writer: this
 * loop) and never touches a metric; main.c exports the struct (stats.c).
 *
 * Deliberately not here: SQL (db.c), bisecting poison rows (writer.c),
 * mapping (rows.c), flags and metrics (main.c, stats.c). */
#define _GNU_SOURCE
#include "persister.h"
#include "sl/loop.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "db.h"
#include "rows.h"
#include "sl/envelope.h"
#include "sl/limits.h"
#include "sl/log.h"
#include "sl/stat.h"
#include "sl/tojson.h"
#include "sl/zmqx.h"
#include "writer.h"

#define EDGES_MAX      1024u
#define ACK_BUF        (256u * 1024u)
#define TICK_MS        1000u
#define PING_IDLE_MS   2000u
#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u
#define PULL_HWM       1000

struct edge_seen {
    uint8_t id[ROWS_EDGE_MAX];
    uint16_t n;
    bool used;
    uint64_t inc;
    uint64_t last_ms;
};

struct persister {
    struct persister_cfg cfg;
    void *ctx, *pull, *router;
    struct zap *zap; /* CURVE on: the context's ZAP handler */
    struct db *db;
    struct writer writer;
    struct batch batch;
    char self[128];

    /* Messages the batch's rows point into, a ring in arrival order; the
     * newest may be half read. A zmq_msg_t is never moved: small messages
     * keep their bytes inside it, and rows point at them. */
    zmq_msg_t *msgs;
    uint32_t first, nmsgs, cap_msgs;
    bool reading;              /* msgs[nmsgs-1] still has entries to read */
    struct envelope_reader rd; /* its reader */
    int cur_peer;              /* its peer index in the batch, -1 = look up */
    bool cur_peer_new;         /* that peer entry was created for this message */
    uint32_t cur_rows_before;  /* batch rows when it started (or the batch restarted) */
    struct envelope held;      /* an entry read but not added: the batch was full */
    bool has_held;

    uint64_t batch_deadline; /* monotonic ms the batch must commit by; 0 = empty batch */
    uint64_t next_tick, last_db_ms, next_connect;
    unsigned connect_fails;
    uint64_t last_version_log;

    struct edge_seen *edges;
    uint8_t *ackbuf;
    struct persister_stats st;
};

void persister_stats_init(struct persister_stats *s)
{
    static const double rows_b[] = {1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000};
    static const double sec_b[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    memset(s, 0, sizeof *s);
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

static zmq_msg_t *msg_at(struct persister *p, uint32_t k)
{
    return &p->msgs[(p->first + k) % p->cap_msgs];
}

struct persister *persister_new(const struct persister_cfg *cfg)
{
    struct persister *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->cfg = *cfg;
    uint32_t cap = (uint32_t)(cfg->batch_max < cfg->max_pending ? cfg->batch_max : cfg->max_pending);
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

    p->cap_msgs = cap + 1u;
    p->msgs = calloc(p->cap_msgs, sizeof *p->msgs);
    p->edges = calloc(EDGES_MAX, sizeof *p->edges);
    p->ackbuf = malloc(ACK_BUF);
    p->db = db_new(cfg->db);
    if (!p->msgs || !p->edges || !p->ackbuf || !p->db || batch_init(&p->batch, cap, json) != 0 ||
        writer_init(&p->writer, p->db, cap) != 0) {
        log_error("event=alloc_failed rows=%u json_bytes=%zu", cap, json);
        persister_destroy(&p);
        return NULL;
    }
    p->cur_peer = -1;
    persister_stats_init(&p->st);
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
    log_info("event=start pull=%s router=%s batch_rows=%u batch_ms=%lld json_bytes=%zu self=%s curve=%s",
             cfg->pull, cfg->router, cap, (long long)cfg->batch_ms, json, p->self, cfg->curve ? "on" : "off");
    return p;
}

void persister_destroy(struct persister **pp)
{
    struct persister *p = *pp;
    if (!p)
        return;
    for (uint32_t i = 0; i < p->nmsgs; i++)
        zmq_msg_close(msg_at(p, i));
    if (p->pull)
        zmq_close(p->pull);
    if (p->router)
        zmq_close(p->router);
    zap_destroy(&p->zap); /* after the CURVE sockets it guards */
    if (p->ctx)
        zmq_ctx_term(p->ctx);
    writer_fini(&p->writer);
    batch_fini(&p->batch);
    db_destroy(&p->db);
    free(p->msgs);
    free(p->edges);
    free(p->ackbuf);
    free(p);
    *pp = NULL;
}

/* ---- edge liveness ---------------------------------------------------- */

static void edge_heard(struct persister *p, const struct envelope_hdr *h, uint64_t now)
{
    if (h->edge.n == 0 || h->edge.n > ROWS_EDGE_MAX)
        return;
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
            return;
        }
    }
    if (!free_slot)
        return; /* more edge processes than we track: they just never time out here */
    memcpy(free_slot->id, h->edge.p, h->edge.n);
    free_slot->n = (uint16_t)h->edge.n;
    free_slot->inc = h->incarnation;
    free_slot->last_ms = now;
    free_slot->used = true;
}

/* Time spent blocked on the database is not silence from the edges: their
 * heartbeats are waiting in ZeroMQ. */
static void edges_forgive(struct persister *p, uint64_t now)
{
    for (uint32_t i = 0; i < EDGES_MAX; i++)
        if (p->edges[i].used && p->edges[i].last_ms < now)
            p->edges[i].last_ms = now;
}

static void edges_expire(struct persister *p, uint64_t now)
{
    if (!db_connected(p->db))
        return;
    for (uint32_t i = 0; i < EDGES_MAX; i++) {
        struct edge_seen *e = &p->edges[i];
        if (!e->used || now - e->last_ms < (uint64_t)p->cfg.edge_timeout_ms)
            continue;
        uint64_t closed = 0;
        char id[ROWS_EDGE_MAX * 4 + 8];
        log_q(id, sizeof id, (const char *)e->id, e->n);
        if (db_edge_lost(p->db, e->id, e->n, e->inc, &closed) != DB_OK) {
            char q[600];
            const char *msg = db_last_error(p->db);
            log_warn("event=edge_lost_failed edge=%s err=%s", id, log_q(q, sizeof q, msg, strlen(msg)));
            return; /* retried next tick */
        }
        p->last_db_ms = now;
        log_info("event=edge_lost edge=%s incarnation=%llu sessions_closed=%llu", id,
                 (unsigned long long)e->inc, (unsigned long long)closed);
        stat_inc(&p->st.edges_lost);
        e->used = false;
    }
}

/* ---- database connection --------------------------------------------- */

static uint64_t backoff_ms(unsigned attempt)
{
    uint64_t d = BACKOFF_MIN_MS;
    for (unsigned k = 0; k < attempt && d < BACKOFF_MAX_MS; k++)
        d *= 2u;
    if (d > BACKOFF_MAX_MS)
        d = BACKOFF_MAX_MS;
    /* Jitter in [d/2, d): persisters restarted together do not reconnect in step. */
    return d / 2u + (uint64_t)rand() % (d / 2u + 1u);
}

static void set_up(struct persister *p, bool up)
{
    stat_set(&p->st.pg_up, up ? 1 : 0); /* stats.c makes /readyz follow it */
}

static bool try_connect(struct persister *p)
{
    if (db_connect(p->db) == DB_OK) {
        if (p->connect_fails)
            log_info("event=db_connected after_failures=%u", p->connect_fails);
        else
            log_info("event=db_connected");
        p->connect_fails = 0;
        p->last_db_ms = loop_clock_ms();
        set_up(p, true);
        return true;
    }
    /* First failure, then one line per 10, so an outage does not flood the log. */
    if (p->connect_fails % 10u == 0) {
        char q[600];
        const char *e = db_last_error(p->db);
        log_warn("event=db_connect_failed failures=%u err=%s", p->connect_fails + 1u,
                 log_q(q, sizeof q, e, strlen(e)));
    }
    p->connect_fails++;
    set_up(p, false);
    return false;
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

static void send_acks(struct persister *p)
{
    struct batch *b = &p->batch;
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

/* ---- batch commit ----------------------------------------------------- */

/* Release the messages of a committed batch, keeping the one still being read. */
static void release_msgs(struct persister *p)
{
    uint32_t keep = p->reading ? 1u : 0u;
    uint32_t n = p->nmsgs - keep;
    for (uint32_t i = 0; i < n; i++)
        zmq_msg_close(msg_at(p, i));
    p->first = (p->first + n) % p->cap_msgs;
    p->nmsgs = keep;
    batch_reset(&p->batch);
    p->batch_deadline = 0;
    p->cur_peer = -1;
    p->cur_rows_before = 0;
}

/* Commit the batch, retrying until it commits, or until shutdown_ms after a
 * stop. Returns 0 (committed and acked) or -1 (abandoned at shutdown). */
static int flush(struct persister *p, volatile sig_atomic_t *stop)
{
    struct batch *b = &p->batch;
    if (b->nrows == 0)
        return 0;
    uint64_t t0 = loop_clock_ms(), stop_at = 0;
    unsigned attempt = 0;
    struct writer_stats st;
    for (;;) {
        if (*stop && !stop_at)
            stop_at = loop_clock_ms() + (uint64_t)p->cfg.shutdown_ms;
        if (db_connected(p->db) || try_connect(p)) {
            if (writer_commit(&p->writer, b, &st) == DB_OK)
                break;
            char q[600];
            const char *e = db_last_error(p->db);
            log_warn("event=batch_retry rows=%u attempt=%u sqlstate=%s err=%s", b->nrows, attempt + 1u,
                     db_last_sqlstate(p->db)[0] ? db_last_sqlstate(p->db) : "none",
                     log_q(q, sizeof q, e, strlen(e)));
            if (!db_connected(p->db)) {
                db_disconnect(p->db);
                set_up(p, false);
            }
        }
        stat_inc(&p->st.retries); /* failed connect or commit: this batch waits */
        if (stop_at && loop_clock_ms() >= stop_at) {
            log_warn("event=shutdown_abandon rows=%u", b->nrows);
            return -1;
        }
        /* poll() with no fds: an interruptible sleep (a signal ends it early). */
        poll(NULL, 0, (int)backoff_ms(attempt++));
    }
    uint64_t t1 = loop_clock_ms();
    p->last_db_ms = t1;
    if (attempt > 0)
        log_info("event=batch_committed_after_retry rows=%u attempts=%u ms=%llu", b->nrows, attempt + 1u,
                 (unsigned long long)(t1 - t0));
    if (st.dead || st.dropped)
        log_warn("event=poison_rows rejected=%llu dropped=%llu attempts=%llu", (unsigned long long)st.dead,
                 (unsigned long long)st.dropped, (unsigned long long)st.attempts);
    send_acks(p);
    stat_add(&p->st.rows_committed, st.stored);
    stat_add(&p->st.rows_inserted, st.inserted);
    stat_add(&p->st.rows_duplicate, st.stored - st.inserted);
    stat_add(&p->st.rows_rejected, st.dead);
    stat_add(&p->st.rows_dropped, st.dropped);
    stat_add(&p->st.sessions, st.sessions);
    stat_hist_observe(&p->st.batch_rows, (double)b->nrows);
    stat_hist_observe(&p->st.commit_seconds, (double)(t1 - t0) / 1000.0);
    if (t1 - t0 > TICK_MS)
        edges_forgive(p, t1);
    release_msgs(p);
    stat_set(&p->st.pending, 0);
    return 0;
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

/* Map entries of the current message into the batch until it ends (returns
 * true) or the batch is full (returns false: flush, then call again). */
static bool read_entries(struct persister *p)
{
    struct batch *b = &p->batch;
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
        }
        enum sl_err rc = batch_add(b, (uint16_t)p->cur_peer, &e);
        if (rc == SL_NOMEM) {
            p->held = e;
            p->has_held = true;
            return false;
        }
        p->has_held = false;
        if (rc == SL_AGAIN && e.kind != ENV_HEARTBEAT && e.kind != ENV_RES && e.kind != ENV_UNDELIVERABLE)
            stat_inc(&p->st.entries_skipped);
    }
}

/* Finish with the message being read: keep it if rows point into it. */
static void end_message(struct persister *p)
{
    p->reading = false;
    p->has_held = false;
    if (p->batch.nrows == p->cur_rows_before) {
        /* A peer entry made for this message points into it (edge and reply
         * are slices of its header): drop the entry with the message, or a
         * later message of the same worker would match freed bytes and its
         * acks would go to whatever identity those bytes became. */
        if (p->cur_peer >= 0 && p->cur_peer_new) {
            assert((uint32_t)p->cur_peer == p->batch.npeers - 1);
            p->batch.npeers--;
        }
        zmq_msg_close(msg_at(p, --p->nmsgs));
    }
    p->cur_peer = -1;
}

/* Continue the current message; returns false when the batch must be flushed first. */
static bool continue_message(struct persister *p)
{
    if (!p->reading)
        return true;
    if (!read_entries(p))
        return false;
    end_message(p);
    return true;
}

/* Take one message from PULL (non-blocking). Returns false if none. */
static bool pull_one(struct persister *p, uint64_t now)
{
    zmq_msg_t *m = msg_at(p, p->nmsgs);
    zmq_msg_init(m);
    if (zmq_msg_recv(m, p->pull, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(m);
        return false;
    }
    p->nmsgs++;
    /* Any further frames of a multipart message are not ours: drop them. */
    while (zmq_msg_more(m)) {
        zmq_msg_t extra;
        zmq_msg_init(&extra);
        zmq_msg_recv(&extra, p->pull, 0);
        zmq_msg_close(&extra);
    }
    enum sl_err rc = envelope_reader_begin(&p->rd, zmq_msg_data(m), zmq_msg_size(m));
    const char *why = NULL;
    if (rc == SL_VERSION || rc != SL_OK || p->rd.hdr.edge.n > ROWS_EDGE_MAX ||
        p->rd.hdr.reply.n > ROWS_EDGE_MAX || envelope_hdr_check(&p->rd.hdr, &why) != SL_OK) {
        if (rc == SL_VERSION)
            version_refused(p, &p->rd.hdr, now);
        else
            stat_inc(&p->st.batches_refused);
        zmq_msg_close(msg_at(p, --p->nmsgs));
        return true;
    }
    /* CURVE: the sender's key must be bound to the edge id and reply
     * address the header claims (dropped, counted and logged in zap.c). */
    if (!zap_sender_ok(p->zap, m, p->rd.hdr.edge.p, p->rd.hdr.edge.n, p->rd.hdr.reply.p, p->rd.hdr.reply.n)) {
        zmq_msg_close(msg_at(p, --p->nmsgs));
        return true;
    }
    edge_heard(p, &p->rd.hdr, now);
    p->reading = true;
    p->cur_peer = -1;
    p->cur_rows_before = p->batch.nrows;
    return true;
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

int persister_run(struct persister *p, volatile sig_atomic_t *stop)
{
    srand((unsigned)(getpid() ^ (int)loop_clock_ms()));
    set_up(p, false);
    try_connect(p);
    uint64_t now = loop_clock_ms();
    p->next_tick = now + TICK_MS;
    int result = 0;
    for (;;) {
        now = loop_clock_ms();
        struct batch *b = &p->batch;
        bool room = !batch_full(b) && p->nmsgs < p->cap_msgs;
        /* A message being read goes first: it may fill the batch. */
        if (p->reading && !continue_message(p))
            room = false;
        if (b->nrows > 0 && p->batch_deadline == 0)
            p->batch_deadline = now + (uint64_t)p->cfg.batch_ms;
        bool due = b->nrows > 0 && (!room || now >= p->batch_deadline || *stop);
        if (due) {
            if (flush(p, stop) != 0) {
                result = -1;
                break;
            }
            continue;
        }
        if (*stop && !p->reading)
            break; /* nothing held: queued messages were never acked, devices resend them */
        if (now >= p->next_tick) {
            p->next_tick = now + TICK_MS;
            if (!db_connected(p->db)) {
                if (now >= p->next_connect && !try_connect(p))
                    p->next_connect = now + backoff_ms(p->connect_fails);
            } else if (b->nrows == 0 && now - p->last_db_ms >= PING_IDLE_MS) {
                if (db_ping(p->db) != DB_OK) {
                    char q[600];
                    const char *e = db_last_error(p->db);
                    log_warn("event=db_lost err=%s", log_q(q, sizeof q, e, strlen(e)));
                    db_disconnect(p->db);
                    set_up(p, false);
                } else {
                    p->last_db_ms = now;
                }
            }
            /* Safe with rows held: an edge with an entry in this batch was just heard. */
            edges_expire(p, now);
        }

        int timeout = (int)(p->next_tick > now ? p->next_tick - now : 0);
        if (b->nrows > 0) {
            uint64_t left = p->batch_deadline > now ? p->batch_deadline - now : 0;
            if ((int)left < timeout)
                timeout = (int)left;
        }
        zmq_pollitem_t items[2] = {
            {p->pull, 0, (short)(room && !*stop && !p->reading ? ZMQ_POLLIN : 0), 0},
            {p->router, 0, ZMQ_POLLIN, 0},
        };
        if (zmq_poll(items, 2, timeout) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            log_error("event=poll_failed err=\"%s\"", zmq_strerror(zmq_errno()));
            result = -1;
            break;
        }
        if (items[1].revents & ZMQ_POLLIN)
            drain_router(p);
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        now = loop_clock_ms();
        /* Take messages until the batch is full or PULL is empty. */
        while (!*stop && !batch_full(b) && p->nmsgs < p->cap_msgs && pull_one(p, now)) {
            bool more = continue_message(p);
            if (b->nrows > 0 && p->batch_deadline == 0)
                p->batch_deadline = now + (uint64_t)p->cfg.batch_ms;
            if (!more)
                break;
        }
        stat_set(&p->st.pending, b->nrows);
    }
    if (result == 0)
        log_info("event=stopped");
    return result;
}
