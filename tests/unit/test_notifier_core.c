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
#include "sl/envelope.h"

#define MAXREC 64

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
};
static struct pub pubs[MAXREC];
static int npub;
static struct sent sents[MAXREC];
static int nsent;
static int refuse_data, fail_send;

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
    snprintf(s->dev, sizeof s->dev, "%.*s", (int)e->dev.n, (const char *)e->dev.p);
    snprintf(s->id, sizeof s->id, "%.*s", (int)e->id.n, (const char *)e->id.p);
    return 0;
}

static uint64_t fake_wall(void *ud)
{
    (void)ud;
    return 1234;
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

/* One batch from edge `edge` (reply edge/0, incarnation inc) with one entry. */
static void batch(struct ntf *n, const char *edge, uint64_t inc, const struct envelope *e, uint64_t now)
{
    uint8_t buf[2048];
    char reply[64];
    snprintf(reply, sizeof reply, "%s/0", edge);
    struct envelope_hdr h = {.v = 1, .edge = S(edge), .incarnation = inc, .reply = S(reply)};
    struct envelope_writer w;
    assert_int_equal(envelope_writer_begin(&w, buf, sizeof buf, &h), SL_OK);
    if (e)
        assert_int_equal(envelope_writer_add(&w, e), SL_OK);
    ntf_batch(n, buf, envelope_writer_len(&w), now);
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
    ntf_mqtt(n, t, strlen(t), json, strlen(json), now);
}

static int setup(void **state)
{
    npub = nsent = refuse_data = fail_send = 0;
    struct ntf_cfg cfg = {.prefix = "devices",
                          .max_devices = 16,
                          .max_workers = 8,
                          .max_cmds = 8,
                          .cmd_timeout_ms = 1000,
                          .edge_timeout_ms = 10000};
    struct ntf_out out = {.publish = rec_publish, .send_edge = rec_send, .wall_ms = fake_wall};
    struct ntf *n = ntf_new(&cfg, &out);
    assert_non_null(n);
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
    ntf_mqtt(n, t, strlen(t), on, strlen(on), 0);
    assert_int_equal(npub, 0); /* read back, not republished */
    cmd(n, "r", "{\"id\":\"x\",\"body\":1}", 1);
    assert_int_equal(nsent, 1);
    assert_string_equal(sents[0].reply, "edge-z/3");
    assert_true(sents[0].inc == UINT64_MAX && sents[0].slot == 4 && sents[0].gen == 2);
    /* an older retained status (e.g. read late) does not override */
    const char *old = "{\"online\":false,\"edge\":\"edge-z\",\"at\":1,\"epoch\":400}";
    ntf_mqtt(n, t, strlen(t), old, strlen(old), 2);
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
    npub = nsent = 0;
    struct ntf_cfg cfg = {.prefix = "devices",
                          .max_devices = 16,
                          .max_workers = 8,
                          .max_cmds = 8,
                          .cmd_timeout_ms = 1000,
                          .edge_timeout_ms = 10000,
                          .status_max_skew_ms = 1000};
    struct ntf_out out = {.publish = rec_publish, .send_edge = rec_send, .wall_ms = fake_wall};
    struct ntf *n = ntf_new(&cfg, &out);
    const char *t = "devices/f/status";
    /* fake_wall is 1234 ms: 1234 + 1000 ms is the limit. */
    const char *future = "{\"online\":true,\"edge\":\"edge-z\",\"at\":1,\"epoch\":2234000001,"
                         "\"reply\":\"edge-z/3\",\"inc\":7,\"slot\":4,\"gen\":2}";
    ntf_mqtt(n, t, strlen(t), future, strlen(future), 0);
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
    ntf_mqtt(n, t2, strlen(t2), edge, strlen(edge), 3);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_offline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undeliverable_and_disconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takeover_kicks_old, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edge_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_from_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_commands, setup, teardown),
        cmocka_unit_test(test_status_from_future),
        cmocka_unit_test_setup_teardown(test_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_result_cap, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
