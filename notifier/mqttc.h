/* mqttc.h - the MQTT 3.1.1 packets the notifier speaks, as a pure codec:
 * encoders write into caller buffers, the parser reads one packet from the
 * front of a caller buffer. No sockets, no allocation, no logging, so every
 * function is tested on byte arrays (tests/unit/test_notifier_mqttc.c).
 *
 * What it covers is what a publisher and a command/status subscriber need:
 * CONNECT (clean session, user name, password), CONNACK, PUBLISH (QoS 0 and
 * 1, retain), PUBACK, SUBSCRIBE/SUBACK, PINGREQ/PINGRESP, DISCONNECT. QoS 2
 * and MQTT 5 are not spoken; a broker sending a packet of a type a client
 * never asks for is a protocol error (the shell closes the connection). */
#ifndef NTF_MQTTC_H
#define NTF_MQTTC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/slice.h"

/* Control packet types (the high nibble of the first byte). */
enum mqttc_type {
    MQTTC_CONNECT = 1,
    MQTTC_CONNACK = 2,
    MQTTC_PUBLISH = 3,
    MQTTC_PUBACK = 4,
    MQTTC_SUBSCRIBE = 8,
    MQTTC_SUBACK = 9,
    MQTTC_PINGREQ = 12,
    MQTTC_PINGRESP = 13,
    MQTTC_DISCONNECT = 14,
};

/* Bytes of a PUBLISH besides topic and payload: fixed header (1 + up to 4
 * length bytes), topic length (2) and packet id (2). */
#define MQTTC_PUBLISH_OVERHEAD 9u
/* Largest remaining length MQTT can express (4 length bytes). */
#define MQTTC_MAX_REMAINING 268435455u

/* One packet read by mqttc_parse. Slices point into the parsed buffer. */
struct mqttc_pkt {
    enum mqttc_type type;
    uint8_t flags;    /* low nibble of the first byte */
    uint16_t id;      /* PUBACK, SUBACK, PUBLISH with qos 1 */
    uint8_t rc;       /* CONNACK: return code (0 = accepted); SUBACK: first granted qos (0x80 = refused) */
    uint8_t qos;      /* PUBLISH */
    bool retain, dup; /* PUBLISH */
    struct sl_slice topic, payload;
    struct sl_slice acks; /* SUBACK: every granted-qos byte */
};

enum mqttc_parse_rc {
    MQTTC_NEED_MORE = 0, /* no whole packet at the front yet */
    MQTTC_READY,         /* *out is one packet, *used its bytes */
    MQTTC_ERR_TOOBIG,    /* the packet would be longer than max: close */
    MQTTC_ERR_MALFORMED, /* not MQTT 3.1.1 from a broker: close */
};

/* Read the packet at the front of p[0..n). Packets longer than max bytes are
 * refused as soon as their length is known. Stateless: call again with the
 * bytes that follow *used, or with more bytes appended when it needs more;
 * the result does not depend on how the input was split. */
enum mqttc_parse_rc mqttc_parse(const uint8_t *p, size_t n, size_t max, struct mqttc_pkt *out, size_t *used);

/* The encoders below return the bytes written, or 0 if cap is too small (the
 * buffer is then unchanged in meaning: nothing counts as written). */

/* CONNECT, protocol level 4 (3.1.1), clean session. user/pass may be NULL
 * or "" (not sent). keepalive in seconds. */
size_t mqttc_connect(uint8_t *buf, size_t cap, const char *client_id, const char *user, const char *pass,
                     uint16_t keepalive);

/* PUBLISH topic/payload with qos 0 or 1 (id ignored for 0). */
size_t mqttc_publish(uint8_t *buf, size_t cap, const char *topic, size_t topic_len, const void *payload,
                     size_t len, int qos, bool retain, uint16_t id);
/* Bytes mqttc_publish needs for this topic and payload length. */
size_t mqttc_publish_size(size_t topic_len, size_t len, int qos);
/* Where the packet id of a qos 1 PUBLISH written by mqttc_publish sits, and
 * rewriting it (a resent packet keeps its bytes, a new connection may
 * renumber it). */
void mqttc_publish_set_id(uint8_t *pkt, uint16_t id);
/* Length of the packet that starts at p (fixed header included), if its
 * header is complete in n bytes; 0 otherwise. For walking a buffer of packets
 * this codec wrote. */
size_t mqttc_packet_len(const uint8_t *p, size_t n);

size_t mqttc_puback(uint8_t *buf, size_t cap, uint16_t id);
/* SUBSCRIBE n topic filters, each at its qos (0 or 1). */
size_t mqttc_subscribe(uint8_t *buf, size_t cap, uint16_t id, const char *const *topics, const int *qos,
                       int n);
size_t mqttc_pingreq(uint8_t *buf, size_t cap);
size_t mqttc_disconnect(uint8_t *buf, size_t cap);

/* A CONNACK return code in words ("not authorized", ...); NULL for 0 or an
 * unknown code. */
const char *mqttc_connack_str(uint8_t rc);

#endif
