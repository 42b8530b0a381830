/* SPDX-License-Identifier: Apache-2.0 */
/* ntf.c - the notifier's core: turns edge batches and MQTT messages into
 * publishes, commands, kicks and heartbeat answers, with no I/O of its own.
 *
 * - data      -> P/<dev>/data (refusal by the MQTT side is counted, never retried here)
 * - connect / disconnect -> presence fencing -> retained P/<dev>/status,
 *   a kick for a superseded connection, "disconnected" for its commands
 * - heartbeat -> the worker's ring of notifiers (which devices are ours),
 *   answered with ENV_NOTIFIER_HB echoing the endpoint it names; its at_ns
 *   against our wall clock -> the edge's clock skew (sl/edgeclock.h)
 * - P/<dev>/status read back (retained, and every other notifier's) ->
 *   presence, so every notifier can route every device
 * - P/<dev>/cmd (shared subscription: one notifier takes each) -> the
 *   taker checks it, publishes a retained marker P/_sluice/pending/<dev>/<id>
 *   and routes the command once the broker has the marker (the core says
 *   when the command may be acknowledged, out.ack; paho, the transport
 *   here, has acknowledged it on receipt already)
 * - markers (every notifier reads all of them) -> the pending table; the
 *   command's one result comes from whoever gets its end: the notifier the
 *   device's edge worker sends res / undeliverable / disconnect to, or at
 *   the deadline the notifier that owns the device on that worker's ring.
 *   Each result is preceded by clearing the marker, so a marker never
 *   outlives its result, and only a notifier holding the marker publishes.
 *   An answer that arrives before its marker waits HOLD_MS for it.
 *
 * Deliberately not here: sockets, MQTT, threads, retry queues. Logging is
 * limited to rare operator-visible events (bad commands), never per message. */
#include "ntf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "presence.h"
#include "sl/edgeclock.h"
#include "sl/log.h"
#include "sl/msg.h"
#include "sl/ring.h"
#include "sl/tojson.h"
#include "topics.h"

#define TOPIC_CAP (TOPICS_PREFIX_MAX + SL_DEV_MAX + SL_CMD_ID_MAX + 48)
#define CTRL_CAP                                                                                             \
    TOPICS_STATUS_JSON_MAX /* statuses, markers and error results (all shorter); a device result uses `json` \
                            */
#define CMD_BODY_CAP    (64 * 1024)
#define HOLD_MAX        256        /* answers waiting for their marker */
#define HOLD_BYTES      (4u << 20) /* ... and their bodies */
#define HOLD_MS         2000u      /* how long one waits */
#define EXPIRE_GRACE_MS 5000u      /* a marker nobody answered by deadline + this is cleared */
#define RESYNC_PER_TICK 2000u      /* statuses republished per tick after a broker switch */
#define TOMB_SLOTS      4096u      /* commands ended lately: their late answers are not held */

/* Flags in struct cmds_meta. */
enum {
    M_ROUTING = 1, /* taken here: marker published, its PUBACK awaited; the body waits in cmds */
    M_MARKER = 2,  /* the marker is at the broker (acknowledged, or read back) */
    M_BY_ME = 4,   /* taken by this notifier */
    M_SENT = 8,    /* routed by this notifier */
};

struct held {
    bool used;
    uint8_t kind;
    bool ok, has_ok, has_body;
    char dev[SL_DEV_MAX + 1], id[SL_CMD_ID_MAX + 1];
    uint8_t *body;
    uint32_t body_len;
    uint64_t until_ms;
};

struct ntf {
    struct ntf_cfg cfg;
    char prefix[TOPICS_PREFIX_MAX + 1];
    char id[SL_DEV_MAX + 1];
    uint64_t self_key; /* ring_key(id) */
    struct ntf_out out;
    struct presence *pres;
    struct cmds *cmds;
    struct ntf_stats st;
    uint64_t last_sweep_ms, now_ms;
    char topic[TOPIC_CAP];
    char ctrl[CTRL_CAP];
    char *json; /* data and result payloads; grows to the largest body seen */
    size_t json_cap;
    uint8_t *cmd_body;
    struct held hold[HOLD_MAX];
    uint32_t nhold;
    size_t hold_bytes;
    /* the ring of the last heartbeat heard: owner of devices whose worker is
     * unknown (offline ones), for a resync */
    uint64_t any_ring[RING_MAX];
    uint8_t any_nring;
    bool resync;
    uint32_t resync_cursor;
    uint64_t tomb[TOMB_SLOTS]; /* hashes of (dev, id) of commands that ended lately; 0 = empty */
    bool future_logged;        /* a status from the future was logged (once per process) */
    uint64_t last_clocks_ms;   /* edgeclock_publish, once a second */
    struct edgeclock clocks;   /* edges' clock skew; the metrics thread reads it (ntf_edgeclock) */
};

const double ntf_route_bounds[NTF_ROUTE_BUCKETS] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                                    0.05,   0.1,   0.25,  0.5,   1,    2.5};

static uint64_t mono_us(const struct ntf *n)
{
    return n->out.mono_us ? n->out.mono_us(n->out.ud) : n->now_ms * 1000u;
}

struct ntf *ntf_new(const struct ntf_cfg *cfg, const struct ntf_out *out)
{
    if (!cfg->prefix || strlen(cfg->prefix) > TOPICS_PREFIX_MAX || cfg->max_cmds == 0 || !cfg->id ||
        !msg_valid_id((const uint8_t *)cfg->id, strlen(cfg->id)))
        return NULL;
    struct ntf *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->cfg = *cfg;
    strcpy(n->prefix, cfg->prefix);
    n->cfg.prefix = n->prefix;
    strcpy(n->id, cfg->id);
    n->cfg.id = n->id;
    n->self_key = ring_key(n->id, strlen(n->id));
    n->out = *out;
    edgeclock_init(&n->clocks, cfg->edge_timeout_ms); /* an edge timed out loses its series */
    stat_hist_init(&n->st.route, ntf_route_bounds, NTF_ROUTE_BUCKETS);
    n->pres = presence_new(cfg->max_devices, cfg->max_workers);
    n->cmds = cmds_new(cfg->max_cmds, 16u << 20);
    n->json_cap = 64 * 1024;
    n->json = malloc(n->json_cap);
    n->cmd_body = malloc(CMD_BODY_CAP);
    if (!n->pres || !n->cmds || !n->json || !n->cmd_body) {
        ntf_destroy(&n);
        return NULL;
    }
    return n;
}

void ntf_destroy(struct ntf **pn)
{
    struct ntf *n = *pn;
    if (!n)
        return;
    for (uint32_t i = 0; i < HOLD_MAX; i++)
        free(n->hold[i].body);
    presence_destroy(&n->pres);
    cmds_destroy(&n->cmds);
    free(n->json);
    free(n->cmd_body);
    edgeclock_fini(&n->clocks);
    free(n);
    *pn = NULL;
}

const struct ntf_stats *ntf_stats(const struct ntf *n)
{
    return &n->st;
}
uint32_t ntf_devices(const struct ntf *n)
{
    return presence_size(n->pres);
}
uint32_t ntf_online(const struct ntf *n)
{
    return presence_online(n->pres);
}
uint32_t ntf_pending(const struct ntf *n)
{
    return cmds_count(n->cmds);
}

static struct sl_slice cstr(const char *s)
{
    return (struct sl_slice){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static void copy_str(char *dst, size_t cap, struct sl_slice s)
{
    size_t k = s.n < cap - 1 ? s.n : cap - 1;
    if (k)
        memcpy(dst, s.p, k);
    dst[k] = '\0';
}

/* Make n->json hold at least need bytes. Grows rarely (largest body so far). */
static bool json_room(struct ntf *n, size_t need)
{
    if (need <= n->json_cap)
        return true;
    char *p = realloc(n->json, need);
    if (!p)
        return false;
    n->json = p;
    n->json_cap = need;
    return true;
}

static void publish(struct ntf *n, enum ntf_pub_class cls, struct sl_slice dev, const struct tojson_buf *t,
                    const struct tojson_buf *b, bool retained)
{
    n->out.publish(n->out.ud, cls, (const char *)dev.p, dev.n, t->p, t->len, b->p, b->len, retained);
}

/* ---- commands that ended lately ---- */

static uint64_t tomb_key(struct sl_slice dev, struct sl_slice id)
{
    uint64_t h = ring_key(dev.p, dev.n) * 31u ^ ring_key(id.p, id.n);
    return h | 1u;
}

static void tomb_set(struct ntf *n, struct sl_slice dev, struct sl_slice id, bool on)
{
    uint64_t h = tomb_key(dev, id);
    uint64_t *slot = &n->tomb[h % TOMB_SLOTS];
    if (on)
        *slot = h;
    else if (*slot == h)
        *slot = 0;
}

static bool tomb_has(const struct ntf *n, struct sl_slice dev, struct sl_slice id)
{
    uint64_t h = tomb_key(dev, id);
    return n->tomb[h % TOMB_SLOTS] == h;
}

/* ---- who decides ---- */

/* Is dev ours on worker w's ring? fallback when w is unknown or sent no ring
 * (an edge of the version before heartbeats, or not heard yet). */
static bool owns(const struct ntf *n, const struct presence_worker *w, struct sl_slice dev, bool fallback)
{
    if (!w || w->nring == 0)
        return fallback;
    return w->ring[ring_pick(ring_key(dev.p, dev.n), w->ring, w->nring)] == n->self_key;
}

/* Does this notifier give the command its deadline result? The owner of
 * its device on the ring of the worker it was routed to; the taker when
 * that ring is unknown. */
static bool decides(struct ntf *n, struct sl_slice dev, const struct cmds_meta *m)
{
    uint32_t wi = presence_worker_find(n->pres, cstr(m->edge), m->inc, cstr(m->reply));
    return owns(n, presence_worker_get(n->pres, wi), dev, (m->flags & M_BY_ME) != 0);
}

/* ---- results and markers ---- */

static void marker_topic(struct ntf *n, struct tojson_buf *t, struct sl_slice dev, struct sl_slice id)
{
    tojson_buf_init(t, n->topic, sizeof n->topic);
    topics_pending_topic(t, n->prefix, dev, id);
}

/* Publish the marker of (dev, id) from its notes; token != 0: at most once,
 * its fate reported to ntf_marker_done. */
static void marker_publish(struct ntf *n, struct sl_slice dev, struct sl_slice id, const struct cmds_meta *m,
                           uint64_t token)
{
    struct topics_marker k;
    memset(&k, 0, sizeof k);
    snprintf(k.by, sizeof k.by, "%s", m->by);
    snprintf(k.edge, sizeof k.edge, "%s", m->edge);
    snprintf(k.reply, sizeof k.reply, "%s", m->reply);
    k.inc = m->inc;
    k.deadline_ms = m->deadline_wall;
    struct tojson_buf t, b;
    marker_topic(n, &t, dev, id);
    tojson_buf_init(&b, n->ctrl, sizeof n->ctrl);
    topics_marker_json(&b, &k);
    if (token)
        n->out.publish_marker(n->out.ud, t.p, t.len, b.p, b.len, token);
    else
        publish(n, NTF_PUB_CTRL, dev, &t, &b, true);
}

static void marker_clear(struct ntf *n, struct sl_slice dev, struct sl_slice id)
{
    struct tojson_buf t, b;
    marker_topic(n, &t, dev, id);
    tojson_buf_init(&b, n->ctrl, 0);
    publish(n, NTF_PUB_CTRL, dev, &t, &b, true); /* empty + retained: the broker forgets it */
}

/* Publish the one result of (dev, id), already removed from the table: the
 * marker is cleared first, so no notifier can take it up afterwards. */
static void result(struct ntf *n, struct sl_slice dev, struct sl_slice id, bool ok,
                   const struct sl_slice *body, const char *error)
{
    marker_clear(n, dev, id);
    tomb_set(n, dev, id, true);
    struct tojson_buf t, b;
    tojson_buf_init(&t, n->topic, sizeof n->topic);
    topics_result_topic(&t, n->prefix, dev, id);
    size_t need = 64 + (body ? tojson_bound(body->n) : 0);
    if (need > NTF_PAYLOAD_MAX)
        need = NTF_PAYLOAD_MAX; /* a longer one would be dropped by the broker: too_big below */
    if (!json_room(n, need)) {
        body = NULL;
        error = "too_big";
    }
    /* json may have grown past the cap for data: results stay under it. */
    tojson_buf_init(&b, n->json, n->json_cap < NTF_PAYLOAD_MAX ? n->json_cap : NTF_PAYLOAD_MAX);
    if (topics_result_json(&b, ok, body, error) == SL_TOOBIG) {
        tojson_buf_init(&b, n->json, n->json_cap);
        topics_result_json(&b, false, NULL, "too_big");
    }
    publish(n, NTF_PUB_CTRL, dev, &t, &b, false);
}

/* A result the taker publishes at once, for a command never routed (and
 * never marked): offline, bad_command, busy. */
static void answer_now(struct ntf *n, struct sl_slice dev, struct sl_slice id, const char *error)
{
    struct tojson_buf t, b;
    tojson_buf_init(&t, n->topic, sizeof n->topic);
    topics_result_topic(&t, n->prefix, dev, id);
    tojson_buf_init(&b, n->json, n->json_cap);
    topics_result_json(&b, false, NULL, error);
    publish(n, NTF_PUB_CTRL, dev, &t, &b, false);
}

/* The entry of (dev, id) is going: what the taker still owes goes with it. */
static void release(struct ntf *n, struct sl_slice dev, struct cmds_meta *m)
{
    if (m->ack) {
        n->out.ack(n->out.ud, m->ack);
        m->ack = 0;
    }
    struct presence_dev *d = presence_get(n->pres, dev);
    if (d && d->pending > 0)
        d->pending--;
}

/* Take (dev, id) out of the table; false if it was not there. */
static bool take(struct ntf *n, struct sl_slice dev, struct sl_slice id)
{
    struct cmds_meta *m = cmds_meta(n->cmds, dev, id);
    if (!m)
        return false;
    release(n, dev, m);
    cmds_take(n->cmds, dev, id);
    return true;
}

static void fail_cb(void *ud, struct sl_slice dev, struct sl_slice id)
{
    struct ntf *n = ud;
    struct cmds_meta *m = cmds_meta(n->cmds, dev, id);
    if (m)
        release(n, dev, m);
    n->st.cmds_disconnected++;
    result(n, dev, id, false, NULL, "disconnected");
}

static bool decides_cb(void *ud, struct sl_slice dev, struct sl_slice id, struct cmds_meta *m)
{
    (void)id;
    return decides(ud, dev, m);
}

/* Every command waiting on dev's connection ends "disconnected": all of
 * them when the event that ends the connection came to us, or only those we
 * decide when we concluded it ourselves (edge lost). */
static void fail_pending(struct ntf *n, struct sl_slice dev, bool all)
{
    struct presence_dev *d = presence_get(n->pres, dev);
    if (d && d->pending == 0)
        return;
    cmds_take_dev(n->cmds, dev, all ? NULL : decides_cb, fail_cb, n);
}

/* ---- presence ---- */

static void publish_status(struct ntf *n, const struct presence_dev *d, uint64_t at_ms,
                           struct sl_slice reason)
{
    struct topics_status s;
    memset(&s, 0, sizeof s);
    s.online = d->online;
    s.at_ms = at_ms;
    s.epoch = d->epoch;
    strcpy(s.edge, d->edge);
    const struct presence_worker *w = d->online ? presence_worker_get(n->pres, d->worker) : NULL;
    if (w) {
        strcpy(s.reply, w->reply);
        s.inc = w->inc;
        s.slot = d->slot;
        s.gen = d->gen;
    } else {
        s.online = false; /* online with nowhere to route is useless to a restart */
    }
    copy_str(s.reason, sizeof s.reason, reason);
    struct tojson_buf t, b;
    struct sl_slice dev = cstr(d->dev);
    tojson_buf_init(&t, n->topic, sizeof n->topic);
    topics_dev(&t, n->prefix, dev, "status");
    tojson_buf_init(&b, n->ctrl, sizeof n->ctrl);
    topics_status_json(&b, &s);
    n->st.status_published++;
    publish(n, NTF_PUB_CTRL, dev, &t, &b, true);
}

static void kick(struct ntf *n, const struct presence_change *c, struct sl_slice dev)
{
    const struct presence_worker *w = presence_worker_get(n->pres, c->old_worker);
    if (!w)
        return;
    struct envelope e = {
        .kind = ENV_KICK, .slot = c->old_slot, .gen = c->old_gen, .dev = dev, .epoch = c->old_epoch};
    n->st.kicks++;
    if (n->out.send_edge(n->out.ud, w->ident, w->inc, &e) != 0)
        n->st.kicks_failed++;
}

/* Act on a presence change. `event` is false for statuses read back from
 * the broker: they are already published (by us before a restart, or by the
 * notifier that owns the device), and the commands of that device end where
 * its events arrive. A kick still goes out: a takeover seen first through
 * another notifier's status must still close the old connection (the edge
 * ignores a kick that no longer matches). */
static void apply(struct ntf *n, const struct presence_change *c, struct sl_slice dev, bool online,
                  uint64_t at_ms, struct sl_slice reason, bool event)
{
    switch (c->verdict) {
    case PRESENCE_STALE:
        if (online)
            n->st.connects_stale++;
        else
            n->st.disconnects_stale++;
        return;
    case PRESENCE_DUP: n->st.dups++; return;
    case PRESENCE_FULL: n->st.presence_full++; return;
    case PRESENCE_APPLIED: break;
    }
    if (c->kick)
        kick(n, c, dev);
    if (event && (c->kick || (!online && c->was_online)))
        fail_pending(n, dev, true); /* they were routed to the connection now gone */
    if (event)
        publish_status(n, c->d, at_ms, reason);
}

static void on_session(struct ntf *n, const struct envelope_hdr *h, uint32_t worker, const struct envelope *e)
{
    struct presence_session s = {
        .epoch = e->epoch, .edge = h->edge, .worker = worker, .slot = e->slot, .gen = e->gen};
    struct presence_change c;
    bool online = e->kind == ENV_CONNECT;
    if (online) {
        if (worker == PRESENCE_NONE) {
            n->st.worker_full++; /* nowhere to route: do not claim it online */
            return;
        }
        presence_connect(n->pres, e->dev, &s, &c);
    } else {
        presence_disconnect(n->pres, e->dev, &s, &c);
    }
    apply(n, &c, e->dev, online, e->at_ns / 1000000u, e->reason, true);
}

/* ---- heartbeats ---- */

static void on_heartbeat(struct ntf *n, uint32_t worker, const struct envelope *e)
{
    struct presence_worker *w = presence_worker_mut(n->pres, worker);
    if (!w || e->to.n == 0 || e->to.n > PRESENCE_TO_MAX)
        return; /* an edge of the version before notifier heartbeats */
    copy_str(w->to, sizeof w->to, e->to);
    w->nring = (uint8_t)ring_parse((const char *)e->ring.p, e->ring.n, w->ring);
    if (w->nring) {
        memcpy(n->any_ring, w->ring, sizeof n->any_ring);
        n->any_nring = w->nring;
    }
    /* seq echoes the heartbeat's at_ns: everything the edge sent before it
     * has been handled here (entries are handled in order), so the edge
     * stops keeping those control entries for a successor (edge/ntfsent.h). */
    struct envelope a = {
        .kind = ENV_NOTIFIER_HB, .at_ns = n->out.wall_ms(n->out.ud) * 1000000u, .seq = e->at_ns, .to = e->to};
    if (n->out.send_edge(n->out.ud, w->ident, w->inc, &a) == 0)
        n->st.heartbeats_answered++;
}

/* ---- data ---- */

static void on_data(struct ntf *n, const struct envelope_hdr *h, const struct envelope *e)
{
    size_t need = 96 + 6u * (e->dev.n + h->edge.n) + (e->has_body ? tojson_bound(e->body.n) : 4);
    if (need > NTF_PAYLOAD_MAX)
        need = NTF_PAYLOAD_MAX; /* longer JSON is not published (below): the buffer stops there */
    if (!json_room(n, need)) {
        n->st.data_bad++;
        return;
    }
    struct tojson_buf t, b;
    tojson_buf_init(&t, n->topic, sizeof n->topic);
    topics_dev(&t, n->prefix, e->dev, "data");
    tojson_buf_init(&b, n->json, n->json_cap < NTF_PAYLOAD_MAX ? n->json_cap : NTF_PAYLOAD_MAX);
    enum sl_err rc = topics_data_json(&b, h->edge, e);
    if (rc == SL_TOOBIG && !t.overflow) {
        /* Over the brokers' message_size_limit: lost from the live view,
         * counted as the publishers' refusal of a longer record always was. */
        n->st.data++;
        n->st.data_refused++;
        return;
    }
    if (rc != SL_OK || t.overflow) {
        n->st.data_bad++;
        return;
    }
    n->st.data++;
    if (n->out.publish(n->out.ud, NTF_PUB_DATA, (const char *)e->dev.p, e->dev.n, t.p, t.len, b.p, b.len,
                       false) != 0)
        n->st.data_refused++;
}

/* ---- answers from devices ---- */

/* res or undeliverable for a command we hold: its one result. */
static void answer(struct ntf *n, uint8_t kind, struct sl_slice dev, struct sl_slice id, bool ok,
                   const struct sl_slice *body)
{
    if (kind == ENV_RES) {
        n->st.cmds_ok++;
        result(n, dev, id, ok, body, NULL);
    } else {
        n->st.cmds_disconnected++;
        result(n, dev, id, false, NULL, "disconnected");
    }
}

/* An answer for a command we do not hold: its marker may still be on its
 * way from the broker (the device answered faster): it waits HOLD_MS. */
static void hold(struct ntf *n, const struct envelope *e)
{
    uint32_t blen = e->has_body ? e->body.n : 0;
    struct held *h = NULL;
    for (uint32_t i = 0; i < HOLD_MAX && !h; i++)
        if (!n->hold[i].used)
            h = &n->hold[i];
    if (!h || n->hold_bytes + blen > HOLD_BYTES || e->dev.n > SL_DEV_MAX || e->id.n > SL_CMD_ID_MAX) {
        n->st.res_unknown++;
        return;
    }
    h->body = blen ? malloc(blen) : NULL; /* rare: a race between a marker and its answer */
    if (blen && !h->body) {
        n->st.res_unknown++;
        return;
    }
    if (blen)
        memcpy(h->body, e->body.p, blen);
    h->body_len = blen;
    h->used = true;
    h->kind = (uint8_t)e->kind;
    h->ok = e->ok;
    h->has_ok = e->has_ok;
    h->has_body = e->has_body;
    copy_str(h->dev, sizeof h->dev, e->dev);
    copy_str(h->id, sizeof h->id, e->id);
    h->until_ms = n->now_ms + HOLD_MS;
    n->hold_bytes += blen;
    n->nhold++;
    n->st.res_held++;
}

static void unhold(struct ntf *n, struct held *h)
{
    free(h->body);
    n->hold_bytes -= h->body_len;
    memset(h, 0, sizeof *h);
    n->nhold--;
}

/* A marker arrived: an answer waiting for it ends it now. */
static void held_check(struct ntf *n, struct sl_slice dev, struct sl_slice id)
{
    if (n->nhold == 0)
        return;
    for (uint32_t i = 0; i < HOLD_MAX; i++) {
        struct held *h = &n->hold[i];
        if (!h->used || !sl_slice_eqs(dev, h->dev) || !sl_slice_eqs(id, h->id))
            continue;
        if (take(n, dev, id)) {
            struct sl_slice body = {h->body, h->body_len};
            answer(n, h->kind, dev, id, h->has_ok && h->ok, h->has_body ? &body : NULL);
        }
        unhold(n, h);
        return;
    }
}

static void on_answer(struct ntf *n, const struct envelope *e)
{
    if (take(n, e->dev, e->id)) {
        struct sl_slice body = e->body;
        answer(n, (uint8_t)e->kind, e->dev, e->id, e->has_ok && e->ok, e->has_body ? &body : NULL);
        return;
    }
    if (tomb_has(n, e->dev, e->id))
        n->st.res_unknown++; /* late: its command has its result */
    else
        hold(n, e);
}

/* ---- batches ---- */

void ntf_batch(struct ntf *n, const uint8_t *p, size_t len, uint64_t now_ms)
{
    struct envelope_reader r;
    n->now_ms = now_ms;
    enum sl_err rc = envelope_reader_begin(&r, p, len);
    n->st.batches++;
    if (rc == SL_VERSION) {
        n->st.bad_version++;
        return;
    }
    const char *why = NULL;
    if (rc != SL_OK || envelope_hdr_check(&r.hdr, &why) != SL_OK) {
        /* a header whose strings are not what an edge writes (a NUL in the
         * reply identity crashed the presence table once) */
        n->st.bad_batches++;
        return;
    }
    uint32_t worker = presence_worker(n->pres, r.hdr.edge, r.hdr.incarnation, r.hdr.reply, now_ms, true);
    struct envelope e;
    while ((rc = envelope_reader_next(&r, &e)) == SL_OK) {
        n->st.entries++;
        enum sl_err ok = envelope_check(&e, &why);
        if (ok == SL_AGAIN)
            continue; /* a kind of a later version */
        if (ok != SL_OK) {
            n->st.entries_bad++;
            continue;
        }
        switch (e.kind) {
        case ENV_DATA:
            if (msg_valid_id(e.dev.p, e.dev.n))
                on_data(n, &r.hdr, &e);
            else
                n->st.data_bad++;
            break;
        case ENV_CONNECT:
        case ENV_DISCONNECT:
            if (msg_valid_id(e.dev.p, e.dev.n))
                on_session(n, &r.hdr, worker, &e);
            break;
        case ENV_RES:
        case ENV_UNDELIVERABLE:
            if (msg_valid_id(e.dev.p, e.dev.n) && msg_valid_id(e.id.p, e.id.n))
                on_answer(n, &e);
            else
                n->st.res_unknown++;
            break;
        case ENV_HEARTBEAT:
            edgeclock_sample(&n->clocks, r.hdr.edge.p, r.hdr.edge.n, r.hdr.incarnation, e.at_ns,
                             n->out.wall_ms(n->out.ud) * 1000000u, now_ms);
            on_heartbeat(n, worker, &e);
            break;
        default: break; /* the worker lookup above noted it heard */
        }
    }
    if (rc != SL_AGAIN)
        n->st.bad_batches++;
}

/* ---- MQTT in ---- */

static void on_status(struct ntf *n, struct sl_slice dev, const char *payload, size_t len, uint64_t now_ms)
{
    struct topics_status s;
    if (len == 0)
        return; /* a cleared retained message */
    if (topics_status_parse(payload, len, &s) != SL_OK) {
        n->st.status_bad++;
        return;
    }
    /* Epochs are wall-clock ns at the edge (docs/protocol.md "Session
     * epoch"); one far ahead of ours cannot be a real session's. */
    uint64_t limit_ns = (n->out.wall_ms(n->out.ud) + n->cfg.status_max_skew_ms) * 1000000u;
    if (n->cfg.status_max_skew_ms && s.epoch > limit_ns) {
        n->st.status_future++;
        if (!n->future_logged) {
            char qd[200];
            log_warn("event=status_ignored dev=%s reason=future_epoch epoch=%llu max_skew_ms=%llu "
                     "hint=\"logged once; counted in sluice_notifier_status_ignored_total\"",
                     log_q(qd, sizeof qd, (const char *)dev.p, dev.n), (unsigned long long)s.epoch,
                     (unsigned long long)n->cfg.status_max_skew_ms);
            n->future_logged = true;
        }
        return;
    }
    n->st.status_loaded++;
    struct presence_session ses = {.epoch = s.epoch, .edge = cstr(s.edge), .slot = s.slot, .gen = s.gen};
    struct presence_change c;
    if (s.online) {
        ses.worker = presence_worker(n->pres, ses.edge, s.inc, cstr(s.reply), now_ms, false);
        if (ses.worker == PRESENCE_NONE) {
            n->st.worker_full++;
            return;
        }
        presence_connect(n->pres, dev, &ses, &c);
    } else {
        ses.worker = PRESENCE_NONE;
        presence_disconnect(n->pres, dev, &ses, &c);
    }
    apply(n, &c, dev, s.online, s.at_ms, cstr(s.reason), false);
}

/* Send cmd (dev, id, body) to the connection currently holding dev.
 * 0, or -1 if dev is not routable or the worker is unreachable. */
static int send_cmd(struct ntf *n, struct sl_slice dev, struct sl_slice id, struct sl_slice body)
{
    struct presence_dev *d = presence_get(n->pres, dev);
    const struct presence_worker *w = d && d->online ? presence_worker_get(n->pres, d->worker) : NULL;
    if (!w)
        return -1;
    struct envelope e = {.kind = ENV_CMD,
                         .slot = d->slot,
                         .gen = d->gen,
                         .dev = dev,
                         .epoch = d->epoch,
                         .id = id,
                         .body = body,
                         .has_body = true};
    return n->out.send_edge(n->out.ud, w->ident, w->inc, &e);
}

static int retry_cb(void *ud, struct sl_slice dev, struct sl_slice id, struct sl_slice body)
{
    struct ntf *n = ud;
    struct cmds_meta *m = cmds_meta(n->cmds, dev, id);
    if (m && (m->flags & M_ROUTING))
        return -1; /* not before the broker has its marker */
    int rc = send_cmd(n, dev, id, body);
    if (rc == 0 && m)
        m->flags |= M_SENT;
    return rc;
}

/* "queue":true with a durable queue: stored there (by the queue's thread),
 * which delivers it and publishes its states and its one result; nothing
 * of it is kept here. What the queue cannot take is answered now. */
static void queue_cmd(struct ntf *n, struct sl_slice dev, const struct cmdjson *c, const struct mp_buf *body)
{
    struct sl_slice sid = cstr(c->id);
    if (c->opts_why || body->len > CMDJSON_BODY_MAX) { /* a bad ttl_s, or too big for a stored cmd */
        n->st.cmds_bad++;
        answer_now(n, dev, sid, "bad_command");
        return;
    }
    if (n->out.queue_cmd(n->out.ud, dev, c->id, c->json, body->p, body->len, c->ttl_s) != 0) {
        n->st.cmds_failed++;
        answer_now(n, dev, sid, "busy");
        return;
    }
    n->st.cmds_queued++;
}

static bool on_cmd(struct ntf *n, struct sl_slice dev, const char *payload, size_t len, uint64_t ack,
                   uint64_t now_ms)
{
    struct cmdjson c;
    struct mp_buf body;
    mp_buf_init(&body, n->cmd_body, CMD_BODY_CAP);
    /* The body's JSON text only where it may be stored (--db). */
    enum topics_cmd_rc rc = topics_cmd_read(payload, len, n->out.queue_cmd != NULL, &c, &body);
    const char *id = c.id;
    char qd[96];
    log_q(qd, sizeof qd, (const char *)dev.p, dev.n);
    switch (rc) {
    case TOPICS_CMD_NO_ID:
        n->st.cmds_unreadable++;
        log_warn("event=cmd_dropped dev=%s reason=unreadable bytes=%zu", qd, len);
        cmdjson_fini(&c);
        return true;
    case TOPICS_CMD_BAD_ID:
        n->st.cmds_bad_id++;
        log_warn("event=cmd_dropped dev=%s reason=bad_id", qd);
        cmdjson_fini(&c);
        return true;
    case TOPICS_CMD_BAD:
        n->st.cmds_bad++;
        answer_now(n, dev, cstr(id), "bad_command");
        cmdjson_fini(&c);
        return true;
    case TOPICS_CMD_OK: break;
    }
    if (n->out.queue_cmd && c.queue) {
        queue_cmd(n, dev, &c, &body);
        cmdjson_fini(&c);
        return true;
    }
    cmdjson_fini(&c); /* id stays: cmdjson_fini frees only the JSON text */
    struct sl_slice sid = cstr(id);
    struct presence_dev *d = presence_get(n->pres, dev);
    const struct presence_worker *w = d && d->online ? presence_worker_get(n->pres, d->worker) : NULL;
    if (!w) {
        n->st.cmds_offline++;
        answer_now(n, dev, sid, "offline");
        return true;
    }
    enum sl_err arc = cmds_add(n->cmds, dev, sid, now_ms + n->cfg.cmd_timeout_ms);
    if (arc == SL_AGAIN) {
        n->st.cmds_dup++; /* that id already waits for its one result (here or at another notifier) */
        log_warn("event=cmd_dropped dev=%s id=%s reason=duplicate_id", qd, id);
        return true;
    }
    if (arc != SL_OK) {
        n->st.cmds_failed++;
        answer_now(n, dev, sid, "busy");
        return true;
    }
    d->pending++;
    struct sl_slice bs = {body.p, (uint32_t)body.len};
    if (cmds_set_unsent(n->cmds, dev, sid, bs.p, bs.n) !=
        SL_OK) { /* the body waits for the marker's PUBACK */
        take(n, dev, sid);
        n->st.cmds_failed++;
        answer_now(n, dev, sid, "busy");
        return true;
    }
    tomb_set(n, dev, sid, false);
    struct cmds_meta *m = cmds_meta(n->cmds, dev, sid);
    m->flags = M_ROUTING | M_BY_ME;
    m->ack = ack;
    m->deadline_wall = n->out.wall_ms(n->out.ud) + n->cfg.cmd_timeout_ms;
    m->inc = w->inc;
    snprintf(m->edge, sizeof m->edge, "%s", w->edge);
    snprintf(m->reply, sizeof m->reply, "%s", w->reply);
    snprintf(m->by, sizeof m->by, "%s", n->id);
    m->taken_us = mono_us(n);
    marker_publish(n, dev, sid, m, cmds_handle(n->cmds, dev, sid));
    return false; /* acknowledged once routed (or given up) */
}

void ntf_marker_done(struct ntf *n, uint64_t token, bool ok, uint64_t now_ms)
{
    struct sl_slice dev, id;
    n->now_ms = now_ms;
    if (!cmds_from_handle(n->cmds, token, &dev, &id))
        return; /* ended meanwhile (its marker was cleared) */
    struct cmds_meta *m = cmds_meta(n->cmds, dev, id);
    if (!(m->flags & M_ROUTING))
        return;
    m->flags &= (uint8_t)~M_ROUTING;
    if (!ok) {
        /* The broker may or may not have the marker: the command is not
         * routed. If the marker is there, its decider ends it at the
         * deadline (one result); if not, it gets none (at most one). */
        n->st.cmds_lost++;
        if (m->ack) {
            n->out.ack(n->out.ud, m->ack);
            m->ack = 0;
        }
        if (!(m->flags & M_MARKER))
            take(n, dev, id);
        return;
    }
    m->flags |= M_MARKER;
    stat_hist_observe(&n->st.route, (double)(mono_us(n) - m->taken_us) / 1e6);
    struct sl_slice body;
    if (cmds_body(n->cmds, dev, id, &body) && send_cmd(n, dev, id, body) == 0) {
        m->flags |= M_SENT;
        cmds_clear_unsent(n->cmds, dev, id);
    } else {
        /* The worker's DEALER is not connected to us (yet): right after a
         * restart of either side it reconnects within moments. The copy
         * stays; every tick retries until the deadline. */
        n->st.cmds_unsent++;
    }
    n->st.cmds_routed++;
    if (m->ack) {
        n->out.ack(n->out.ud, m->ack);
        m->ack = 0;
    }
}

/* A marker (or its clearing) read from the broker. */
static void on_marker(struct ntf *n, struct sl_slice dev, struct sl_slice id, const char *payload, size_t len,
                      uint64_t now_ms)
{
    struct cmds_meta *m = cmds_meta(n->cmds, dev, id);
    if (len == 0) { /* its result is out: forget it */
        if (m)
            take(n, dev, id);
        tomb_set(n, dev, id, true);
        return;
    }
    struct topics_marker k;
    if (topics_marker_parse(payload, len, &k) != SL_OK) {
        n->st.marker_bad++;
        return;
    }
    if (m) {
        m->flags |= M_MARKER;
        return;
    }
    uint64_t wall = n->out.wall_ms(n->out.ud);
    if (k.deadline_ms <= wall) {
        /* Its deadline passed with nobody to answer it (its decider died):
         * no result can be right any more. */
        n->st.markers_expired++;
        marker_clear(n, dev, id);
        return;
    }
    if (cmds_add(n->cmds, dev, id, now_ms + (k.deadline_ms - wall)) != SL_OK)
        return;                  /* full: the others hold it */
    tomb_set(n, dev, id, false); /* the id may be used again: this is a new command */
    m = cmds_meta(n->cmds, dev, id);
    m->flags = M_MARKER | (strcmp(k.by, n->id) == 0 ? M_BY_ME : 0);
    m->deadline_wall = k.deadline_ms;
    m->inc = k.inc;
    snprintf(m->edge, sizeof m->edge, "%s", k.edge);
    snprintf(m->reply, sizeof m->reply, "%s", k.reply);
    snprintf(m->by, sizeof m->by, "%s", k.by);
    struct presence_dev *d = presence_get(n->pres, dev);
    if (d)
        d->pending++;
    held_check(n, dev, id);
}

bool ntf_mqtt(struct ntf *n, const char *topic, size_t topic_len, const char *payload, size_t len,
              uint64_t ack, uint64_t now_ms)
{
    struct sl_slice dev, id;
    n->now_ms = now_ms;
    if (topics_parse_pending(n->prefix, topic, topic_len, &dev, &id)) {
        on_marker(n, dev, id, payload, len, now_ms);
        return true;
    }
    switch (topics_parse(n->prefix, topic, topic_len, &dev)) {
    case TOPICS_CMD: return on_cmd(n, dev, payload, len, ack, now_ms);
    case TOPICS_STATUS: on_status(n, dev, payload, len, now_ms); break;
    case TOPICS_OTHER: break;
    }
    return true;
}

/* ---- after a broker switch ---- */

void ntf_mqtt_up(struct ntf *n, bool switched)
{
    if (!switched)
        return;
    n->resync = true;
    n->resync_cursor = 0;
    n->st.resyncs++;
}

static void resync_dev(void *ud, const struct presence_dev *d)
{
    struct ntf *n = ud;
    struct sl_slice dev = cstr(d->dev);
    bool mine;
    if (d->online) {
        mine = owns(n, presence_worker_get(n->pres, d->worker), dev, true);
    } else if (n->any_nring) {
        mine = n->any_ring[ring_pick(ring_key(dev.p, dev.n), n->any_ring, n->any_nring)] == n->self_key;
    } else {
        mine = true; /* no ring known: one notifier, or edges of the previous version */
    }
    if (mine) {
        n->st.resync_published++;
        publish_status(n, d, n->out.wall_ms(n->out.ud), cstr(d->online ? "" : "resync"));
    }
}

static void resync_marker(void *ud, struct sl_slice dev, struct sl_slice id, struct cmds_meta *m)
{
    struct ntf *n = ud;
    if ((m->flags & M_MARKER) && decides(n, dev, m))
        marker_publish(n, dev, id, m, 0);
}

static void resync_step(struct ntf *n)
{
    presence_each(n->pres, &n->resync_cursor, RESYNC_PER_TICK, resync_dev, n);
    if (n->resync_cursor != 0)
        return;
    cmds_each(n->cmds, resync_marker, n);
    n->resync = false;
}

/* ---- timers ---- */

static void lost_cb(void *ud, struct presence_dev *d, const struct presence_worker *w)
{
    struct ntf *n = ud;
    struct sl_slice dev = cstr(d->dev);
    fail_pending(n, dev, false);
    if (owns(n, w, dev, true))
        publish_status(n, d, n->out.wall_ms(n->out.ud), cstr("edge_lost"));
}

static uint64_t expire_cb(void *ud, struct sl_slice dev, struct sl_slice id, struct cmds_meta *m)
{
    struct ntf *n = ud;
    if ((m->flags & M_ROUTING) && !(m->flags & M_MARKER)) {
        /* Its marker never came back acknowledged: never routed, unknown to the others. */
        n->st.cmds_lost++;
        release(n, dev, m);
        return 0;
    }
    if (decides(n, dev, m)) {
        bool never_sent = (m->flags & M_BY_ME) && !(m->flags & M_SENT);
        release(n, dev, m);
        if (never_sent) {
            n->st.cmds_disconnected++; /* never reached the edge */
            result(n, dev, id, false, NULL, "disconnected");
        } else {
            n->st.cmds_timeout++;
            result(n, dev, id, false, NULL, "timeout");
        }
        return 0;
    }
    uint64_t wall = n->out.wall_ms(n->out.ud);
    if (wall < m->deadline_wall + EXPIRE_GRACE_MS) /* its decider answers it: wait for the clearing */
        return n->now_ms + (m->deadline_wall + EXPIRE_GRACE_MS - wall);
    n->st.markers_expired++; /* nobody did: no result can be right any more */
    release(n, dev, m);
    marker_clear(n, dev, id);
    return 0;
}

void ntf_tick(struct ntf *n, uint64_t now_ms)
{
    n->now_ms = now_ms;
    cmds_retry(n->cmds, retry_cb, n);
    cmds_expire(n->cmds, now_ms, expire_cb, n);
    for (uint32_t i = 0; n->nhold && i < HOLD_MAX; i++)
        if (n->hold[i].used && now_ms >= n->hold[i].until_ms) {
            n->st.res_unknown++; /* late (its command ended), or for a command no notifier routed */
            unhold(n, &n->hold[i]);
        }
    if (now_ms >= n->last_sweep_ms + 500) {
        n->last_sweep_ms = now_ms;
        uint32_t k = presence_sweep(n->pres, now_ms, n->cfg.edge_timeout_ms, lost_cb, n);
        if (k) {
            n->st.edges_lost++;
            log_warn("event=edge_lost devices_offline=%u", k);
        }
    }
    if (now_ms >= n->last_clocks_ms + 1000) {
        n->last_clocks_ms = now_ms;
        edgeclock_publish(&n->clocks, now_ms);
    }
    if (n->resync)
        resync_step(n);
}

struct edgeclock *ntf_edgeclock(struct ntf *n)
{
    return &n->clocks;
}
