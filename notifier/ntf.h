/* ntf.h - the notifier's decisions, with no I/O: edge batches and MQTT
 * messages in; publishes, commands and kicks out through struct ntf_out.
 *
 * The I/O shells (bus.c for ZeroMQ, mqtt.c for MQTT) and main.c wire it
 * to the world; unit tests wire it to recording stubs. Runs on one thread
 * (the main thread); not thread-safe. */
#ifndef NTF_NTF_H
#define NTF_NTF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/envelope.h"

enum ntf_pub_class {
    NTF_PUB_DATA = 0, /* P/<dev>/data: may be refused (counted as lost) */
    NTF_PUB_CTRL,     /* status and results: never shed, queued if needed */
};

struct ntf_out {
    void *ud;
    /* Publish payload on topic with QoS 1; dev picks the client (order per
     * device). Returns 0, or -1 if it was refused (data only). Borrowed
     * buffers: copy what must outlive the call. */
    int (*publish)(void *ud, enum ntf_pub_class cls, const char *dev, size_t dev_len, const char *topic,
                   size_t topic_len, const char *payload, size_t payload_len, bool retained);
    /* Send one entry to an edge worker (ROUTER identity reply, header
     * incarnation inc). Returns 0, or -1 if the worker is unreachable. */
    int (*send_edge)(void *ud, const char *reply, uint64_t inc, const struct envelope *e);
    /* Wall-clock ms, for the "at" of statuses the notifier decides itself. */
    uint64_t (*wall_ms)(void *ud);
};

struct ntf_cfg {
    const char *prefix;
    uint32_t max_devices;
    uint32_t max_workers;
    uint32_t max_cmds;
    uint64_t cmd_timeout_ms;
    uint64_t edge_timeout_ms;
};

/* Counters, main thread only; main.c turns them into Prometheus metrics. */
struct ntf_stats {
    uint64_t batches, bad_batches, bad_version, entries;
    uint64_t data, data_refused, data_bad;
    uint64_t status_published;
    uint64_t connects_stale, disconnects_stale, dups;
    uint64_t presence_full, worker_full;
    uint64_t kicks, kicks_failed;
    uint64_t cmds_routed, cmds_offline, cmds_failed, cmds_timeout, cmds_ok, cmds_disconnected;
    uint64_t cmds_bad, cmds_bad_id, cmds_unreadable, cmds_dup, cmds_unsent;
    uint64_t res_unknown;
    uint64_t status_loaded, status_bad;
    uint64_t edges_lost;
};

struct ntf;

/* NULL on allocation failure or a bad config. Copies the config. */
struct ntf *ntf_new(const struct ntf_cfg *cfg, const struct ntf_out *out);
void ntf_destroy(struct ntf **n);

/* One batch from the PULL socket (docs/protocol.md section 6). now_ms is
 * monotonic. Bad batches are counted and dropped. */
void ntf_batch(struct ntf *n, const uint8_t *p, size_t len, uint64_t now_ms);

/* One MQTT message from the subscriptions (P/+/cmd, P/+/status). */
void ntf_mqtt(struct ntf *n, const char *topic, size_t topic_len, const char *payload, size_t len,
              uint64_t now_ms);

/* Timers: command timeouts and edge timeouts. Call every ~100 ms. */
void ntf_tick(struct ntf *n, uint64_t now_ms);

const struct ntf_stats *ntf_stats(const struct ntf *n);
uint32_t ntf_devices(const struct ntf *n);
uint32_t ntf_online(const struct ntf *n);
uint32_t ntf_pending(const struct ntf *n);

#endif
