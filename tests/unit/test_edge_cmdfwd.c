/* SPDX-License-Identifier: Apache-2.0 */
/* test_edge_cmdfwd.c - commands routed between the workers of one edge,
 * without sockets.
 *
 * cmdfwd.c runs with a real device map, real mailboxes and loops (for the
 * wake-up) and a stub struct cmdfwd_ops per worker that records what
 * reached a device (deliver) or the notifier (undeliverable). Checked:
 * local delivery, forwarding to the owner and delivery there, the owner
 * losing the device or seeing it move before it takes the copy, a device
 * on no worker, and the mailbox's command share (count and bytes), each
 * command answered exactly once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "sl/limits.h"
#include "sl/loop.h"
#include "cmdfwd.h"
#include "devmap.h"
#include "mailbox.h"

#define NW     2
#define NSLOT  4
#define MAXREC 1024

/* A connection as the stub sees it. */
struct tconn {
    int ready;
    uint32_t slot, gen;
    uint8_t dev_len;
    const char *dev;
};

static struct devmap *MAP;
static struct cmdfwd F[NW];
static struct mailbox *MB[NW];
static struct loop *LOOP[NW];
static struct tconn conns[NW][NSLOT];
static int wid[NW]; /* F[i].ud points here: tells which worker acted */

/* What reached a device (deliver) or the notifier (undeliverable). */
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

static bool st_deliver(void *ud, struct devmap_ref ref, const struct envelope *cmd)
{
    int w = *(int *)ud;
    if (ref.slot >= NSLOT)
        return false;
    struct tconn *c = &conns[w][ref.slot];
    if (!c->ready || c->gen != ref.gen || c->dev_len != cmd->dev.n ||
        memcmp(c->dev, cmd->dev.p, cmd->dev.n) != 0)
        return false;
    assert_true(ncmds < MAXREC);
    struct cmd_rec *r = &cmds[ncmds++];
    r->worker = w;
    r->slot = ref.slot;
    snprintf(r->id, sizeof r->id, "%.*s", (int)cmd->id.n, cmd->id.p);
    r->body_n = cmd->body.n;
    memcpy(r->body, cmd->body.p, cmd->body.n < sizeof r->body ? cmd->body.n : sizeof r->body);
    return true;
}

static void st_emit(void *ud, const struct envelope *e)
{
    assert_int_equal(e->kind, ENV_UNDELIVERABLE);
    assert_true(nunds < MAXREC);
    struct und_rec *r = &unds[nunds++];
    r->worker = *(int *)ud;
    r->e = *e;
    snprintf(r->dev, sizeof r->dev, "%.*s", (int)e->dev.n, e->dev.p);
    snprintf(r->id, sizeof r->id, "%.*s", (int)e->id.n, e->id.p);
    snprintf(r->reason, sizeof r->reason, "%.*s", (int)e->reason.n, e->reason.p);
}

static const struct cmdfwd_ops stub_ops = {.deliver = st_deliver, .emit = st_emit};

/* ---- fixture ----------------------------------------------------------- */

static int drained[NW];

/* What the worker's wake-up does with MAILBOX_CMD items. */
static void cmdfwd_drain(struct cmdfwd *f)
{
    struct mailbox_item it[64];
    uint32_t n;
    while ((n = mailbox_take(MB[f->self], it, 64)) > 0)
        for (uint32_t i = 0; i < n; i++)
            cmdfwd_deliver(f, &it[i]);
}

static void on_wake(struct loop *l, void *ud)
{
    (void)l;
    struct cmdfwd *f = ud;
    drained[f->self]++;
    cmdfwd_drain(f);
}

static void drop(void *ud, struct mailbox_item *it)
{
    (void)ud;
    cmdfwd_drop(it);
}

static int setup(void **st)
{
    (void)st;
    memset(conns, 0, sizeof conns);
    MAP = devmap_new(NW, NSLOT);
    assert_non_null(MAP);
    struct mailbox_limits lim = {.share = {[MAILBOX_ADOPT] = MAILBOX_ADOPT_SHARE,
                                           [MAILBOX_KICK] = MAILBOX_KICK_SHARE,
                                           [MAILBOX_CMD] = MAILBOX_CMD_SHARE},
                                 .max_bytes = MAILBOX_CMD_BYTES};
    for (uint32_t i = 0; i < NW; i++) {
        wid[i] = (int)i;
        LOOP[i] = loop_new(8);
        assert_non_null(LOOP[i]);
        MB[i] = mailbox_new(&lim, LOOP[i]);
        assert_non_null(MB[i]);
        F[i] = (struct cmdfwd){
            .ops = &stub_ops, .ud = &wid[i], .self = i, .map = MAP, .mboxes = MB, .nworkers = NW};
        loop_set_wake(LOOP[i], on_wake, &F[i]);
        for (uint32_t s = 0; s < NSLOT; s++) {
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
        mailbox_destroy(&MB[i], drop, NULL); /* frees what a test left queued (ASan checks) */
        loop_destroy(&LOOP[i]);
    }
    devmap_destroy(&MAP);
    return 0;
}

/* Device dev connected on worker w, slot s (READY, in the map). */
static struct tconn *online(uint32_t w, uint32_t s, const char *dev)
{
    struct tconn *c = &conns[w][s];
    c->ready = 1;
    c->dev_len = (uint8_t)strlen(dev);
    struct devmap_ref ref = {w, s, c->gen}, old;
    devmap_claim(MAP, dev, c->dev_len, ref, &old);
    c->dev = devmap_dev(MAP, ref);
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
        loop_run_once(LOOP[w], 100);
    assert_int_equal(drained[w], before + 1);
}

/* ---- tests ------------------------------------------------------------- */

static void test_local(void **st)
{
    (void)st;
    online(0, 2, "d-local");
    uint8_t body[] = {0x81, 0xa1, 'x', 0x01};
    struct envelope e = cmd("d-local", "c1", body, sizeof body);
    cmdfwd_route(&F[0], &e);
    assert_int_equal(ncmds, 1);
    assert_int_equal(cmds[0].worker, 0);
    assert_int_equal(cmds[0].slot, 2);
    assert_string_equal(cmds[0].id, "c1");
    assert_int_equal(cmds[0].body_n, sizeof body);
    assert_memory_equal(cmds[0].body, body, sizeof body);
    assert_int_equal(nunds, 0);
    assert_int_equal(mailbox_len(MB[1], MAILBOX_CMD), 0);
}

static void test_forward_to_owner(void **st)
{
    (void)st;
    online(1, 3, "d-moved");
    uint64_t fwd0 = stat_get(&F[0].cnt.forwarded);
    uint8_t body[] = {0x92, 0x01, 0x02};
    struct envelope e = cmd("d-moved", "c2", body, sizeof body);
    cmdfwd_route(&F[0], &e);
    /* Nothing written on worker 0's thread, nothing answered: queued. */
    assert_int_equal(ncmds, 0);
    assert_int_equal(nunds, 0);
    assert_int_equal(mailbox_len(MB[1], MAILBOX_CMD), 1);
    assert_int_equal(stat_get(&F[0].cnt.forwarded), fwd0 + 1);
    body[1] = 0x7f; /* the batch's bytes are gone once routed: the inbox holds a copy */
    wake_and_drain(1);
    assert_int_equal(ncmds, 1);
    assert_int_equal(cmds[0].worker, 1);
    assert_int_equal(cmds[0].slot, 3);
    assert_string_equal(cmds[0].id, "c2");
    assert_int_equal(cmds[0].body_n, 3);
    assert_int_equal(cmds[0].body[1], 0x01);
    assert_int_equal(nunds, 0);
    assert_int_equal(mailbox_len(MB[1], MAILBOX_CMD), 0);
    assert_int_equal(mailbox_bytes(MB[1]), 0);
}

static void test_no_body_is_nil(void **st)
{
    (void)st;
    online(1, 0, "d-nil");
    struct envelope e = cmd("d-nil", "c3", NULL, 0);
    cmdfwd_route(&F[0], &e);
    cmdfwd_drain(&F[1]);
    assert_int_equal(ncmds, 1);
    assert_int_equal(cmds[0].body_n, 1);
    assert_int_equal(cmds[0].body[0], 0xc0);
}

static void test_owner_lost_device(void **st)
{
    (void)st;
    struct tconn *c = online(1, 1, "d-gone");
    struct envelope e = cmd("d-gone", "c4", (const uint8_t *)"\x01", 1);
    cmdfwd_route(&F[0], &e);
    assert_int_equal(mailbox_len(MB[1], MAILBOX_CMD), 1);
    /* The connection closes before worker 1 drains its inbox. */
    c->ready = 0;
    cmdfwd_drain(&F[1]);
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
    struct tconn *a = online(1, 1, "d-hop");
    struct envelope e = cmd("d-hop", "c5", (const uint8_t *)"\x01", 1);
    cmdfwd_route(&F[0], &e);
    a->ready = 0;
    online(1, 3, "d-hop");
    cmdfwd_drain(&F[1]);
    assert_int_equal(ncmds, 1);
    assert_int_equal(cmds[0].worker, 1);
    assert_int_equal(cmds[0].slot, 3);
    /* Forwarded to worker 1, then the device moves back to worker 0: worker
     * 1 answers undeliverable rather than forward a second time. */
    e = cmd("d-hop", "c6", (const uint8_t *)"\x01", 1);
    cmdfwd_route(&F[0], &e);
    assert_int_equal(mailbox_len(MB[1], MAILBOX_CMD), 1);
    online(0, 0, "d-hop");
    cmdfwd_drain(&F[1]);
    assert_int_equal(ncmds, 1);
    assert_int_equal(nunds, 1);
    assert_int_equal(unds[0].worker, 1);
    assert_string_equal(unds[0].id, "c6");
    assert_int_equal(mailbox_len(MB[0], MAILBOX_CMD), 0);
}

static void test_nowhere(void **st)
{
    (void)st;
    struct envelope e = cmd("d-none", "c6", (const uint8_t *)"\x01", 1);
    cmdfwd_route(&F[0], &e);
    assert_int_equal(nunds, 1);
    assert_int_equal(unds[0].worker, 0);
    assert_string_equal(unds[0].id, "c6");
    assert_int_equal(ncmds, 0);
    assert_int_equal(mailbox_len(MB[0], MAILBOX_CMD) + mailbox_len(MB[1], MAILBOX_CMD), 0);
    /* An id longer than a device id can be, and an empty one: never looked up. */
    char longdev[SL_DEV_MAX + 2];
    memset(longdev, 'a', sizeof longdev - 1);
    longdev[sizeof longdev - 1] = 0;
    e = cmd(longdev, "c7", NULL, 0);
    cmdfwd_route(&F[0], &e);
    e = cmd("", "c8", NULL, 0);
    cmdfwd_route(&F[0], &e);
    assert_int_equal(nunds, 3);
}

static void test_inbox_count_bound(void **st)
{
    (void)st;
    online(1, 2, "d-busy");
    uint64_t refused0 = stat_get(&F[0].cnt.forward_refused);
    char ids[MAILBOX_CMD_SHARE + 5][16];
    for (uint32_t i = 0; i < MAILBOX_CMD_SHARE + 5; i++) {
        snprintf(ids[i], sizeof ids[i], "k%u", i);
        struct envelope e = cmd("d-busy", ids[i], (const uint8_t *)"\x01", 1);
        cmdfwd_route(&F[0], &e);
    }
    /* The first MAILBOX_CMD_SHARE wait in the inbox; the rest are answered at once. */
    assert_int_equal(mailbox_len(MB[1], MAILBOX_CMD), MAILBOX_CMD_SHARE);
    assert_int_equal(nunds, 5);
    assert_int_equal(stat_get(&F[0].cnt.forward_refused), refused0 + 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(unds[i].worker, 0);
        assert_string_equal(unds[i].id, ids[MAILBOX_CMD_SHARE + (uint32_t)i]);
    }
    cmdfwd_drain(&F[1]);
    assert_int_equal(ncmds, MAILBOX_CMD_SHARE);
    for (uint32_t i = 0; i < MAILBOX_CMD_SHARE; i++)
        assert_string_equal(cmds[i].id, ids[i]); /* in order */
    /* Room again once drained. */
    struct envelope e = cmd("d-busy", "again", (const uint8_t *)"\x01", 1);
    cmdfwd_route(&F[0], &e);
    assert_int_equal(mailbox_len(MB[1], MAILBOX_CMD), 1);
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
        cmdfwd_route(&F[0], &e);
        if (nunds == before)
            fit++;
        else
            refused++;
    }
    assert_true(mailbox_bytes(MB[1]) <= MAILBOX_CMD_BYTES);
    assert_int_equal(fit, mailbox_len(MB[1], MAILBOX_CMD));
    assert_true(fit >= 50 && fit < 64); /* 4 MiB of 64 KiB bodies, well below the count bound */
    assert_int_equal(fit + refused, 100);
    /* Every command answered exactly once: queued ones on drain. */
    cmdfwd_drain(&F[1]);
    assert_int_equal((uint32_t)ncmds, fit);
    assert_int_equal((uint32_t)nunds, refused);
}

static void test_fini_frees_queued(void **st)
{
    (void)st;
    online(1, 1, "d-exit");
    struct envelope e = cmd("d-exit", "z1", (const uint8_t *)"\x01", 1);
    cmdfwd_route(&F[0], &e);
    cmdfwd_route(&F[0], &e);
    assert_int_equal(mailbox_len(MB[1], MAILBOX_CMD), 2);
    /* teardown's mailbox_destroy frees both; ASan reports a leak otherwise. */
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
