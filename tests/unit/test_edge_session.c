/* SPDX-License-Identifier: Apache-2.0 */
/* test_edge_session.c - the edge's session state machine without sockets.
 *
 * session.c runs against a stub struct session_ops defined below (what it
 * sent, closed, armed, emitted and kicked is recorded here), a real device
 * map and a real loop for the hello and idle deadlines. No link-order
 * tricks: the stub is the ops table the session is given. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <msgpack.h>
#include "sl/loop.h"
#include "sl/msg.h"
#include "sl/token.h"
#include "conn.h"
#include "devmap.h"
#include "edge.h"
#include "session.h"
#include "trust.h"

static const char SECRET[] = "unit-fleet-secret-0123";

/* A connection as the session's stub ops see it. */
struct tconn {
    struct session s;
    uint32_t slot, gen;
    int closed;              /* the session closed it (ops.close) */
    struct loop_timer timer; /* armed through ops.arm */
};

/* ---- stubs: what session.c sent and did ------------------------------ */
#define MAXREC 64
static struct rec {
    struct tconn *c;
    enum msg_type t;
    char code[16];
    uint32_t retry_ms;
    uint64_t seq;
} sent[MAXREC];
static int nsent;
static struct envelope envs[MAXREC];
static char env_reason[MAXREC][16];
static int nenvs;
static struct devmap_ref kicked[8];
static int nkicked;
static struct tconn conns[4];
static struct session_env X;
static struct loop *L;

static struct tconn *tc_of(struct session *s)
{
    return (struct tconn *)((char *)s - offsetof(struct tconn, s));
}

static struct devmap_ref ref_of(const struct tconn *c)
{
    struct devmap_ref r = {0, c->slot, c->gen};
    return r;
}

static enum sl_err st_send(void *ud, struct session *s, const struct msg *m)
{
    (void)ud;
    struct tconn *c = tc_of(s);
    if (c->closed)
        return SL_AGAIN;
    assert_true(nsent < MAXREC);
    struct rec *r = &sent[nsent++];
    memset(r, 0, sizeof *r);
    r->c = c;
    r->t = m->t;
    if (m->t == MSG_ERR) {
        snprintf(r->code, sizeof r->code, "%.*s", (int)m->u.err.code.n, m->u.err.code.p);
        r->retry_ms = m->u.err.retry_ms;
    }
    if (m->t == MSG_ACK)
        r->seq = m->u.ack.seq;
    return SL_OK;
}

static void st_close(void *ud, struct session *s, enum sl_err code)
{
    (void)ud;
    struct tconn *c = tc_of(s);
    if (c->closed)
        return;
    c->closed = 1;
    loop_timer_stop(L, &c->timer);
    session_closed(&X, s, ref_of(c), conn_reason_str(conn_reason_of(code)));
}

static void on_deadline(struct loop *l, void *ud)
{
    (void)l;
    struct tconn *c = ud;
    session_on_timer(&X, &c->s);
}

static void st_arm(void *ud, struct session *s, uint64_t ms)
{
    (void)ud;
    loop_timer_start(L, &tc_of(s)->timer, ms);
}

static void st_emit(void *ud, const struct envelope *e)
{
    (void)ud;
    assert_true(nenvs < MAXREC);
    envs[nenvs] = *e;
    snprintf(env_reason[nenvs], sizeof env_reason[0], "%.*s", (int)e->reason.n, e->reason.p);
    nenvs++;
}

static int nauth;
static uint32_t banned_retry; /* what admit_device answers for "flappy" */

static uint32_t st_admit_device(void *ud, const char *dev, size_t n)
{
    (void)ud;
    return n == 6 && memcmp(dev, "flappy", 6) == 0 ? banned_retry : 0;
}

static void st_authenticated(void *ud, struct session *s)
{
    (void)ud;
    (void)s;
    nauth++;
}

static void st_kick(void *ud, struct devmap_ref ref, enum sl_err code)
{
    (void)ud;
    kicked[nkicked++] = ref;
    struct tconn *c = &conns[ref.slot];
    if (c->gen == ref.gen)
        session_fail(&X, &c->s, code, "replaced");
}

static int releases;

static void st_release(void *ud, struct session *s)
{
    (void)ud;
    (void)s;
    releases++;
}

static uint32_t st_peer(void *ud, const struct session *s, char *out, uint32_t cap)
{
    (void)ud;
    (void)s;
    return (uint32_t)snprintf(out, cap, "127.0.0.1:1");
}

static uint64_t st_wall_ns(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t st_mono_us(void *ud)
{
    (void)ud;
    return loop_clock_ms() * 1000u;
}

static uint64_t st_now_ms(void *ud)
{
    (void)ud;
    return loop_now_ms(L);
}

static const struct session_ops stub_ops = {
    .send = st_send,
    .close = st_close,
    .arm = st_arm,
    .emit = st_emit,
    .kick = st_kick,
    .admit_device = st_admit_device,
    .authenticated = st_authenticated,
    .release = st_release,
    .peer = st_peer,
    .wall_ns = st_wall_ns,
    .mono_us = st_mono_us,
    .now_ms = st_now_ms,
};

/* ---- fixture --------------------------------------------------------- */
static struct edge E;

static int setup(void **st)
{
    (void)st;
    memset(&E, 0, sizeof E);
    E.cfg.edge_id = "unit-edge";
    E.cfg.max_frame = 65536;
    E.cfg.hb_s = 30;
    E.cfg.hello_timeout_ms = 10000;
    E.cfg.idle_timeout_ms = 90000;
    E.nworkers = 1;
    E.map = devmap_new(1, 4);
    L = loop_new(16);
    assert_non_null(L);
    memset(&X, 0, sizeof X);
    X.ops = &stub_ops;
    X.cfg = &E.cfg;
    X.map = E.map;
    E.trust = trust_new();
    int count;
    const char *why;
    assert_int_equal(trust_set_secrets(E.trust, (const uint8_t *)SECRET, strlen(SECRET), &count, &why), 0);
    X.trust = E.trust;
    X.draining = &E.draining;
    memset(conns, 0, sizeof conns);
    for (uint32_t i = 0; i < 4; i++) {
        conns[i].slot = i;
        conns[i].gen = 7;
        loop_timer_init(&conns[i].timer, on_deadline, &conns[i]);
    }
    nsent = nenvs = nkicked = nauth = 0;
    banned_retry = 0;
    releases = 0;
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    for (int i = 0; i < 4; i++)
        loop_timer_stop(L, &conns[i].timer);
    loop_destroy(&L);
    devmap_destroy(&E.map);
    trust_destroy(&E.trust);
    return 0;
}

static struct tconn *open_conn(int i)
{
    struct tconn *c = &conns[i];
    c->closed = 0;
    session_open(&X, &c->s, E.cfg.hello_timeout_ms);
    return c;
}

/* Build a payload from alternating key/value specs: "s" string, "i" int,
 * "u" uint, "n" nil; and feed it. */
static void feed_map(struct tconn *c, int pairs, ...)
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
    session_on_frame(&X, &c->s, ref_of(c), (const uint8_t *)sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static void hello(struct tconn *c, const char *dev)
{
    char tok[65];
    token_compute((const uint8_t *)SECRET, strlen(SECRET), (const uint8_t *)dev, strlen(dev), tok);
    feed_map(c, 4, "t", "s", "hello", "v", "i", 1LL, "dev", "s", dev, "tok", "s", tok);
}

static const struct rec *last_sent(void)
{
    return nsent ? &sent[nsent - 1] : NULL;
}

static void expect_err(struct tconn *c, const char *code)
{
    const struct rec *r = last_sent();
    assert_non_null(r);
    assert_ptr_equal(r->c, c);
    assert_int_equal(r->t, MSG_ERR);
    assert_string_equal(r->code, code);
    assert_true(c->closed);
}

/* ---- tests ------------------------------------------------------------ */

static void test_hello_welcome_connect(void **st)
{
    (void)st;
    struct tconn *c = open_conn(0);
    hello(c, "pump-0001");
    assert_int_equal(c->s.phase, SESSION_READY);
    assert_int_equal(nauth, 1); /* the connection left its early phase */
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
    struct tconn *c = open_conn(0);
    hello(c, "d1");
    feed_map(c, 3, "t", "s", "data", "seq", "i", 42LL, "body", "i", 5LL);
    assert_int_equal(envs[nenvs - 1].kind, ENV_DATA);
    assert_int_equal(envs[nenvs - 1].seq, 42);
    assert_int_equal(envs[nenvs - 1].body.n, 1); /* the body's raw msgpack: 0x05 */
    session_ack(&X, &c->s, 42);
    assert_int_equal(last_sent()->t, MSG_ACK);
    assert_int_equal(last_sent()->seq, 42);
    assert_int_equal(c->s.rtt_seq, 0); /* sample consumed */
    feed_map(c, 1, "t", "s", "ping");
    assert_int_equal(last_sent()->t, MSG_PONG);
    assert_int_equal(c->s.phase, SESSION_READY);
}

/* A cmd frame queued on the connection is reported (cmd_sent: the command
 * store counts deliveries by it) with the session's id, epoch and the
 * command id; one the connection refused (closing) is not. */
static void test_cmd_sent(void **st)
{
    (void)st;
    struct tconn *c = open_conn(0);
    hello(c, "pump-7");
    uint64_t epoch = envs[0].epoch;
    static const uint8_t body[] = {0x81, 0xa1, 'v', 0x03};
    session_cmd(&X, &c->s, ref_of(c), (struct sl_slice){(const uint8_t *)"c-1", 3},
                (struct sl_slice){body, sizeof body});
    assert_int_equal(last_sent()->t, MSG_CMD);
    assert_int_equal(nenvs, 2);
    assert_int_equal(envs[1].kind, ENV_CMD_SENT);
    assert_true(sl_slice_eqs(envs[1].id, "c-1"));
    assert_true(sl_slice_eqs(envs[1].dev, "pump-7"));
    assert_true(envs[1].epoch == epoch);
    assert_int_equal(envs[1].slot, c->slot);
    assert_int_equal(envs[1].gen, c->gen);
    const char *why = NULL;
    assert_int_equal(envelope_check(&envs[1], &why), SL_OK);
    c->closed = 1; /* st_send refuses: nothing written, nothing reported */
    session_cmd(&X, &c->s, ref_of(c), (struct sl_slice){(const uint8_t *)"c-2", 3},
                (struct sl_slice){body, sizeof body});
    assert_int_equal(nenvs, 2);
}

static void test_errors(void **st)
{
    (void)st;
    struct tconn *c;
    c = open_conn(0);
    session_on_frame(&X, &c->s, ref_of(c), (const uint8_t *)"\x92\x01\x02", 3); /* array, not a map */
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
    struct tconn *c = open_conn(0);
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

/* A device the guard holds back (flapping) gets err{busy, retry_ms} after
 * its token was checked, and nothing of a session: no claim, no connect. */
static void test_device_held_back(void **st)
{
    (void)st;
    banned_retry = 4000;
    struct tconn *c = open_conn(0);
    hello(c, "flappy");
    expect_err(c, "busy");
    assert_int_equal(last_sent()->retry_ms, 4000);
    assert_int_equal(nauth, 0);
    assert_int_equal(nenvs, 0);
    struct devmap_ref r;
    assert_false(devmap_find(E.map, "flappy", 6, &r));
    c = open_conn(1);
    hello(c, "steady"); /* another device is not held back */
    assert_int_equal(c->s.phase, SESSION_READY);
}

/* --device-rate: a session reads about as many bytes as its tokens are
 * worth, nothing when it has none (held until the deadline), nothing it sent
 * is refused, and the hold does not count as silence. */
static void test_rate_budget(void **st)
{
    (void)st;
    X.rate = 20; /* frames per second */
    X.burst = 3;
    X.hold_max_ms = 5000;
    E.cfg.idle_timeout_ms = 90000;
    struct tconn *c = open_conn(0);
    assert_int_equal(session_read_budget(&X, &c->s, 10), SIZE_MAX); /* before hello: the early limits apply */
    hello(c, "chatty");                                             /* hello takes no token */
    assert_int_equal(session_read_budget(&X, &c->s, 10), 3 * 10 + 4); /* three frames of 10 bytes */
    for (int i = 0; i < 5; i++) /* two over the burst (all in one read): all answered */
        feed_map(c, 1, "t", "s", "ping");
    assert_int_equal(last_sent()->t, MSG_PONG);
    assert_false(c->closed);
    assert_int_equal(session_read_budget(&X, &c->s, 10), 0); /* held */
    assert_int_equal(c->s.held, 1);
    assert_int_equal(session_read_budget(&X, &c->s, 10), 0); /* still, without re-arming */
    assert_true(loop_timer_armed(&c->timer)); /* the end of the hold: ~150 ms (3 tokens short at 20/s) */
    uint64_t end = loop_clock_ms() + 3000;
    while (releases == 0 && loop_clock_ms() < end)
        loop_run_once(L, 20);
    assert_int_equal(releases, 1);
    assert_int_equal(c->s.held, 0);
    assert_false(c->closed);
    assert_int_equal(c->s.phase, SESSION_READY);
    assert_true(session_read_budget(&X, &c->s, 10) > 0);
    assert_true(loop_timer_armed(&c->timer)); /* the idle check again */
    assert_int_equal(stat_get(&X.cnt.holds), 1);
    assert_true(stat_get(&X.cnt.held_us) >= 50000);
    X.rate = 0;
}

static void test_bad_dev_is_auth(void **st)
{
    (void)st;
    struct tconn *c = open_conn(0);
    hello(c, "bad dev");
    expect_err(c, "auth");
}

static void run_until_closed(struct tconn *c)
{
    uint64_t end = loop_clock_ms() + 5000;
    while (!c->closed && loop_clock_ms() < end)
        loop_run_once(L, 50);
}

static void test_hello_timeout(void **st)
{
    (void)st;
    E.cfg.hello_timeout_ms = 20;
    struct tconn *c = open_conn(0);
    run_until_closed(c);
    expect_err(c, "timeout");
    assert_int_equal(nenvs, 0); /* never authenticated: no disconnect */
}

static void test_idle_timeout_rearms(void **st)
{
    (void)st;
    /* Real time: a timeout well above a loaded box's scheduling stalls (one
     * of 150 ms once closed the connection between two pings). */
    E.cfg.idle_timeout_ms = 800;
    struct tconn *c = open_conn(0);
    hello(c, "idle-1");
    /* Activity keeps it open across several idle periods. */
    uint64_t until = loop_clock_ms() + 2000;
    while (loop_clock_ms() < until) {
        loop_run_once(L, 100); /* a ping (and its pong) every 100 ms: well under MAXREC */
        feed_map(c, 1, "t", "s", "ping");
        assert_int_equal(c->s.phase, SESSION_READY);
    }
    assert_true(loop_timer_armed(&c->timer));
    run_until_closed(c);
    expect_err(c, "timeout");
    assert_string_equal(env_reason[nenvs - 1], "timeout");
}

static void test_takeover(void **st)
{
    (void)st;
    struct tconn *a = open_conn(0);
    hello(a, "twin");
    struct tconn *b = open_conn(1);
    hello(b, "twin");
    assert_int_equal(nkicked, 1);
    assert_int_equal(kicked[0].slot, 0);
    assert_int_equal(kicked[0].gen, 7);
    assert_true(a->closed);
    assert_int_equal(b->s.phase, SESSION_READY);
    /* a got err replaced; its disconnect does not remove b's map entry */
    int found = 0;
    for (int i = 0; i < nsent; i++)
        if (sent[i].c == a && sent[i].t == MSG_ERR && strcmp(sent[i].code, "replaced") == 0)
            found = 1;
    assert_true(found);
    struct devmap_ref r;
    assert_true(devmap_find(E.map, "twin", 4, &r));
    assert_int_equal(r.slot, 1);
    assert_true(b->s.epoch >= a->s.epoch);
    /* each connection still reads its own id (kept in the map's node of its
     * slot), the replaced one included: its disconnect names the device */
    assert_string_equal(session_dev(&X, &a->s, ref_of(a)), "twin");
    assert_string_equal(session_dev(&X, &b->s, ref_of(b)), "twin");
    assert_ptr_not_equal(session_dev(&X, &a->s, ref_of(a)), session_dev(&X, &b->s, ref_of(b)));
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
    assert_string_equal(devmap_dev(m, a), "x"); /* the id outlives the entry */
    devmap_release(m, b);
    assert_int_equal(devmap_count(m), 0);
    assert_string_equal(devmap_dev(m, b), "x");
    /* a slot's next claim rewrites only that slot's id */
    struct devmap_ref a2 = {0, 3, 2};
    assert_false(devmap_claim(m, "longer-id", 9, a2, &old));
    assert_string_equal(devmap_dev(m, a2), "longer-id");
    assert_string_equal(devmap_dev(m, b), "x");
    devmap_destroy(&m);
}

static void test_conn_size(void **st)
{
    (void)st;
    /* The connection and its session sit in two tables at the same index. */
    printf("sizeof(struct conn) + sizeof(struct session) = %zu + %zu bytes\n", sizeof(struct conn),
           sizeof(struct session));
    assert_true(sizeof(struct conn) + sizeof(struct session) <=
                208); /* docs/performance.md: the per-connection budget */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hello_welcome_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmd_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_ack_ping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_after_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_dev_is_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_held_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout_rearms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takeover, setup, teardown),
        cmocka_unit_test(test_devmap_release_only_owner),
        cmocka_unit_test(test_conn_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
