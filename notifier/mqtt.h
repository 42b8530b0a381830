/* mqtt.h - the notifier's paho side: a pool of MQTTAsync client
 * connections, publishing with QoS 1 and many messages in flight.
 *
 * Threads: paho calls back on its own threads. Those callbacks only touch
 * atomics and a mutex-protected inbound queue, then wake the main loop
 * (loop_wake); they never touch ZeroMQ or the notifier core. Everything
 * else here is called from the main thread.
 *
 * A device always publishes through the same client (hash of its id), so
 * its messages keep their order. Data is refused (caller counts it) while a
 * client is disconnected or holds max_inflight unacknowledged messages;
 * the caller stops pulling from the edges before that happens (mqtt_ready).
 * Status and results (control) are never refused: what paho will not take
 * now waits in a bounded FIFO retried by mqtt_tick; only overflow of that
 * FIFO loses one (counted).
 *
 * A client library, and only that: it knows nothing of processes. The
 * notifier's parent runs one pool of 1 client for control and subscriptions;
 * each publisher child (pubproc.h) runs one pool of 1 client for data. The
 * parent sends data to the children itself (main.c wires both), so calls go
 * pubproc -> mqtt, never back. */
#ifndef NTF_MQTT_H
#define NTF_MQTT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct mqtt;

struct mqtt_cfg {
    const char *uri;       /* tcp://host:port or ssl://host:port */
    const char *client_id; /* clients are <client_id>-<n> */
    const char *username;  /* "" = none */
    const char *password;
    const char *tls_ca;     /* CA file for ssl:// ("" = system default); refused with tcp:// */
    const char *sub_status; /* "P/+/status", subscribed first (routing rebuild) */
    const char *sub_cmd;    /* "P/+/cmd" */
    int pool;               /* clients; a device always uses client hash(dev) % pool */
    int max_inflight;       /* per client, data */
    int ctrl_queue;         /* control messages held while paho refuses them */
    int inbound_queue;      /* MQTT messages waiting for the main thread */
    int name_index;         /* first client is <client_id>-<name_index> */
    bool subscribe;         /* client 0 subscribes sub_status + sub_cmd */
};

/* Longest topic mqtt_publish takes (bytes, without the NUL); longer ones are
 * refused and counted lost. */
#define MQTT_TOPIC_MAX 511

struct mqtt_stats {
    uint64_t published, failed, data_lost, ctrl_lost, reconnects, ctrl_queued;
    int64_t inflight, ctrl_waiting;
    int connected; /* clients connected */
};

/* Create the clients and start connecting (non-blocking). `l` is woken
 * from paho's threads. NULL on failure (logged), including a refused
 * configuration: tls_ca with a tcp:// URI, or a tls_ca that cannot be read.
 * A broker that refuses us (TLS verification, credentials) is not a
 * failure here: the clients keep retrying and log the cause once each. */
struct mqtt *mqtt_new(const struct mqtt_cfg *cfg, struct loop *l);
/* Disconnect (waits up to timeout_ms for paho) and free. */
void mqtt_destroy(struct mqtt **m, int timeout_ms);

/* True when every client is connected and below its in-flight bound:
 * the caller may pull more data. */
bool mqtt_ready(struct mqtt *m);
/* True when client 0 (the subscriber) is connected and its subscriptions
 * are acknowledged, so commands published from now on reach us (readiness). */
bool mqtt_connected(struct mqtt *m);

/* Publish with QoS 1. Data: 0 or -1 (refused, counted as lost). Control:
 * 0 always (queued if paho cannot take it now; lost only on overflow). */
int mqtt_publish(struct mqtt *m, bool ctrl, const char *dev, size_t dev_len, const char *topic,
                 size_t topic_len, const void *payload, size_t len, bool retained);

/* Main thread: retry queued control messages, reconnect clients whose
 * first connect failed. Call every ~100 ms and on wake. */
void mqtt_tick(struct mqtt *m, uint64_t now_ms);

/* Main thread: hand every queued inbound message to cb, in arrival order. */
typedef void mqtt_msg_cb(void *ud, const char *topic, size_t topic_len, const char *payload, size_t len);
void mqtt_poll(struct mqtt *m, mqtt_msg_cb *cb, void *ud);

/* Unacknowledged data + control messages, and queued control messages. */
int64_t mqtt_outstanding(struct mqtt *m);

void mqtt_stats(struct mqtt *m, struct mqtt_stats *out);

#endif
