/* session.c - the device protocol state machine of docs/protocol.md §2.
 *
 * Decodes each frame payload with msg_decode() and dispatches on (state,
 * type) through one table; anything not in the table is err "proto". It
 * owns the hello and idle timers (one loop timer per conn, re-armed from a
 * last-activity stamp instead of restarted per frame), the takeover claim
 * in the device map and the envelopes a session produces.
 *
 * It deliberately does no I/O: it reaches the socket only through
 * conn_send_frame/conn_close/conn_kick and ZeroMQ only through bus_emit,
 * so the unit tests link it against stubs. */
#define _GNU_SOURCE
#include "session.h"
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "sl/envelope.h"
#include "sl/msg.h"
#include "sl/token.h"
#include "bus.h"
#include "conn.h"
#include "worker.h"

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t session_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static struct sl_slice dev_slice(const struct conn *c)
{
    struct sl_slice s = {(const uint8_t *)c->dev, c->dev_len};
    return s;
}

static struct devmap_ref ref_of(const struct conn *c)
{
    struct devmap_ref r = {c->w->idx, c->slot, c->gen};
    return r;
}

void session_fail(struct conn *c, enum sl_err code, const char *text)
{
    if (c->state == CONN_CLOSING || c->state == CONN_FREE)
        return;
    const char *wire = sl_wire_code(code);
    if (!wire) {
        code = SL_PROTO;
        wire = sl_wire_code(code);
    }
    metric_inc(stats.errors[code]);
    struct msg m = {.t = MSG_ERR};
    m.u.err.code.p = (const uint8_t *)wire;
    m.u.err.code.n = (uint32_t)strlen(wire);
    m.u.err.msg.p = (const uint8_t *)text;
    m.u.err.msg.n = (uint32_t)strlen(text);
    if (conn_send_frame(c, &m) == SL_NOMEM)
        return; /* already closed for out_cap */
    conn_close(c, close_reason_of(code));
}

static void on_timer(struct loop *l, void *ud)
{
    struct conn *c = ud;
    const struct edge_cfg *cfg = &c->w->e->cfg;
    if (c->state == CONN_HELLO) {
        session_fail(c, SL_TIMEOUT, "no hello within the hello timeout");
        return;
    }
    if (c->state != CONN_READY)
        return;
    uint64_t now = loop_now_ms(l);
    uint64_t idle = now - c->last_ms;
    if (idle >= cfg->idle_timeout_ms)
        session_fail(c, SL_TIMEOUT, "silent past the idle timeout");
    else
        loop_timer_start(l, &c->timer, cfg->idle_timeout_ms - idle);
}

void session_open(struct conn *c)
{
    loop_timer_init(&c->timer, on_timer, c);
    c->last_ms = loop_now_ms(c->w->loop);
    loop_timer_start(c->w->loop, &c->timer, c->w->e->cfg.hello_timeout_ms);
}

typedef void handler(struct conn *c, const struct msg *m);

static void on_hello(struct conn *c, const struct msg *m)
{
    struct worker *w = c->w;
    const struct edge_cfg *cfg = &w->e->cfg;
    if (m->u.hello.v != SL_PROTO_VERSION) {
        session_fail(c, SL_PROTO, "unsupported protocol version");
        return;
    }
    struct sl_slice dev = m->u.hello.dev;
    if (!msg_valid_id(dev.p, dev.n)) {
        metric_inc(stats.auth_failures);
        session_fail(c, SL_AUTH, "device id outside [A-Za-z0-9._:-]{1,64}");
        return;
    }
    if (!token_check(cfg->secret, cfg->secret_len, dev.p, dev.n, m->u.hello.tok.p, m->u.hello.tok.n)) {
        metric_inc(stats.auth_failures);
        session_fail(c, SL_AUTH, "bad token");
        return;
    }
    if (atomic_load(&w->e->draining)) {
        session_fail(c, SL_DRAINING, "edge draining: reconnect elsewhere");
        return;
    }
    memcpy(c->dev, dev.p, dev.n);
    c->dev[dev.n] = 0;
    c->dev_len = (uint8_t)dev.n;
    c->epoch = realtime_ns();
    c->state = CONN_READY;
    /* Newest hello wins: whoever held dev on this edge is closed. */
    struct devmap_ref old;
    if (devmap_claim(w->e->map, c->dev, c->dev_len, ref_of(c), &old))
        conn_kick(w, old, SL_REPLACED);

    struct msg wm = {.t = MSG_WELCOME};
    wm.u.welcome.edge.p = (const uint8_t *)cfg->edge_id;
    wm.u.welcome.edge.n = (uint32_t)strlen(cfg->edge_id);
    wm.u.welcome.hb = cfg->hb_s;
    wm.u.welcome.max = cfg->max_frame;
    if (conn_send_frame(c, &wm) == SL_NOMEM)
        return;

    char peer[64];
    struct envelope e = {.kind = ENV_CONNECT,
                         .slot = c->slot,
                         .gen = c->gen,
                         .dev = dev_slice(c),
                         .epoch = c->epoch,
                         .at_ns = c->epoch};
    e.peer.p = (const uint8_t *)peer;
    e.peer.n = conn_peer_str(c, peer, sizeof peer);
    bus_emit(w->bus, &e);
    loop_timer_start(w->loop, &c->timer, cfg->idle_timeout_ms);
}

static void on_data(struct conn *c, const struct msg *m)
{
    struct envelope e = {.kind = ENV_DATA,
                         .slot = c->slot,
                         .gen = c->gen,
                         .dev = dev_slice(c),
                         .epoch = c->epoch,
                         .seq = m->u.data.seq,
                         .ts = m->u.data.ts,
                         .has_ts = m->u.data.has_ts,
                         .at_ns = realtime_ns(),
                         .body = m->u.data.body,
                         .has_body = true};
    bus_emit(c->w->bus, &e);
    /* One sample in flight per connection keeps this O(1); a sample whose
     * ack never came (resent, acked under another seq) expires after 10 s.
     * The expiry check uses the loop's cached ms clock (same monotonic
     * clock): a second clock_gettime per data frame was ~4% of the edge's
     * CPU at max throughput. */
    if (c->rtt_seq == 0 || loop_now_ms(c->w->loop) > c->rtt_us / 1000u + 10000u) {
        c->rtt_seq = m->u.data.seq;
        c->rtt_us = session_now_us();
    }
}

static void on_ping(struct conn *c, const struct msg *m)
{
    (void)m;
    struct msg pm = {.t = MSG_PONG};
    conn_send_frame(c, &pm);
}

static void on_res(struct conn *c, const struct msg *m)
{
    struct envelope e = {.kind = ENV_RES,
                         .slot = c->slot,
                         .gen = c->gen,
                         .dev = dev_slice(c),
                         .epoch = c->epoch,
                         .at_ns = realtime_ns(),
                         .id = m->u.res.id,
                         .ok = m->u.res.ok,
                         .has_ok = true,
                         .body = m->u.res.body,
                         .has_body = m->u.res.has_body};
    bus_emit(c->w->bus, &e);
}

/* [state][type]: what a device may send in each state; NULL = err proto. */
static handler *const dispatch[2][MSG_CMD + 1] = {
    [0] = {[MSG_HELLO] = on_hello},
    [1] = {[MSG_DATA] = on_data, [MSG_PING] = on_ping, [MSG_RES] = on_res},
};

void session_on_frame(struct conn *c, const uint8_t *p, size_t n)
{
    if (c->state != CONN_HELLO && c->state != CONN_READY)
        return;
    struct msg m;
    enum msg_rc rc = msg_decode(p, n, &m);
    if (rc != MSG_OK) {
        enum sl_err code = msg_rc_err(rc);
        if (code == SL_AUTH)
            metric_inc(stats.auth_failures);
        session_fail(c, code, msg_rc_str(rc));
        return;
    }
    c->last_ms = loop_now_ms(c->w->loop);
    int st = c->state == CONN_READY;
    handler *h = (unsigned)m.t <= MSG_CMD ? dispatch[st][m.t] : NULL;
    if (!h) {
        char text[64];
        const char *name = msg_type_name(m.t);
        snprintf(text, sizeof text, "%s not allowed %s", name ? name : "message",
                 st ? "after hello" : "before hello");
        session_fail(c, SL_PROTO, text);
        return;
    }
    h(c, &m);
}

void session_closed(struct conn *c, enum close_reason r)
{
    struct worker *w = c->w;
    loop_timer_stop(w->loop, &c->timer);
    if (c->state != CONN_READY)
        return;
    devmap_release(w->e->map, ref_of(c));
    char peer[64];
    const char *reason = close_reason_str(r);
    struct envelope e = {.kind = ENV_DISCONNECT,
                         .slot = c->slot,
                         .gen = c->gen,
                         .dev = dev_slice(c),
                         .epoch = c->epoch,
                         .at_ns = realtime_ns()};
    e.peer.p = (const uint8_t *)peer;
    e.peer.n = conn_peer_str(c, peer, sizeof peer);
    e.reason.p = (const uint8_t *)reason;
    e.reason.n = (uint32_t)strlen(reason);
    bus_emit(w->bus, &e);
}

void session_ack(struct conn *c, uint64_t seq)
{
    struct msg m = {.t = MSG_ACK};
    m.u.ack.seq = seq;
    if (conn_send_frame(c, &m) != SL_OK)
        return;
    metric_inc(stats.acks);
    if (c->rtt_seq == seq) {
        metric_observe(stats.ack_rtt, (double)(session_now_us() - c->rtt_us) / 1e6);
        c->rtt_seq = 0;
    }
}

void session_cmd(struct conn *c, struct sl_slice id, struct sl_slice body)
{
    struct msg m = {.t = MSG_CMD};
    m.u.cmd.id = id;
    m.u.cmd.body = body;
    if (conn_send_frame(c, &m) == SL_OK)
        metric_inc(stats.cmds);
}
