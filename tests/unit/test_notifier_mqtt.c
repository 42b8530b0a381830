/* SPDX-License-Identifier: Apache-2.0 */
/* test_notifier_mqtt.c - notifier/mqtt.c over a paho substituted at link
 * time (-Wl,--wrap=MQTTAsync_*): the test plays paho's threads by calling
 * the callbacks mqtt.c registered, and a real event loop delivers what they
 * queued. Covers: publishes handed to paho in order within the window; a
 * lost connection hands everything again in order except `once` records,
 * which are reported not ok; a callback of an earlier connection is
 * ignored; a failed connect goes on to the next broker and ops.up names
 * the one that answered; inbound messages reach ops.msg on the loop. No
 * broker, no sockets (but an eventfd and the loop's clock). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <MQTTAsync.h>

#include "mqtt.h"
#include "sl/log.h"
#include "sl/loop.h"

/* ---- paho, as the test drives it ---- */

struct sent {
    char topic[64];
    char payload[64];
    int qos, retained;
    MQTTAsync_onSuccess *on_ok;
    MQTTAsync_onFailure *on_fail;
    void *ctx;
};

static struct sent sent[64];
static int nsent;
static int connected;
static int nconnects;
static char connect_uri[64];
static MQTTAsync_onSuccess *conn_ok;
static MQTTAsync_onFailure *conn_fail;
static void *conn_ctx;
static void *cb_ctx;
static MQTTAsync_connectionLost *cb_lost;
static MQTTAsync_messageArrived *cb_msg;
static MQTTAsync_onSuccess *sub_ok;
static void *sub_ctx;
static int fake_handle;

int __wrap_MQTTAsync_createWithOptions(MQTTAsync *h, const char *uri, const char *id, int pt, void *pc,
                                       MQTTAsync_createOptions *o)
{
    (void)uri, (void)id, (void)pt, (void)pc, (void)o;
    *h = &fake_handle;
    return MQTTASYNC_SUCCESS;
}

int __wrap_MQTTAsync_setCallbacks(MQTTAsync h, void *ctx, MQTTAsync_connectionLost *cl,
                                  MQTTAsync_messageArrived *ma, MQTTAsync_deliveryComplete *dc)
{
    (void)h, (void)dc;
    cb_ctx = ctx;
    cb_lost = cl;
    cb_msg = ma;
    return MQTTASYNC_SUCCESS;
}

int __wrap_MQTTAsync_connect(MQTTAsync h, const MQTTAsync_connectOptions *o)
{
    (void)h;
    assert_int_equal(o->serverURIcount, 1); /* one broker per connect: mqtt.c walks the list */
    snprintf(connect_uri, sizeof connect_uri, "%s", o->serverURIs[0]);
    assert_int_equal(o->cleansession, 1);
    assert_int_equal(o->automaticReconnect, 0);
    conn_ok = o->onSuccess;
    conn_fail = o->onFailure;
    conn_ctx = o->context;
    nconnects++;
    return MQTTASYNC_SUCCESS;
}

int __wrap_MQTTAsync_sendMessage(MQTTAsync h, const char *topic, const MQTTAsync_message *m,
                                 MQTTAsync_responseOptions *ro)
{
    (void)h;
    if (!connected)
        return MQTTASYNC_DISCONNECTED;
    assert_true(nsent < 64);
    struct sent *s = &sent[nsent++];
    snprintf(s->topic, sizeof s->topic, "%s", topic);
    snprintf(s->payload, sizeof s->payload, "%.*s", m->payloadlen, (const char *)m->payload);
    s->qos = m->qos;
    s->retained = m->retained;
    s->on_ok = ro->onSuccess;
    s->on_fail = ro->onFailure;
    s->ctx = ro->context;
    return MQTTASYNC_SUCCESS;
}

int __wrap_MQTTAsync_subscribeMany(MQTTAsync h, int n, char *const *topics, const int *qos,
                                   MQTTAsync_responseOptions *ro)
{
    (void)h, (void)n, (void)topics, (void)qos;
    sub_ok = ro->onSuccess;
    sub_ctx = ro->context;
    return MQTTASYNC_SUCCESS;
}

int __wrap_MQTTAsync_disconnect(MQTTAsync h, const MQTTAsync_disconnectOptions *o)
{
    (void)h, (void)o;
    connected = 0;
    return MQTTASYNC_SUCCESS;
}

int __wrap_MQTTAsync_isConnected(MQTTAsync h)
{
    (void)h;
    return connected;
}

void __wrap_MQTTAsync_destroy(MQTTAsync *h)
{
    *h = NULL;
}

void __wrap_MQTTAsync_freeMessage(MQTTAsync_message **m)
{
    *m = NULL; /* the test's messages live on its stack */
}

void __wrap_MQTTAsync_free(void *p)
{
    (void)p;
}

/* ---- what mqtt.c tells its caller ---- */

static uint64_t done_token[16];
static bool done_ok[16];
static int ndone, nups, up_broker, nmsgs, nrooms;
static bool up_switched;
static char msg_topic[64], msg_payload[64];

static bool on_msg(void *ud, const struct mqtt_msg *m)
{
    (void)ud;
    snprintf(msg_topic, sizeof msg_topic, "%.*s", (int)m->topic_len, m->topic);
    snprintf(msg_payload, sizeof msg_payload, "%.*s", (int)m->len, (const char *)m->payload);
    assert_true(m->ack != 0);
    nmsgs++;
    return true;
}

static void on_up(void *ud, int broker, bool switched)
{
    (void)ud;
    nups++;
    up_broker = broker;
    up_switched = switched;
}

static void on_done(void *ud, uint64_t token, bool ok)
{
    (void)ud;
    assert_true(ndone < 16);
    done_token[ndone] = token;
    done_ok[ndone++] = ok;
}

static void on_room(void *ud)
{
    (void)ud;
    nrooms++;
}

static struct loop *l;

static int setup(void **state)
{
    (void)state;
    memset(sent, 0, sizeof sent);
    nsent = connected = nconnects = ndone = nups = nmsgs = nrooms = 0;
    l = loop_new(16);
    assert_non_null(l);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    loop_destroy(&l);
    return 0;
}

static struct mqtt *client(const char *uris, int nsubs)
{
    static const char *const subs[] = {"devices/+/status"};
    struct mqtt_cfg cfg = {.uris = uris,
                           .client_id = "t-0",
                           .subs = subs,
                           .nsubs = nsubs,
                           .qos = 1,
                           .max_inflight = 2,
                           .buf_bytes = 64 * 1024,
                           .max_in = 1024};
    struct mqtt_ops ops = {.msg = on_msg, .up = on_up, .done = on_done, .room = on_room};
    struct mqtt *m = mqtt_new(&cfg, &ops, l);
    assert_non_null(m);
    assert_int_equal(nconnects, 1);
    return m;
}

/* Let the loop deliver what the "paho threads" queued. */
static void pump(void)
{
    for (int i = 0; i < 5; i++)
        loop_run_once(l, 1);
}

static void paho_connected(void)
{
    connected = 1;
    MQTTAsync_successData d;
    memset(&d, 0, sizeof d);
    conn_ok(conn_ctx, &d);
    pump();
}

static void paho_ack(int i)
{
    MQTTAsync_successData d;
    memset(&d, 0, sizeof d);
    sent[i].on_ok(sent[i].ctx, &d);
}

static void publish(struct mqtt *m, const char *topic, uint64_t token, bool once)
{
    assert_int_equal(mqtt_publish(m, topic, strlen(topic), "p", 1, false, token, once), 0);
}

static void test_window_in_order(void **state)
{
    (void)state;
    struct mqtt *m = client("tcp://127.0.0.1:1883", 0);
    assert_false(mqtt_connected(m));
    publish(m, "a", 0, false); /* before the connection: waits */
    mqtt_flush(m);
    assert_int_equal(nsent, 0);
    paho_connected();
    assert_true(mqtt_connected(m));
    assert_int_equal(nups, 1);
    assert_int_equal(up_broker, 0);
    assert_false(up_switched);
    publish(m, "b", 0, false);
    publish(m, "c", 0, false);
    mqtt_flush(m);
    assert_int_equal(nsent, 2); /* the window: max_inflight 2 */
    assert_string_equal(sent[0].topic, "a");
    assert_string_equal(sent[1].topic, "b");
    assert_int_equal(sent[0].qos, 1);
    assert_int_equal(mqtt_outstanding(m), 3);
    paho_ack(0);
    pump(); /* the PUBACK made room: c goes out, the caller is told */
    assert_int_equal(nsent, 3);
    assert_string_equal(sent[2].topic, "c");
    assert_true(nrooms >= 1);
    paho_ack(1);
    paho_ack(2);
    pump();
    assert_int_equal(mqtt_outstanding(m), 0);
    struct mqtt_stats s;
    mqtt_stats(m, &s);
    assert_int_equal(s.published, 3);
    assert_int_equal(s.connected, 1);
    mqtt_destroy(&m);
    assert_null(m);
}

/* paho fails what it held, then reports the connection lost; the next
 * connection gets the status again, in order, but never the marker. */
static void test_lost_resends_but_not_once(void **state)
{
    (void)state;
    struct mqtt *m = client("tcp://127.0.0.1:1883", 0);
    paho_connected();
    publish(m, "status-1", 0, false);
    publish(m, "marker", 7, true);
    mqtt_flush(m);
    publish(m, "status-2", 0, false);
    assert_int_equal(nsent, 2);
    connected = 0;
    MQTTAsync_failureData f;
    memset(&f, 0, sizeof f);
    sent[0].on_fail(sent[0].ctx, &f);
    sent[1].on_fail(sent[1].ctx, &f);
    cb_lost(cb_ctx, NULL);
    pump();
    assert_int_equal(ndone, 1);
    assert_int_equal(done_token[0], 7);
    assert_false(done_ok[0]);
    assert_false(mqtt_connected(m));
    /* reconnect: the first retry comes within a second (short connection) */
    for (int i = 0; i < 300 && nconnects < 2; i++)
        loop_run_once(l, 10);
    assert_int_equal(nconnects, 2);
    int before = nsent;
    paho_connected();
    mqtt_flush(m);
    assert_int_equal(nsent, before + 2);
    assert_string_equal(sent[before].topic, "status-1");
    assert_string_equal(sent[before + 1].topic, "status-2");
    /* a late report of the first connection is told apart and ignored */
    MQTTAsync_successData d;
    memset(&d, 0, sizeof d);
    sent[0].on_ok(sent[0].ctx, &d);
    pump();
    struct mqtt_stats s;
    mqtt_stats(m, &s);
    assert_int_equal(s.published, 0);
    assert_int_equal(s.resent, 1); /* status-1; status-2 had waited behind the window */
    assert_int_equal(s.reconnects, 1);
    paho_ack(before);
    paho_ack(before + 1);
    pump();
    mqtt_stats(m, &s);
    assert_int_equal(s.published, 2);
    assert_int_equal(s.failed, 1); /* the marker */
    assert_int_equal(mqtt_outstanding(m), 0);
    mqtt_destroy(&m);
}

/* The first broker refuses: the same attempt goes on to the second, and
 * ops.up waits for the SUBACK and names the broker that answered. */
static void test_next_broker_and_suback(void **state)
{
    (void)state;
    struct mqtt *m = client("tcp://10.0.0.1:1883, mqtt://10.0.0.2:1884", 1);
    assert_string_equal(connect_uri, "tcp://10.0.0.1:1883");
    MQTTAsync_failureData f;
    memset(&f, 0, sizeof f);
    f.code = MQTTASYNC_FAILURE;
    conn_fail(conn_ctx, &f);
    pump();
    assert_int_equal(nconnects, 2);
    assert_string_equal(connect_uri, "tcp://10.0.0.2:1884");
    paho_connected();
    assert_int_equal(nups, 0); /* subscribed first */
    assert_false(mqtt_connected(m));
    MQTTAsync_successData d;
    memset(&d, 0, sizeof d);
    d.alt.qos = 1;
    sub_ok(sub_ctx, &d);
    pump();
    assert_int_equal(nups, 1);
    assert_int_equal(up_broker, 1);
    assert_true(mqtt_connected(m));
    struct mqtt_stats s;
    mqtt_stats(m, &s);
    assert_int_equal(s.broker, 1);
    mqtt_destroy(&m);
}

static void test_inbound_on_the_loop(void **state)
{
    (void)state;
    struct mqtt *m = client("tcp://127.0.0.1:1883", 0);
    paho_connected();
    char topic[] = "devices/d/cmd";
    char payload[] = "{\"id\":\"c1\",\"body\":1}";
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    msg.payload = payload;
    msg.payloadlen = (int)strlen(payload);
    msg.qos = 1;
    MQTTAsync_message *mp = &msg;
    assert_int_equal(cb_msg(cb_ctx, topic, (int)strlen(topic), mp), 1);
    assert_int_equal(nmsgs, 0); /* not on paho's thread */
    pump();
    assert_int_equal(nmsgs, 1);
    assert_string_equal(msg_topic, "devices/d/cmd");
    assert_string_equal(msg_payload, payload);
    mqtt_destroy(&m);
}

static void test_config_refused(void **state)
{
    (void)state;
    struct mqtt_cfg cfg = {.uris = "tcp://a:1883,http://b",
                           .client_id = "t",
                           .qos = 1,
                           .max_inflight = 2,
                           .buf_bytes = 64 * 1024,
                           .max_in = 1024};
    assert_null(mqtt_new(&cfg, NULL, l));
    cfg.uris = "tcp://a:1883";
    cfg.tls_ca = "/nonexistent-ca.pem";
    assert_null(mqtt_new(&cfg, NULL, l)); /* a CA with a tcp:// broker: the password would go in clear */
    assert_int_equal(nconnects, 0);
}

int main(void)
{
    log_init("test", SL_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_window_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_resends_but_not_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_broker_and_suback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inbound_on_the_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
