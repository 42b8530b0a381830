/* SPDX-License-Identifier: Apache-2.0 */
/* test_notifier_core.c - the notifier core driven through recording stubs:
 * every command path ends in exactly one result (ok, offline, timeout,
 * undeliverable, disconnect, takeover, edge lost, bad command), kicks name
 * the superseded connection, routing is rebuilt from retained statuses,
 * and data becomes P/<dev>/data. No broker, no sockets. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "ntf.h"
#include "sl/edgeclock.h"
#include "sl/envelope.h"
#include "sl/metrics.h"
#include "sl/ring.h"

#define MAXREC 128

struct pub {
    char topic[256];
    char payload[1024]; /* the first 1023 bytes */
    size_t len;
    bool retained;
    enum ntf_pub_class cls;
};
struct sent {
    char reply[128];
    uint64_t inc;
    enum envelope_kind kind;
    uint32_t slot, gen;
    char dev[65], id[65];
    char to[64];
    uint64_t seq;
};
static struct pub pubs[MAXREC];
static int npub;
static struct sent sents[MAXREC];
static int nsent;
static int refuse_data, fail_send;
static uint64_t markers[MAXREC]; /* tokens of markers published and not yet acknowledged */
static int nmarkers, nacks;
static struct ntf *cur; /* the core under test, for the broker's answers */

static int rec_publish(void *ud, enum ntf_pub_class cls, const char *dev, size_t dl, const char *t, size_t tl,
                       const char *p, size_t pl, bool retained)
{
    (void)ud, (void)dev, (void)dl;
    if (cls == NTF_PUB_DATA && refuse_data)
        return -1;
    assert_true(npub < MAXREC && tl < 256);
    struct pub *x = &pubs[npub++];
    memcpy(x->topic, t, tl);
    x->topic[tl] = 0;
    size_t keep = pl < sizeof x->payload ? pl : sizeof x->payload - 1;
    memcpy(x->payload, p, keep);
    x->payload[keep] = 0;
    x->len = pl;
    x->retained = retained;
    x->cls = cls;
    return 0;
}

/* A marker is recorded like any publish; the broker "acknowledges" it when
 * the test's cmd() returns (ack_markers), as a live one would a moment later. */
static void rec_marker(void *ud, const char *t, size_t tl, const char *p, size_t pl, uint64_t token)
{
    rec_publish(ud, NTF_PUB_CTRL, "", 0, t, tl, p, pl, true);
    markers[nmarkers++] = token;
}

static void rec_ack(void *ud, uint64_t handle)
{
    (void)ud;
    assert_true(handle != 0);
    nacks++;
}

static void ack_markers(uint64_t now)
{
    for (int i = 0; i < nmarkers; i++)
        ntf_marker_done(cur, markers[i], true, now);
    nmarkers = 0;
}

static int rec_send(void *ud, const char *reply, uint64_t inc, const struct envelope *e)
{
    (void)ud;
    if (fail_send)
        return -1;
    struct sent *s = &sents[nsent++];
    snprintf(s->reply, sizeof s->reply, "%s", reply);
    s->inc = inc;
    s->kind = e->kind;
    s->slot = e->slot;
    s->gen = e->gen;
    s->seq = e->seq;
    snprintf(s->dev, sizeof s->dev, "%.*s", (int)e->dev.n, (const char *)e->dev.p);
    snprintf(s->id, sizeof s->id, "%.*s", (int)e->id.n, (const char *)e->id.p);
    snprintf(s->to, sizeof s->to, "%.*s", (int)e->to.n, (const char *)e->to.p);
    return 0;
}

static uint64_t wall = 1234;

static uint64_t fake_wall(void *ud)
{
    (void)ud;
    return wall;
}

static struct sl_slice S(const char *s) {
    return (struct sl_slice){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static int
count_topic(const char *t)
{
    int n = 0;
    for (int i = 0; i < npub; i++)
        n += strcmp(pubs[i].topic, t) == 0;
    return n;
}

static const struct pub *last_on(const char *t)
{
    for (int i = npub - 1; i >= 0; i--)
        if (strcmp(pubs[i].topic, t) == 0)
            return &pubs[i];
    return NULL;
}

/* One batch from edge `edge` whose worker identity is `reply` (a real
 * edge's is "<edge>/0/<secret>"), incarnation inc, with entry e if any. */
static void batch_ident(struct ntf *n, const char *edge, const char *reply, uint64_t inc,
                        const struct envelope *e, uint64_t now)
{
    uint8_t buf[2048];
    struct envelope_hdr h = {.v = 1, .edge = S(edge), .incarnation = inc, .reply = S(reply)};
    struct envelope_writer w;
    assert_int_equal(envelope_writer_begin(&w, buf, sizeof buf, &h), SL_OK);
    if (e)
        assert_int_equal(envelope_writer_add(&w, e), SL_OK);
    ntf_batch(n, buf, envelope_writer_len(&w), now);
}

/* The same with the plain identity "<edge>/0". */
static void batch(struct ntf *n, const char *edge, uint64_t inc, const struct envelope *e, uint64_t now)
{
    char reply[64];
    snprintf(reply, sizeof reply, "%s/0", edge);
    batch_ident(n, edge, reply, inc, e, now);
}

static struct envelope ev(enum envelope_kind k, const char *dev, uint64_t epoch, uint32_t slot, uint32_t gen)
{
    struct envelope e;
    memset(&e, 0, sizeof e);
    e.kind = k;
    e.dev = S(dev);
    e.epoch = epoch;
    e.slot = slot;
    e.gen = gen;
    e.at_ns = 5000000;
    return e;
}

static void cmd(struct ntf *n, const char *dev, const char *json, uint64_t now)
{
    char t[128];
    snprintf(t, sizeof t, "devices/%s/cmd", dev);
    ntf_mqtt(n, t, strlen(t), json, strlen(json), 77, now);
    ack_markers(now);
}

/* Forget what earlier tests recorded and switched on (refused data, failed
 * sends); the wall clock back to 1234 ms. */
static void reset_recorders(void)
{
    npub = nsent = refuse_data = fail_send = nmarkers = nacks = 0;
    wall = 1234;
}

/* A core named id with the limits every test uses, reaching out only through
 * the recorders above; status_max_skew_ms as given (0: no check); queue_cmd:
 * its durable queue (NULL: none, as without --db). */
static struct ntf *new_core(const char *id, uint64_t status_max_skew_ms,
                            int (*queue_cmd)(void *, struct sl_slice, const char *, const char *,
                                             const uint8_t *, size_t, int64_t))
{
    struct ntf_cfg cfg = {.prefix = "devices",
                          .id = id,
                          .max_devices = 16,
                          .max_workers = 8,
                          .max_cmds = 8,
                          .cmd_timeout_ms = 1000,
                          .edge_timeout_ms = 10000,
                          .status_max_skew_ms = status_max_skew_ms};
    struct ntf_out out = {.publish = rec_publish,
                          .publish_marker = rec_marker,
                          .ack = rec_ack,
                          .send_edge = rec_send,
                          .wall_ms = fake_wall,
                          .queue_cmd = queue_cmd};
    struct ntf *n = ntf_new(&cfg, &out);
    assert_non_null(n);
    return n;
}

static int setup(void **state)
{
    reset_recorders();
    struct ntf *n = new_core("ntf-test", 0, NULL);
    cur = n;
    *state = n;
    return 0;
}

static int teardown(void **state)
{
    struct ntf *n = *state;
    ntf_destroy(&n);
    assert_null(n);
    return 0;
}

static void connect_a(struct ntf *n)
{
    struct envelope e = ev(ENV_CONNECT, "d", 100, 3, 7);
    batch(n, "edge-a", 11, &e, 0);
}

static void test_offline(void **state)
{
    struct ntf *n = *state;
    cmd(n, "d", "{\"id\":\"c1\",\"body\":1}", 0);
    assert_int_equal(count_topic("devices/d/cmd/c1/result"), 1);
    assert_string_equal(last_on("devices/d/cmd/c1/result")->payload, "{\"ok\":false,\"error\":\"offline\"}");
    assert_int_equal(nsent, 0);
    assert_int_equal(ntf_stats(n)->cmds_offline, 1);
}

/* The worker's secret (whoever knows the identity can take the worker's
 * place on a ROUTER) never reaches the broker: statuses and markers carry
 * "<edge>/<worker>"; sends go to the whole identity, which a notifier that
 * only read the status learns from the worker's own batches. */
static void test_reply_secret(void **state)
{
    struct ntf *n = *state;
    struct envelope e = ev(ENV_CONNECT, "s", 100, 3, 7);
    batch_ident(n, "edge-s", "edge-s/0/5ec2e7c0ffee", 11, &e, 0);
    const struct pub *st = last_on("devices/s/status");
    assert_non_null(st);
    assert_non_null(strstr(st->payload, "\"reply\":\"edge-s/0\""));
    assert_null(strstr(st->payload, "5ec2e7c0ffee"));
    char status[1024];
    snprintf(status, sizeof status, "%s", st->payload);
    cmd(n, "s", "{\"id\":\"k1\",\"body\":1}", 10);
    assert_int_equal(nsent, 1);
    assert_string_equal(sents[0].reply, "edge-s/0/5ec2e7c0ffee");
    const struct pub *mk = last_on("devices/_sluice/pending/s/k1");
    assert_non_null(mk);
    assert_null(strstr(mk->payload, "5ec2e7c0ffee"));
    for (int i = 0; i < npub; i++)
        assert_null(strstr(pubs[i].payload, "5ec2e7c0ffee"));

    /* Another notifier: the status read back routes nowhere secret until the
     * worker's heartbeat (any batch) names its whole identity. */
    struct ntf *o = new_core("ntf-other", 0, NULL);
    const char *t = "devices/s/status";
    ntf_mqtt(o, t, strlen(t), status, strlen(status), 0, 20);
    struct envelope hb = {.kind = ENV_HEARTBEAT, .at_ns = 1};
    batch_ident(o, "edge-s", "edge-s/0/5ec2e7c0ffee", 11, &hb, 21);
    cur = o;
    cmd(o, "s", "{\"id\":\"k2\",\"body\":1}", 30);
    cur = n;
    assert_int_equal(nsent, 2);
    assert_string_equal(sents[1].reply, "edge-s/0/5ec2e7c0ffee");
    assert_string_equal(sents[1].id, "k2");
    ntf_destroy(&o);
}

static void test_round_trip_once(void **state)
{
    struct ntf *n = *state;
    connect_a(n);
    const struct pub *st = last_on("devices/d/status");
    assert_non_null(st);
    assert_true(st->retained);
    assert_non_null(strstr(st->payload, "\"online\":true"));
    assert_non_null(strstr(st->payload, "\"reply\":\"edge-a/0\""));
    cmd(n, "d", "{\"id\":\"c1\",\"body\":{\"a\":1}}", 10);
    assert_int_equal(nsent, 1);
    assert_int_equal(sents[0].kind, ENV_CMD);
    assert_string_equal(sents[0].reply, "edge-a/0");
    assert_true(sents[0].inc == 11 && sents[0].slot == 3 && sents[0].gen == 7);
    assert_string_equal(sents[0].id, "c1");
    assert_int_equal(count_topic("devices/d/cmd/c1/result"), 0);
    assert_int_equal(ntf_pending(n), 1);
    struct envelope r = ev(ENV_RES, "d", 100, 3, 7);
    r.id = S("c1");
    r.ok = r.has_ok = true;
    batch(n, "edge-a", 11, &r, 20);
    batch(n, "edge-a", 11, &r, 21); /* a duplicate answer */
    ntf_tick(n, 5000);              /* and a timeout far later */
    assert_int_equal(count_topic("devices/d/cmd/c1/result"), 1);
    assert_string_equal(last_on("devices/d/cmd/c1/result")->payload, "{\"ok\":true,\"body\":null}");
    assert_int_equal(ntf_pending(n), 0);
    /* the same id again is a new command once the first has its result */
    cmd(n, "d", "{\"id\":\"c1\",\"body\":2}", 30);
    assert_int_equal(nsent, 2);
    cmd(n, "d", "{\"id\":\"c1\",\"body\":3}", 31); /* duplicate while pending: dropped */
    assert_int_equal(nsent, 2);
    assert_int_equal(ntf_stats(n)->cmds_dup, 1);
}

/* The command table holds max_cmds (8) pending commands: the next is answered
 * busy; a slot a result frees takes a new command, and again after the table
 * filled once (slots are handed out first-unused, then from the freed list). */
static void test_cmds_cap_reuse(void **state)
{
    struct ntf *n = *state;
    connect_a(n);
    char id[16], json[64], topic[64];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 8; i++) {
            snprintf(json, sizeof json, "{\"id\":\"p%d-%d\",\"body\":%d}", round, i, i);
            cmd(n, "d", json, 10);
        }
        assert_int_equal(ntf_pending(n), 8);
        snprintf(json, sizeof json, "{\"id\":\"over%d\",\"body\":0}", round);
        cmd(n, "d", json, 11);
        snprintf(topic, sizeof topic, "devices/d/cmd/over%d/result", round);
        assert_string_equal(last_on(topic)->payload, "{\"ok\":false,\"error\":\"busy\"}");
        for (int i = 0; i < 8; i++) {
            struct envelope r = ev(ENV_RES, "d", 100, 3, 7);
            snprintf(id, sizeof id, "p%d-%d", round, i);
            r.id = S(id);
            r.ok = r.has_ok = true;
            batch(n, "edge-a", 11, &r, 20);
            snprintf(topic, sizeof topic, "devices/d/cmd/%s/result", id);
            assert_int_equal(count_topic(topic), 1);
        }
        assert_int_equal(ntf_pending(n), 0);
    }
    assert_int_equal(nsent, 16);
    assert_int_equal(ntf_stats(n)->cmds_failed, 2);
}

static void test_timeout_once(void **state)
{
    struct ntf *n = *state;
    connect_a(n);
    cmd(n, "d", "{\"id\":\"t1\",\"body\":null}", 100);
    ntf_tick(n, 1099);
    assert_int_equal(count_topic("devices/d/cmd/t1/result"), 0);
    ntf_tick(n, 1100);
    assert_int_equal(count_topic("devices/d/cmd/t1/result"), 1);
    assert_string_equal(last_on("devices/d/cmd/t1/result")->payload, "{\"ok\":false,\"error\":\"timeout\"}");
    struct envelope r = ev(ENV_RES, "d", 100, 3, 7);
    r.id = S("t1");
    r.has_ok = true;
    batch(n, "edge-a", 11, &r, 1200);
    assert_int_equal(count_topic("devices/d/cmd/t1/result"), 1);
    assert_int_equal(ntf_stats(n)->res_unknown, 1);
}

static void test_undeliverable_and_disconnect(void **state)
{
    struct ntf *n = *state;
    connect_a(n);
    cmd(n, "d", "{\"id\":\"u1\",\"body\":1}", 0);
    cmd(n, "d", "{\"id\":\"u2\",\"body\":1}", 0);
    struct envelope u = ev(ENV_UNDELIVERABLE, "d", 0, 3, 7);
    u.id = S("u1");
    u.reason = S("disconnected");
    batch(n, "edge-a", 11, &u, 1);
    assert_string_equal(last_on("devices/d/cmd/u1/result")->payload,
                        "{\"ok\":false,\"error\":\"disconnected\"}");
    /* a stale disconnect (older epoch) leaves u2 pending */
    struct envelope old = ev(ENV_DISCONNECT, "d", 50, 1, 1);
    batch(n, "edge-a", 11, &old, 2);
    assert_int_equal(count_topic("devices/d/cmd/u2/result"), 0);
    struct envelope dis = ev(ENV_DISCONNECT, "d", 100, 3, 7);
    dis.reason = S("eof");
    batch(n, "edge-a", 11, &dis, 3);
    assert_int_equal(count_topic("devices/d/cmd/u2/result"), 1);
    assert_string_equal(last_on("devices/d/cmd/u2/result")->payload,
                        "{\"ok\":false,\"error\":\"disconnected\"}");
    const struct pub *st = last_on("devices/d/status");
    assert_non_null(strstr(st->payload, "\"online\":false"));
    assert_non_null(strstr(st->payload, "\"reason\":\"eof\""));
    ntf_tick(n, 100000);
    assert_int_equal(count_topic("devices/d/cmd/u1/result"), 1);
    assert_int_equal(count_topic("devices/d/cmd/u2/result"), 1);
    /* now offline */
    cmd(n, "d", "{\"id\":\"u3\",\"body\":1}", 4);
    assert_string_equal(last_on("devices/d/cmd/u3/result")->payload, "{\"ok\":false,\"error\":\"offline\"}");
}

static void test_takeover_kicks_old(void **state)
{
    struct ntf *n = *state;
    connect_a(n);
    cmd(n, "d", "{\"id\":\"k1\",\"body\":1}", 0);
    struct envelope b = ev(ENV_CONNECT, "d", 200, 9, 1);
    batch(n, "edge-b", 22, &b, 1);
    assert_int_equal(nsent, 2);
    assert_int_equal(sents[1].kind, ENV_KICK);
    assert_string_equal(sents[1].reply, "edge-a/0");
    assert_true(sents[1].inc == 11 && sents[1].slot == 3 && sents[1].gen == 7);
    assert_string_equal(sents[1].dev, "d");
    assert_string_equal(last_on("devices/d/cmd/k1/result")->payload,
                        "{\"ok\":false,\"error\":\"disconnected\"}");
    /* the late disconnect from A changes nothing; the next command goes to B */
    struct envelope da = ev(ENV_DISCONNECT, "d", 100, 3, 7);
    int before = count_topic("devices/d/status");
    batch(n, "edge-a", 11, &da, 2);
    assert_int_equal(count_topic("devices/d/status"), before);
    cmd(n, "d", "{\"id\":\"k2\",\"body\":1}", 3);
    assert_int_equal(sents[nsent - 1].kind, ENV_CMD);
    assert_string_equal(sents[nsent - 1].reply, "edge-b/0");
    assert_int_equal(sents[nsent - 1].slot, 9);
    assert_int_equal(ntf_stats(n)->disconnects_stale, 1);
}

static void test_edge_lost(void **state)
{
    struct ntf *n = *state;
    connect_a(n);
    cmd(n, "d", "{\"id\":\"e1\",\"body\":1}", 0);
    struct envelope hb = ev(ENV_HEARTBEAT, "", 0, 0, 0);
    batch(n, "edge-a", 11, &hb, 600); /* keeps it alive until 10600 */
    ntf_tick(n, 10500);
    assert_int_equal(count_topic("devices/d/cmd/e1/result"), 1); /* timeout at 1000, not edge lost */
    cmd(n, "d", "{\"id\":\"e2\",\"body\":1}", 10500);
    ntf_tick(n, 11001); /* the sweep runs every 500 ms */
    assert_int_equal(count_topic("devices/d/cmd/e2/result"), 1);
    assert_string_equal(last_on("devices/d/cmd/e2/result")->payload,
                        "{\"ok\":false,\"error\":\"disconnected\"}");
    const struct pub *st = last_on("devices/d/status");
    assert_non_null(strstr(st->payload, "\"online\":false"));
    assert_non_null(strstr(st->payload, "\"at\":1234"));
    assert_non_null(strstr(st->payload, "\"reason\":\"edge_lost\""));
    ntf_tick(n, 20000);
    assert_int_equal(count_topic("devices/d/cmd/e2/result"), 1);
}

static void test_rebuild_from_status(void **state)
{
    struct ntf *n = *state;
    const char *t = "devices/r/status";
    const char *on = "{\"online\":true,\"edge\":\"edge-z\",\"at\":1,\"epoch\":500,\"reply\":\"edge-z/3\","
                     "\"inc\":18446744073709551615,\"slot\":4,\"gen\":2}";
    ntf_mqtt(n, t, strlen(t), on, strlen(on), 0, 0);
    assert_int_equal(npub, 0); /* read back, not republished */
    cmd(n, "r", "{\"id\":\"x\",\"body\":1}", 1);
    assert_int_equal(nsent, 1);
    assert_string_equal(sents[0].reply, "edge-z/3");
    assert_true(sents[0].inc == UINT64_MAX && sents[0].slot == 4 && sents[0].gen == 2);
    /* an older retained status (e.g. read late) does not override */
    const char *old = "{\"online\":false,\"edge\":\"edge-z\",\"at\":1,\"epoch\":400}";
    ntf_mqtt(n, t, strlen(t), old, strlen(old), 0, 2);
    cmd(n, "r", "{\"id\":\"y\",\"body\":1}", 3);
    assert_int_equal(nsent, 2);
    /* the retained status of a dead edge times out like a silent edge */
    ntf_tick(n, 20000);
    assert_int_equal(count_topic("devices/r/cmd/x/result"), 1);
    assert_non_null(strstr(last_on("devices/r/status")->payload, "\"online\":false"));
}

/* A retained status whose epoch lies beyond the allowed clock skew is not
 * loaded: it cannot fence out the real sessions of its device. */
static void test_status_from_future(void **state)
{
    (void)state;
    reset_recorders(); /* no setup: this test makes its own core */
    struct ntf *n = new_core("ntf-test", 1000, NULL);
    cur = n;
    const char *t = "devices/f/status";
    /* fake_wall is 1234 ms: 1234 + 1000 ms is the limit. */
    const char *future = "{\"online\":true,\"edge\":\"edge-z\",\"at\":1,\"epoch\":2234000001,"
                         "\"reply\":\"edge-z/3\",\"inc\":7,\"slot\":4,\"gen\":2}";
    ntf_mqtt(n, t, strlen(t), future, strlen(future), 0, 0);
    assert_int_equal(ntf_stats(n)->status_future, 1);
    assert_int_equal(ntf_stats(n)->status_loaded, 0);
    cmd(n, "f", "{\"id\":\"x\",\"body\":1}", 1);
    assert_int_equal(nsent, 0); /* not routed: the device is unknown */
    assert_string_equal(last_on("devices/f/cmd/x/result")->payload, "{\"ok\":false,\"error\":\"offline\"}");
    /* A real session then connects with an epoch of now: it is current. */
    struct envelope e = ev(ENV_CONNECT, "f", 1234000000, 1, 1);
    batch(n, "edge-y", 9, &e, 2);
    assert_non_null(strstr(last_on(t)->payload, "\"edge\":\"edge-y\""));
    /* At the limit: loaded (a skew within the bound is a clock, not a forgery). */
    const char *edge = "{\"online\":true,\"edge\":\"edge-z\",\"at\":1,\"epoch\":2234000000,"
                       "\"reply\":\"edge-z/3\",\"inc\":7,\"slot\":4,\"gen\":2}";
    const char *t2 = "devices/g/status";
    ntf_mqtt(n, t2, strlen(t2), edge, strlen(edge), 0, 3);
    assert_int_equal(ntf_stats(n)->status_loaded, 1);
    assert_int_equal(ntf_stats(n)->status_future, 1);
    ntf_destroy(&n);
}

static void test_bad_commands(void **state)
{
    struct ntf *n = *state;
    connect_a(n);
    int before = npub;
    cmd(n, "d", "{\"id\":\"b1\"}", 0);
    assert_string_equal(last_on("devices/d/cmd/b1/result")->payload,
                        "{\"ok\":false,\"error\":\"bad_command\"}");
    cmd(n, "d", "{\"id\":\"no/pe\",\"body\":1}", 0);
    cmd(n, "d", "garbage", 0);
    assert_int_equal(npub, before + 1);
    assert_int_equal(nsent, 0);
    assert_int_equal(ntf_stats(n)->cmds_bad_id, 1);
    assert_int_equal(ntf_stats(n)->cmds_unreadable, 1);
    /* the worker is not connected to us yet (just restarted): the command
     * waits and goes out once it is; one that never can ends "disconnected" */
    fail_send = 1;
    cmd(n, "d", "{\"id\":\"b2\",\"body\":1}", 0);
    ntf_tick(n, 10);
    assert_int_equal(count_topic("devices/d/cmd/b2/result"), 0);
    fail_send = 0;
    ntf_tick(n, 20);
    assert_int_equal(nsent, 1);
    assert_string_equal(sents[0].id, "b2");
    assert_int_equal(sents[0].kind, ENV_CMD);
    fail_send = 1;
    cmd(n, "d", "{\"id\":\"b3\",\"body\":1}", 30);
    ntf_tick(n, 1030);
    assert_string_equal(last_on("devices/d/cmd/b3/result")->payload,
                        "{\"ok\":false,\"error\":\"disconnected\"}");
    assert_string_equal(last_on("devices/d/cmd/b2/result")->payload, "{\"ok\":false,\"error\":\"timeout\"}");
    assert_int_equal(count_topic("devices/d/cmd/b2/result"), 1);
    assert_int_equal(count_topic("devices/d/cmd/b3/result"), 1);
    assert_int_equal(ntf_pending(n), 0);
}

/* With a durable queue (main.c with --db), "queue":true goes there, with
 * the body as JSON and msgpack and the ttl, and the core neither routes it
 * nor answers it (the queue publishes its states and its one result); a
 * command the queue cannot take, or with a bad ttl_s or a body too big to
 * store, is answered at once; without "queue":true, or without a queue,
 * nothing changes. */
static char q_id[65], q_json[128];
static uint8_t q_mp[64];
static size_t q_mp_len;
static int64_t q_ttl;
static int nqueued, refuse_queue;

static int rec_queue(void *ud, struct sl_slice dev, const char *id, const char *json, const uint8_t *mp,
                     size_t mp_len, int64_t ttl_s)
{
    (void)ud;
    if (refuse_queue)
        return -1;
    assert_true(sl_slice_eqs(dev, "d"));
    snprintf(q_id, sizeof q_id, "%s", id);
    snprintf(q_json, sizeof q_json, "%s", json);
    assert_true(mp_len <= sizeof q_mp);
    memcpy(q_mp, mp, mp_len);
    q_mp_len = mp_len;
    q_ttl = ttl_s;
    nqueued++;
    return 0;
}

static void test_queue_true(void **state)
{
    struct ntf *n = *state;
    ntf_destroy(&n); /* the setup's has no queue: one with it */
    nqueued = refuse_queue = 0;
    n = new_core("ntf-test", 0, rec_queue);
    cur = n;
    *state = n;
    /* offline, queued: no "offline" answer, nothing routed */
    cmd(n, "d", "{\"id\":\"q1\",\"body\":{\"v\":3},\"queue\":true,\"ttl_s\":600}", 0);
    assert_int_equal(nqueued, 1);
    assert_string_equal(q_id, "q1");
    assert_string_equal(q_json, "{\"v\":3}");
    static const uint8_t want[] = {0x81, 0xa1, 'v', 0x03};
    assert_int_equal(q_mp_len, sizeof want);
    assert_memory_equal(q_mp, want, sizeof want);
    assert_int_equal(q_ttl, 600);
    assert_int_equal(count_topic("devices/d/cmd/q1/result"), 0);
    assert_int_equal(ntf_stats(n)->cmds_queued, 1);
    /* online too: the queue delivers it, not the core */
    connect_a(n);
    cmd(n, "d", "{\"id\":\"q2\",\"body\":null,\"queue\":true}", 1);
    assert_int_equal(nqueued, 2);
    assert_int_equal(q_ttl, 86400);
    assert_int_equal(nsent, 0);
    assert_int_equal(ntf_pending(n), 0);
    /* refusals, answered now */
    cmd(n, "d", "{\"id\":\"q3\",\"body\":1,\"queue\":true,\"ttl_s\":0}", 2);
    assert_string_equal(last_on("devices/d/cmd/q3/result")->payload,
                        "{\"ok\":false,\"error\":\"bad_command\"}");
    refuse_queue = 1;
    cmd(n, "d", "{\"id\":\"q4\",\"body\":1,\"queue\":true}", 3);
    assert_string_equal(last_on("devices/d/cmd/q4/result")->payload, "{\"ok\":false,\"error\":\"busy\"}");
    assert_int_equal(nqueued, 2);
    /* queue false: routed by the core as before */
    cmd(n, "d", "{\"id\":\"r1\",\"body\":1,\"queue\":false}", 4);
    assert_int_equal(nsent, 1);
    assert_string_equal(sents[0].id, "r1");
}

/* Without a queue (no --db), "queue":true is not read: routed as any. */
static void test_queue_true_without_db(void **state)
{
    struct ntf *n = *state;
    connect_a(n);
    cmd(n, "d", "{\"id\":\"q1\",\"body\":1,\"queue\":true,\"ttl_s\":0}", 0);
    assert_int_equal(nsent, 1);
    assert_string_equal(sents[0].id, "q1");
    assert_int_equal(ntf_stats(n)->cmds_queued, 0);
}

static void test_data(void **state)
{
    struct ntf *n = *state;
    static const uint8_t body[] = {0x91, 0x05};
    struct envelope e = ev(ENV_DATA, "d", 100, 3, 7);
    e.seq = 9;
    e.body = (struct sl_slice){body, sizeof body};
    e.has_body = true;
    e.at_ns = 2000000;
    batch(n, "edge-a", 11, &e, 0);
    const struct pub *p = last_on("devices/d/data");
    assert_non_null(p);
    assert_false(p->retained);
    assert_int_equal(p->cls, NTF_PUB_DATA);
    assert_string_equal(p->payload,
                        "{\"dev\":\"d\",\"seq\":9,\"ts\":null,\"rx\":2,\"edge\":\"edge-a\",\"body\":[5]}");
    refuse_data = 1;
    batch(n, "edge-a", 11, &e, 1);
    assert_int_equal(ntf_stats(n)->data_refused, 1);
    /* a batch of another version is refused whole */
    uint8_t buf[256];
    struct envelope_hdr h = {.v = 2, .edge = S("e"), .incarnation = 1, .reply = S("e/0")};
    struct envelope_writer w;
    envelope_writer_begin(&w, buf, sizeof buf, &h);
    ntf_batch(n, buf, envelope_writer_len(&w), 2);
    assert_int_equal(ntf_stats(n)->bad_version, 1);
    ntf_batch(n, (const uint8_t *)"\xc1", 1, 3);
    assert_int_equal(ntf_stats(n)->bad_batches, 1);
}

/* Answer the pending command `id` of d with a body that is a string of
 * `chars` copies of 'a' (its JSON: chars + 2 bytes). */
static void big_res(struct ntf *n, const char *id, size_t chars, uint64_t now)
{
    static uint8_t body[NTF_PAYLOAD_MAX + 16], buf[NTF_PAYLOAD_MAX + 1024];
    assert_true(chars + 5 <= sizeof body);
    body[0] = 0xdb; /* str 32 */
    for (int i = 0; i < 4; i++)
        body[1 + i] = (uint8_t)(chars >> (24 - 8 * i));
    memset(body + 5, 'a', chars);
    struct envelope r = ev(ENV_RES, "d", 100, 3, 7);
    r.id = S(id);
    r.ok = r.has_ok = true;
    r.body = (struct sl_slice){body, (uint32_t)(chars + 5)};
    r.has_body = true;
    struct envelope_hdr h = {.v = 1, .edge = S("edge-a"), .incarnation = 11, .reply = S("edge-a/0")};
    struct envelope_writer w;
    assert_int_equal(envelope_writer_begin(&w, buf, sizeof buf, &h), SL_OK);
    assert_int_equal(envelope_writer_add(&w, &r), SL_OK);
    ntf_batch(n, buf, envelope_writer_len(&w), now);
}

/* A result is published only if its payload fits NTF_PAYLOAD_MAX (the
 * brokers' message_size_limit, which drops a longer one after acking it):
 * else it is {"ok":false,"error":"too_big"}, also after data whose JSON
 * bound is far over the cap; data over it is not published (refused). */
static void test_result_cap(void **state)
{
    struct ntf *n = *state;
    connect_a(n);
    /* {"ok":true,"body":"<chars>"}: 21 bytes around the string */
    size_t fits = NTF_PAYLOAD_MAX - 21;
    cmd(n, "d", "{\"id\":\"r1\",\"body\":1}", 0);
    big_res(n, "r1", fits, 1);
    const struct pub *p = last_on("devices/d/cmd/r1/result");
    assert_non_null(p);
    assert_int_equal(p->len, NTF_PAYLOAD_MAX);
    assert_memory_equal(p->payload, "{\"ok\":true,\"body\":\"aaa", 22);

    cmd(n, "d", "{\"id\":\"r2\",\"body\":1}", 2);
    big_res(n, "r2", fits + 1, 3);
    assert_string_equal(last_on("devices/d/cmd/r2/result")->payload, "{\"ok\":false,\"error\":\"too_big\"}");

    /* data whose JSON bound is 17 x 200 KB (its JSON ~1,000,000 bytes) */
    static uint8_t body[200 * 1024];
    memset(body, 0xc0, sizeof body); /* 200 K nils */
    body[0] = 0xdd;                  /* array 32 */
    uint32_t k = sizeof body - 5;
    for (int i = 0; i < 4; i++)
        body[1 + i] = (uint8_t)(k >> (24 - 8 * i));
    struct envelope e = ev(ENV_DATA, "d", 100, 3, 7);
    e.seq = 1;
    e.body = (struct sl_slice){body, sizeof body};
    e.has_body = true;
    static uint8_t buf[sizeof body + 1024];
    struct envelope_hdr h = {.v = 1, .edge = S("edge-a"), .incarnation = 11, .reply = S("edge-a/0")};
    struct envelope_writer w;
    assert_int_equal(envelope_writer_begin(&w, buf, sizeof buf, &h), SL_OK);
    assert_int_equal(envelope_writer_add(&w, &e), SL_OK);
    ntf_batch(n, buf, envelope_writer_len(&w), 4);
    assert_true(last_on("devices/d/data")->len > 5u * k - 1u); /* "null," each, less one comma */
    assert_int_equal(ntf_stats(n)->data_refused, 0);
    cmd(n, "d", "{\"id\":\"r3\",\"body\":1}", 5);
    big_res(n, "r3", fits + 1, 6);
    assert_string_equal(last_on("devices/d/cmd/r3/result")->payload, "{\"ok\":false,\"error\":\"too_big\"}");
    assert_int_equal(count_topic("devices/d/cmd/r3/result"), 1);
    assert_int_equal(ntf_pending(n), 0);

    /* data whose JSON would be over the cap is not published: refused */
    static uint8_t big[NTF_PAYLOAD_MAX];
    k = sizeof big - 5;
    memset(big, 0xc0, sizeof big);
    big[0] = 0xdd;
    for (int i = 0; i < 4; i++)
        big[1 + i] = (uint8_t)(k >> (24 - 8 * i));
    e.seq = 2;
    e.body = (struct sl_slice){big, sizeof big};
    static uint8_t bbuf[sizeof big + 1024];
    assert_int_equal(envelope_writer_begin(&w, bbuf, sizeof bbuf, &h), SL_OK);
    assert_int_equal(envelope_writer_add(&w, &e), SL_OK);
    int before = count_topic("devices/d/data");
    ntf_batch(n, bbuf, envelope_writer_len(&w), 7);
    assert_int_equal(count_topic("devices/d/data"), before);
    assert_int_equal(ntf_stats(n)->data_refused, 1);
    assert_int_equal(ntf_stats(n)->data_bad, 0);
    assert_int_equal(ntf_stats(n)->data, 2);
}

/* ---- several notifiers ---- */

/* A heartbeat of this version from edge-a/0: it reaches us on `to`, and
 * sends device events to the notifiers of `ring`. */
static void heartbeat(struct ntf *n, const char *ring, uint64_t now)
{
    struct envelope hb = ev(ENV_HEARTBEAT, "", 0, 0, 0);
    hb.to = S("tcp://10.1.1.1:7011");
    hb.ring = S(ring);
    batch(n, "edge-a", 11, &hb, now);
}

/* Devices d0.. : which of them ntf-test owns on the ring "ntf-test,ntf-x". */
static bool mine(const char *dev)
{
    uint64_t m[2] = {ring_key("ntf-test", 8), ring_key("ntf-x", 5)};
    return ring_pick(ring_key(dev, strlen(dev)), m, 2) == 0;
}

static void mine_and_not(char *a, char *b)
{
    a[0] = b[0] = 0;
    for (int i = 0; !a[0] || !b[0]; i++) {
        char d[16];
        snprintf(d, sizeof d, "d%d", i);
        strcpy(mine(d) ? a : b, d);
    }
}

/* The ring is ntf-test and ntf-x (heartbeat at 0), and two devices are
 * connected on edge-a: a, which the ring gives to this notifier, and b,
 * which it gives to ntf-x. a and b need 16 bytes each. */
static void ring_of_two(struct ntf *n, char *a, char *b)
{
    mine_and_not(a, b);
    heartbeat(n, "ntf-test,ntf-x", 0);
    for (int i = 0; i < 2; i++) {
        struct envelope c = ev(ENV_CONNECT, i ? b : a, 100, (uint32_t)i, 1);
        batch(n, "edge-a", 11, &c, 0);
    }
}

/* What another notifier's marker says: taken by ntf-x, routed to edge-a/0. */
static void marker_from_x(struct ntf *n, const char *dev, const char *id, uint64_t deadline, uint64_t now)
{
    char t[128], p[256];
    snprintf(t, sizeof t, "devices/_sluice/pending/%s/%s", dev, id);
    snprintf(p, sizeof p,
             "{\"by\":\"ntf-x\",\"edge\":\"edge-a\",\"reply\":\"edge-a/0\",\"inc\":11,\"deadline\":%llu}",
             (unsigned long long)deadline);
    assert_true(ntf_mqtt(n, t, strlen(t), p, strlen(p), 5, now));
}

static void test_heartbeat_answered(void **state)
{
    struct ntf *n = *state;
    heartbeat(n, "ntf-test,ntf-x", 0);
    assert_int_equal(nsent, 1);
    assert_int_equal(sents[0].kind, ENV_NOTIFIER_HB);
    assert_string_equal(sents[0].reply, "edge-a/0");
    assert_true(sents[0].inc == 11);
    assert_string_equal(sents[0].to, "tcp://10.1.1.1:7011");
    /* seq names the heartbeat answered (its at_ns): the edge's confirmation
     * of what it sent before it (edge/ntfsent.h) */
    assert_true(sents[0].seq == 5000000);
    /* an edge of the version before (no `to`) gets no answer */
    struct envelope old = ev(ENV_HEARTBEAT, "", 0, 0, 0);
    batch(n, "edge-b", 22, &old, 1);
    assert_int_equal(nsent, 1);
    assert_int_equal(ntf_stats(n)->heartbeats_answered, 1);
}

/* Heartbeats' at_ns against the wall clock: the edges' skew, published by
 * ntf_tick once a second, from edges of either version, gone after
 * edge_timeout_ms (10 s) of silence. */
static void test_edge_clock_skew(void **state)
{
    struct ntf *n = *state;
    struct metrics_sample out[4];
    heartbeat(n, "ntf-test", 0); /* edge-a, at_ns 5 ms: 1229 ms behind fake_wall */
    struct envelope hb = ev(ENV_HEARTBEAT, "", 0, 0, 0);
    hb.at_ns = (wall + 3000) * 1000000u; /* edge-b (no `to`: the version before) 3 s ahead */
    batch(n, "edge-b", 22, &hb, 0);
    assert_int_equal(edgeclock_collect(ntf_edgeclock(n), out, 4), 0); /* published at the tick */
    ntf_tick(n, 1000);
    assert_int_equal(edgeclock_collect(ntf_edgeclock(n), out, 4), 2);
    assert_string_equal(out[0].value, "edge-a");
    assert_true(out[0].v == -1.229);
    assert_string_equal(out[1].value, "edge-b");
    assert_true(out[1].v == 3.0);
    hb.at_ns = wall * 1000000u;
    for (uint64_t t = 2000; t <= 20000; t += 1000) { /* edge-b in step now, edge-a silent */
        batch(n, "edge-b", 22, &hb, t);
        ntf_tick(n, t);
        size_t k = edgeclock_collect(ntf_edgeclock(n), out, 4);
        if (t == 11000) { /* edge-a gone; edge-b's first window (0 to 10 s) rolled: its largest */
            assert_int_equal(k, 1);
            assert_string_equal(out[0].value, "edge-b");
            assert_true(out[0].v == 3.0);
        }
    }
    assert_int_equal(edgeclock_collect(ntf_edgeclock(n), out, 4), 1);
    assert_string_equal(out[0].value, "edge-b");
    assert_true(out[0].v == 0.0); /* the second window had only in-step heartbeats */
}

static void test_taker_routes_after_marker(void **state)
{
    struct ntf *n = *state;
    connect_a(n);
    char t[128];
    const char *c1 = "{\"id\":\"c1\",\"body\":7}";
    strcpy(t, "devices/d/cmd");
    /* not acknowledged to the broker yet, not routed before the marker is in */
    assert_false(ntf_mqtt(n, t, strlen(t), c1, strlen(c1), 77, 10));
    const struct pub *m = last_on("devices/_sluice/pending/d/c1");
    assert_non_null(m);
    assert_true(m->retained);
    assert_non_null(strstr(m->payload, "\"by\":\"ntf-test\""));
    assert_non_null(strstr(m->payload, "\"reply\":\"edge-a/0\""));
    assert_non_null(strstr(m->payload, "\"deadline\":2234"));
    assert_int_equal(nsent, 0);
    assert_int_equal(nacks, 0);
    ack_markers(11);
    assert_int_equal(nsent, 1);
    assert_string_equal(sents[0].id, "c1");
    assert_int_equal(nacks, 1);
    /* its echo from the broker changes nothing */
    marker_from_x(n, "d", "c1", 2234, 12);
    assert_int_equal(ntf_pending(n), 1);
    /* the answer: the marker is cleared before the one result */
    struct envelope r = ev(ENV_RES, "d", 100, 3, 7);
    r.id = S("c1");
    r.ok = r.has_ok = true;
    batch(n, "edge-a", 11, &r, 20);
    const struct pub *clear = last_on("devices/_sluice/pending/d/c1");
    assert_true(clear->retained && clear->payload[0] == '\0');
    assert_true(clear < last_on("devices/d/cmd/c1/result"));
    assert_int_equal(count_topic("devices/d/cmd/c1/result"), 1);

    /* a marker the broker never acknowledged: the command is not routed */
    const char *c2 = "{\"id\":\"c2\",\"body\":7}";
    assert_false(ntf_mqtt(n, t, strlen(t), c2, strlen(c2), 78, 30));
    ntf_marker_done(n, markers[0], false, 31);
    nmarkers = 0;
    assert_int_equal(nsent, 1);
    assert_int_equal(nacks, 2);
    assert_int_equal(ntf_stats(n)->cmds_lost, 1);
    assert_int_equal(ntf_pending(n), 0);
    ntf_tick(n, 5000);
    assert_int_equal(count_topic("devices/d/cmd/c2/result"), 0);
}

static void test_decider_by_ring(void **state)
{
    struct ntf *n = *state;
    char a[16], b[16];
    ring_of_two(n, a, b);
    /* commands taken by ntf-x: we hold their markers, and decide those of our device */
    marker_from_x(n, a, "m1", wall + 1000, 0);
    marker_from_x(n, b, "m2", wall + 1000, 0);
    assert_int_equal(ntf_pending(n), 2);
    ntf_tick(n, 999);
    assert_int_equal(ntf_pending(n), 2);
    ntf_tick(n, 1000);
    char ra[64], rb[64];
    snprintf(ra, sizeof ra, "devices/%s/cmd/m1/result", a);
    snprintf(rb, sizeof rb, "devices/%s/cmd/m2/result", b);
    assert_int_equal(count_topic(ra), 1);
    assert_string_equal(last_on(ra)->payload, "{\"ok\":false,\"error\":\"timeout\"}");
    assert_int_equal(count_topic(rb), 0); /* ntf-x's to decide */
    assert_int_equal(ntf_pending(n), 1);
    /* ntf-x clears it (its result is out): gone here too */
    char t[128];
    snprintf(t, sizeof t, "devices/_sluice/pending/%s/m2", b);
    ntf_mqtt(n, t, strlen(t), "", 0, 0, 1100);
    assert_int_equal(ntf_pending(n), 0);

    /* ntf-x dies before its deadline: nobody else may answer it, so after a
     * grace the marker is cleared without a result */
    marker_from_x(n, b, "m3", wall + 1000, 2000);
    wall += 1000;
    ntf_tick(n, 3000);
    assert_int_equal(ntf_pending(n), 1);
    wall += 5000;
    ntf_tick(n, 8000);
    assert_int_equal(ntf_pending(n), 0);
    snprintf(rb, sizeof rb, "devices/%s/cmd/m3/result", b);
    assert_int_equal(count_topic(rb), 0);
    assert_int_equal(ntf_stats(n)->markers_expired, 1);
    /* ... unless the ring now gives the device to us: then we answer it */
    marker_from_x(n, b, "m4", wall + 1000, 9000);
    heartbeat(n, "ntf-test", 9001);
    ntf_tick(n, 10000);
    snprintf(rb, sizeof rb, "devices/%s/cmd/m4/result", b);
    assert_int_equal(count_topic(rb), 1);
    /* a marker read back already past its deadline is cleared at once */
    marker_from_x(n, b, "m5", wall - 1, 10001);
    snprintf(t, sizeof t, "devices/_sluice/pending/%s/m5", b);
    assert_int_equal(last_on(t)->payload[0], '\0');
    assert_int_equal(ntf_pending(n), 0);
}

static void test_answer_before_marker(void **state)
{
    struct ntf *n = *state;
    connect_a(n);
    /* ntf-x routed it; the device answered before its marker reached us */
    struct envelope r = ev(ENV_RES, "d", 100, 3, 7);
    r.id = S("x1");
    r.ok = r.has_ok = true;
    static const uint8_t body[] = {0x2a};
    r.body = (struct sl_slice){body, 1};
    r.has_body = true;
    batch(n, "edge-a", 11, &r, 10);
    assert_int_equal(count_topic("devices/d/cmd/x1/result"), 0);
    assert_int_equal(ntf_stats(n)->res_held, 1);
    marker_from_x(n, "d", "x1", wall + 1000, 20);
    assert_int_equal(count_topic("devices/d/cmd/x1/result"), 1);
    assert_string_equal(last_on("devices/d/cmd/x1/result")->payload, "{\"ok\":true,\"body\":42}");
    assert_int_equal(ntf_pending(n), 0);
    /* one that no marker follows is dropped after the wait, counted */
    r.id = S("x2");
    batch(n, "edge-a", 11, &r, 30);
    ntf_tick(n, 30 + 1999);
    assert_int_equal(ntf_stats(n)->res_unknown, 0);
    ntf_tick(n, 30 + 2000);
    assert_int_equal(ntf_stats(n)->res_unknown, 1);
    assert_int_equal(count_topic("devices/d/cmd/x2/result"), 0);
}

static void test_event_receiver_ends_commands(void **state)
{
    struct ntf *n = *state;
    connect_a(n);
    marker_from_x(n, "d", "y1", wall + 1000, 0);
    /* the disconnect came to us: we end the commands of that connection,
     * whoever took them */
    struct envelope dis = ev(ENV_DISCONNECT, "d", 100, 3, 7);
    batch(n, "edge-a", 11, &dis, 5);
    assert_string_equal(last_on("devices/d/cmd/y1/result")->payload,
                        "{\"ok\":false,\"error\":\"disconnected\"}");
    /* a status read back (another notifier's) ends nothing: that one ends them */
    const char *t = "devices/d/status";
    const char *on = "{\"online\":true,\"edge\":\"edge-a\",\"at\":1,\"epoch\":300,\"reply\":\"edge-a/0\","
                     "\"inc\":11,\"slot\":4,\"gen\":2}";
    ntf_mqtt(n, t, strlen(t), on, strlen(on), 0, 10);
    marker_from_x(n, "d", "y2", wall + 1000, 11);
    const char *off = "{\"online\":false,\"edge\":\"edge-a\",\"at\":1,\"epoch\":300}";
    int before = npub;
    ntf_mqtt(n, t, strlen(t), off, strlen(off), 0, 12);
    assert_int_equal(npub, before);
    assert_int_equal(ntf_pending(n), 1);
}

static void test_resync_after_switch(void **state)
{
    struct ntf *n = *state;
    char a[16], b[16];
    ring_of_two(n, a, b);
    char sa[64], sb[64];
    snprintf(sa, sizeof sa, "devices/%s/status", a);
    snprintf(sb, sizeof sb, "devices/%s/status", b);
    int ca = count_topic(sa), cb = count_topic(sb);
    ntf_mqtt_up(n, false); /* the same broker again: nothing */
    ntf_tick(n, 10);
    assert_int_equal(count_topic(sa), ca);
    ntf_mqtt_up(n, true);
    ntf_tick(n, 20);
    assert_int_equal(count_topic(sa), ca + 1); /* ours, republished */
    assert_int_equal(count_topic(sb), cb);     /* ntf-x republishes its own */
    assert_non_null(strstr(last_on(sa)->payload, "\"online\":true"));
    assert_int_equal(ntf_stats(n)->resync_published, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_offline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmds_cap_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undeliverable_and_disconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takeover_kicks_old, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edge_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_from_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_commands, setup, teardown),
        cmocka_unit_test(test_status_from_future),
        cmocka_unit_test_setup_teardown(test_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_result_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edge_clock_skew, setup, teardown),
        cmocka_unit_test_setup_teardown(test_taker_routes_after_marker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decider_by_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_before_marker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_receiver_ends_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resync_after_switch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_true, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_true_without_db, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
