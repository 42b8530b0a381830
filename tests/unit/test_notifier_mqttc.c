/* test_notifier_mqttc.c - the notifier's MQTT 3.1.1 codec on byte arrays:
 * encoders against packets written out by hand from the specification, the
 * parser on every packet type a broker sends, split at every byte offset,
 * length limits and malformed input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "mqttc.h"

static void test_connect(void **state)
{
    (void)state;
    uint8_t b[128];
    size_t n = mqttc_connect(b, sizeof b, "ntf-1", NULL, NULL, 20);
    const uint8_t want[] = {0x10, 17, 0, 4, 'M', 'Q', 'T', 'T', 4,  0x02,
                            0,    20, 0, 5, 'n', 't', 'f', '-', '1'};
    assert_int_equal(n, sizeof want);
    assert_memory_equal(b, want, sizeof want);

    n = mqttc_connect(b, sizeof b, "c", "u", "pw", 300);
    const uint8_t want2[] = {0x10, 20, 0, 4,   'M', 'Q', 'T', 'T', 4, 0xc2, 1,
                             44,   0,  1, 'c', 0,   1,   'u', 0,   2, 'p',  'w'};
    assert_int_equal(n, sizeof want2);
    assert_memory_equal(b, want2, sizeof want2);
    /* a password without a user name is not sent (3.1.1 forbids it) */
    n = mqttc_connect(b, sizeof b, "c", "", "pw", 1);
    assert_int_equal(n, 15);
    assert_int_equal(b[9], 0x02);
    /* too small a buffer: nothing */
    assert_int_equal(mqttc_connect(b, 18, "ntf-1", NULL, NULL, 20), 0);
}

static void test_publish(void **state)
{
    (void)state;
    uint8_t b[512];
    size_t n = mqttc_publish(b, sizeof b, "a/b", 3, "hi", 2, 1, true, 0x0102);
    const uint8_t want[] = {0x33, 9, 0, 3, 'a', '/', 'b', 1, 2, 'h', 'i'};
    assert_int_equal(n, sizeof want);
    assert_memory_equal(b, want, sizeof want);
    assert_int_equal(mqttc_publish_size(3, 2, 1), n);
    assert_int_equal(mqttc_packet_len(b, n), n);
    mqttc_publish_set_id(b, 0xbeef);
    assert_int_equal(b[7], 0xbe);
    assert_int_equal(b[8], 0xef);

    n = mqttc_publish(b, sizeof b, "t", 1, "x", 1, 0, false, 0);
    const uint8_t want0[] = {0x30, 4, 0, 1, 't', 'x'};
    assert_int_equal(n, sizeof want0);
    assert_memory_equal(b, want0, sizeof want0);
    assert_int_equal(mqttc_publish_size(1, 1, 0), n);

    /* a two-byte remaining length, and set_id past it */
    static uint8_t big[300];
    memset(big, 'z', sizeof big);
    n = mqttc_publish(b, sizeof b, "t", 1, big, 200, 1, false, 7);
    assert_int_equal(n, 1 + 2 + 2 + 1 + 2 + 200);
    assert_int_equal(b[1], (205 & 127) | 128);
    assert_int_equal(b[2], 205 >> 7);
    assert_int_equal(mqttc_packet_len(b, 3), n);
    assert_int_equal(mqttc_packet_len(b, 2), 0); /* header incomplete */
    mqttc_publish_set_id(b, 9);
    assert_int_equal(b[6], 0);
    assert_int_equal(b[7], 9);
    assert_int_equal(mqttc_publish_size(1, 200, 1), n);

    /* refusals: qos 1 needs an id, qos 2 is not spoken, an empty topic, no room */
    assert_int_equal(mqttc_publish(b, sizeof b, "t", 1, "x", 1, 1, false, 0), 0);
    assert_int_equal(mqttc_publish(b, sizeof b, "t", 1, "x", 1, 2, false, 1), 0);
    assert_int_equal(mqttc_publish(b, sizeof b, "", 0, "x", 1, 0, false, 0), 0);
    assert_int_equal(mqttc_publish(b, 10, "a/b", 3, "hi", 2, 1, true, 1), 0);
}

static void test_small(void **state)
{
    (void)state;
    uint8_t b[64];
    assert_int_equal(mqttc_puback(b, sizeof b, 0x1234), 4);
    assert_memory_equal(b, ((uint8_t[]){0x40, 2, 0x12, 0x34}), 4);
    assert_int_equal(mqttc_pingreq(b, sizeof b), 2);
    assert_memory_equal(b, ((uint8_t[]){0xc0, 0}), 2);
    assert_int_equal(mqttc_disconnect(b, sizeof b), 2);
    assert_memory_equal(b, ((uint8_t[]){0xe0, 0}), 2);
    const char *t[] = {"p/+/status", "$share/g/p/+/cmd"};
    int q[] = {1, 1};
    size_t n = mqttc_subscribe(b, sizeof b, 1, t, q, 2);
    assert_int_equal(n, 2 + 2 + 2 + 10 + 1 + 2 + 16 + 1);
    assert_int_equal(b[0], 0x82);
    assert_int_equal(b[1], n - 2);
    assert_memory_equal(b + 4, "\0\x0ap/+/status\x01", 13);
    assert_int_equal(mqttc_subscribe(b, 10, 1, t, q, 2), 0);
    assert_int_equal(mqttc_subscribe(b, sizeof b, 0, t, q, 2), 0);
    assert_string_equal(mqttc_connack_str(5), "not authorized (user name or password)");
    assert_null(mqttc_connack_str(0));
    assert_null(mqttc_connack_str(6));
}

/* Every prefix of a packet needs more; the whole parses; a byte more is left. */
static void parse_split(const uint8_t *p, size_t n, struct mqttc_pkt *out)
{
    size_t used;
    for (size_t k = 0; k < n; k++)
        assert_int_equal(mqttc_parse(p, k, 1024, out, &used), MQTTC_NEED_MORE);
    uint8_t more[1100];
    memcpy(more, p, n);
    more[n] = 0xc0; /* the start of the next packet */
    assert_int_equal(mqttc_parse(more, n + 1, 1024, out, &used), MQTTC_READY);
    assert_int_equal(used, n);
    assert_int_equal(mqttc_parse(p, n, 1024, out, &used), MQTTC_READY);
    assert_int_equal(used, n);
}

static void test_parse(void **state)
{
    (void)state;
    struct mqttc_pkt k;
    const uint8_t connack[] = {0x20, 2, 0, 5};
    parse_split(connack, sizeof connack, &k);
    assert_int_equal(k.type, MQTTC_CONNACK);
    assert_int_equal(k.rc, 5);

    const uint8_t puback[] = {0x40, 2, 0xab, 0xcd};
    parse_split(puback, sizeof puback, &k);
    assert_int_equal(k.type, MQTTC_PUBACK);
    assert_int_equal(k.id, 0xabcd);

    const uint8_t suback[] = {0x90, 4, 0, 1, 1, 0x80};
    parse_split(suback, sizeof suback, &k);
    assert_int_equal(k.type, MQTTC_SUBACK);
    assert_int_equal(k.id, 1);
    assert_int_equal(k.rc, 1);
    assert_int_equal(k.acks.n, 2);
    assert_int_equal(k.acks.p[1], 0x80);

    const uint8_t ping[] = {0xd0, 0};
    parse_split(ping, sizeof ping, &k);
    assert_int_equal(k.type, MQTTC_PINGRESP);

    /* qos 1, retained, dup */
    const uint8_t pub1[] = {0x3b, 10, 0, 3, 'a', '/', 'b', 0, 7, '{', '}', '!'};
    parse_split(pub1, sizeof pub1, &k);
    assert_int_equal(k.type, MQTTC_PUBLISH);
    assert_int_equal(k.qos, 1);
    assert_true(k.retain);
    assert_true(k.dup);
    assert_int_equal(k.id, 7);
    assert_int_equal(k.topic.n, 3);
    assert_memory_equal(k.topic.p, "a/b", 3);
    assert_int_equal(k.payload.n, 3);
    assert_memory_equal(k.payload.p, "{}!", 3);

    /* qos 0, empty payload (a cleared retained message) */
    const uint8_t pub0[] = {0x31, 3, 0, 1, 't'};
    parse_split(pub0, sizeof pub0, &k);
    assert_int_equal(k.qos, 0);
    assert_true(k.retain);
    assert_int_equal(k.payload.n, 0);

    /* what we write, we read */
    uint8_t b[600];
    static uint8_t body[400];
    memset(body, 'q', sizeof body);
    size_t n = mqttc_publish(b, sizeof b, "x/y", 3, body, sizeof body, 1, false, 99);
    parse_split(b, n, &k);
    assert_int_equal(k.id, 99);
    assert_int_equal(k.payload.n, sizeof body);
    assert_memory_equal(k.payload.p, body, sizeof body);
}

static void test_parse_bad(void **state)
{
    (void)state;
    struct mqttc_pkt k;
    size_t used;
#define BAD(...)                                                                                             \
    do {                                                                                                     \
        const uint8_t x[] = {__VA_ARGS__};                                                                   \
        assert_int_equal(mqttc_parse(x, sizeof x, 1024, &k, &used), MQTTC_ERR_MALFORMED);                    \
        assert_int_equal(used, 0);                                                                           \
    } while (0)
    BAD(0x20, 3, 0, 0, 0);                /* CONNACK of 3 bytes */
    BAD(0x21, 2, 0, 0);                   /* CONNACK with flags */
    BAD(0x20, 2, 2, 0);                   /* reserved ack flags */
    BAD(0x34, 5, 0, 1, 't', 0, 1);        /* qos 2 */
    BAD(0x36, 5, 0, 1, 't', 0, 1);        /* qos 3 */
    BAD(0x32, 4, 0, 1, 't', 0);           /* qos 1, id cut */
    BAD(0x32, 5, 0, 1, 't', 0, 0);        /* qos 1, id 0 */
    BAD(0x30, 3, 0, 5, 't');              /* topic longer than the packet */
    BAD(0x30, 2, 0, 0);                   /* empty topic */
    BAD(0x40, 3, 0, 1, 0);                /* PUBACK of 3 */
    BAD(0x90, 2, 0, 1);                   /* SUBACK with no code */
    BAD(0xd0, 1, 0);                      /* PINGRESP with a body */
    BAD(0x10, 0);                         /* CONNECT from a broker */
    BAD(0x50, 2, 0, 1);                   /* PUBREC: qos 2 is not spoken */
    BAD(0x00, 0);                         /* type 0 */
    BAD(0x30, 0xff, 0xff, 0xff, 0xff, 1); /* a fifth length byte */
#undef BAD
    /* too big is said as soon as the length is known, before the body */
    const uint8_t big[] = {0x30, 0x80, 0x08}; /* 1024 bytes follow */
    assert_int_equal(mqttc_parse(big, sizeof big, 1024, &k, &used), MQTTC_ERR_TOOBIG);
    assert_int_equal(mqttc_parse(big, sizeof big, 1027, &k, &used), MQTTC_NEED_MORE);
    /* four length bytes, all continued, with nothing after: not yet a verdict */
    const uint8_t cont[] = {0x30, 0xff, 0xff, 0xff};
    assert_int_equal(mqttc_parse(cont, sizeof cont, 1u << 30, &k, &used), MQTTC_NEED_MORE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect), cmocka_unit_test(test_publish),   cmocka_unit_test(test_small),
        cmocka_unit_test(test_parse),   cmocka_unit_test(test_parse_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
