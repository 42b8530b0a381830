/* SPDX-License-Identifier: Apache-2.0 */
/* worker.c - one edge worker thread: the place where the connection table,
 * the sessions, the bus and the mailbox meet (see worker.h).
 *
 * It implements the ops tables the layers below are given: conn_ops (a
 * frame, a broken stream, a deadline, a close: handed to the session of
 * that slot), session_ops (send, close, arm, emit, kick: to the connection,
 * the bus or another worker's mailbox) and cmdfwd_ops. It dispatches what
 * arrives from outside the loop: reply batches from the bus (acks, cmds,
 * kicks, each checked against the connection and device it names) and
 * mailbox items (adopt a connection, kick one, deliver a forwarded
 * command). It runs the after-hook in a fixed order and the periodic tick
 * (endpoints, heartbeat, readiness, paced draining).
 *
 * A kick another worker's mailbox cannot take at once (its kick share is
 * full) is kept here and posted again after every iteration until it fits:
 * kicks are never dropped ("newest wins" depends on them). The list is
 * bounded without a limit of its own: each kick names a live connection
 * that just lost its device, and a connection loses its device once, so
 * at most one kick per connection of the edge can be owed.
 *
 * It deliberately holds no protocol or socket logic of its own. */
#define _GNU_SOURCE
#include "worker.h"
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sl/envelope.h"
#include "sl/err.h"
#include "sl/log.h"
#include "sl/msg.h"
#include "bus.h"
#include "cmdfwd.h"
#include "conn.h"
#include "devmap.h"
#include "edge.h"
#include "guard.h"
#include "mailbox.h"
#include "session.h"

#define TICK_MS       100u
#define BUS_TICK_MS   1000u
#define HEARTBEAT_MS  2000u
#define TAKE_PER_WAKE 64 /* mailbox items per wake-up: one wake-up's hellos stay one epoll batch */

/* conn.upper bits (the worker's own per-connection state) */
#define UPPER_GUARDED 1 /* counted by the guard: release it when the connection goes */

struct worker {
    struct edge *e;
    uint32_t idx;
    struct loop *loop;
    struct mailbox *mb;
    struct conn_table *conns;
    struct session *sess; /* [slots], beside the table: same index */
    struct session_env sx;
    struct bus *bus;
    struct cmdfwd fwd;
    struct worker_counts cnt;

    struct devmap_ref *owed; /* kicks another mailbox refused, posted again after each iteration */
    uint32_t nowed, owed_cap;

    /* Early connections (no hello yet), oldest first: (slot, gen) in the
     * order they opened, entries of connections that have since left the
     * early phase skipped lazily (compacted when the ring fills). */
    struct early_ent {
        uint32_t slot, gen;
    } * early, *early_tmp; /* the ring, and its twin for compaction */
    uint32_t early_head, early_len, early_cap;
    _Atomic uint32_t early_n; /* early now (<= --early-max, plus the one just opened); read by stats */

    bool warned_version; /* a refused reply batch was logged */
    struct loop_timer tick;
    struct loop_timer ntf_due; /* wakes the loop when the notifiers' data copies are due */
    uint64_t next_bus_tick_ms, next_hb_ms;
    double drain_credit;
    uint32_t drain_cursor; /* where paced closes (drain, shed) look next */
    double shed_credit;
    uint32_t shed_owed; /* closes of the last tick still counted in e->shed_pending */
    bool stop;
    _Atomic unsigned bus_up; /* enum bus_up bits of the last bus tick, for /readyz */
    pthread_t th;
};

static struct devmap_ref ref_of(const struct worker *w, const struct conn *c)
{
    struct devmap_ref r = {w->idx, c->slot, c->gen};
    return r;
}

static struct conn *conn_of(struct worker *w, const struct session *s)
{
    return conn_at(w->conns, (uint32_t)(s - w->sess));
}

/* ---- the bus's pause reaches the connections -------------------------- */

static void sync_pause(struct worker *w)
{
    conn_set_paused(w->conns, bus_paused(w->bus));
}

/* ---- session_ops ------------------------------------------------------- */

static enum sl_err encode_msg(const void *arg, uint8_t *buf, size_t cap, size_t *len)
{
    return msg_encode_frame(arg, buf, cap, len);
}

static enum sl_err op_send(void *ud, struct session *s, const struct msg *m)
{
    struct worker *w = ud;
    struct conn *c = conn_of(w, s);
    enum sl_err rc = conn_send(c, encode_msg, m);
    if (rc == SL_TOOBIG)
        log_warn("event=frame_too_big worker=%u dev=%s type=%s", w->idx, session_dev(&w->sx, s, ref_of(w, c)),
                 msg_type_name(m->t));
    return rc;
}

static void op_close(void *ud, struct session *s, enum sl_err code)
{
    struct worker *w = ud;
    conn_close(conn_of(w, s), conn_reason_of(code));
}

static void op_arm(void *ud, struct session *s, uint64_t ms)
{
    struct worker *w = ud;
    conn_timer(conn_of(w, s), ms);
}

static void op_emit(void *ud, const struct envelope *e)
{
    struct worker *w = ud;
    bus_emit(w->bus, e);
    if (bus_paused(w->bus))
        conn_set_paused(w->conns, true); /* the next read of any connection parks */
}

static void kick_here(struct worker *w, struct devmap_ref ref, enum sl_err code)
{
    struct conn *c = conn_get(w->conns, ref.slot, ref.gen);
    if (c)
        session_fail(&w->sx, &w->sess[ref.slot], code,
                     code == SL_REPLACED ? "the device connected again"
                     : code == SL_AUTH   ? "device revoked"
                                         : sl_strerror(code));
}

static bool post_kick(struct worker *w, struct devmap_ref ref)
{
    struct mailbox_item it = {.kind = MAILBOX_KICK,
                              .u.kick = {.slot = ref.slot, .gen = ref.gen, .code = SL_REPLACED}};
    return mailbox_post(w->e->mbox[ref.worker], &it);
}

static void op_kick(void *ud, struct devmap_ref old, enum sl_err code)
{
    struct worker *w = ud;
    if (old.worker == w->idx) {
        kick_here(w, old, code);
        return;
    }
    (void)code; /* across workers a kick is always "replaced": the mailbox item carries it */
    if (post_kick(w, old))
        return;
    if (w->nowed == w->owed_cap) {
        uint32_t cap = w->owed_cap ? w->owed_cap * 2 : 64;
        struct devmap_ref *p = realloc(w->owed, cap * sizeof *p);
        if (!p) {
            log_error("event=kick_lost worker=%u target=%u err=nomem", w->idx, old.worker);
            return;
        }
        w->owed = p;
        w->owed_cap = cap;
    }
    w->owed[w->nowed++] = old;
    stat_inc(&w->cnt.kicks_retried);
}

static void retry_kicks(struct worker *w)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < w->nowed; i++)
        if (!post_kick(w, w->owed[i]))
            w->owed[kept++] = w->owed[i];
    w->nowed = kept;
}

/* One writer (w's thread); stats reads it. */
static uint32_t early_get(const struct worker *w)
{
    return atomic_load_explicit(&w->early_n, memory_order_relaxed);
}

static void early_add(struct worker *w, int d)
{
    atomic_store_explicit(&w->early_n, (uint32_t)((int)early_get(w) + d), memory_order_relaxed);
}

static void op_authenticated(void *ud, struct session *s)
{
    struct worker *w = ud;
    struct conn *c = conn_of(w, s);
    if (conn_early(c)) {
        conn_promote(c);
        early_add(w, -1);
        guard_hello_ok(w->e->guard, &c->peer);
    }
}

static bool op_peer_id(void *ud, const struct session *s, const char *dev, size_t n)
{
    struct worker *w = ud;
    return conn_peer_is(conn_of(w, s), dev, n);
}

static uint32_t op_admit_device(void *ud, const char *dev, size_t n)
{
    struct worker *w = ud;
    return guard_device_check(w->e->guard, dev, n, loop_now_ms(w->loop));
}

static void op_release(void *ud, struct session *s)
{
    struct worker *w = ud;
    conn_release(conn_of(w, s));
}

static uint32_t op_peer(void *ud, const struct session *s, char *out, uint32_t cap)
{
    struct worker *w = ud;
    return addr_str(&conn_of(w, s)->peer, out, cap);
}

static uint64_t op_wall_ns(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t op_mono_us(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t op_now_ms(void *ud)
{
    struct worker *w = ud;
    return loop_now_ms(w->loop);
}

static const struct session_ops session_ops = {
    .send = op_send,
    .close = op_close,
    .arm = op_arm,
    .emit = op_emit,
    .kick = op_kick,
    .peer_id = op_peer_id,
    .admit_device = op_admit_device,
    .authenticated = op_authenticated,
    .release = op_release,
    .peer = op_peer,
    .wall_ns = op_wall_ns,
    .mono_us = op_mono_us,
    .now_ms = op_now_ms,
};

/* ---- who may connect (guard.c) ------------------------------------------ */

/* A close that says the source failed its hello (sent something wrong),
 * as opposed to leaving (eof, io) or being sent away (busy, draining). */
static bool hello_failure(enum conn_reason r)
{
    return r == CR_AUTH || r == CR_DECODE || r == CR_PROTO || r == CR_FRAME;
}

/* The guard's side of a close: its place under the source's limits, a
 * failed hello towards the source's ban, an authenticated session's end
 * towards the device's (flapping). One log line per ban that starts. */
static void account_close(struct worker *w, const struct conn *c, const struct session *s,
                          struct devmap_ref self, enum conn_reason r, bool early)
{
    struct guard *g = w->e->guard;
    uint64_t now = loop_now_ms(w->loop);
    char peer[ADDR_STR_MAX];
    if (!(c->upper & UPPER_GUARDED)) {
        /* never counted by the guard (its PROXY header never came, or it was
         * a balancer's LOCAL health check) */
    } else if (early && hello_failure(r)) {
        uint32_t ban = guard_hello_failed(g, &c->peer, now);
        if (ban) {
            addr_str(&c->peer, peer, sizeof peer);
            log_warn("event=ban what=source peer=%s ms=%u why=failed_hellos", peer, ban);
        }
        guard_closed(g, &c->peer, false);
    } else {
        guard_closed(g, &c->peer, early);
    }
    if (s->phase == SESSION_READY) {
        const char *dev = session_dev(&w->sx, s, self);
        uint32_t ban = guard_device_ended(g, dev, s->dev_len, now);
        if (ban)
            log_warn("event=ban what=device dev=%s ms=%u why=flapping", dev, ban);
    }
}

static const char *verdict_text(enum guard_verdict v)
{
    switch (v) {
    case GUARD_SOURCE_CONNS: return "too many connections from this address";
    case GUARD_SOURCE_EARLY: return "too many connections without a hello from this address";
    case GUARD_SOURCE_RATE: return "connecting too fast from this address";
    default: return "this address keeps failing its hello: back off";
    }
}

enum worker_admit worker_admit(struct edge *e, int fd, const struct addr *peer, unsigned kind)
{
    /* A TLS client would not understand a plain frame: it is just closed. */
    bool frames = !(kind & CONN_KIND_TLS);
    if (kind & CONN_KIND_PROXY) {
        /* Only the balancers may speak PROXY; the device behind one is
         * judged once its header says who it is (on_proxied). */
        bool from_lb = false;
        for (int i = 0; i < e->nproxy_from && !from_lb; i++)
            from_lb = cidr_match(&e->proxy_from[i], peer);
        if (!from_lb) {
            conn_refuse(fd, (struct sl_slice){0});
            return WORKER_ADMIT_PROXY;
        }
    } else {
        uint32_t retry = 0;
        enum guard_verdict v = guard_connect(e->guard, peer, loop_clock_ms(), &retry);
        if (v != GUARD_OK) {
            uint8_t buf[EDGE_BUSY_MAX];
            size_t n = frames ? session_encode_refusal(SL_BUSY, verdict_text(v), retry, buf, sizeof buf) : 0;
            conn_refuse(fd, (struct sl_slice){buf, (uint32_t)n});
            return WORKER_ADMIT_SOURCE;
        }
    }
    if (conn_admit(&e->open_total, e->cfg.max_conns))
        return WORKER_ADMIT_OK;
    if (!(kind & CONN_KIND_PROXY))
        guard_closed(e->guard, peer, true);
    conn_refuse(fd, (struct sl_slice){e->busy, frames ? e->busy_len : 0});
    return WORKER_ADMIT_FULL;
}

void worker_unadmit(struct edge *e, const struct addr *peer, unsigned kind)
{
    atomic_fetch_sub(&e->open_total, 1);
    if (!(kind & CONN_KIND_PROXY))
        guard_closed(e->guard, peer, true);
}

/* ---- early connections --------------------------------------------------
 * A connection is early from accept until its hello is accepted. Early
 * connections are cheap (a small read buffer at most) but not free, so a
 * worker holds at most --early-max of them: when one more opens, the
 * oldest is closed (err timeout). Under pressure (more than half the quota
 * early) a new connection's hello deadline shrinks linearly from
 * --hello-timeout-ms towards --hello-timeout-min-ms (docs/protocol.md §1). A
 * device says hello within one round trip of connecting, so what this
 * closes is what waits: sockets held open without a hello. */

static void early_push(struct worker *w, const struct conn *c)
{
    if (w->early_len == w->early_cap) {
        /* Full of entries most of which left the early phase: keep the
         * live ones, in order (at most early_n <= cap / 2 of them), in the
         * twin array, which becomes the ring. */
        uint32_t kept = 0;
        for (uint32_t i = 0; i < w->early_len; i++) {
            struct early_ent en = w->early[(w->early_head + i) % w->early_cap];
            struct conn *x = conn_get(w->conns, en.slot, en.gen);
            if (x && conn_early(x))
                w->early_tmp[kept++] = en;
        }
        struct early_ent *t = w->early;
        w->early = w->early_tmp;
        w->early_tmp = t;
        w->early_head = 0;
        w->early_len = kept;
    }
    w->early[(w->early_head + w->early_len++) % w->early_cap] = (struct early_ent){c->slot, c->gen};
}

/* Over --early-max: close the oldest connection still early (not `keep`,
 * the one just opened). In a reconnect herd the oldest has usually sent its
 * hello already and this worker has only not read it yet (it adopts up to
 * TAKE_PER_WAKE connections before it reads any): read it first, and close
 * it only if it still has no whole hello. Each read that lets one through
 * brings the count back under the quota. */
static void early_evict_oldest(struct worker *w, const struct conn *keep)
{
    while (w->early_len && early_get(w) > w->e->cfg.early_max) {
        struct early_ent en = w->early[w->early_head];
        w->early_head = (w->early_head + 1) % w->early_cap;
        w->early_len--;
        struct conn *x = conn_get(w->conns, en.slot, en.gen);
        if (!x || x == keep || !conn_early(x))
            continue;
        conn_read_now(x);
        x = conn_get(w->conns, en.slot, en.gen); /* closed by what it sent: gone */
        if (x && conn_early(x)) {
            stat_inc(&w->cnt.early_evicted);
            session_fail(&w->sx, &w->sess[x->slot], SL_TIMEOUT,
                         "no hello yet, and newer connections are waiting");
            return;
        }
    }
}

static uint64_t hello_deadline(const struct worker *w)
{
    const struct edge_cfg *cfg = &w->e->cfg;
    uint32_t q = cfg->early_max, half = q / 2;
    uint32_t n = early_get(w);
    if (n <= half || q <= half)
        return cfg->hello_timeout_ms;
    uint64_t over = n - half, span = q - half;
    if (over >= span)
        return cfg->hello_timeout_min_ms;
    uint64_t full = cfg->hello_timeout_ms, floor = cfg->hello_timeout_min_ms;
    return full - (full - floor) * over / span;
}

/* ---- conn_ops ---------------------------------------------------------- */

static void on_opened(void *ud, struct conn *c)
{
    struct worker *w = ud;
    if (!conn_proxy_pending(c))
        c->upper |= UPPER_GUARDED; /* admitted by the guard when accepted */
    early_add(w, 1);
    early_push(w, c);
    if (early_get(w) > w->e->cfg.early_max)
        early_evict_oldest(w, c);
    session_open(&w->sx, &w->sess[c->slot], hello_deadline(w));
}

static void on_frame(void *ud, struct conn *c, const uint8_t *p, size_t n)
{
    struct worker *w = ud;
    session_on_frame(&w->sx, &w->sess[c->slot], ref_of(w, c), p, n);
}

static void on_broken(void *ud, struct conn *c, enum sl_err code, const char *why)
{
    struct worker *w = ud;
    session_fail(&w->sx, &w->sess[c->slot], code, why);
}

static void on_timer(void *ud, struct conn *c)
{
    struct worker *w = ud;
    session_on_timer(&w->sx, &w->sess[c->slot]);
}

static void on_closing(void *ud, struct conn *c, enum conn_reason r)
{
    struct worker *w = ud;
    struct session *s = &w->sess[c->slot];
    struct devmap_ref self = ref_of(w, c);
    bool early = conn_early(c);
    if (early)
        early_add(w, -1);
    account_close(w, c, s, self, r, early);
    session_closed(&w->sx, s, self, conn_reason_str(r));
    if (log_enabled(SL_LOG_DEBUG)) {
        char peer[ADDR_STR_MAX];
        addr_str(&c->peer, peer, sizeof peer);
        log_debug("event=conn_close worker=%u slot=%u dev=%s peer=%s reason=%s frames_in=%u frames_out=%u "
                  "bytes_in=%llu bytes_out=%llu",
                  w->idx, c->slot, session_dev(&w->sx, s, self), peer, conn_reason_str(r), c->frames_in,
                  c->frames_out, (unsigned long long)c->bytes_in,
                  (unsigned long long)(c->bytes_out + c->out_len));
    }
}

static uint32_t on_accept_wait(void *ud)
{
    struct worker *w = ud;
    return guard_accept(w->e->guard, loop_now_ms(w->loop));
}

static void on_accepted(void *ud, int fd, const struct addr *peer, unsigned kind)
{
    struct worker *w = ud;
    enum worker_admit a = worker_admit(w->e, fd, peer, kind);
    if (a == WORKER_ADMIT_FULL)
        stat_inc(&w->cnt.refused_full);
    if (a == WORKER_ADMIT_OK && !conn_adopt(w->conns, fd, peer, kind) && !(kind & CONN_KIND_PROXY))
        guard_closed(w->e->guard, peer, true);
}

/* A PROXY header named the device's address: now the guard judges it. A
 * balancer's LOCAL health check is not counted anywhere. */
static void on_proxied(void *ud, struct conn *c, bool local)
{
    struct worker *w = ud;
    if (local)
        return;
    uint32_t retry = 0;
    enum guard_verdict v = guard_connect(w->e->guard, &c->peer, loop_now_ms(w->loop), &retry);
    if (v == GUARD_OK) {
        c->upper |= UPPER_GUARDED;
        return;
    }
    if (conn_is_tls(c))
        conn_close(c, CR_BUSY); /* before the handshake: no frame it could read */
    else
        session_fail_retry(&w->sx, &w->sess[c->slot], SL_BUSY, verdict_text(v), retry);
}

static size_t on_read_budget(void *ud, struct conn *c)
{
    struct worker *w = ud;
    uint32_t avg = c->frames_in ? (uint32_t)(c->bytes_in / c->frames_in) : 64;
    return session_read_budget(&w->sx, &w->sess[c->slot], avg ? avg : 1);
}

static const struct conn_ops conn_ops = {
    .accept_wait = on_accept_wait,
    .read_budget = on_read_budget,
    .accepted = on_accepted,
    .proxied = on_proxied,
    .opened = on_opened,
    .frame = on_frame,
    .broken = on_broken,
    .timer = on_timer,
    .closing = on_closing,
};

/* ---- cmdfwd_ops -------------------------------------------------------- */

static bool fwd_deliver(void *ud, struct devmap_ref ref, const struct envelope *cmd)
{
    struct worker *w = ud;
    struct conn *c = conn_get(w->conns, ref.slot, ref.gen);
    if (!c || !session_is(&w->sx, &w->sess[ref.slot], ref, cmd->dev))
        return false;
    session_cmd(&w->sx, &w->sess[ref.slot], ref, cmd->id, cmd->body);
    return true;
}

static const struct cmdfwd_ops cmdfwd_ops = {
    .deliver = fwd_deliver,
    .emit = op_emit,
};

/* ---- replies from the services ----------------------------------------- */

/* The session (slot, gen) if it is still authenticated as dev. */
static struct session *reply_target(struct worker *w, const struct envelope *e)
{
    struct conn *c = conn_get(w->conns, e->slot, e->gen);
    if (!c)
        return NULL;
    struct session *s = &w->sess[e->slot];
    return session_is(&w->sx, s, ref_of(w, c), e->dev) ? s : NULL;
}

static void apply(struct worker *w, const struct envelope *e)
{
    struct session *s;
    switch (e->kind) {
    case ENV_ACK:
        if ((s = reply_target(w, e)))
            session_ack(&w->sx, s, e->seq);
        else
            stat_inc(&w->cnt.stale_replies);
        break;
    case ENV_CMD:
        cmdfwd_route(&w->fwd, e); /* here, on the worker holding dev, or undeliverable */
        break;
    case ENV_KICK:
        if ((s = reply_target(w, e))) {
            stat_inc(&w->cnt.kicks);
            session_fail(&w->sx, s, SL_REPLACED, "the device connected to another edge");
        } else {
            stat_inc(&w->cnt.stale_replies);
        }
        break;
    default: break;
    }
}

static void handle_batch(struct worker *w, const uint8_t *p, size_t n)
{
    struct envelope_reader r;
    enum sl_err rc = envelope_reader_begin(&r, p, n);
    if (rc != SL_OK) {
        stat_inc(&w->cnt.stale_batches);
        if (!w->warned_version) {
            w->warned_version = true;
            log_warn("event=reply_batch_refused worker=%u err=%s", w->idx, sl_strerror(rc));
        }
        return;
    }
    if (r.hdr.incarnation != w->e->incarnation) {
        stat_inc(&w->cnt.stale_batches); /* meant for an earlier run of this edge */
        return;
    }
    struct envelope e;
    while ((rc = envelope_reader_next(&r, &e)) == SL_OK) {
        if (e.kind == ENV_NOTIFIER_HB)
            bus_notifier_hb(w->bus, r.hdr.edge, &e); /* the notifier ring is the bus's */
        else
            apply(w, &e);
    }
    if (rc == SL_DECODE)
        stat_inc(&w->cnt.stale_batches);
}

static void take_replies(struct worker *w)
{
    const uint8_t *p;
    size_t n;
    while (bus_recv(w->bus, &p, &n))
        handle_batch(w, p, n);
}

/* ---- the loop ----------------------------------------------------------- */

/* Nothing to do here: the after hook that follows the timers sends. */
static void on_ntf_due(struct loop *l, void *ud)
{
    (void)l;
    (void)ud;
}

static void after(struct loop *l, void *ud)
{
    struct worker *w = ud;
    take_replies(w);   /* acks/cmds first: they free device-side waits */
    bus_flush(w->bus); /* may end a pause */
    sync_pause(w);
    if (w->nowed)
        retry_kicks(w);
    conn_after(w->conns); /* input left unread by caps or a pause */
    bus_flush(w->bus);    /* this iteration's envelopes: one message per destination */
    sync_pause(w);
    uint64_t due = bus_ntf_due(w->bus);
    if (due && !loop_timer_armed(&w->ntf_due)) {
        uint64_t now = loop_clock_ms();
        loop_timer_start(l, &w->ntf_due, due > now ? due - now : 0);
    }
    conn_flush_all(w->conns); /* one writev per connection with output */
    conn_free_closed(w->conns);
}

static void drop_item(void *ud, struct mailbox_item *it)
{
    struct worker *w = ud;
    switch (it->kind) {
    case MAILBOX_ADOPT:
        /* Handed over but never adopted (drain deadline): never welcomed. */
        worker_unadmit(w->e, &it->u.adopt.peer, it->u.adopt.conn_kind);
        conn_refuse(
            it->u.adopt.fd,
            (struct sl_slice){w->e->busy, it->u.adopt.conn_kind & CONN_KIND_TLS ? 0 : w->e->busy_len});
        break;
    case MAILBOX_CMD: cmdfwd_drop(it); break;
    default: break;
    }
}

static void on_wake(struct loop *l, void *ud)
{
    (void)l;
    struct worker *w = ud;
    struct mailbox_item batch[TAKE_PER_WAKE];
    uint32_t n = mailbox_take(w->mb, batch, TAKE_PER_WAKE);
    for (uint32_t i = 0; i < n; i++) {
        struct mailbox_item *it = &batch[i];
        switch (it->kind) {
        case MAILBOX_ADOPT:
            if (!conn_adopt(w->conns, it->u.adopt.fd, &it->u.adopt.peer, it->u.adopt.conn_kind) &&
                !(it->u.adopt.conn_kind & CONN_KIND_PROXY))
                guard_closed(w->e->guard, &it->u.adopt.peer, true);
            break;
        case MAILBOX_KICK: {
            struct devmap_ref r = {w->idx, it->u.kick.slot, it->u.kick.gen};
            kick_here(w, r, (enum sl_err)it->u.kick.code);
            break;
        }
        case MAILBOX_CMD: cmdfwd_deliver(&w->fwd, it); break;
        default: break;
        }
    }
}

static void heartbeat(struct worker *w)
{
    struct envelope hb = {.kind = ENV_HEARTBEAT, .seq = conn_open_count(w->conns), .at_ns = op_wall_ns(w)};
    bus_emit(w->bus, &hb);
}

/* Take one close toward the shed target: true if open_total, less the
 * closes other workers have started and not yet freed, is still above it.
 * (A close leaves open_total only when the connection is freed, after the
 * event batch; without the pending count two workers seeing 11 over a
 * target of 10 would both close one.) */
static bool shed_claim(struct edge *e, uint32_t target)
{
    uint32_t pend = atomic_load(&e->shed_pending);
    for (;;) {
        uint32_t open = atomic_load(&e->open_total);
        if (open <= target || open - target <= pend)
            return false;
        if (atomic_compare_exchange_weak(&e->shed_pending, &pend, pend + 1))
            return true;
    }
}

/* The next authenticated connection from the cursor on, or NULL. */
static struct conn *next_ready(struct worker *w)
{
    uint32_t n = conn_open_count(w->conns);
    for (uint32_t i = 0; i < n; i++) {
        struct conn *c = conn_next_open(w->conns, &w->drain_cursor);
        if (!c)
            return NULL;
        if (w->sess[c->slot].phase == SESSION_READY)
            return c;
    }
    return NULL;
}

/* Paced shedding (POST /admin/shed): the drain's pacing and close, toward
 * a target instead of zero. The request that is current when the edge
 * reaches its target is ended here, by whichever worker sees it first. */
static void shed_tick(struct worker *w)
{
    struct edge *e = w->e;
    if (w->shed_owed) { /* freed after the last tick's batch: open_total shows them now */
        atomic_fetch_sub(&e->shed_pending, w->shed_owed);
        w->shed_owed = 0;
    }
    uint64_t word = atomic_load(&e->shed);
    if (!word) {
        w->shed_credit = 0;
        return;
    }
    uint32_t target = (uint32_t)word;
    double step = atomic_load(&e->shed_rate) / (double)e->nworkers * TICK_MS / 1000.0;
    w->shed_credit += step;
    if (w->shed_credit > step + 1.0) /* no burst after ticks with nothing of ours to close */
        w->shed_credit = step + 1.0;
    while (w->shed_credit >= 1.0 && shed_claim(e, target)) {
        struct conn *c = next_ready(w);
        if (!c) {
            atomic_fetch_sub(&e->shed_pending, 1);
            break;
        }
        w->shed_credit -= 1.0;
        w->shed_owed++;
        stat_inc(&w->cnt.shed);
        atomic_fetch_add(&e->shed_done, 1);
        session_fail(&w->sx, &w->sess[c->slot], SL_DRAINING, "edge shedding load: reconnect elsewhere");
    }
    uint32_t open = atomic_load(&e->open_total);
    if (open <= target && atomic_compare_exchange_strong(&e->shed, &word, 0))
        log_info("event=shed_end worker=%u open=%u target=%u shed=%u", w->idx, open, target,
                 atomic_load(&e->shed_done));
}

static void on_tick(struct loop *l, void *ud)
{
    struct worker *w = ud;
    struct edge *e = w->e;
    uint64_t now = loop_now_ms(l);
    if (now >= w->next_bus_tick_ms) {
        w->next_bus_tick_ms = now + BUS_TICK_MS;
        if (now >= w->next_hb_ms) {
            w->next_hb_ms = now + HEARTBEAT_MS;
            heartbeat(w);
        }
        atomic_store(&w->bus_up, bus_tick(w->bus));
        if (w->idx == 0)
            guard_sweep(e->guard, now); /* once a second, by one worker */
    } else if (bus_paused(w->bus)) {
        bus_flush(w->bus); /* ZMQ_FD may not signal a peer (re)connecting */
        sync_pause(w);
    }
    if (atomic_load(&e->draining)) {
        conn_stop_listening(w->conns);
        /* Paced eviction: rate per second for the whole edge, shared. */
        w->drain_credit += e->cfg.drain_rate / e->nworkers * TICK_MS / 1000.0;
        while (w->drain_credit >= 1.0) {
            struct conn *c = conn_next_open(w->conns, &w->drain_cursor);
            if (!c) {
                w->drain_credit = 0;
                break;
            }
            w->drain_credit -= 1.0;
            session_fail(&w->sx, &w->sess[c->slot], SL_DRAINING, "edge draining: reconnect elsewhere");
        }
        if ((conn_open_count(w->conns) == 0 && mailbox_len(w->mb, MAILBOX_ADOPT) == 0 && bus_idle(w->bus)) ||
            now >= atomic_load(&e->drain_deadline_ms))
            w->stop = true;
    } else {
        shed_tick(w);
    }
    loop_timer_start(l, &w->tick, TICK_MS);
}

/* ---- lifetime ----------------------------------------------------------- */

struct worker *worker_new(struct edge *e, uint32_t idx)
{
    const struct edge_cfg *cfg = &e->cfg;
    struct worker *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->e = e;
    w->idx = idx;
    w->loop = loop_new(cfg->max_conns + 16);
    struct mailbox_limits lim = {
        .share = {[MAILBOX_ADOPT] = MAILBOX_ADOPT_SHARE,
                  [MAILBOX_KICK] = MAILBOX_KICK_SHARE,
                  [MAILBOX_CMD] = MAILBOX_CMD_SHARE},
        .max_bytes = MAILBOX_CMD_BYTES,
    };
    w->mb = w->loop ? mailbox_new(&lim, w->loop) : NULL;
    struct conn_cfg cc = {
        .worker = idx,
        .slots = cfg->max_conns,
        .max_frame = cfg->max_frame,
        .out_cap = cfg->out_cap,
        .read_bufs = cfg->read_bufs,
        .out_pool_mb = cfg->out_pool_mb,
        .hello_max = cfg->hello_max,
        .early_bufs = cfg->early_max + 1, /* the one just opened may read before the oldest is closed */
        .open_total = &e->open_total,
        .max_total = cfg->max_conns,
        .busy = {e->busy, e->busy_len},
        .rec = e->rec,
        .budgeted = cfg->device_rate > 0,
        .tls = e->tls,
        .handshakes_per_wake = cfg->tls_handshakes_per_wake,
    };
    /* calloc: a session is backed by memory only once its slot is used. */
    w->sess = calloc(cfg->max_conns, sizeof *w->sess);
    w->early_cap = 2 * (cfg->early_max + 1);
    w->early = calloc(w->early_cap, sizeof *w->early);
    w->early_tmp = calloc(w->early_cap, sizeof *w->early_tmp);
    w->conns =
        w->mb && w->sess && w->early && w->early_tmp ? conn_table_new(&cc, w->loop, &conn_ops, w) : NULL;
    if (!w->conns) {
        log_error("event=worker_init_failed worker=%u err=nomem", idx);
        worker_destroy(&w);
        return NULL;
    }
    e->mbox[idx] = w->mb;
    w->sx = (struct session_env){.ops = &session_ops,
                                 .ud = w,
                                 .cfg = cfg,
                                 .map = e->map,
                                 .trust = e->trust,
                                 .draining = &e->draining,
                                 .rate = cfg->device_rate,
                                 .burst = cfg->device_burst,
                                 .hold_max_ms = cfg->device_hold_max_ms};
    session_env_init(&w->sx);
    w->fwd = (struct cmdfwd){
        .ops = &cmdfwd_ops, .ud = w, .self = idx, .map = e->map, .mboxes = e->mbox, .nworkers = e->nworkers};
    struct bus_cfg bc = {
        .zctx = e->zctx,
        .loop = w->loop,
        .worker = idx,
        .edge_id = cfg->edge_id,
        .incarnation = e->incarnation,
        .hwm = cfg->zmq_hwm,
        .max_msg = cfg->zmq_max_msg,
        .persister_push = e->r_pp,
        .persister_router = e->r_pr,
        .notifier_push = e->r_np,
        .notifier_router = e->r_nr,
        .curve = cfg->curve,
        .persister_key = cfg->persister_key,
        .notifier_key = cfg->notifier_key,
        .ntf_window_ms = cfg->ntf_window_ms,
    };
    w->bus = bus_new(&bc);
    if (!w->bus) {
        worker_destroy(&w);
        return NULL;
    }
    if (cfg->accept == EDGE_ACCEPT_REUSEPORT) {
        unsigned proxy = cfg->proxy_protocol ? CONN_KIND_PROXY : 0;
        const char *spec[2] = {cfg->listen, cfg->listen_tls};
        unsigned kind[2] = {CONN_KIND_PLAIN | proxy, CONN_KIND_TLS | proxy};
        for (int i = 0; i < 2; i++) {
            int rc = *spec[i] ? conn_listen(w->conns, spec[i], kind[i]) : 0;
            if (rc != 0) {
                log_error("event=listen_failed worker=%u listen=%s err=\"%s\"", idx, spec[i], strerror(-rc));
                worker_destroy(&w);
                return NULL;
            }
        }
    }
    loop_set_after(w->loop, after, w);
    loop_set_wake(w->loop, on_wake, w);
    loop_timer_init(&w->tick, on_tick, w);
    loop_timer_start(w->loop, &w->tick, TICK_MS);
    loop_timer_init(&w->ntf_due, on_ntf_due, w);
    return w;
}

void worker_destroy(struct worker **pw)
{
    struct worker *w = *pw;
    if (!w)
        return;
    /* Closing emits disconnects: the table goes first, the bus gives them
     * one last send, then the bus goes. */
    conn_table_destroy(&w->conns);
    if (w->bus)
        bus_flush_all(w->bus);
    bus_destroy(&w->bus);
    if (w->e->mbox[w->idx] == w->mb)
        w->e->mbox[w->idx] = NULL;
    mailbox_destroy(&w->mb, drop_item, w);
    if (w->loop) {
        loop_timer_stop(w->loop, &w->tick);
        loop_timer_stop(w->loop, &w->ntf_due);
    }
    loop_destroy(&w->loop);
    free(w->sess);
    free(w->early);
    free(w->early_tmp);
    free(w->owed);
    free(w);
    *pw = NULL;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    while (!w->stop) {
        int rc = loop_run_once(w->loop, conn_read_pending(w->conns) ? 0 : -1);
        if (rc < 0) {
            log_error("event=loop_failed worker=%u err=\"%s\"", w->idx, strerror(-rc));
            break;
        }
    }
    return NULL;
}

int worker_start(struct worker *w)
{
    int rc = pthread_create(&w->th, NULL, run, w);
    if (rc == 0) {
        char name[16]; /* for top -H and the bench's stuck-worker test */
        snprintf(name, sizeof name, "edge-w%u", w->idx);
        pthread_setname_np(w->th, name);
    }
    return rc ? -rc : 0;
}

void worker_join(struct worker *w)
{
    pthread_join(w->th, NULL);
}

/* ---- other threads ------------------------------------------------------ */

void worker_notify(struct worker *w)
{
    loop_wake(w->loop);
}

bool worker_kick_device(struct edge *e, const char *dev, size_t n, enum sl_err code)
{
    struct devmap_ref ref;
    if (!devmap_find(e->map, dev, n, &ref))
        return true; /* not connected here */
    struct mailbox_item it = {.kind = MAILBOX_KICK,
                              .u.kick = {.slot = ref.slot, .gen = ref.gen, .code = code}};
    return mailbox_post(e->mbox[ref.worker], &it);
}

uint32_t worker_open(const struct worker *w)
{
    return conn_open_count(w->conns);
}

void worker_view(const struct worker *w, struct worker_view *out)
{
    out->open = conn_open_count(w->conns);
    out->early = early_get(w);
    out->bus_up = atomic_load(&w->bus_up);
    out->listening = conn_listening(w->conns);
    out->conn = conn_counts(w->conns);
    out->session = &w->sx.cnt;
    out->bus = bus_counts(w->bus);
    out->cmdfwd = &w->fwd.cnt;
    out->own = &w->cnt;
}
