/* SPDX-License-Identifier: Apache-2.0 */
/* ntf.h - the notifier's decisions, with no I/O: edge batches and MQTT
 * messages in; publishes, commands, kicks and heartbeat answers out through
 * struct ntf_out.
 *
 * The I/O shells (bus.c for ZeroMQ, mqtt.c for MQTT) and main.c wire it
 * to the world; unit tests wire it to recording stubs. Runs on one thread
 * (the main thread); not thread-safe.
 *
 * Several notifiers (docs/notifier.md): each device's events come to the
 * notifier the edge worker hashes it to, which publishes its status; every
 * notifier reads every status back, so all know where each device is.
 * Commands come to any notifier (the broker's shared subscription); the
 * taker publishes a retained marker naming the command, routes it once the
 * broker has the marker, and from then on the device's owner on that edge
 * worker's ring (any notifier, if the taker dies) gives it its one result. */
#ifndef NTF_NTF_H
#define NTF_NTF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/envelope.h"
#include "sl/stat.h"

enum ntf_pub_class {
    NTF_PUB_DATA = 0, /* P/<dev>/data: may be refused (counted as lost) */
    NTF_PUB_CTRL,     /* status, results, markers: never shed, queued if needed */
};

/* The largest MQTT payload the notifier publishes: a result whose JSON
 * would be longer is published as {"ok":false,"error":"too_big"}, data is
 * not published (counted in data_refused, as the publishers' refusal of a
 * record over pubproc.c's REC_MAX). Also the most its JSON buffer grows
 * to, whatever the frames' size (17x as JSON at worst). The shipped
 * brokers' message_size_limit is this (deploy/mosquitto.conf): the broker
 * drops a longer payload after acking it, so a result over it would vanish
 * unnoticed. */
#define NTF_PAYLOAD_MAX (1024u * 1024u)

struct ntf_out {
    void *ud;
    /* Publish payload on topic with QoS 1 (data: the data QoS); dev picks
     * the client (order per device). Returns 0, or -1 if it was refused
     * (data only). Borrowed buffers: copy what must outlive the call. */
    int (*publish)(void *ud, enum ntf_pub_class cls, const char *dev, size_t dev_len, const char *topic,
                   size_t topic_len, const char *payload, size_t payload_len, bool retained);
    /* Publish a command's marker (control, retained, QoS 1) at most once:
     * ntf_marker_done(token, ok) follows, ok once the broker has it, not ok
     * if it was dropped unacknowledged. */
    void (*publish_marker)(void *ud, const char *topic, size_t topic_len, const char *payload, size_t len,
                           uint64_t token);
    /* Acknowledge the inbound command whose ntf_mqtt returned false (its
     * handle); a no-op for a handle of an earlier connection, and with a
     * transport that acknowledges on receipt (paho: main.c). */
    void (*ack)(void *ud, uint64_t handle);
    /* Send one entry to an edge worker (ROUTER identity reply, header
     * incarnation inc). Returns 0, or -1 if the worker is unreachable. */
    int (*send_edge)(void *ud, const char *reply, uint64_t inc, const struct envelope *e);
    /* Wall-clock ms, for the "at" of statuses and command deadlines. */
    uint64_t (*wall_ms)(void *ud);
    /* Monotonic us, for how long a command waits to be routed (NULL: not measured). */
    uint64_t (*mono_us)(void *ud);
    /* Store a command with "queue":true in the durable queue (NULL: there
     * is none, and such a command is routed as any other, as before --db).
     * Its states and one result then come from the queue (cmdlog.c), not
     * from the core. 0 taken (json and mp copied), -1 refused now (the core
     * answers "busy"). */
    int (*queue_cmd)(void *ud, struct sl_slice dev, const char *id, const char *json, const uint8_t *mp,
                     size_t mp_len, int64_t ttl_s);
};

struct ntf_cfg {
    const char *prefix;
    const char *id; /* this notifier's stable id: [A-Za-z0-9._:-]{1,64} */
    uint32_t max_devices;
    uint32_t max_workers;
    uint32_t max_cmds; /* commands pending in the whole deployment (every notifier holds every marker) */
    uint64_t cmd_timeout_ms;
    uint64_t edge_timeout_ms;
    /* A retained status read back whose epoch lies more than this far ahead
     * of the wall clock is ignored (counted, logged once): a status forged
     * with a huge epoch would otherwise fence out every real session of
     * its device. 0 = no check. */
    uint64_t status_max_skew_ms;
};

/* Counters, main thread only; main.c turns them into Prometheus metrics. */
struct ntf_stats {
    uint64_t batches, bad_batches, bad_version, entries, entries_bad;
    uint64_t data, data_refused, data_bad;
    uint64_t status_published;
    uint64_t connects_stale, disconnects_stale, dups;
    uint64_t presence_full, worker_full;
    uint64_t kicks, kicks_failed;
    uint64_t cmds_routed, cmds_offline, cmds_failed, cmds_timeout, cmds_ok, cmds_disconnected;
    uint64_t cmds_bad, cmds_bad_id, cmds_unreadable, cmds_dup, cmds_unsent;
    uint64_t cmds_lost;       /* taken, but the marker was dropped before the broker acknowledged it */
    uint64_t cmds_queued;     /* "queue":true commands handed to the durable queue (ntf_out.queue_cmd) */
    uint64_t res_unknown;     /* answers for commands no notifier holds (late, or never routed) */
    uint64_t res_held;        /* answers that came before their marker and waited for it */
    uint64_t markers_expired; /* markers past their deadline that nobody answered: cleared silently */
    uint64_t status_loaded, status_bad, status_future, marker_bad;
    uint64_t edges_lost;
    uint64_t heartbeats_answered, resyncs, resync_published;
    /* From a command's arrival to its routing (the broker has its marker):
     * the window in which the taker's death loses it. */
    struct stat_hist route;
};

/* Buckets of ntf_stats.route, seconds. */
#define NTF_ROUTE_BUCKETS 12
extern const double ntf_route_bounds[NTF_ROUTE_BUCKETS];

struct ntf;

/* NULL on allocation failure or a bad config. Copies the config. */
struct ntf *ntf_new(const struct ntf_cfg *cfg, const struct ntf_out *out);
void ntf_destroy(struct ntf **n);

/* One batch from the PULL socket (docs/protocol.md section 6). now_ms is
 * monotonic. Bad batches are counted and dropped. */
void ntf_batch(struct ntf *n, const uint8_t *p, size_t len, uint64_t now_ms);

/* One MQTT message from the subscriptions (P/+/cmd, P/+/status, markers).
 * ack is its QoS 1 handle (0 for QoS 0). Returns true when it may be
 * acknowledged now; false when the core acknowledges it later through
 * out.ack (a command, once routed: with a transport that can defer it, a
 * notifier that dies before routing leaves the command unacknowledged; paho
 * cannot, docs/notifier.md "Commands with several notifiers"). */
bool ntf_mqtt(struct ntf *n, const char *topic, size_t topic_len, const char *payload, size_t len,
              uint64_t ack, uint64_t now_ms);

/* The fate of a marker published through out.publish_marker. */
void ntf_marker_done(struct ntf *n, uint64_t token, bool ok, uint64_t now_ms);

/* The control connection is up again; switched: on another broker than
 * before, which has not seen what this notifier published meanwhile: the
 * statuses of its devices and the markers it decides are published again
 * (paced by ntf_tick). */
void ntf_mqtt_up(struct ntf *n, bool switched);

/* Timers: command timeouts and edge timeouts, held answers, the resync.
 * Call every ~50 ms. */
void ntf_tick(struct ntf *n, uint64_t now_ms);

const struct ntf_stats *ntf_stats(const struct ntf *n);

/* The edges' clock skew from their heartbeats (sl/edgeclock.h), published
 * by ntf_tick once a second; an edge silent for edge_timeout_ms drops out.
 * Valid until ntf_destroy. The metrics thread may call edgeclock_collect
 * on it; nothing else but the core's thread touches it. */
struct edgeclock;
struct edgeclock *ntf_edgeclock(struct ntf *n);
uint32_t ntf_devices(const struct ntf *n);
uint32_t ntf_online(const struct ntf *n);
uint32_t ntf_pending(const struct ntf *n);

#endif
