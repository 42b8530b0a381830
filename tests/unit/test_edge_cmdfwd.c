/* test_edge_cmdfwd.c - commands routed between the workers of one edge,
 * without sockets.
 *
 * cmdfwd.c runs with a real device map, real loops (for the wake-up) and
 * two worker structs; conn_find, session_cmd and bus_emit are stubs defined
 * below, so the linker leaves conn.o, session.o and bus.o of edge_core out.
 * Checked: local delivery, forwarding to the owner and delivery there, the
 * owner losing the device or seeing it move before it drains, a device on
 * no worker, and the inbox bounds (count and bytes), each command answered
 * exactly once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "bus.h"
#include "cmdfwd.h"
#include "conn.h"
#include "devmap.h"
#include "edge.h"
#include "session.h"
#include "stats.h"
#include "worker.h"

#define NW     2
#define NSLOT  4
#define MAXREC 1024

static struct edge E;
static struct worker W[NW];
static struct conn conns[NW][NSLOT];
static int bus_tag[NW]; /* W[i].bus points here: tells which worker emitted */

/* What reached a device (session_cmd) or the notifier (bus_emit). */
static struct cmd_rec {
    int worker;
    uint32_t slot;
    char id[80];
    uint8_t body[8];
    uint32_t body_n;
} cmds[MAXREC];
static int ncmds;
static struct und_rec {
    int worker;
    struct envelope e; /* its slices are borrowed: only numbers are read back */
    char dev[80], id[80], reason[32];
} unds[MAXREC];
static int nunds;

/* ---- stubs ------------------------------------------------------------ */

struct conn *conn_find(struct worker *w, uint32_t slot, uint32_t gen, struct sl_slice dev)
{
    if (slot >= NSLOT)
        return NULL;
    struct conn *c = &conns[w->idx][slot];
    if (c->state != CONN_READY || c->gen != gen || c->dev_len != dev.n || memcmp(c->dev, dev.p, dev.n) != 0)
        return NULL;
    return c;
}

void session_cmd(struct conn *c, struct sl_slice id, struct sl_slice body)
{
    assert_true(ncmds < MAXREC);
    struct cmd_rec *r = &cmds[ncmds++];
    r->worker = (int)c->w->idx;
    r->slot = c->slot;
    snprintf(r->id, sizeof r->id, "%.*s", (int)id.n, id.p);
    r->body_n = body.n;
    memcpy(r->body, body.p, body.n < sizeof r->body ? body.n : sizeof r->body);
}

void bus_emit(struct bus *b, const struct envelope *e)
{
    assert_int_equal(e->kind, ENV_UNDELIVERABLE);
    assert_true(nunds < MAXREC);
    struct und_rec *r = &unds[nunds++];
    r->worker = (int)((int *)b - bus_tag);
    r->e = *e;
    snprintf(r->dev, sizeof r->dev, "%.*s", (int)e->dev.n, e->dev.p);
    snprintf(r->id, sizeof r->id, "%.*s", (int)e->id.n, e->id.p);
    snprintf(r->reason, sizeof r->reason, "%.*s", (int)e->reason.n, e->reason.p);
}

/* ---- fixture ----------------------------------------------------------- */

static int drained[NW];

static void on_wake(struct loop *l, void *ud)
{
    (void)l;
    struct worker *w = ud;
    drained[w->idx]++;
    cmdfwd_drain(w);
}

static int setup(void **st)
{
    (void)st;
    stats_init();
    memset(&E, 0, sizeof E);
    memset(W, 0, sizeof W);
    memset(conns, 0, sizeof conns);
    E.nworkers = NW;
    E.map = devmap_new(NW, NSLOT);
    assert_non_null(E.map);
    for (uint32_t i = 0; i < NW; i++) {
        W[i].e = &E;
        W[i].idx = i;
        W[i].bus = (struct bus *)&bus_tag[i];
        W[i].loop = loop_new(8);
        assert_non_null(W[i].loop);
        loop_set_wake(W[i].loop, on_wake, &W[i]);
        cmdfwd_init(&W[i].cmds);
        E.workers[i] = &W[i];
        for (uint32_t s = 0; s < NSLOT; s++) {
            conns[i][s].w = &W[i];
            conns[i][s].slot = s;
            conns[i][s].gen = 3;
        }
    }
    ncmds = nunds = 0;
    memset(drained, 0, sizeof drained);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    for (int i = 0; i < NW; i++) {
        cmdfwd_fini(&W[i].cmds); /* frees what a test left queued (ASan checks) */
        loop_destroy(&W[i].loop);
    }
    devmap_destroy(&E.map);
    return 0;
}

/* Device dev connected on worker w, slot s (READY, in the map). */
static struct conn *online(uint32_t w, uint32_t s, const char *dev)
{
    struct conn *c = &conns[w][s];
    c->state = CONN_READY;
    c->dev_len = (uint8_t)strlen(dev);
    memcpy(c->dev, dev, c->dev_len + 1u);
    struct devmap_ref ref = {w, s, c->gen}, old;
    devmap_claim(E.map, dev, c->dev_len, ref, &old);
    return c;
}

static struct envelope cmd(const char *dev, const char *id, const uint8_t *body, uint32_t n)
{
    struct envelope e = {.kind = ENV_CMD, .slot = 9, .gen = 11, .epoch = 12345};
    e.dev.p = (const uint8_t *)dev;
    e.dev.n = (uint32_t)strlen(dev);
    e.id.p = (const uint8_t *)id;
    e.id.n = (uint32_t)strlen(id);
    if (body) {
        e.body.p = body;
        e.body.n = n;
        e.has_body = true;
    }
    return e;
}

/* Run worker w's loop until its wake-up callback has drained once more. */
static void wake_and_drain(uint32_t w)
{
    int before = drained[w];
    for (int i = 0; i < 50 && drained[w] == before; i++)
        loop_run_once(W[w].loop, 100);
    assert_int_equal(drained[w], before + 1);
}

/* ---- tests ------------------------------------------------------------- */

static void test_local(void **st)
{
    (void)st;
    online(0, 2, "d-local");
    uint8_t body[] = {0x81, 0xa1, 'x', 0x01};
    struct envelope e = cmd("d-local", "c1", body, sizeof body);
    cmdfwd_route(&W[0], &e);
    assert_int_equal(ncmds, 1);
    assert_int_equal(cmds[0].worker, 0);
    assert_int_equal(cmds[0].slot, 2);
    assert_string_equal(cmds[0].id, "c1");
    assert_int_equal(cmds[0].body_n, sizeof body);
    assert_memory_equal(cmds[0].body, body, sizeof body);
    assert_int_equal(nunds, 0);
    assert_int_equal(W[1].cmds.n, 0);
}

static void test_forward_to_owner(void **st)
{
    (void)st;
    online(1, 3, "d-moved");
    uint64_t fwd0 = atomic_load(&stats.cmds_forwarded->v);
    uint8_t body[] = {0x92, 0x01, 0x02};
    struct envelope e = cmd("d-moved", "c2", body, sizeof body);
    cmdfwd_route(&W[0], &e);
    /* Nothing written on worker 0's thread, nothing answered: queued. */
    assert_int_equal(ncmds, 0);
    assert_int_equal(nunds, 0);
    assert_int_equal(W[1].cmds.n, 1);
    assert_int_equal(atomic_load(&stats.cmds_forwarded->v), fwd0 + 1);
    body[1] = 0x7f; /* the batch's bytes are gone once routed: the inbox holds a copy */
    wake_and_drain(1);
    assert_int_equal(ncmds, 1);
    assert_int_equal(cmds[0].worker, 1);
    assert_int_equal(cmds[0].slot, 3);
    assert_string_equal(cmds[0].id, "c2");
    assert_int_equal(cmds[0].body_n, 3);
    assert_int_equal(cmds[0].body[1], 0x01);
    assert_int_equal(nunds, 0);
    assert_int_equal(W[1].cmds.n, 0);
    assert_int_equal(W[1].cmds.bytes, 0);
}

static void test_no_body_is_nil(void **st)
{
    (void)st;
    online(1, 0, "d-nil");
    struct envelope e = cmd("d-nil", "c3", NULL, 0);
    cmdfwd_route(&W[0], &e);
    cmdfwd_drain(&W[1]);
    assert_int_equal(ncmds, 1);
    assert_int_equal(cmds[0].body_n, 1);
    assert_int_equal(cmds[0].body[0], 0xc0);
}

static void test_owner_lost_device(void **st)
{
    (void)st;
    struct conn *c = online(1, 1, "d-gone");
    struct envelope e = cmd("d-gone", "c4", (const uint8_t *)"\x01", 1);
    cmdfwd_route(&W[0], &e);
    assert_int_equal(W[1].cmds.n, 1);
    /* The connection closes before worker 1 drains its inbox. */
    c->state = CONN_CLOSING;
    cmdfwd_drain(&W[1]);
    assert_int_equal(ncmds, 0);
    assert_int_equal(nunds, 1);
    assert_int_equal(unds[0].worker, 1);
    assert_string_equal(unds[0].id, "c4");
    assert_string_equal(unds[0].reason, "disconnected");
    assert_string_equal(unds[0].dev, "d-gone");
    /* Echoes the cmd as the notifier addressed it. */
    assert_int_equal(unds[0].e.slot, 9);
    assert_int_equal(unds[0].e.gen, 11);
    assert_int_equal(unds[0].e.epoch, 12345);
}

static void test_owner_sees_current_map(void **st)
{
    (void)st;
    /* Forwarded to worker 1, then the device reconnects there on another
     * slot before worker 1 drains: the new connection gets it. */
    struct conn *a = online(1, 1, "d-hop");
    struct envelope e = cmd("d-hop", "c5", (const uint8_t *)"\x01", 1);
    cmdfwd_route(&W[0], &e);
    a->state = CONN_CLOSING;
    online(1, 3, "d-hop");
    cmdfwd_drain(&W[1]);
    assert_int_equal(ncmds, 1);
    assert_int_equal(cmds[0].worker, 1);
    assert_int_equal(cmds[0].slot, 3);
    /* Forwarded to worker 1, then the device moves back to worker 0: worker
     * 1 answers undeliverable rather than forward a second time. */
    e = cmd("d-hop", "c6", (const uint8_t *)"\x01", 1);
    cmdfwd_route(&W[0], &e);
    assert_int_equal(W[1].cmds.n, 1);
    online(0, 0, "d-hop");
    cmdfwd_drain(&W[1]);
    assert_int_equal(ncmds, 1);
    assert_int_equal(nunds, 1);
    assert_int_equal(unds[0].worker, 1);
    assert_string_equal(unds[0].id, "c6");
    assert_int_equal(W[0].cmds.n, 0);
}

static void test_nowhere(void **st)
{
    (void)st;
    struct envelope e = cmd("d-none", "c6", (const uint8_t *)"\x01", 1);
    cmdfwd_route(&W[0], &e);
    assert_int_equal(nunds, 1);
    assert_int_equal(unds[0].worker, 0);
    assert_string_equal(unds[0].id, "c6");
    assert_int_equal(ncmds, 0);
    assert_int_equal(W[0].cmds.n + W[1].cmds.n, 0);
    /* An id longer than a device id can be, and an empty one: never looked up. */
    char longdev[SL_DEV_MAX + 2];
    memset(longdev, 'a', sizeof longdev - 1);
    longdev[sizeof longdev - 1] = 0;
    e = cmd(longdev, "c7", NULL, 0);
    cmdfwd_route(&W[0], &e);
    e = cmd("", "c8", NULL, 0);
    cmdfwd_route(&W[0], &e);
    assert_int_equal(nunds, 3);
}

static void test_inbox_count_bound(void **st)
{
    (void)st;
    online(1, 2, "d-busy");
    uint64_t refused0 = atomic_load(&stats.cmds_forward_refused->v);
    char ids[CMDFWD_MAX + 5][16];
    for (uint32_t i = 0; i < CMDFWD_MAX + 5; i++) {
        snprintf(ids[i], sizeof ids[i], "k%u", i);
        struct envelope e = cmd("d-busy", ids[i], (const uint8_t *)"\x01", 1);
        cmdfwd_route(&W[0], &e);
    }
    /* The first CMDFWD_MAX wait in the inbox; the rest are answered at once. */
    assert_int_equal(W[1].cmds.n, CMDFWD_MAX);
    assert_int_equal(nunds, 5);
    assert_int_equal(atomic_load(&stats.cmds_forward_refused->v), refused0 + 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(unds[i].worker, 0);
        assert_string_equal(unds[i].id, ids[CMDFWD_MAX + (uint32_t)i]);
    }
    cmdfwd_drain(&W[1]);
    assert_int_equal(ncmds, CMDFWD_MAX);
    for (uint32_t i = 0; i < CMDFWD_MAX; i++)
        assert_string_equal(cmds[i].id, ids[i]); /* in order */
    /* Room again once drained. */
    struct envelope e = cmd("d-busy", "again", (const uint8_t *)"\x01", 1);
    cmdfwd_route(&W[0], &e);
    assert_int_equal(W[1].cmds.n, 1);
}

static void test_inbox_byte_bound(void **st)
{
    (void)st;
    online(1, 2, "d-big");
    static uint8_t big[64 * 1024];
    memset(big, 0xc3, sizeof big); /* any bytes: the edge does not parse bodies */
    uint32_t fit = 0, refused = 0;
    for (int i = 0; i < 100; i++) {
        char id[16];
        snprintf(id, sizeof id, "b%d", i);
        struct envelope e = cmd("d-big", id, big, sizeof big);
        int before = nunds;
        cmdfwd_route(&W[0], &e);
        if (nunds == before)
            fit++;
        else
            refused++;
    }
    assert_true(W[1].cmds.bytes <= CMDFWD_MAX_BYTES);
    assert_int_equal(fit, W[1].cmds.n);
    assert_true(fit >= 50 && fit < 64); /* 4 MiB of 64 KiB bodies, well below the count bound */
    assert_int_equal(fit + refused, 100);
    /* Every command answered exactly once: queued ones on drain. */
    cmdfwd_drain(&W[1]);
    assert_int_equal((uint32_t)ncmds, fit);
    assert_int_equal((uint32_t)nunds, refused);
}

static void test_fini_frees_queued(void **st)
{
    (void)st;
    online(1, 1, "d-exit");
    struct envelope e = cmd("d-exit", "z1", (const uint8_t *)"\x01", 1);
    cmdfwd_route(&W[0], &e);
    cmdfwd_route(&W[0], &e);
    assert_int_equal(W[1].cmds.n, 2);
    /* teardown's cmdfwd_fini frees both; ASan reports a leak otherwise. */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_local, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forward_to_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_body_is_nil, setup, teardown),
        cmocka_unit_test_setup_teardown(test_owner_lost_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_owner_sees_current_map, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nowhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inbox_count_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inbox_byte_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fini_frees_queued, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
