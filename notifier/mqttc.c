/* mqttc.c - MQTT 3.1.1 packets as bytes (mqttc.h): encoders into caller
 * buffers and a stateless parser of the packet at the front of a buffer.
 *
 * Deliberately not here: sockets, TLS, timers, packet-id bookkeeping, what a
 * packet means to the client (mqtt.c decides all of that). */
#include "mqttc.h"

#include <string.h>

/* Remaining-length bytes for n (1..4). */
static size_t len_size(size_t n)
{
    return n < 128u ? 1 : n < 16384u ? 2 : n < 2097152u ? 3 : 4;
}

static size_t put_len(uint8_t *p, size_t n)
{
    size_t i = 0;
    do {
        uint8_t b = (uint8_t)(n & 127u);
        n >>= 7;
        if (n)
            b |= 128u;
        p[i++] = b;
    } while (n);
    return i;
}

static uint8_t *put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static uint8_t *put_str(uint8_t *p, const void *s, size_t n)
{
    p = put_u16(p, (uint16_t)n);
    if (n)
        memcpy(p, s, n);
    return p + n;
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

/* Fixed header for a packet with `rem` bytes after it; returns where the
 * variable header starts, or NULL if the whole packet does not fit. */
static uint8_t *begin(uint8_t *buf, size_t cap, uint8_t first, size_t rem)
{
    if (rem > MQTTC_MAX_REMAINING || 1 + len_size(rem) + rem > cap)
        return NULL;
    buf[0] = first;
    return buf + 1 + put_len(buf + 1, rem);
}

static size_t slen(const char *s)
{
    return s ? strlen(s) : 0;
}

size_t mqttc_connect(uint8_t *buf, size_t cap, const char *client_id, const char *user, const char *pass,
                     uint16_t keepalive)
{
    size_t il = slen(client_id), ul = slen(user), pl = slen(pass);
    if (il > 65535 || ul > 65535 || pl > 65535)
        return 0;
    bool has_user = ul > 0, has_pass = has_user && pl > 0; /* 3.1.1: no password without a user name */
    size_t rem = 10 + 2 + il + (has_user ? 2 + ul : 0) + (has_pass ? 2 + pl : 0);
    uint8_t *p = begin(buf, cap, MQTTC_CONNECT << 4, rem);
    if (!p)
        return 0;
    p = put_str(p, "MQTT", 4);
    *p++ = 4;                                                                  /* protocol level: 3.1.1 */
    *p++ = (uint8_t)(0x02u | (has_user ? 0x80u : 0) | (has_pass ? 0x40u : 0)); /* clean session */
    p = put_u16(p, keepalive);
    p = put_str(p, client_id, il);
    if (has_user)
        p = put_str(p, user, ul);
    if (has_pass)
        p = put_str(p, pass, pl);
    return (size_t)(p - buf);
}

size_t mqttc_publish_size(size_t topic_len, size_t len, int qos)
{
    size_t rem = 2 + topic_len + (qos > 0 ? 2 : 0) + len;
    return 1 + len_size(rem) + rem;
}

size_t mqttc_publish(uint8_t *buf, size_t cap, const char *topic, size_t topic_len, const void *payload,
                     size_t len, int qos, bool retain, uint16_t id)
{
    if (topic_len == 0 || topic_len > 65535 || (qos == 1 && id == 0) || qos < 0 || qos > 1)
        return 0;
    size_t rem = 2 + topic_len + (qos > 0 ? 2 : 0) + len;
    uint8_t *p = begin(buf, cap, (uint8_t)(MQTTC_PUBLISH << 4 | qos << 1 | (retain ? 1 : 0)), rem);
    if (!p)
        return 0;
    p = put_str(p, topic, topic_len);
    if (qos > 0)
        p = put_u16(p, id);
    if (len)
        memcpy(p, payload, len);
    return (size_t)(p - buf) + len;
}

size_t mqttc_packet_len(const uint8_t *p, size_t n)
{
    size_t rem = 0;
    for (size_t i = 1; i < n && i <= 4; i++) {
        rem |= (size_t)(p[i] & 127u) << (7 * (i - 1));
        if (!(p[i] & 128u))
            return 1 + i + rem;
    }
    return 0;
}

void mqttc_publish_set_id(uint8_t *pkt, uint16_t id)
{
    size_t i = 1;
    while (pkt[i] & 128u)
        i++;
    const uint8_t *t = pkt + i + 1;
    put_u16(pkt + i + 1 + 2 + get_u16(t), id);
}

size_t mqttc_puback(uint8_t *buf, size_t cap, uint16_t id)
{
    uint8_t *p = begin(buf, cap, MQTTC_PUBACK << 4, 2);
    if (!p)
        return 0;
    return (size_t)(put_u16(p, id) - buf);
}

size_t mqttc_subscribe(uint8_t *buf, size_t cap, uint16_t id, const char *const *topics, const int *qos,
                       int n)
{
    if (n < 1 || id == 0)
        return 0;
    size_t rem = 2;
    for (int i = 0; i < n; i++) {
        size_t tl = slen(topics[i]);
        if (tl == 0 || tl > 65535)
            return 0;
        rem += 2 + tl + 1;
    }
    uint8_t *p = begin(buf, cap, MQTTC_SUBSCRIBE << 4 | 2, rem); /* flags 0010 are required */
    if (!p)
        return 0;
    p = put_u16(p, id);
    for (int i = 0; i < n; i++) {
        p = put_str(p, topics[i], strlen(topics[i]));
        *p++ = (uint8_t)(qos[i] > 0 ? 1 : 0);
    }
    return (size_t)(p - buf);
}

size_t mqttc_pingreq(uint8_t *buf, size_t cap)
{
    uint8_t *p = begin(buf, cap, MQTTC_PINGREQ << 4, 0);
    return p ? (size_t)(p - buf) : 0;
}

size_t mqttc_disconnect(uint8_t *buf, size_t cap)
{
    uint8_t *p = begin(buf, cap, MQTTC_DISCONNECT << 4, 0);
    return p ? (size_t)(p - buf) : 0;
}

const char *mqttc_connack_str(uint8_t rc)
{
    static const char *const s[] = {NULL,
                                    "unacceptable protocol version",
                                    "client id rejected",
                                    "server unavailable",
                                    "bad user name or password",
                                    "not authorized (user name or password)"};
    return rc < sizeof s / sizeof s[0] ? s[rc] : NULL;
}

enum mqttc_parse_rc mqttc_parse(const uint8_t *p, size_t n, size_t max, struct mqttc_pkt *out, size_t *used)
{
    *used = 0;
    if (n < 2)
        return MQTTC_NEED_MORE;
    size_t rem = 0, i = 1;
    for (;; i++) {
        if (i > 4)
            return MQTTC_ERR_MALFORMED; /* a fifth length byte */
        if (i >= n)
            return MQTTC_NEED_MORE;
        rem |= (size_t)(p[i] & 127u) << (7 * (i - 1));
        if (!(p[i] & 128u))
            break;
    }
    size_t total = 1 + i + rem;
    if (total > max)
        return MQTTC_ERR_TOOBIG;
    if (n < total)
        return MQTTC_NEED_MORE;
    const uint8_t *b = p + 1 + i; /* variable header */
    memset(out, 0, sizeof *out);
    out->type = (enum mqttc_type)(p[0] >> 4);
    out->flags = p[0] & 15u;
    switch (out->type) {
    case MQTTC_CONNACK:
        if (out->flags || rem != 2 || (b[0] & 0xfeu))
            return MQTTC_ERR_MALFORMED;
        out->rc = b[1];
        break;
    case MQTTC_PUBLISH: {
        out->qos = (out->flags >> 1) & 3u;
        out->retain = out->flags & 1u;
        out->dup = (out->flags & 8u) != 0;
        if (out->qos > 1 || rem < 2)
            return MQTTC_ERR_MALFORMED; /* we never subscribe at qos 2 */
        size_t tl = get_u16(b);
        size_t hdr = 2 + tl + (out->qos ? 2 : 0);
        if (tl == 0 || hdr > rem)
            return MQTTC_ERR_MALFORMED;
        out->topic = (struct sl_slice){b + 2, (uint32_t)tl};
        if (out->qos) {
            out->id = get_u16(b + 2 + tl);
            if (out->id == 0)
                return MQTTC_ERR_MALFORMED;
        }
        out->payload = (struct sl_slice){b + hdr, (uint32_t)(rem - hdr)};
        break;
    }
    case MQTTC_PUBACK:
        if (out->flags || rem != 2)
            return MQTTC_ERR_MALFORMED;
        out->id = get_u16(b);
        break;
    case MQTTC_SUBACK:
        if (out->flags || rem < 3)
            return MQTTC_ERR_MALFORMED;
        out->id = get_u16(b);
        out->rc = b[2];
        out->acks = (struct sl_slice){b + 2, (uint32_t)(rem - 2)};
        break;
    case MQTTC_PINGRESP:
        if (out->flags || rem != 0)
            return MQTTC_ERR_MALFORMED;
        break;
    default: return MQTTC_ERR_MALFORMED; /* nothing a broker sends a 3.1.1 client at qos <= 1 */
    }
    *used = total;
    return MQTTC_READY;
}
