/* ntf.c - the notifier's core: turns edge batches and MQTT messages into
 * publishes, commands and kicks, with no I/O of its own.
 *
 * - data      -> P/<dev>/data (refusal by the MQTT side is counted, never retried here)
 * - connect / disconnect -> presence fencing -> retained P/<dev>/status,
 *   a kick for a superseded connection, "disconnected" for its commands
 * - P/<dev>/cmd -> ENV_CMD to the edge worker holding dev, or an immediate
 *   "offline" result; res / undeliverable / timeout -> exactly one result.
 *   A worker not connected to our ROUTER yet (either side just restarted)
 *   gets the command on a later tick; never reached by the deadline, the
 *   result is "disconnected"
 * - P/<dev>/status read back (retained, after a restart) -> presence, so
 *   routing survives a notifier restart
 *
 * Deliberately not here: sockets, MQTT, threads, retry queues. Logging is
 * limited to rare operator-visible events (bad commands), never per message. */
#include "ntf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "presence.h"
#include "sl/log.h"
#include "sl/msg.h"
#include "sl/tojson.h"
#include "topics.h"

#define TOPIC_CAP    (TOPICS_PREFIX_MAX + SL_DEV_MAX + SL_CMD_ID_MAX + 32)
#define CTRL_CAP     1024 /* status and error results; a device result uses `json` */
#define CMD_BODY_CAP (64 * 1024)

struct ntf {
    struct ntf_cfg cfg;
    char prefix[TOPICS_PREFIX_MAX + 1];
    struct ntf_out out;
    struct presence *pres;
    struct cmds *cmds;
    struct ntf_stats st;
    uint64_t last_sweep_ms;
    char topic[TOPIC_CAP];
    char ctrl[CTRL_CAP];
    char *json; /* data and result payloads; grows to the largest body seen */
    size_t json_cap;
    uint8_t *cmd_body;
};

struct ntf *ntf_new(const struct ntf_cfg *cfg, const struct ntf_out *out)
{
    if (!cfg->prefix || strlen(cfg->prefix) > TOPICS_PREFIX_MAX || cfg->max_cmds == 0)
        return NULL;
    struct ntf *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->cfg = *cfg;
    strcpy(n->prefix, cfg->prefix);
    n->cfg.prefix = n->prefix;
    n->out = *out;
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
    presence_destroy(&n->pres);
    cmds_destroy(&n->cmds);
    free(n->json);
    free(n->cmd_body);
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

/* ---- results ---- */

/* Publish the one result of (dev, id), already removed from the table. */
static void result(struct ntf *n, struct sl_slice dev, struct sl_slice id, bool ok,
                   const struct sl_slice *body, const char *error)
{
    struct tojson_buf t, b;
    tojson_buf_init(&t, n->topic, sizeof n->topic);
    topics_result_topic(&t, n->prefix, dev, id);
    size_t need = 64 + (body ? tojson_bound(body->n) : 0);
    if (!json_room(n, need)) {
        body = NULL;
        error = "too_big";
    }
    tojson_buf_init(&b, n->json, n->json_cap);
    if (topics_result_json(&b, ok, body, error) == SL_TOOBIG) {
        tojson_buf_init(&b, n->json, n->json_cap);
        topics_result_json(&b, false, NULL, "too_big");
    }
    publish(n, NTF_PUB_CTRL, dev, &t, &b, false);
}

static void pending_done(struct ntf *n, struct sl_slice dev)
{
    struct presence_dev *d = presence_get(n->pres, dev);
    if (d && d->pending > 0)
        d->pending--;
}

static void fail_cb(void *ud, struct sl_slice dev, struct sl_slice id)
{
    struct ntf *n = ud;
    n->st.cmds_disconnected++;
    result(n, dev, id, false, NULL, "disconnected");
}

static void timeout_cb(void *ud, struct sl_slice dev, struct sl_slice id)
{
    struct ntf *n = ud;
    pending_done(n, dev);
    if (cmds_is_unsent(n->cmds, dev, id)) {
        n->st.cmds_disconnected++; /* never reached the edge */
        result(n, dev, id, false, NULL, "disconnected");
        return;
    }
    n->st.cmds_timeout++;
    result(n, dev, id, false, NULL, "timeout");
}

/* Every command still waiting on dev's connection ends "disconnected". */
static void fail_pending(struct ntf *n, struct presence_dev *d)
{
    if (!d || d->pending == 0)
        return;
    cmds_take_dev(n->cmds, cstr(d->dev), fail_cb, n);
    d->pending = 0;
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
    size_t rl = reason.n < sizeof s.reason - 1 ? reason.n : sizeof s.reason - 1;
    if (rl)
        memcpy(s.reason, reason.p, rl);
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
    if (n->out.send_edge(n->out.ud, w->reply, w->inc, &e) != 0)
        n->st.kicks_failed++;
}

/* Act on a presence change. `publish_it` is false for statuses read back
 * from the broker (they are already what is retained). */
static void apply(struct ntf *n, const struct presence_change *c, struct sl_slice dev, bool online,
                  uint64_t at_ms, struct sl_slice reason, bool publish_it)
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
    if (c->kick) {
        kick(n, c, dev);
        fail_pending(n, c->d); /* they were routed to the connection being closed */
    } else if (!online && c->was_online) {
        fail_pending(n, c->d);
    }
    if (publish_it)
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

/* ---- data ---- */

static void on_data(struct ntf *n, const struct envelope_hdr *h, const struct envelope *e)
{
    size_t need = 96 + 6u * (e->dev.n + h->edge.n) + (e->has_body ? tojson_bound(e->body.n) : 4);
    if (!json_room(n, need)) {
        n->st.data_bad++;
        return;
    }
    struct tojson_buf t, b;
    tojson_buf_init(&t, n->topic, sizeof n->topic);
    topics_dev(&t, n->prefix, e->dev, "data");
    tojson_buf_init(&b, n->json, n->json_cap);
    if (topics_data_json(&b, h->edge, e) != SL_OK || t.overflow) {
        n->st.data_bad++;
        return;
    }
    n->st.data++;
    if (n->out.publish(n->out.ud, NTF_PUB_DATA, (const char *)e->dev.p, e->dev.n, t.p, t.len, b.p, b.len,
                       false) != 0)
        n->st.data_refused++;
}

/* ---- batches ---- */

void ntf_batch(struct ntf *n, const uint8_t *p, size_t len, uint64_t now_ms)
{
    struct envelope_reader r;
    enum sl_err rc = envelope_reader_begin(&r, p, len);
    n->st.batches++;
    if (rc == SL_VERSION) {
        n->st.bad_version++;
        return;
    }
    if (rc != SL_OK) {
        n->st.bad_batches++;
        return;
    }
    uint32_t worker = presence_worker(n->pres, r.hdr.edge, r.hdr.incarnation, r.hdr.reply, now_ms, true);
    struct envelope e;
    while ((rc = envelope_reader_next(&r, &e)) == SL_OK) {
        n->st.entries++;
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
            if (cmds_take(n->cmds, e.dev, e.id)) {
                pending_done(n, e.dev);
                n->st.cmds_ok++;
                struct sl_slice body = e.body;
                result(n, e.dev, e.id, e.has_ok && e.ok, e.has_body ? &body : NULL, NULL);
            } else {
                n->st.res_unknown++; /* late (timed out, or its session was replaced) */
            }
            break;
        case ENV_UNDELIVERABLE:
            if (cmds_take(n->cmds, e.dev, e.id)) {
                pending_done(n, e.dev);
                n->st.cmds_disconnected++;
                result(n, e.dev, e.id, false, NULL, "disconnected");
            } else {
                n->st.res_unknown++;
            }
            break;
        default: /* heartbeat: the worker lookup above already noted it */ break;
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
    return n->out.send_edge(n->out.ud, w->reply, w->inc, &e);
}

static int retry_cb(void *ud, struct sl_slice dev, struct sl_slice id, struct sl_slice body)
{
    return send_cmd(ud, dev, id, body);
}

static void on_cmd(struct ntf *n, struct sl_slice dev, const char *payload, size_t len, uint64_t now_ms)
{
    char id[SL_CMD_ID_MAX + 1];
    struct mp_buf body;
    mp_buf_init(&body, n->cmd_body, CMD_BODY_CAP);
    enum topics_cmd_rc rc = topics_cmd_parse(payload, len, id, &body);
    char qd[96];
    log_q(qd, sizeof qd, (const char *)dev.p, dev.n);
    switch (rc) {
    case TOPICS_CMD_NO_ID:
        n->st.cmds_unreadable++;
        log_warn("event=cmd_dropped dev=%s reason=unreadable bytes=%zu", qd, len);
        return;
    case TOPICS_CMD_BAD_ID:
        n->st.cmds_bad_id++;
        log_warn("event=cmd_dropped dev=%s reason=bad_id", qd);
        return;
    case TOPICS_CMD_BAD:
        n->st.cmds_bad++;
        result(n, dev, cstr(id), false, NULL, "bad_command");
        return;
    case TOPICS_CMD_OK: break;
    }
    struct sl_slice sid = cstr(id);
    struct presence_dev *d = presence_get(n->pres, dev);
    const struct presence_worker *w = d && d->online ? presence_worker_get(n->pres, d->worker) : NULL;
    if (!w) {
        n->st.cmds_offline++;
        result(n, dev, sid, false, NULL, "offline");
        return;
    }
    enum sl_err arc = cmds_add(n->cmds, dev, sid, now_ms + n->cfg.cmd_timeout_ms);
    if (arc == SL_AGAIN) {
        n->st.cmds_dup++; /* that id already waits for its one result */
        log_warn("event=cmd_dropped dev=%s id=%s reason=duplicate_id", qd, id);
        return;
    }
    if (arc != SL_OK) {
        n->st.cmds_failed++;
        result(n, dev, sid, false, NULL, "busy");
        return;
    }
    d->pending++;
    struct sl_slice bs = {body.p, (uint32_t)body.len};
    if (send_cmd(n, dev, sid, bs) != 0) {
        /* The worker's DEALER is not connected to us (yet): right after a
         * restart of either side it reconnects within moments. Keep the
         * command and retry on each tick until its deadline. */
        if (cmds_set_unsent(n->cmds, dev, sid, bs.p, bs.n) != SL_OK) {
            cmds_take(n->cmds, dev, sid);
            d->pending--;
            n->st.cmds_failed++;
            result(n, dev, sid, false, NULL, "disconnected");
            return;
        }
        n->st.cmds_unsent++;
    }
    n->st.cmds_routed++;
}

void ntf_mqtt(struct ntf *n, const char *topic, size_t topic_len, const char *payload, size_t len,
              uint64_t now_ms)
{
    struct sl_slice dev;
    switch (topics_parse(n->prefix, topic, topic_len, &dev)) {
    case TOPICS_CMD: on_cmd(n, dev, payload, len, now_ms); break;
    case TOPICS_STATUS: on_status(n, dev, payload, len, now_ms); break;
    case TOPICS_OTHER: break;
    }
}

/* ---- timers ---- */

static void lost_cb(void *ud, struct presence_dev *d, const struct presence_worker *w)
{
    (void)w;
    struct ntf *n = ud;
    fail_pending(n, d);
    publish_status(n, d, n->out.wall_ms(n->out.ud), cstr("edge_lost"));
}

void ntf_tick(struct ntf *n, uint64_t now_ms)
{
    cmds_retry(n->cmds, retry_cb, n);
    cmds_expire(n->cmds, now_ms, timeout_cb, n);
    if (now_ms >= n->last_sweep_ms + 500) {
        n->last_sweep_ms = now_ms;
        uint32_t k = presence_sweep(n->pres, now_ms, n->cfg.edge_timeout_ms, lost_cb, n);
        if (k) {
            n->st.edges_lost++;
            log_warn("event=edge_lost devices_offline=%u", k);
        }
    }
}
