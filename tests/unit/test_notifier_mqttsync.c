/* SPDX-License-Identifier: Apache-2.0 */
/* test_notifier_mqttsync.c - notifier/mqttsync.c (the --data-qos 0
 * publishers' client on MQTTClient) over a paho substituted at link time
 * (-Wl,--wrap=MQTTClient_*). Covers: a refused first broker makes the
 * round go on to the next and the client is up there; publishes are QoS 0
 * and counted written; a publish that breaks the connection is counted
 * failed, the client says it is down and reconnects only after its pause
 * (the connection was short), from the first broker; a lost connection
 * seen by the tick's receive; no connect is started past the deadline;
 * configuration refused as mqtt.c refuses it. No broker, no sockets
 * (paho's socket is not found: no cork, no room check). */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <MQTTClient.h>

#include "mqtt.h"
#include "mqttsync.h"
#include "sl/log.h"
#include "sl/loop.h"

/* ---- paho, as the test drives it ---- */

static int fake_handle;
static int up; /* the fake connection */
static int nconnects, nreceives, npublishes, ndisconnects;
static char connect_uri[64];
static int refuse_uri_port;   /* a connect to this port fails (-1) */
static int fail_next_publish; /* the next publish breaks the connection */
static int drop_on_receive;   /* the next receive finds the connection gone */
static char last_topic[64];
static int last_qos, last_len;

int __wrap_MQTTClient_create(MQTTClient *h, const char *uri, const char *id, int pt, void *pc)
{
    (void)uri, (void)id, (void)pt, (void)pc;
    *h = &fake_handle;
    return MQTTCLIENT_SUCCESS;
}

int __wrap_MQTTClient_connect(MQTTClient h, MQTTClient_connectOptions *o)
{
    (void)h;
    assert_int_equal(o->serverURIcount, 1); /* one broker per connect: mqttsync.c walks the list */
    assert_int_equal(o->cleansession, 1);
    assert_int_equal(o->MQTTVersion, MQTTVERSION_3_1_1);
    assert_int_equal(o->connectTimeout, MQS_CONNECT_TIMEOUT_S);
    snprintf(connect_uri, sizeof connect_uri, "%s", o->serverURIs[0]);
    nconnects++;
    char port[16];
    snprintf(port, sizeof port, ":%d", refuse_uri_port);
    if (refuse_uri_port && strstr(connect_uri, port))
        return MQTTCLIENT_FAILURE;
    up = 1;
    return MQTTCLIENT_SUCCESS;
}

int __wrap_MQTTClient_publish(MQTTClient h, const char *topic, int len, const void *payload, int qos,
                              int retained, MQTTClient_deliveryToken *t)
{
    (void)h, (void)payload, (void)retained, (void)t;
    npublishes++;
    if (!up)
        return MQTTCLIENT_DISCONNECTED;
    if (fail_next_publish) { /* paho closes the session on a socket error and says failure at QoS 0 */
        fail_next_publish = 0;
        up = 0;
        return MQTTCLIENT_FAILURE;
    }
    snprintf(last_topic, sizeof last_topic, "%s", topic);
    last_qos = qos;
    last_len = len;
    return MQTTCLIENT_SUCCESS;
}

int __wrap_MQTTClient_receive(MQTTClient h, char **topic, int *tl, MQTTClient_message **msg,
                              unsigned long timeout)
{
    (void)h, (void)tl;
    assert_int_equal(timeout, 0); /* never waits on the loop's thread */
    nreceives++;
    *topic = NULL;
    *msg = NULL;
    if (drop_on_receive) {
        drop_on_receive = 0;
        up = 0;
    }
    return up ? MQTTCLIENT_SUCCESS : MQTTCLIENT_DISCONNECTED;
}

int __wrap_MQTTClient_isConnected(MQTTClient h)
{
    (void)h;
    return up;
}

int __wrap_MQTTClient_disconnect(MQTTClient h, int timeout)
{
    (void)h, (void)timeout;
    ndisconnects++;
    up = 0;
    return MQTTCLIENT_SUCCESS;
}

void __wrap_MQTTClient_destroy(MQTTClient *h)
{
    *h = NULL;
}

/* ---- the tests ---- */

static struct loop *l;

/* One loop for the file (the client only adds its probe to it); each test
 * starts with paho's fakes reset. */
static int reset(void **state)
{
    (void)state;
    up = nconnects = nreceives = npublishes = ndisconnects = 0;
    refuse_uri_port = fail_next_publish = drop_on_receive = 0;
    last_topic[0] = '\0';
    return 0;
}

static int with_loop(void **state)
{
    (void)state;
    l = loop_new(16);
    return l ? 0 : -1;
}

static int without_loop(void **state)
{
    (void)state;
    loop_destroy(&l);
    return 0;
}

static struct mqs *client(const char *uris)
{
    struct mqs_cfg cfg = {.uris = uris, .client_id = "t-1"};
    struct mqs *s = mqs_new(&cfg, l);
    assert_non_null(s);
    assert_int_equal(nconnects, 0); /* connects from the first tick, not in mqs_new */
    return s;
}

static void stats(struct mqs *s, struct mqtt_stats *st)
{
    memset(st, 0xff, sizeof *st);
    mqs_stats(s, st);
}

static int publish(struct mqs *s, const char *topic)
{
    return mqs_publish(s, topic, strlen(topic), "{}", 2, false);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_walk_publish_lost_reconnect(void **state)
{
    (void)state;
    struct mqs *s = client("tcp://a:1883,tcp://b:1884");
    refuse_uri_port = 1883;
    mqs_tick(s);
    assert_int_equal(nconnects, 2); /* the first refused: the next at once */
    assert_string_equal(connect_uri, "tcp://b:1884");
    assert_true(mqs_connected(s));
    struct mqtt_stats st;
    stats(s, &st);
    assert_int_equal(st.connected, 1);
    assert_int_equal(st.broker, 1);
    assert_int_equal(st.reconnects, 0);

    /* QoS 0, written = published; the topic goes out as a C string */
    mqs_begin(s);
    assert_true(mqs_ready(s, 7, 2));
    assert_int_equal(publish(s, "P/d/data"), 0);
    mqs_end(s);
    assert_string_equal(last_topic, "P/d/data");
    assert_int_equal(last_qos, 0);
    assert_int_equal(last_len, 2);

    /* the connection breaks under a publish: that one is counted, the client is down */
    fail_next_publish = 1;
    mqs_begin(s);
    assert_int_equal(publish(s, "P/d/data"), -1);
    assert_false(mqs_ready(s, 7, 2));
    mqs_end(s);
    stats(s, &st);
    assert_int_equal(st.published, 1);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.connected, 0);
    assert_int_equal(st.broker, -1);
    assert_int_equal(st.resent, 0);
    assert_int_equal(st.inflight, 0);

    /* it had lasted under 5 s: no connect before the pause (1 s) */
    int n = nconnects;
    mqs_tick(s);
    assert_int_equal(nconnects, n);
    sleep_ms(1100);
    refuse_uri_port = 0;
    mqs_tick(s);
    assert_int_equal(nconnects, n + 1);
    assert_string_equal(connect_uri, "tcp://a:1883"); /* a round starts from the first */
    stats(s, &st);
    assert_int_equal(st.connected, 1);
    assert_int_equal(st.broker, 0);
    assert_int_equal(st.reconnects, 1);

    /* the tick's receive finds the connection gone */
    drop_on_receive = 1;
    int r = nreceives;
    mqs_tick(s);
    assert_int_equal(nreceives, r + 1);
    assert_false(mqs_connected(s));
    mqs_destroy(&s);
    assert_null(s);
}

static void test_deadline_and_refusals(void **state)
{
    (void)state;
    struct mqs *s = client("tcp://a:1883");
    mqs_set_deadline(s, loop_clock_ms() + 500); /* a connect could take MQS_CONNECT_TIMEOUT_S */
    mqs_tick(s);
    assert_int_equal(nconnects, 0);
    assert_false(mqs_connected(s));
    mqs_set_deadline(s, 0);
    sleep_ms(1100);
    mqs_tick(s);
    assert_int_equal(nconnects, 1);
    char topic[MQTT_TOPIC_MAX + 2];
    memset(topic, 't', sizeof topic - 1);
    topic[sizeof topic - 1] = '\0';
    mqs_begin(s);
    assert_int_equal(publish(s, topic), -1); /* too long: refused, never handed to paho */
    mqs_end(s);
    struct mqtt_stats st;
    stats(s, &st);
    assert_int_equal(st.refused, 1);
    assert_int_equal(npublishes, 0);
    mqs_destroy(&s);

    struct mqs_cfg cfg = {.uris = "tcp://a:1883,http://b", .client_id = "t"};
    assert_null(mqs_new(&cfg, l));
    cfg.uris = "tcp://a:1883";
    cfg.tls_ca = "/nonexistent-ca.pem";
    assert_null(mqs_new(&cfg, l)); /* a CA with a tcp:// broker: the password would go in clear */
}

int main(void)
{
    log_init("test", SL_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_walk_publish_lost_reconnect, reset),
        cmocka_unit_test_setup(test_deadline_and_refusals, reset),
    };
    return cmocka_run_group_tests(tests, with_loop, without_loop);
}
