/* test_edge_session.c - the edge's session state machine without sockets.
 *
 * session.c runs against stubs of the narrow conn/bus interface (defined
 * below; the linker takes them instead of conn.c/bus.c from edge_core), a
 * real device map and a real loop for the hello and idle timers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <msgpack.h>
#include "sl/msg.h"
#include "sl/token.h"
#include "bus.h"
#include "conn.h"
#include "devmap.h"
#include "edge.h"
#include "session.h"
#include "stats.h"
#include "worker.h"

static const char SECRET[] = "unit-secret";

/* ---- stubs: what session.c sent and did ------------------------------ */
#define MAXREC 64
static struct rec {
    struct conn *c;
    enum msg_type t;
    char code[16];
    uint64_t seq;
} sent[MAXREC];
static int nsent;
static struct envelope envs[MAXREC];
static char env_reason[MAXREC][16];
static int nenvs;
static struct devmap_ref kicked[8];
static int nkicked;
static struct conn conns[4];

enum sl_err conn_send_frame(struct conn *c, const struct msg *m)
{
    if (c->state != CONN_HELLO && c->state != CONN_READY)
        return SL_AGAIN;
    assert_true(nsent < MAXREC);
    struct rec *r = &sent[nsent++];
    memset(r, 0, sizeof *r);
    r->c = c;
    r->t = m->t;
    if (m->t == MSG_ERR)
        snprintf(r->code, sizeof r->code, "%.*s", (int)m->u.err.code.n, m->u.err.code.p);
    if (m->t == MSG_ACK)
        r->seq = m->u.ack.seq;
    return SL_OK;
}

void conn_close(struct conn *c, enum close_reason r)
{
    if (c->state != CONN_HELLO && c->state != CONN_READY)
        return;
    session_closed(c, r);
    c->state = CONN_CLOSING;
    c->close_reason = (uint8_t)r;
}

void conn_kick(struct worker *w, struct devmap_ref ref, enum sl_err code)
{
    (void)w;
    kicked[nkicked++] = ref;
    struct conn *c = &conns[ref.slot];
    if (c->gen == ref.gen)
        session_fail(c, code, "replaced");
}

uint32_t conn_peer_str(const struct conn *c, char *out, uint32_t cap)
{
    (void)c;
    return (uint32_t)snprintf(out, cap, "127.0.0.1:1");
}

void bus_emit(struct bus *b, const struct envelope *e)
{
    (void)b;
    assert_true(nenvs < MAXREC);
    envs[nenvs] = *e;
    snprintf(env_reason[nenvs], sizeof env_reason[0], "%.*s", (int)e->reason.n, e->reason.p);
    nenvs++;
}

/* ---- fixture --------------------------------------------------------- */
static struct edge E;
static struct worker W;

static int setup(void **st)
{
    (void)st;
    stats_init();
    memset(&E, 0, sizeof E);
    memset(&W, 0, sizeof W);
    E.cfg.edge_id = "unit-edge";
    E.cfg.secret = (const uint8_t *)SECRET;
    E.cfg.secret_len = strlen(SECRET);
    E.cfg.max_frame = 65536;
    E.cfg.hb_s = 30;
    E.cfg.hello_timeout_ms = 10000;
    E.cfg.idle_timeout_ms = 90000;
    E.nworkers = 1;
    E.map = devmap_new(1, 4);
    W.e = &E;
    W.loop = loop_new(16);
    assert_non_null(W.loop);
    memset(conns, 0, sizeof conns);
    for (uint32_t i = 0; i < 4; i++) {
        conns[i].w = &W;
        conns[i].slot = i;
        conns[i].gen = 7;
    }
    nsent = nenvs = nkicked = 0;
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    for (int i = 0; i < 4; i++)
        loop_timer_stop(W.loop, &conns[i].timer);
    loop_destroy(&W.loop);
    devmap_destroy(&E.map);
    return 0;
}

static struct conn *open_conn(int i)
{
    struct conn *c = &conns[i];
    c->state = CONN_HELLO;
    session_open(c);
    return c;
}

/* Build a payload from alternating key/value specs: "s" string, "i" int,
 * "u" uint, "n" nil; and feed it. */
static void feed_map(struct conn *c, int pairs, ...)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, (size_t)pairs);
    va_list ap;
    va_start(ap, pairs);
    for (int i = 0; i < pairs; i++) {
        const char *k = va_arg(ap, const char *);
        msgpack_pack_str_with_body(&pk, k, strlen(k));
        const char *ty = va_arg(ap, const char *);
        if (ty[0] == 's') {
            const char *v = va_arg(ap, const char *);
            msgpack_pack_str_with_body(&pk, v, strlen(v));
        } else if (ty[0] == 'i') {
            msgpack_pack_int64(&pk, va_arg(ap, long long));
        } else {
            msgpack_pack_nil(&pk);
        }
    }
    va_end(ap);
    session_on_frame(c, (const uint8_t *)sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static void hello(struct conn *c, const char *dev)
{
    char tok[65];
    token_compute((const uint8_t *)SECRET, strlen(SECRET), (const uint8_t *)dev, strlen(dev), tok);
    feed_map(c, 4, "t", "s", "hello", "v", "i", 1LL, "dev", "s", dev, "tok", "s", tok);
}

static const struct rec *last_sent(void)
{
    return nsent ? &sent[nsent - 1] : NULL;
}

static void expect_err(struct conn *c, const char *code)
{
    const struct rec *r = last_sent();
    assert_non_null(r);
    assert_ptr_equal(r->c, c);
    assert_int_equal(r->t, MSG_ERR);
    assert_string_equal(r->code, code);
    assert_int_equal(c->state, CONN_CLOSING);
}

/* ---- tests ------------------------------------------------------------ */

static void test_hello_welcome_connect(void **st)
{
    (void)st;
    struct conn *c = open_conn(0);
    hello(c, "pump-0001");
    assert_int_equal(c->state, CONN_READY);
    assert_int_equal(last_sent()->t, MSG_WELCOME);
    assert_int_equal(nenvs, 1);
    assert_int_equal(envs[0].kind, ENV_CONNECT);
    assert_int_equal(envs[0].slot, 0);
    assert_int_equal(envs[0].gen, 7);
    assert_true(envs[0].epoch > 0);
    assert_true(sl_slice_eqs(envs[0].dev, "pump-0001"));
    struct devmap_ref r;
    assert_true(devmap_find(E.map, "pump-0001", 9, &r));
    assert_int_equal(r.slot, 0);
    assert_true(loop_timer_armed(&c->timer));
}

static void test_data_ack_ping(void **st)
{
    (void)st;
    struct conn *c = open_conn(0);
    hello(c, "d1");
    feed_map(c, 3, "t", "s", "data", "seq", "i", 42LL, "body", "i", 5LL);
    assert_int_equal(envs[nenvs - 1].kind, ENV_DATA);
    assert_int_equal(envs[nenvs - 1].seq, 42);
    assert_int_equal(envs[nenvs - 1].body.n, 1); /* the body's raw msgpack: 0x05 */
    session_ack(c, 42);
    assert_int_equal(last_sent()->t, MSG_ACK);
    assert_int_equal(last_sent()->seq, 42);
    assert_int_equal(c->rtt_seq, 0); /* sample consumed */
    feed_map(c, 1, "t", "s", "ping");
    assert_int_equal(last_sent()->t, MSG_PONG);
    assert_int_equal(c->state, CONN_READY);
}

static void test_errors(void **st)
{
    (void)st;
    struct conn *c;
    c = open_conn(0);
    session_on_frame(c, (const uint8_t *)"\x92\x01\x02", 3); /* array, not a map */
    expect_err(c, "decode");
    c = open_conn(1);
    feed_map(c, 1, "t", "s", "ping"); /* first frame not hello */
    expect_err(c, "proto");
    c = open_conn(2);
    feed_map(c, 4, "t", "s", "hello", "v", "i", 2LL, "dev", "s", "x", "tok", "s", "y");
    expect_err(c, "proto");
    c = open_conn(3);
    feed_map(c, 4, "t", "s", "hello", "v", "i", 1LL, "dev", "s", "x", "tok", "s",
             "0000000000000000000000000000000000000000000000000000000000000000");
    expect_err(c, "auth");
}

static void test_errors_after_hello(void **st)
{
    (void)st;
    struct conn *c = open_conn(0);
    hello(c, "e1");
    hello(c, "e1"); /* second hello */
    expect_err(c, "proto");
    /* disconnect envelope with the code as reason, map entry released */
    assert_int_equal(envs[nenvs - 1].kind, ENV_DISCONNECT);
    assert_string_equal(env_reason[nenvs - 1], "proto");
    struct devmap_ref r;
    assert_false(devmap_find(E.map, "e1", 2, &r));

    c = open_conn(1);
    hello(c, "e2");
    feed_map(c, 2, "t", "s", "data", "body", "n"); /* no seq */
    expect_err(c, "decode");

    c = open_conn(2);
    hello(c, "e3");
    feed_map(c, 1, "t", "s", "pong"); /* a type the device may not send */
    expect_err(c, "proto");

    c = open_conn(3);
    atomic_store(&E.draining, true);
    hello(c, "e4");
    expect_err(c, "draining");
    atomic_store(&E.draining, false);
}

static void test_bad_dev_is_auth(void **st)
{
    (void)st;
    struct conn *c = open_conn(0);
    hello(c, "bad dev");
    expect_err(c, "auth");
}

static void run_until_closed(struct conn *c)
{
    uint64_t end = loop_clock_ms() + 5000;
    while (c->state != CONN_CLOSING && loop_clock_ms() < end)
        loop_run_once(W.loop, 50);
}

static void test_hello_timeout(void **st)
{
    (void)st;
    E.cfg.hello_timeout_ms = 20;
    struct conn *c = open_conn(0);
    run_until_closed(c);
    expect_err(c, "timeout");
    assert_int_equal(nenvs, 0); /* never authenticated: no disconnect */
}

static void test_idle_timeout_rearms(void **st)
{
    (void)st;
    E.cfg.idle_timeout_ms = 150;
    struct conn *c = open_conn(0);
    hello(c, "idle-1");
    /* Activity keeps it open across several idle periods. */
    uint64_t until = loop_clock_ms() + 400;
    while (loop_clock_ms() < until) {
        loop_run_once(W.loop, 20);
        feed_map(c, 1, "t", "s", "ping");
        assert_int_equal(c->state, CONN_READY);
    }
    assert_true(loop_timer_armed(&c->timer));
    run_until_closed(c);
    expect_err(c, "timeout");
    assert_string_equal(env_reason[nenvs - 1], "timeout");
}

static void test_takeover(void **st)
{
    (void)st;
    struct conn *a = open_conn(0);
    hello(a, "twin");
    struct conn *b = open_conn(1);
    hello(b, "twin");
    assert_int_equal(nkicked, 1);
    assert_int_equal(kicked[0].slot, 0);
    assert_int_equal(kicked[0].gen, 7);
    assert_int_equal(a->state, CONN_CLOSING);
    assert_int_equal(b->state, CONN_READY);
    /* a got err replaced; its disconnect does not remove b's map entry */
    int found = 0;
    for (int i = 0; i < nsent; i++)
        if (sent[i].c == a && sent[i].t == MSG_ERR && strcmp(sent[i].code, "replaced") == 0)
            found = 1;
    assert_true(found);
    struct devmap_ref r;
    assert_true(devmap_find(E.map, "twin", 4, &r));
    assert_int_equal(r.slot, 1);
    assert_true(b->epoch >= a->epoch);
}

static void test_devmap_release_only_owner(void **st)
{
    (void)st;
    struct devmap *m = devmap_new(2, 8);
    struct devmap_ref a = {0, 3, 1}, b = {1, 5, 9}, old;
    assert_false(devmap_claim(m, "x", 1, a, &old));
    assert_true(devmap_claim(m, "x", 1, b, &old));
    assert_int_equal(old.worker, 0);
    assert_int_equal(old.slot, 3);
    devmap_release(m, a); /* the replaced one closing later */
    assert_int_equal(devmap_count(m), 1);
    devmap_release(m, b);
    assert_int_equal(devmap_count(m), 0);
    devmap_destroy(&m);
}

static void test_conn_size(void **st)
{
    (void)st;
    printf("sizeof(struct conn) = %zu bytes\n", sizeof(struct conn));
    assert_true(sizeof(struct conn) < 512);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hello_welcome_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_ack_ping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_after_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_dev_is_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout_rearms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takeover, setup, teardown),
        cmocka_unit_test(test_devmap_release_only_owner),
        cmocka_unit_test(test_conn_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
