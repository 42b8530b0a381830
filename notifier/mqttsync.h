/* SPDX-License-Identifier: Apache-2.0 */
/* mqttsync.h - one MQTT 3.1.1 client that only publishes at QoS 0, on
 * paho.mqtt.c's synchronous API (MQTTClient), for a data publisher child
 * run with --data-qos 0 (pubproc.c).
 *
 * Why not mqtt.c: MQTTAsync hands every publish to paho's send thread and
 * reports it done from there, a thread hand-off and a callback per message;
 * MQTTClient_publish writes in the caller's thread. No callbacks are set,
 * so paho starts no thread at all: the caller's loop drives everything
 * (mqs_tick: keepalive, PINGRESP, a lost connection, reconnects, the return
 * to the first broker). docs/performance.md has the figures.
 *
 * QoS 0 is best effort: a publish is done once paho has written it to the
 * socket (counted published; the broker may still lose it). A publish that
 * fails because the connection broke is counted failed, never retried: what
 * the caller still holds waits until the next connection (mqs_ready says
 * no meanwhile).
 *
 * Brokers, TLS, credentials, connect failure logs and the return probe
 * behave as in mqtt.c (shared code: brokers.c).
 *
 * Blocking: MQTTClient_connect blocks, at most MQS_CONNECT_TIMEOUT_S per
 * broker tried, and only from mqs_tick, never past mqs_set_deadline. A
 * publish does not block while the socket has room: mqs_ready checks the
 * socket's send queue (one record larger than half the send buffer may
 * wait in paho for the broker to read it). All calls on one thread. */
#ifndef NTF_MQTTSYNC_H
#define NTF_MQTTSYNC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct mqs;
struct mqtt_stats;

/* Each connect attempt gives up after this long (a silent host). */
#define MQS_CONNECT_TIMEOUT_S 2

struct mqs_cfg {
    const char *uris;      /* "tcp://a:1883,ssl://b:8883": the first that accepts is used */
    const char *client_id; /* as is */
    const char *username;  /* "" = none */
    const char *password;
    const char *tls_ca;   /* CA file for ssl:// ("" = OpenSSL's default store); refused with tcp:// */
    uint16_t keepalive_s; /* 0: 20 */
};

/* Check the configuration (as mqtt_new: refused with one
 * event=mqtt_config_refused line) and create the client. It connects from
 * the first mqs_tick. NULL on failure. Never blocks. */
struct mqs *mqs_new(const struct mqs_cfg *cfg, struct loop *l);
/* Disconnect without waiting (what the socket holds goes or not),
 * destroy, free, NULL *s. */
void mqs_destroy(struct mqs **s);

/* Call every ~100 ms: connects when due (blocks, see the top), reads what
 * the broker sent (PINGRESP) with a zero timeout, lets paho send its
 * keepalive PINGREQ, notices a lost connection, probes the first broker and
 * moves back to it when it answers. */
void mqs_tick(struct mqs *s);
/* No connect attempt that could end after this loop_clock_ms() time (the
 * child's flush bound). */
void mqs_set_deadline(struct mqs *s, uint64_t ms);

/* Connected, and the socket has room for a publish of this size: mqs_publish
 * would not block. */
bool mqs_ready(struct mqs *s, size_t topic_len, size_t len);
/* Connected (whatever the socket's room). */
bool mqs_connected(const struct mqs *s);
/* A batch of publishes: held in the kernel (TCP_CORK) until mqs_end, which
 * sends them in as few segments as fit. Cheap; nesting not allowed. */
void mqs_begin(struct mqs *s);
void mqs_end(struct mqs *s);
/* Publish at QoS 0 (paho copies topic and payload: nothing kept here).
 * 0 when written (stats.published), -1 when lost (the connection broke:
 * stats.failed; or the topic is too long: stats.refused; mqs_stats). Call only when
 * mqs_ready said yes. */
int mqs_publish(struct mqs *s, const char *topic, size_t topic_len, const void *payload, size_t len,
                bool retained);
/* The counters, in mqtt.c's struct (a pubproc child reports either
 * alike): published = written to the socket, failed = lost when the
 * connection broke under the publish, refused = topic too long; resent and
 * inflight are always 0 (nothing is kept). */
void mqs_stats(const struct mqs *s, struct mqtt_stats *out);

#endif
