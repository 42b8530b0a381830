/* SPDX-License-Identifier: Apache-2.0 */
/* session.c - the device protocol state machine of docs/protocol.md §2.
 *
 * Decodes each frame payload with msg_decode() and dispatches on (phase,
 * type) through one table; anything not in the table is err "proto". One
 * deadline per session, armed through the ops: the hello timeout, then an
 * idle check re-armed from a last-activity stamp instead of restarted per
 * frame. It owns the takeover claim in the device map and the envelopes a
 * session produces, and counts what it does in session_env.cnt.
 *
 * It deliberately does no I/O and knows no connection: the worker's ops
 * table is its only way out (session.h), so unit tests run it against a
 * stub table. */
#define _GNU_SOURCE
#include "session.h"
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "sl/limits.h"
#include "edge.h"
#include "trust.h"

const double session_rtt_bounds[SESSION_RTT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5,
};

void session_env_init(struct session_env *x)
{
    memset(&x->cnt, 0, sizeof x->cnt);
    stat_hist_init(&x->cnt.rtt, session_rtt_bounds, SESSION_RTT_BUCKETS);
}

static struct sl_slice dev_slice(const struct session_env *x, const struct session *s, struct devmap_ref self)
{
    struct sl_slice d = {(const uint8_t *)devmap_dev(x->map, self), s->dev_len};
    return d;
}

void session_fail(struct session_env *x, struct session *s, enum sl_err code, const char *text)
{
    session_fail_retry(x, s, code, text, 0);
}

void session_fail_retry(struct session_env *x, struct session *s, enum sl_err code, const char *text,
                        uint32_t retry_ms)
{
    if (s->phase == SESSION_NONE)
        return;
    struct msg m = msg_err(&code, text);
    m.u.err.retry_ms = retry_ms;
    stat_inc(&x->cnt.errors[code]);
    if (x->ops->send(x->ud, s, &m) == SL_NOMEM)
        return; /* already closed for out_cap */
    x->ops->close(x->ud, s, code);
}

void session_on_timer(struct session_env *x, struct session *s)
{
    if (s->phase == SESSION_HELLO) {
        session_fail(x, s, SL_TIMEOUT, "no hello within the hello timeout");
        return;
    }
    if (s->phase != SESSION_READY)
        return;
    uint32_t limit = x->cfg->idle_timeout_ms;
    uint32_t now = (uint32_t)x->ops->now_ms(x->ud);
    if (s->held) {
        /* The hold ends; the time it lasted was ours, not the device's
         * silence: the idle clock starts again now. */
        stat_add(&x->cnt.held_us, (uint64_t)(now - s->last_ms) * 1000u);
        s->held = 0;
        s->last_ms = now;
        x->ops->release(x->ud, s);
        x->ops->arm(x->ud, s, limit);
        return;
    }
    uint32_t idle = now - s->last_ms;
    if (idle >= limit)
        session_fail(x, s, SL_TIMEOUT, "silent past the idle timeout");
    else
        x->ops->arm(x->ud, s, limit - idle);
}

void session_open(struct session_env *x, struct session *s, uint64_t hello_ms)
{
    memset(s, 0, sizeof *s);
    s->phase = SESSION_HELLO;
    s->last_ms = (uint32_t)x->ops->now_ms(x->ud);
    s->tokens = (float)x->burst;
    s->refill_ms = s->last_ms;
    x->ops->arm(x->ud, s, hello_ms);
}

/* --device-rate: every frame after hello takes a token from the session's
 * bucket, and the connection reads only as many bytes as the tokens left
 * are worth (session_read_budget). A device that runs out is not refused
 * and nothing it sent is dropped: its socket is not read until the bucket
 * has a token again (at most hold_max_ms at a time), so it only sees slower
 * acks and, in the end, its own send buffer filling up. */
static void refill(const struct session_env *x, struct session *s, uint32_t now)
{
    float t = s->tokens + (float)((double)(uint32_t)(now - s->refill_ms) / 1000.0 * x->rate);
    s->tokens = t > (float)x->burst ? (float)x->burst : t;
    s->refill_ms = now;
}

static void take_token(struct session_env *x, struct session *s, uint32_t now)
{
    refill(x, s, now);
    s->tokens -= 1.0f;
}

size_t session_read_budget(struct session_env *x, struct session *s, uint32_t frame_bytes)
{
    if (x->rate <= 0 || s->phase != SESSION_READY)
        return SIZE_MAX;
    if (s->held)
        return 0;
    refill(x, s, (uint32_t)x->ops->now_ms(x->ud));
    if (s->tokens >= 1.0f)
        return (size_t)s->tokens * frame_bytes + SL_FRAME_HDR;
    double ms = (1.0 - (double)s->tokens) / x->rate * 1000.0 + 1.0;
    uint32_t hold = ms > x->hold_max_ms ? x->hold_max_ms : (uint32_t)ms;
    s->held = 1;
    stat_inc(&x->cnt.holds);
    x->ops->arm(x->ud, s, hold);
    return 0;
}

typedef void handler(struct session_env *x, struct session *s, struct devmap_ref self, const struct msg *m);

static void on_hello(struct session_env *x, struct session *s, struct devmap_ref self, const struct msg *m)
{
    const struct edge_cfg *cfg = x->cfg;
    if (m->u.hello.v != SL_PROTO_VERSION) {
        session_fail(x, s, SL_PROTO, "unsupported protocol version");
        return;
    }
    struct sl_slice dev = m->u.hello.dev;
    if (!msg_valid_id(dev.p, dev.n)) {
        stat_inc(&x->cnt.auth_failures);
        session_fail(x, s, SL_AUTH, "device id outside [A-Za-z0-9._:-]{1,64}");
        return;
    }
    if (!trust_token_ok(x->trust, dev.p, dev.n, m->u.hello.tok.p, m->u.hello.tok.n)) {
        stat_inc(&x->cnt.auth_failures);
        session_fail(x, s, SL_AUTH, "bad token");
        return;
    }
    if (trust_denied(x->trust, dev.p, dev.n)) {
        stat_inc(&x->cnt.auth_failures);
        stat_inc(&x->cnt.revoked);
        session_fail(x, s, SL_AUTH, "device revoked");
        return;
    }
    if (x->ops->peer_id && !x->ops->peer_id(x->ud, s, (const char *)dev.p, dev.n)) {
        stat_inc(&x->cnt.auth_failures);
        session_fail(x, s, SL_AUTH, "the client certificate is not this device's");
        return;
    }
    if (atomic_load(x->draining)) {
        session_fail(x, s, SL_DRAINING, "edge draining: reconnect elsewhere");
        return;
    }
    uint32_t retry = x->ops->admit_device(x->ud, (const char *)dev.p, dev.n);
    if (retry) {
        session_fail_retry(x, s, SL_BUSY, "device reconnecting too often: back off", retry);
        return;
    }
    s->epoch = x->ops->wall_ns(x->ud);
    s->phase = SESSION_READY;
    x->ops->authenticated(x->ud, s);
    /* Newest hello wins: whoever held dev on this edge is closed. The map
     * keeps the id; the session reads it there (one copy per connection). */
    struct devmap_ref old;
    bool replaced = devmap_claim(x->map, (const char *)dev.p, dev.n, self, &old);
    s->dev_len = (uint8_t)dev.n;
    if (replaced)
        x->ops->kick(x->ud, old, SL_REPLACED);

    struct msg wm = {.t = MSG_WELCOME};
    wm.u.welcome.edge.p = (const uint8_t *)cfg->edge_id;
    wm.u.welcome.edge.n = (uint32_t)strlen(cfg->edge_id);
    wm.u.welcome.hb = cfg->hb_s;
    wm.u.welcome.max = cfg->max_frame;
    if (x->ops->send(x->ud, s, &wm) == SL_NOMEM)
        return;

    char peer[64];
    struct envelope e = {.kind = ENV_CONNECT,
                         .slot = self.slot,
                         .gen = self.gen,
                         .dev = dev_slice(x, s, self),
                         .epoch = s->epoch,
                         .at_ns = s->epoch};
    e.peer.p = (const uint8_t *)peer;
    e.peer.n = x->ops->peer(x->ud, s, peer, sizeof peer);
    x->ops->emit(x->ud, &e);
    x->ops->arm(x->ud, s, cfg->idle_timeout_ms);
}

static void on_data(struct session_env *x, struct session *s, struct devmap_ref self, const struct msg *m)
{
    struct envelope e = {.kind = ENV_DATA,
                         .slot = self.slot,
                         .gen = self.gen,
                         .dev = dev_slice(x, s, self),
                         .epoch = s->epoch,
                         .seq = m->u.data.seq,
                         .ts = m->u.data.ts,
                         .has_ts = m->u.data.has_ts,
                         .at_ns = x->ops->wall_ns(x->ud),
                         .body = m->u.data.body,
                         .has_body = true};
    x->ops->emit(x->ud, &e);
    /* One sample in flight per connection keeps this O(1); a sample whose
     * ack never came (resent, acked under another seq) expires after 10 s.
     * The expiry check uses the loop's cached ms clock (same monotonic
     * clock): a second clock read per data frame was ~4% of the edge's
     * CPU at max throughput. */
    if (s->rtt_seq == 0 || x->ops->now_ms(x->ud) > s->rtt_us / 1000u + 10000u) {
        s->rtt_seq = (uint32_t)m->u.data.seq;
        s->rtt_us = x->ops->mono_us(x->ud);
    }
}

static void on_ping(struct session_env *x, struct session *s, struct devmap_ref self, const struct msg *m)
{
    (void)self;
    (void)m;
    struct msg pm = {.t = MSG_PONG};
    x->ops->send(x->ud, s, &pm);
}

static void on_res(struct session_env *x, struct session *s, struct devmap_ref self, const struct msg *m)
{
    struct envelope e = {.kind = ENV_RES,
                         .slot = self.slot,
                         .gen = self.gen,
                         .dev = dev_slice(x, s, self),
                         .epoch = s->epoch,
                         .at_ns = x->ops->wall_ns(x->ud),
                         .id = m->u.res.id,
                         .ok = m->u.res.ok,
                         .has_ok = true,
                         .body = m->u.res.body,
                         .has_body = m->u.res.has_body};
    x->ops->emit(x->ud, &e);
}

/* [ready][type]: what a device may send in each phase; NULL = err proto. */
static handler *const dispatch[2][MSG_CMD + 1] = {
    [0] = {[MSG_HELLO] = on_hello},
    [1] = {[MSG_DATA] = on_data, [MSG_PING] = on_ping, [MSG_RES] = on_res},
};

void session_on_frame(struct session_env *x, struct session *s, struct devmap_ref self, const uint8_t *p,
                      size_t n)
{
    if (s->phase == SESSION_NONE)
        return;
    struct msg m;
    enum msg_rc rc = msg_decode(p, n, &m);
    if (rc != MSG_OK) {
        enum sl_err code = msg_rc_err(rc);
        if (code == SL_AUTH)
            stat_inc(&x->cnt.auth_failures);
        session_fail(x, s, code, msg_rc_str(rc));
        return;
    }
    uint32_t now = (uint32_t)x->ops->now_ms(x->ud);
    s->last_ms = now;
    int ready = s->phase == SESSION_READY;
    handler *h = (unsigned)m.t <= MSG_CMD ? dispatch[ready][m.t] : NULL;
    if (!h) {
        char text[64];
        const char *name = msg_type_name(m.t);
        snprintf(text, sizeof text, "%s not allowed %s", name ? name : "message",
                 ready ? "after hello" : "before hello");
        session_fail(x, s, SL_PROTO, text);
        return;
    }
    h(x, s, self, &m);
    if (ready && x->rate > 0 && s->phase == SESSION_READY)
        take_token(x, s, now);
}

void session_closed(struct session_env *x, struct session *s, struct devmap_ref self, const char *reason)
{
    bool ready = s->phase == SESSION_READY;
    s->phase = SESSION_NONE;
    if (!ready)
        return;
    devmap_release(x->map, self);
    char peer[64];
    struct envelope e = {.kind = ENV_DISCONNECT,
                         .slot = self.slot,
                         .gen = self.gen,
                         .dev = dev_slice(x, s, self),
                         .epoch = s->epoch,
                         .at_ns = x->ops->wall_ns(x->ud)};
    e.peer.p = (const uint8_t *)peer;
    e.peer.n = x->ops->peer(x->ud, s, peer, sizeof peer);
    e.reason.p = (const uint8_t *)reason;
    e.reason.n = (uint32_t)strlen(reason);
    x->ops->emit(x->ud, &e);
}

void session_ack(struct session_env *x, struct session *s, uint64_t seq)
{
    struct msg m = {.t = MSG_ACK};
    m.u.ack.seq = seq;
    if (x->ops->send(x->ud, s, &m) != SL_OK)
        return;
    stat_inc(&x->cnt.acks);
    if (s->rtt_seq && s->rtt_seq == (uint32_t)seq) {
        stat_hist_observe(&x->cnt.rtt, (double)(x->ops->mono_us(x->ud) - s->rtt_us) / 1e6);
        s->rtt_seq = 0;
    }
}

void session_cmd(struct session_env *x, struct session *s, struct devmap_ref self, struct sl_slice id,
                 struct sl_slice body)
{
    struct msg m = {.t = MSG_CMD};
    m.u.cmd.id = id;
    m.u.cmd.body = body;
    if (x->ops->send(x->ud, s, &m) != SL_OK)
        return;
    stat_inc(&x->cnt.cmds);
    /* The command store counts deliveries by this (docs/protocol.md §6). */
    struct envelope e = {.kind = ENV_CMD_SENT,
                         .slot = self.slot,
                         .gen = self.gen,
                         .dev = dev_slice(x, s, self),
                         .epoch = s->epoch,
                         .at_ns = x->ops->wall_ns(x->ud),
                         .id = id};
    x->ops->emit(x->ud, &e);
}

bool session_is(const struct session_env *x, const struct session *s, struct devmap_ref self,
                struct sl_slice dev)
{
    return s->phase == SESSION_READY && s->dev_len == dev.n &&
           memcmp(devmap_dev(x->map, self), dev.p, dev.n) == 0;
}

const char *session_dev(const struct session_env *x, const struct session *s, struct devmap_ref self)
{
    return s->phase == SESSION_READY || s->dev_len ? devmap_dev(x->map, self) : "-";
}

size_t session_encode_refusal(enum sl_err code, const char *text, uint32_t retry_ms, uint8_t *buf, size_t cap)
{
    struct msg m = msg_err(&code, text);
    m.u.err.retry_ms = retry_ms;
    size_t len = 0;
    return msg_encode_frame(&m, buf, cap, &len) == SL_OK ? len : 0;
}
