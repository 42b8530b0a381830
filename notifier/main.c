/* SPDX-License-Identifier: Apache-2.0 */
/* main.c - sluice-notifier: loads the flags, wires bus (ZeroMQ), mqtt
 * (the control client), pubproc (the data publisher processes) and the
 * ntf core, and runs the epoll loop on the main thread. The core's publishes
 * go by class: data to pubproc, status and results to mqtt.
 *
 * Everything runs on the main thread's loop: ZeroMQ, the MQTT control
 * client's reports (paho's own threads only queue them, mqtt.c), the
 * publishers' report pipes. Pulling from the edges stops
 * while the publishers cannot take more data: the edges then shed the
 * notifier's copies (PostgreSQL stays the record).
 *
 * Deliberately not here: any decision about messages (ntf.c). */
#define _GNU_SOURCE /* gethostname */
#include <assert.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "cmdlog.h"
#include "mqtt.h"
#include "ntf.h"
#include "pubproc.h"
#include "topics.h"
#include "sl/cfg.h"
#include "sl/edgeclock.h"
#include "sl/keys.h"
#include "sl/msg.h"
#include "sl/log.h"
#include "sl/loop.h"
#include "sl/metrics.h"
#include "sl/sysres.h"
#include "sl/zmqx.h"

#define DRAIN_MAX 256         /* batches per wake-up, so timers and MQTT input still run */
#define FLUSH_AT  (64u << 10) /* bytes a child's FIFO holds before a drain writes it early */
/* The control client (status, results, subscriptions): a large window and
 * buffer, since these are never shed (~65k statuses of ~300 bytes wait in
 * 32 MiB); inbound packets up to 1 MiB (a command's body is at most 64 KiB
 * of msgpack, its JSON somewhat more). */
#define CTRL_WINDOW    1024
#define CTRL_BUF_BYTES (32u << 20)
#define CTRL_MAX_IN    (1u << 20)
/* A data publisher's buffer: its window plus what it has queued, records of
 * at most 1 MiB (pubproc.c REC_MAX). */
#define PUB_BUF_BYTES (8u << 20)

struct opts {
    const char *pull, *router, *broker, *client_id, *username, *password, *tls_ca, *prefix, *id, *share;
    const char *metrics, *log_level, *curve_key, *curve_allow, *db;
    int64_t pool, cmd_timeout_ms, edge_timeout_ms, data_qos, max_inflight, max_devices, max_cmds, flush_ms,
        max_msg;
    int64_t status_max_skew_ms, max_queued, coalesce_ms;
};

/* The ZAP handler's counts as of the last metrics update (plain copies of
 * its atomics, for add_delta). */
struct zap_totals {
    uint64_t allowed, refused, impostor;
};

/* The MQTT side as the metrics see it: the control client and the
 * publisher children together. */
struct pub_totals {
    uint64_t published, failed, data_lost, ctrl_lost, reconnects;
    uint64_t respawns, died_lost;
    int64_t inflight, ctrl_waiting;
    int connected;
};

/* cmdlog's counts as of the last metrics update (plain copies of its
 * atomics, for add_delta). */
struct cmdlog_totals {
    uint64_t states, results, db_errors, queued, refused, dups;
};

struct delta {
    struct metric_counter *c;
    const uint64_t *src;
    uint64_t last;
};

struct app {
    struct opts o;
    struct loop *loop;
    struct bus *bus;
    struct mqtt *mqtt;  /* control client <client-id>-0: status, results, subscriptions */
    struct pubproc *pp; /* data publishers <client-id>-1..pool */
    struct ntf *ntf;
    struct cmdlog *cmdlog; /* NULL without --db */
    struct cmdlog_stats cls;
    struct cmdlog_totals clt;
    struct loop_timer tick, resume;
    struct loop_timer window; /* armed: the PULL socket is out of epoll until it fires */
    int pull_fd;
    bool stopping;
    struct pub_totals ms;
    struct delta d[64];
    int nd;
    struct metric_gauge *g_inflight, *g_devices, *g_online, *g_pending, *g_connected, *g_ctrl_wait;
    struct metric_hist *h_route;
    const struct zap_counts *zap; /* NULL: CURVE off */
    struct zap_totals zs;
    struct metric_gauge *g_curve_keys;
};

static uint64_t wall_ms(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t mono_us(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int out_publish(void *ud, enum ntf_pub_class cls, const char *dev, size_t dev_len, const char *topic,
                       size_t topic_len, const char *payload, size_t len, bool retained)
{
    struct app *a = ud;
    if (cls == NTF_PUB_DATA)
        return pubproc_publish(a->pp, dev, dev_len, topic, topic_len, payload, len, retained);
    /* Status and results are never shed: the control client's records hold
     * them until the broker has them; only its overflow loses one. */
    if (mqtt_publish(a->mqtt, topic, topic_len, payload, len, retained, 0, false) != 0) {
        char t[128];
        log_error("event=mqtt_ctrl_lost topic=%s", log_q(t, sizeof t, topic, topic_len));
    }
    return 0;
}

static int out_send_edge(void *ud, const char *reply, uint64_t inc, const struct envelope *e)
{
    struct app *a = ud;
    return bus_send_edge(a->bus, reply, inc, e);
}

static void out_publish_marker(void *ud, const char *topic, size_t topic_len, const char *payload, size_t len,
                               uint64_t token)
{
    struct app *a = ud;
    /* At most once: a marker the broker may not have is never sent again
     * (ntf.c, "commands"). Refused now (buffer full): dropped at once. */
    if (mqtt_publish(a->mqtt, topic, topic_len, payload, len, true, token, true) != 0)
        ntf_marker_done(a->ntf, token, false, loop_now_ms(a->loop));
}

/* paho acknowledged the command as it received it (mqtt.h): nothing is left
 * to do, but the core keeps saying when it would, so a transport that can
 * defer acknowledgements needs no change there. */
static void out_ack(void *ud, uint64_t handle)
{
    struct app *a = ud;
    mqtt_ack(a->mqtt, handle);
}

static bool on_mqtt_msg(void *ud, const struct mqtt_msg *m)
{
    struct app *a = ud;
    return ntf_mqtt(a->ntf, m->topic, m->topic_len, (const char *)m->payload, m->len, m->ack,
                    loop_now_ms(a->loop));
}

/* "queue":true with --db: to the queue's thread (cmdlog.c). */
static int out_queue_cmd(void *ud, struct sl_slice dev, const char *id, const char *json, const uint8_t *mp,
                         size_t mp_len, int64_t ttl_s)
{
    struct app *a = ud;
    return cmdlog_submit(a->cmdlog, (const char *)dev.p, dev.n, id, json, mp, mp_len, ttl_s);
}

static void on_mqtt_up(void *ud, int broker, bool switched)
{
    struct app *a = ud;
    (void)broker;
    ntf_mqtt_up(a->ntf, switched);
}

static void on_mqtt_done(void *ud, uint64_t token, bool ok)
{
    struct app *a = ud;
    ntf_marker_done(a->ntf, token, ok, loop_now_ms(a->loop));
}

/* A state or result of the durable command queue (cmdlog.c): QoS 1, not
 * retained, on the control client like the notifier's own results. -1
 * (kept for later) while the client's buffer is full. */
static int cmdlog_publish(void *ud, const char *topic, size_t topic_len, const char *payload, size_t len)
{
    struct app *a = ud;
    if (!mqtt_room(a->mqtt, topic_len, len))
        return -1;
    return mqtt_publish(a->mqtt, topic, topic_len, payload, len, false, 0, false);
}

static void on_pull(struct loop *l, int fd, uint32_t ev, void *ud);

/* Pull what the edges sent, up to DRAIN_MAX batches, and hand it to the
 * publisher children in one pipe write each.
 *
 * Coalescing (--coalesce-ms W): at a few thousand msgs/s an edge batch
 * carries 2-3 messages, and every batch cost a chain of wake-ups (this
 * thread, a publisher child, the broker) that outweighed the work. So after
 * a wake-up that pulled something, the PULL socket leaves epoll for W and the
 * window's end pulls everything that came meanwhile at once. The first batch
 * after a quiet spell goes out at once; later ones wait at most W (plus the
 * loop's timer granularity). Only a pull that emptied the socket opens a
 * window: a full DRAIN_MAX means a backlog, and a pull stopped by the
 * publishers' backpressure resumes when a child reports room. */
static void drain(struct app *a)
{
    if (a->cmdlog)
        cmdlog_flush(a->cmdlog, cmdlog_publish, a);
    if (loop_timer_armed(&a->window))
        return; /* the window's end pulls */
    int k = 0;
    bool emptied = false;
    while (!a->stopping && k < DRAIN_MAX) {
        if (!pubproc_ready(a->pp))
            break; /* woken by a child's report when there is room again; the tick also retries */
        const uint8_t *p;
        size_t n;
        if (bus_recv(a->bus, &p, &n) != 0) {
            emptied = true;
            break;
        }
        ntf_batch(a->ntf, p, n, loop_now_ms(a->loop));
        pubproc_flush_over(a->pp, FLUSH_AT); /* a large backlog is not held back from the children */
        k++;
    }
    pubproc_flush(a->pp);
    if (k == DRAIN_MAX)
        loop_timer_start(a->loop, &a->resume, 0); /* more may wait: ZMQ_FD will not say so again */
    else if (emptied && k > 0 && a->o.coalesce_ms > 0 && !a->stopping &&
             loop_mod(a->loop, a->pull_fd, 0, on_pull, a) == 0)
        loop_timer_start(a->loop, &a->window, (uint64_t)a->o.coalesce_ms);
}

static void on_pull(struct loop *l, int fd, uint32_t ev, void *ud)
{
    (void)l, (void)fd, (void)ev;
    drain(ud);
}

static void on_window(struct loop *l, void *ud)
{
    struct app *a = ud; /* the loop disarmed the window before calling: drain pulls */
    if (loop_mod(l, a->pull_fd, EPOLLIN, on_pull, a) != 0)
        log_error("event=epoll_failed what=pull");
    drain(a);
}

static void on_resume(struct loop *l, void *ud)
{
    (void)l;
    drain(ud);
}

static void on_wake(struct loop *l, void *ud)
{
    (void)l;
    drain(ud);
}

static void on_room(void *ud)
{
    drain(ud);
}

/* After every wake-up: what the core published is handed to paho, in order. */
static void after(struct loop *l, void *ud)
{
    (void)l;
    struct app *a = ud;
    mqtt_flush(a->mqtt);
}

static void pub_totals(struct app *a, struct pub_totals *o)
{
    struct mqtt_stats m;
    struct pubproc_totals t;
    mqtt_stats(a->mqtt, &m);
    pubproc_totals(a->pp, &t);
    o->published = m.published + t.published;
    o->failed = m.failed + t.failed;
    o->data_lost = t.refused + t.lost;
    o->ctrl_lost = m.refused;
    o->reconnects = m.reconnects + t.reconnects;
    o->respawns = t.respawns;
    o->died_lost = t.died_lost;
    o->inflight = m.inflight + t.inflight;
    o->ctrl_waiting = m.inflight;
    o->connected = m.connected + t.connected;
}

static void update_metrics(struct app *a)
{
    pub_totals(a, &a->ms);
    if (a->zap) {
        a->zs.allowed = stat_get(&a->zap->allowed);
        a->zs.refused = stat_get(&a->zap->refused);
        a->zs.impostor = stat_get(&a->zap->impostor);
        metric_set(a->g_curve_keys, stat_gget(&a->zap->keys));
    }
    for (int i = 0; i < a->nd; i++) {
        uint64_t v = *a->d[i].src;
        if (v > a->d[i].last)
            metric_add(a->d[i].c, v - a->d[i].last);
        a->d[i].last = v;
    }
    a->clt.states = stat_get(&a->cls.states);
    a->clt.results = stat_get(&a->cls.results);
    a->clt.db_errors = stat_get(&a->cls.db_errors);
    a->clt.queued = stat_get(&a->cls.queued);
    a->clt.refused = stat_get(&a->cls.refused);
    a->clt.dups = stat_get(&a->cls.dups);
    metric_set(a->g_inflight, a->ms.inflight);
    metric_set(a->g_connected, a->ms.connected);
    metric_set(a->g_ctrl_wait, a->ms.ctrl_waiting);
    metric_set(a->g_devices, ntf_devices(a->ntf));
    metric_set(a->g_online, ntf_online(a->ntf));
    metric_set(a->g_pending, ntf_pending(a->ntf));
    metric_hist_set(a->h_route, &ntf_stats(a->ntf)->route);
    metrics_set_ready(mqtt_connected(a->mqtt));
}

static void on_tick(struct loop *l, void *ud)
{
    struct app *a = ud;
    uint64_t now = loop_now_ms(l);
    ntf_tick(a->ntf, now);
    pubproc_tick(a->pp, now);
    update_metrics(a);
    drain(a);
    loop_timer_start(l, &a->tick, 50);
}

static void on_signal(struct loop *l, int fd, uint32_t ev, void *ud)
{
    (void)ev;
    struct app *a = ud;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si)
        ;
    a->stopping = true;
    loop_stop(l);
}

static void add_delta(struct app *a, const char *name, const char *help, const char *labels,
                      const uint64_t *src)
{
    assert(a->nd < (int)(sizeof a->d / sizeof a->d[0])); /* a series added without room: grow d */
    a->d[a->nd].c = metrics_counter(name, help, labels);
    a->d[a->nd].src = src;
    a->d[a->nd].last = 0;
    a->nd++;
}

static void register_metrics(struct app *a)
{
    const struct ntf_stats *s = ntf_stats(a->ntf);
    const char *cmds = "sluice_notifier_commands_total";
    const char *ch = "Operator commands by outcome";
    add_delta(a, "sluice_notifier_published_total", "MQTT messages acknowledged by the broker", NULL,
              &a->ms.published);
    add_delta(a, "sluice_notifier_mqtt_reconnects_total", "MQTT client reconnections", NULL,
              &a->ms.reconnects);
    add_delta(a, "sluice_notifier_publisher_restarts_total",
              "Data publisher processes that died and were restarted", NULL, &a->ms.respawns);
    add_delta(a, "sluice_notifier_lost_total", "Messages lost from the live view", "what=\"data_refused\"",
              &a->ms.data_lost);
    add_delta(a, "sluice_notifier_lost_total", "Messages lost from the live view", "what=\"publish_failed\"",
              &a->ms.failed);
    add_delta(a, "sluice_notifier_lost_total", "Messages lost from the live view", "what=\"publisher_died\"",
              &a->ms.died_lost);
    add_delta(a, "sluice_notifier_lost_total", "Messages lost from the live view", "what=\"ctrl_overflow\"",
              &a->ms.ctrl_lost);
    add_delta(a, "sluice_notifier_lost_total", "Messages lost from the live view", "what=\"data_bad\"",
              &s->data_bad);
    add_delta(a, "sluice_notifier_data_total", "Data messages handed to MQTT", NULL, &s->data);
    add_delta(a, "sluice_notifier_batches_total", "Edge batches received", NULL, &s->batches);
    add_delta(a, "sluice_notifier_bad_batches_total", "Edge batches refused", "reason=\"decode\"",
              &s->bad_batches);
    add_delta(a, "sluice_notifier_bad_batches_total", "Edge batches refused", "reason=\"version\"",
              &s->bad_version);
    add_delta(a, "sluice_notifier_bad_entries_total",
              "Entries skipped: a field outside the contract (docs/protocol.md section 6)", NULL,
              &s->entries_bad);
    add_delta(a, "sluice_notifier_status_published_total", "Presence statuses published", NULL,
              &s->status_published);
    add_delta(a, "sluice_notifier_stale_events_total", "Connect/disconnect older than the stored session",
              "kind=\"connect\"", &s->connects_stale);
    add_delta(a, "sluice_notifier_stale_events_total", "Connect/disconnect older than the stored session",
              "kind=\"disconnect\"", &s->disconnects_stale);
    add_delta(a, "sluice_notifier_kicks_total", "Superseded connections told to close", NULL, &s->kicks);
    add_delta(a, "sluice_notifier_kicks_failed_total", "Kicks the edge worker could not receive", NULL,
              &s->kicks_failed);
    add_delta(a, "sluice_notifier_presence_full_total", "Devices not tracked: presence table full", NULL,
              &s->presence_full);
    add_delta(a, "sluice_notifier_edges_lost_total", "Edge workers timed out", NULL, &s->edges_lost);
    add_delta(a, cmds, ch, "result=\"routed\"", &s->cmds_routed);
    add_delta(a, cmds, ch, "result=\"ok\"", &s->cmds_ok);
    add_delta(a, cmds, ch, "result=\"offline\"", &s->cmds_offline);
    add_delta(a, cmds, ch, "result=\"failed\"", &s->cmds_failed);
    add_delta(a, cmds, ch, "result=\"timeout\"", &s->cmds_timeout);
    add_delta(a, cmds, ch, "result=\"disconnected\"", &s->cmds_disconnected);
    add_delta(a, cmds, ch, "result=\"bad_command\"", &s->cmds_bad);
    add_delta(a, cmds, ch, "result=\"bad_id\"", &s->cmds_bad_id);
    add_delta(a, cmds, ch, "result=\"unreadable\"", &s->cmds_unreadable);
    add_delta(a, cmds, ch, "result=\"duplicate\"", &s->cmds_dup);
    add_delta(a, "sluice_notifier_commands_held_total", "Commands held until their edge worker reconnected",
              NULL, &s->cmds_unsent);
    add_delta(a, cmds, ch, "result=\"lost\"", &s->cmds_lost);
    add_delta(a, cmds, ch, "result=\"queued\"", &s->cmds_queued);
    add_delta(a, "sluice_notifier_res_unknown_total", "Answers for commands no notifier holds (late)", NULL,
              &s->res_unknown);
    add_delta(a, "sluice_notifier_res_held_total", "Answers that waited for their command's marker", NULL,
              &s->res_held);
    add_delta(a, "sluice_notifier_markers_expired_total",
              "Pending-command markers past their deadline that nobody answered, cleared", NULL,
              &s->markers_expired);
    add_delta(a, "sluice_notifier_heartbeats_answered_total", "Edge heartbeats answered", NULL,
              &s->heartbeats_answered);
    add_delta(a, "sluice_notifier_resync_statuses_total", "Statuses published again on a broker switch", NULL,
              &s->resync_published);
    add_delta(a, "sluice_notifier_status_ignored_total",
              "Retained statuses read back and ignored: epoch beyond --status-max-skew-ms",
              "reason=\"future_epoch\"", &s->status_future);
    if (a->cmdlog) {
        const char *ce = "sluice_notifier_command_events_total",
                   *ch2 = "Durable command queue events claimed from the outbox, each one publish (--db)";
        add_delta(a, ce, ch2, "kind=\"state\"", &a->clt.states);
        add_delta(a, ce, ch2, "kind=\"result\"", &a->clt.results);
        const char *cq = "sluice_notifier_commands_queued_total",
                   *cqh = "MQTT commands with \"queue\":true by what the durable queue did with them (--db)";
        add_delta(a, cq, cqh, "result=\"stored\"", &a->clt.queued);
        add_delta(a, cq, cqh, "result=\"refused\"", &a->clt.refused);
        add_delta(a, cq, cqh, "result=\"duplicate\"", &a->clt.dups);
        add_delta(a, "sluice_notifier_command_db_errors_total",
                  "Failed PostgreSQL statements and connections of the command queue's thread (--db)", NULL,
                  &a->clt.db_errors);
    }
    if (a->zap) { /* the same four series as the persister's (docs/security.md) */
        const char *hs = "sluice_notifier_curve_handshakes_total",
                   *hh = "CURVE handshakes by the ZAP decision";
        add_delta(a, hs, hh, "result=\"allowed\"", &a->zs.allowed);
        add_delta(a, hs, hh, "result=\"refused\"", &a->zs.refused);
        add_delta(a, "sluice_notifier_curve_impostor_batches_total",
                  "Edge batches dropped: they name an edge id or reply address the sender's CURVE key is not "
                  "bound to",
                  NULL, &a->zs.impostor);
        a->g_curve_keys =
            metrics_gauge("sluice_notifier_curve_keys", "Edge keys in the allowed directory", NULL);
    }
    a->g_inflight = metrics_gauge("sluice_notifier_publish_inflight", "MQTT publishes awaiting PUBACK", NULL);
    a->g_connected = metrics_gauge("sluice_notifier_mqtt_connected", "MQTT pool clients connected", NULL);
    a->g_ctrl_wait = metrics_gauge("sluice_notifier_ctrl_waiting",
                                   "Status/results not yet acknowledged by the broker", NULL);
    a->g_devices = metrics_gauge("sluice_notifier_devices", "Devices in the presence map", NULL);
    a->g_online = metrics_gauge("sluice_notifier_devices_online", "Devices online", NULL);
    a->g_pending = metrics_gauge("sluice_notifier_commands_pending", "Commands awaiting a result", NULL);
    a->h_route =
        metrics_hist("sluice_notifier_command_route_seconds",
                     "Command taken to command routed (its marker acknowledged): a taker that dies in "
                     "this window loses the command",
                     NULL, ntf_route_bounds, NTF_ROUTE_BUCKETS);
    /* read at scrape time under the table's mutex (metrics_stop comes
     * before ntf_destroy) */
    metrics_gauge_family_fn("sluice_notifier_edge_clock_skew_seconds",
                            "Edge wall clock minus this notifier's, per edge (largest of the last 10 s of "
                            "heartbeats)",
                            "edge", edgeclock_collect, ntf_edgeclock(a->ntf));
}

int main(int argc, char **argv)
{
    static struct app a;
    struct opts *o = &a.o;
    const struct cfg_opt opts[] = {
        {"pull", CFG_STR, &o->pull, "tcp://*:7011", "PULL endpoint to bind (edge batches)", 0, 0},
        {"router", CFG_STR, &o->router, "tcp://*:7012", "ROUTER endpoint to bind (cmds, kicks)", 0, 0},
        {"broker", CFG_STR, &o->broker, "tcp://127.0.0.1:1883",
         "MQTT broker URIs, comma-separated, the first preferred (tcp:// or ssl://)", 0, 0},
        {"id", CFG_STR, &o->id, "",
         "this notifier's stable id, [A-Za-z0-9._:-]{1,64}: edges hash devices over the ids (default: the "
         "host "
         "name, stable for a StatefulSet pod or a compose container)",
         0, 0},
        {"client-id", CFG_STR, &o->client_id, "",
         "MQTT client id prefix: clients <prefix>-0 (control), -1.. (publishers); default "
         "sluice-notifier-<id>",
         0, 0},
        {"share-group", CFG_STR, &o->share, "sluice",
         "commands come through $share/<group>/P/+/cmd, so the broker gives each to one notifier of the "
         "group "
         "(empty: a plain subscription, one notifier only)",
         0, 0},
        {"username", CFG_STR, &o->username, "", "MQTT user name", 0, 0},
        {"password", CFG_SECRET, &o->password, "", "MQTT password (prefer --password-file)", 0, 0},
        {"tls-ca", CFG_STR, &o->tls_ca, "", "CA file to verify an ssl:// broker", 0, 0},
        {"prefix", CFG_STR, &o->prefix, "devices", "MQTT topic prefix P", 0, 0},
        {"pool", CFG_INT, &o->pool, "0",
         "data publisher processes (one MQTT connection each); 0 = 1 at --data-qos 0, and at QoS 1 half "
         "the usable CPUs, 1 to 4",
         0, 64},
        {"cmd-timeout-ms", CFG_INT, &o->cmd_timeout_ms, "30000", "command result timeout", 1, 86400000},
        {"edge-timeout-ms", CFG_INT, &o->edge_timeout_ms, "10000",
         "edge worker silence before its devices go offline", 100, 86400000},
        {"data-qos", CFG_INT, &o->data_qos, "1",
         "QoS of data publishes: 1, or 0 for a best-effort live view (status, results: always 1)", 0, 1},
        {"max-inflight", CFG_INT, &o->max_inflight, "128",
         "unacknowledged data publishes per publisher (pulling stops at 4x unreported)", 1, 16000},
        {"max-devices", CFG_INT, &o->max_devices, "1000000", "presence table capacity (~300 B each)", 1,
         100000000},
        {"max-cmds", CFG_INT, &o->max_cmds, "65536", "commands awaiting results", 1, 10000000},
        {"coalesce-ms", CFG_INT, &o->coalesce_ms, "2",
         "after pulling edge batches, wait this long before pulling again, so that a few batches share "
         "one write to the publishers and the broker (the live view waits at most this; 0 = pull at once)",
         0, 1000},
        {"flush-timeout-ms", CFG_INT, &o->flush_ms, "5000", "on SIGTERM, wait this long for PUBACKs", 0,
         600000},
        /* An edge's notifier batch is at most ~2.1 MiB, its persister batch 4 MiB
         * (edge/bus.c CTL_CAP + NDATA_CAP, BATCH_HARD): 2x the larger. */
        {"zmq-max-msg", CFG_INT, &o->max_msg, "8388608",
         "largest ZeroMQ message accepted, bytes; a peer sending a bigger one is disconnected", 65536,
         1ll << 32},
        {"status-max-skew-ms", CFG_INT, &o->status_max_skew_ms, "60000",
         "ignore a retained status whose epoch is further ahead of this clock (0 = no check)", 0, 86400000},
        {"curve-key", CFG_STR, &o->curve_key, "",
         "this service's CURVE key pair (the FILE_secret sluice-keys wrote); empty = CURVE off", 0, 0},
        {"curve-allow", CFG_STR, &o->curve_allow, "",
         "with --curve-key: directory of the edges' public certificates admitted (re-read while running)", 0,
         0},
        {"db", CFG_SECRET, &o->db, "",
         "PostgreSQL conninfo of the durable command queue: publish its states and results, queue MQTT "
         "commands with \"queue\":true (empty = off)",
         0, 0},
        {"max-queued", CFG_INT, &o->max_queued, "100",
         "with --db: pending commands per device (as sluice-api's); an MQTT command beyond it is answered "
         "queue_full",
         1, 1000000},
        {"metrics", CFG_STR, &o->metrics, "", "HOST:PORT for /metrics /healthz /readyz (empty = off)", 0, 0},
        {"log-level", CFG_STR, &o->log_level, "info", "debug, info, warn, error", 0, 0},
    };
    cfg_parse(opts, (int)(sizeof opts / sizeof opts[0]), argc, argv,
              "sluice-notifier: publishes edge data and presence to MQTT, routes operator commands to edges");
    if (log_init_flag(pubproc_is_child() ? "notifier-pub" : "notifier", o->log_level) != 0)
        return 2;
    unsigned cpus = sysres_cpus();
    if (o->pool == 0)
        o->pool = pubproc_default_pool((int)o->data_qos, cpus);

    /* Block the signals before any thread exists, so only the signalfd sees them. */
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGINT);
    pthread_sigmask(SIG_BLOCK, &ss, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);

    char id[SL_DEV_MAX + 1], client_prefix[300];
    if (!o->id[0]) {
        if (gethostname(id, sizeof id) != 0)
            id[0] = '\0';
        id[sizeof id - 1] = '\0';
    } else {
        snprintf(id, sizeof id, "%s", o->id);
    }
    if (!msg_valid_id((const uint8_t *)id, strlen(id)) || strlen(o->id) > SL_DEV_MAX) {
        log_error("event=startup_failed what=id id=\"%s\" err=\"--id must match [A-Za-z0-9._:-]{1,64}\"",
                  o->id[0] ? o->id : id);
        return 1;
    }
    /* Unique per notifier by default: replicas sharing one client id would
     * take each other's connections away at the broker. */
    if (o->client_id[0])
        snprintf(client_prefix, sizeof client_prefix, "%s", o->client_id);
    else
        snprintf(client_prefix, sizeof client_prefix, "sluice-notifier-%s", id);

    char sub_status[300], sub_cmd[400], sub_marker[300];
    snprintf(sub_status, sizeof sub_status, "%s/+/status", o->prefix);
    if (o->share[0])
        snprintf(sub_cmd, sizeof sub_cmd, "$share/%s/%s/+/cmd", o->share, o->prefix);
    else
        snprintf(sub_cmd, sizeof sub_cmd, "%s/+/cmd", o->prefix);
    snprintf(sub_marker, sizeof sub_marker, "%s/" TOPICS_INTERNAL "/pending/+/+", o->prefix);
    /* Statuses and markers first: the broker sends the retained ones before
     * any command that arrives on the last filter, so routing and the
     * pending commands are known before commands are judged. */
    const char *subs[] = {sub_status, sub_marker, sub_cmd};
    char client0[340];
    snprintf(client0, sizeof client0, "%s-0", client_prefix);

    if (pubproc_is_child()) {
        struct mqtt_cfg dc = {.uris = o->broker,
                              .username = o->username,
                              .password = o->password,
                              .tls_ca = o->tls_ca,
                              .qos = (int)o->data_qos,
                              .max_inflight = (int)o->max_inflight,
                              .buf_bytes = PUB_BUF_BYTES,
                              .max_in = 64 * 1024};
        return pubproc_child_main(&dc, client_prefix, (int)o->flush_ms);
    }
    struct mqtt_cfg mc = {.uris = o->broker,
                          .client_id = client0,
                          .username = o->username,
                          .password = o->password,
                          .tls_ca = o->tls_ca,
                          .subs = subs,
                          .nsubs = 3,
                          .qos = 1,
                          .max_inflight = CTRL_WINDOW,
                          .buf_bytes = CTRL_BUF_BYTES,
                          .max_in = CTRL_MAX_IN};

    static struct keys_pair keys;
    if (!*o->curve_key != !*o->curve_allow) {
        fprintf(stderr, "sluice-notifier: --curve-key and --curve-allow go together (try --help)\n");
        return 2;
    }
    if (*o->curve_key && keys_load_pair(o->curve_key, &keys, NULL, 0) != 0)
        return 2;

    a.loop = loop_new(64);
    struct ntf_cfg nc = {.prefix = o->prefix,
                         .id = id,
                         .max_devices = (uint32_t)o->max_devices,
                         .max_workers = 4096,
                         .max_cmds = (uint32_t)o->max_cmds,
                         .cmd_timeout_ms = (uint64_t)o->cmd_timeout_ms,
                         .edge_timeout_ms = (uint64_t)o->edge_timeout_ms,
                         .status_max_skew_ms = (uint64_t)o->status_max_skew_ms};
    struct ntf_out out = {.ud = &a,
                          .publish = out_publish,
                          .publish_marker = out_publish_marker,
                          .ack = out_ack,
                          .send_edge = out_send_edge,
                          .wall_ms = wall_ms,
                          .mono_us = mono_us,
                          .queue_cmd = *o->db ? out_queue_cmd : NULL};
    a.ntf = ntf_new(&nc, &out);
    a.bus = a.loop && a.ntf
                ? bus_new(o->pull, o->router, id, o->max_msg, *o->curve_key ? &keys : NULL, o->curve_allow)
                : NULL;
    if (!a.loop || !a.ntf || !a.bus || sfd < 0) {
        log_error("event=startup_failed what=%s", !a.loop  ? "loop"
                                                  : !a.ntf ? "core"
                                                  : !a.bus ? "bus"
                                                           : "signalfd");
        return 1;
    }
    a.zap = bus_zap_counts(a.bus);
    if (*o->db) {
        struct cmdlog_cfg cc = {
            .conninfo = o->db, .prefix = o->prefix, .loop = a.loop, .max_queued = o->max_queued};
        a.cmdlog = cmdlog_new(&cc, &a.cls);
        if (!a.cmdlog) {
            log_error("event=startup_failed what=cmdlog");
            return 1;
        }
    }
    register_metrics(&a);
    if (metrics_start(o->metrics) != 0)
        return 1;
    loop_set_wake(a.loop, on_wake, &a);
    loop_set_after(a.loop, after, &a);
    struct mqtt_ops mops = {.ud = &a, .msg = on_mqtt_msg, .up = on_mqtt_up, .done = on_mqtt_done};
    a.mqtt = mqtt_new(&mc, &mops, a.loop);
    if (!a.mqtt) {
        log_error("event=startup_failed what=mqtt broker=%s", o->broker);
        return 1;
    }
    /* A child may hold a few windows: one in its client, the rest in its pipe. */
    a.pp = pubproc_new((int)o->pool, argv, 4 * o->max_inflight, a.loop, on_room, &a);
    if (!a.pp) {
        log_error("event=startup_failed what=publishers pool=%d", (int)o->pool);
        return 1;
    }
    a.pull_fd = zmqx_fd(bus_pull(a.bus));
    loop_add(a.loop, a.pull_fd, EPOLLIN, on_pull, &a);
    loop_add(a.loop, sfd, EPOLLIN, on_signal, &a);
    loop_timer_init(&a.tick, on_tick, &a);
    loop_timer_init(&a.resume, on_resume, &a);
    loop_timer_init(&a.window, on_window, &a);
    loop_timer_start(a.loop, &a.tick, 50);
    log_info("event=start id=%s pull=%s router=%s broker=%s pool=%d cpus=%u coalesce_ms=%d prefix=%s "
             "client_id=%s-0 commands=%s curve=%s db=%s",
             id, o->pull, o->router, o->broker, (int)o->pool, cpus, (int)o->coalesce_ms, o->prefix,
             client_prefix, sub_cmd, *o->curve_key ? "on" : "off", a.cmdlog ? "on" : "off");

    int rc = loop_run(a.loop);

    /* Shutdown, bounded by --flush-timeout-ms whatever the broker does:
     * stop pulling, close the publishers' pipes (they write what they have
     * and wait for its PUBACKs), keep the loop running for the control
     * client's statuses and results, and at the deadline kill what is left.
     * What did not make it is counted in the stop line. */
    metrics_set_ready(false);
    uint64_t until = loop_clock_ms() + (uint64_t)o->flush_ms;
    pubproc_stop(a.pp);
    /* The queue's thread claims nothing more; what it claimed is published
     * with the rest. */
    cmdlog_stop(a.cmdlog);
    while (loop_clock_ms() < until &&
           (mqtt_outstanding(a.mqtt) > 0 || !pubproc_stopped(a.pp) || cmdlog_pending(a.cmdlog))) {
        if (a.cmdlog)
            cmdlog_flush(a.cmdlog, cmdlog_publish, &a);
        uint64_t left_ms = until - loop_clock_ms();
        loop_run_once(a.loop, left_ms < 10 ? (int)left_ms : 10);
        pubproc_tick(a.pp, loop_clock_ms());
    }
    int64_t lost_data = pubproc_unflushed(a.pp), lost_ctrl = mqtt_outstanding(a.mqtt);
    update_metrics(&a);
    log_info("event=stop unflushed=%lld unflushed_data=%lld unflushed_ctrl=%lld published=%llu",
             (long long)(lost_data + lost_ctrl), (long long)lost_data, (long long)lost_ctrl,
             (unsigned long long)a.ms.published);
    pubproc_destroy(&a.pp);
    cmdlog_destroy(&a.cmdlog);
    mqtt_destroy(&a.mqtt);
    metrics_stop();
    bus_destroy(&a.bus);
    ntf_destroy(&a.ntf);
    loop_destroy(&a.loop);
    close(sfd);
    return rc == 0 ? 0 : 1;
}
