/* mqtt.h - one MQTT 3.1.1 client connection of the notifier, on the
 * caller's event loop (no threads), over TCP or TLS, to the first broker of
 * a list that accepts it.
 *
 * Publishes are appended, already encoded, to one buffer and written many
 * at a time (one write per mqtt_flush, not one per message); every publish
 * of a client has the client's QoS (cfg.qos). With QoS 1 a packet stays in
 * the buffer until its PUBACK (brokers acknowledge in order, MQTT 3.1.1
 * 4.6), at most max_inflight written and unacknowledged at once, and
 * everything unacknowledged is written again, in order, on the next
 * connection: at least once across broker restarts and failovers. With
 * QoS 0 a packet leaves the buffer once written.
 *
 * Brokers: cfg.uris is a list; a connection tries them in order from the
 * first, so the first that accepts is used. While connected to another
 * than the first, the client probes the first (a TCP connect) every few
 * seconds and, once it answers, moves back to it. ops.up says which broker
 * a new connection reached and whether it differs from the previous one
 * (the caller then republishes what only the old broker knew).
 *
 * Every call is on the loop's thread; callbacks (struct mqtt_ops) run on it
 * too, from inside the loop's fd and timer callbacks. Never blocks: host
 * names are resolved with getaddrinfo_a, sockets are non-blocking. */
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
    uint64_t ack; /* QoS 1: the handle for mqtt_ack; 0 for QoS 0 */
};

struct mqtt_ops {
    void *ud;
    /* An inbound message. Return true to acknowledge it now, false to
     * acknowledge it later with mqtt_ack(m->ack) (e.g. once a command is
     * routed). NULL: every message acknowledged. */
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
    size_t buf_bytes;     /* publish buffer: unacknowledged + not yet written */
    size_t max_in;        /* largest inbound packet accepted (a bigger one closes the connection) */
    uint16_t keepalive_s; /* 0: 20 */
    /* Read at most once per this many ms while connected (0: at once). A
     * publisher does not need each PUBACK the moment it lands: waking once a
     * millisecond for all of them costs far fewer context switches than
     * waking for every TCP segment the broker sends. */
    uint32_t read_every_ms;
};

struct mqtt_stats {
    uint64_t published;  /* acknowledged (QoS 1) or written (QoS 0) */
    uint64_t failed;     /* dropped after failing MQTT_MAX_TRIES connections */
    uint64_t refused;    /* mqtt_publish said no: buffer full, topic too long */
    uint64_t resent;     /* written again on a new connection */
    uint64_t reconnects; /* connections after the first */
    int64_t inflight;    /* in the buffer: written and unacknowledged, or not yet written */
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
/* Send DISCONNECT if connected (best effort, without waiting), close, free. */
void mqtt_destroy(struct mqtt **m);

/* Append one publish (copies topic and payload). 0, or -1 when refused: the
 * buffer is full or the topic longer than MQTT_TOPIC_MAX (counted in
 * stats.refused). token != 0: ops.done reports its fate. once (QoS 1, with a
 * token): never written twice; if the connection is lost before its PUBACK
 * it is dropped and ops.done says not ok (it may or may not have reached the
 * broker). Written by the next mqtt_flush (or when the socket drains). */
int mqtt_publish(struct mqtt *m, const char *topic, size_t topic_len, const void *payload, size_t len,
                 bool retained, uint64_t token, bool once);
/* Write what the window allows now (never blocks). */
void mqtt_flush(struct mqtt *m);
/* Acknowledge an inbound QoS 1 message whose msg callback returned false.
 * A handle of an earlier connection is ignored (that message is gone). */
void mqtt_ack(struct mqtt *m, uint64_t handle);

/* Connected, and fewer than max_inflight publishes wait unwritten: a
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
