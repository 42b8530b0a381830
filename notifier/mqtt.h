/* SPDX-License-Identifier: Apache-2.0 */
/* mqtt.h - one MQTT 3.1.1 client of the notifier on paho.mqtt.c
 * (MQTTAsync), over TCP or TLS, to the first broker of a list that accepts
 * it, with everything it reports delivered on the caller's event loop.
 *
 * Publishes are copied into a ring of records and handed to paho in order
 * by mqtt_flush, at most max_inflight at a time; every publish of a client
 * has the client's QoS (cfg.qos). A record stays until paho reports its
 * fate (QoS 1: the PUBACK; QoS 0: written). Whatever was with paho when its
 * connection was lost is handed again, in order, on the next connection:
 * at least once across broker restarts and failovers.
 *
 * Brokers: cfg.uris is a list; a connection tries them in order from the
 * first (paho's serverURIs), so the first that accepts is used. While
 * connected to another than the first, the client probes the first (a TCP
 * connect) every few seconds and, once it answers, moves back to it. ops.up
 * says which broker a new connection reached and whether it differs from
 * the previous one (the caller then republishes what only the old broker
 * knew).
 *
 * Threads: paho runs its own; its callbacks only queue events and wake the
 * loop through an eventfd. Every call here is on the loop's thread, and the
 * callbacks of struct mqtt_ops run on it too, from the loop's fd and timer
 * callbacks only (mqtt_publish and mqtt_flush never call back). Nothing
 * here blocks, except mqtt_destroy (bounded, below).
 *
 * Inbound QoS 1 messages are acknowledged by paho before they reach ops.msg
 * (paho sends the PUBACK as it queues the message for delivery): a message
 * cannot be acknowledged later, and mqtt_ack is a no-op kept for the
 * callers' shape. */
#ifndef NTF_MQTT_H
#define NTF_MQTT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct mqtt;

/* Longest topic mqtt_publish takes (bytes); longer ones are refused. */
#define MQTT_TOPIC_MAX 511
/* Most brokers one client may be given. */
#define MQTT_MAX_BROKERS 8
/* A publish still unacknowledged after this many connections is dropped
 * (counted in stats.failed): a broker that closes the connection on one
 * message must not stop everything behind it for good. */
#define MQTT_MAX_TRIES 20

/* An inbound PUBLISH, borrowed for the callback. */
struct mqtt_msg {
    const char *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t len;
    bool retained;
    uint64_t ack; /* a handle for mqtt_ack (never 0; paho has acknowledged the message already) */
};

struct mqtt_ops {
    void *ud;
    /* An inbound message (the return value is ignored: paho acknowledged
     * it before we saw it). NULL: messages dropped. */
    bool (*msg)(void *ud, const struct mqtt_msg *m);
    /* Connected to brokers[broker] (and subscribed, if cfg.subs): switched is
     * true when it is not the broker of the previous connection. */
    void (*up)(void *ud, int broker, bool switched);
    /* A publish given a token was acknowledged (ok) or dropped (not ok: it
     * failed too often). */
    void (*done)(void *ud, uint64_t token, bool ok);
    /* Acknowledgements made room: the caller may publish again. */
    void (*room)(void *ud);
};

struct mqtt_cfg {
    const char *uris;      /* "tcp://a:1883,ssl://b:8883" (also mqtt://, mqtts://); the first is preferred */
    const char *client_id; /* as is */
    const char *username;  /* "" = none */
    const char *password;
    const char *tls_ca;      /* CA file for ssl:// ("" = OpenSSL's default store); refused with tcp:// */
    const char *const *subs; /* topic filters subscribed (QoS 1) on every connection, in one SUBSCRIBE */
    int nsubs;
    int qos;              /* of every publish: 0 or 1 */
    int max_inflight;     /* QoS 1 publishes written and not yet acknowledged */
    size_t buf_bytes;     /* bytes of topics and payloads held: unacknowledged + not yet handed to paho */
    size_t max_in;        /* largest inbound payload kept (a bigger message is dropped) */
    uint16_t keepalive_s; /* 0: 20 */
};

struct mqtt_stats {
    uint64_t published;  /* acknowledged (QoS 1) or written (QoS 0) */
    uint64_t failed;     /* dropped: `once` ones whose connection was lost, others after MQTT_MAX_TRIES */
    uint64_t refused;    /* mqtt_publish said no: buffer full, topic too long */
    uint64_t resent;     /* handed to paho again on a new connection */
    uint64_t reconnects; /* connections after the first */
    int64_t inflight;    /* records held: with paho and unacknowledged, or not yet handed to it */
    int connected;       /* 1 while connected */
    int broker;          /* index of the broker connected to, -1 when none */
};

/* Check the configuration, create the client and start connecting. NULL on
 * failure (logged, event=mqtt_config_refused): a malformed or empty URI
 * list, tls_ca with a tcp:// URI (the password and every message would go
 * in clear), a tls_ca that cannot be read. A broker that refuses us (TLS
 * verification, credentials) is not a failure here: the client retries and
 * logs each cause once. ops is copied. */
struct mqtt *mqtt_new(const struct mqtt_cfg *cfg, const struct mqtt_ops *ops, struct loop *l);
/* Disconnect if connected (waits at most 200 ms for paho, whatever the
 * broker does), destroy the paho client, free. Records not acknowledged are
 * dropped (count them with mqtt_outstanding first). NULLs *m. */
void mqtt_destroy(struct mqtt **m);

/* Append one publish (copies topic and payload). 0, or -1 when refused: the
 * buffer is full or the topic longer than MQTT_TOPIC_MAX (counted in
 * stats.refused). token != 0: ops.done reports its fate. once (QoS 1, with a
 * token): never handed to paho twice; if the connection is lost before its
 * PUBACK it is dropped and ops.done says not ok (it may or may not have
 * reached the broker). Handed to paho by the next mqtt_flush. Never calls
 * back. */
int mqtt_publish(struct mqtt *m, const char *topic, size_t topic_len, const void *payload, size_t len,
                 bool retained, uint64_t token, bool once);
/* Hand paho what the window allows now, in order (never blocks, never calls
 * back). */
void mqtt_flush(struct mqtt *m);
/* A no-op: paho acknowledges inbound messages itself (see the top). */
void mqtt_ack(struct mqtt *m, uint64_t handle);

/* Connected, and fewer than max_inflight publishes wait for paho: a
 * publisher may hand more. */
bool mqtt_ready(const struct mqtt *m);
/* Room in the buffer for a publish of this topic and payload length. */
bool mqtt_room(const struct mqtt *m, size_t topic_len, size_t len);
/* Connected and every subscription acknowledged (readiness). */
bool mqtt_connected(const struct mqtt *m);
/* Publishes not yet acknowledged (QoS 1) or written (QoS 0). */
int64_t mqtt_outstanding(const struct mqtt *m);
void mqtt_stats(const struct mqtt *m, struct mqtt_stats *out);

#endif
