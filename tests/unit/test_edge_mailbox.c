/* SPDX-License-Identifier: Apache-2.0 */
/* test_edge_mailbox.c - a worker's mailbox (edge/mailbox.c) without a
 * worker: the reserved share of each kind (a full command share never
 * keeps a kick or a connection out), the byte bound of commands, FIFO
 * order across kinds, the wake-up on the empty -> non-empty transition
 * only, a bounded take that wakes the owner again for the rest, and the
 * stalled-since clock the acceptor uses to pass over a stuck worker. A
 * real loop counts the wake-ups. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "sl/loop.h"
#include "mailbox.h"

static struct loop *L;
static struct mailbox *MB;
static int wakes;

static void on_wake(struct loop *l, void *ud)
{
    (void)l;
    (void)ud;
    wakes++;
}

/* Run the loop until no wake-up is pending; returns how many ran. */
static int run_wakes(void)
{
    int before = wakes;
    while (loop_run_once(L, 10) > 0)
        ;
    return wakes - before;
}

static const struct mailbox_limits LIM = {
    .share = {[MAILBOX_ADOPT] = 4, [MAILBOX_KICK] = 3, [MAILBOX_CMD] = 2},
    .max_bytes = 1000,
};

static int setup(void **st)
{
    (void)st;
    L = loop_new(4);
    assert_non_null(L);
    loop_set_wake(L, on_wake, NULL);
    MB = mailbox_new(&LIM, L);
    assert_non_null(MB);
    wakes = 0;
    return 0;
}

static void drop(void *ud, struct mailbox_item *it)
{
    int *n = ud;
    (*n)++;
    if (it->kind == MAILBOX_CMD)
        free(it->u.cmd.p);
}

static int teardown(void **st)
{
    (void)st;
    int dropped = 0;
    mailbox_destroy(&MB, drop, &dropped);
    loop_destroy(&L);
    return 0;
}

static struct mailbox_item kick(uint32_t slot)
{
    return (struct mailbox_item){.kind = MAILBOX_KICK, .u.kick = {.slot = slot, .gen = 1, .code = 7}};
}

static struct mailbox_item cmd(uint32_t bytes)
{
    return (struct mailbox_item){.kind = MAILBOX_CMD, .u.cmd = {.p = malloc(bytes), .bytes = bytes}};
}

static struct mailbox_item adopt(int fd)
{
    return (struct mailbox_item){.kind = MAILBOX_ADOPT, .u.adopt = {.fd = fd}};
}

/* The case: commands fill their share; a kick still gets in and is
 * taken, and so does a connection. */
static void kick_while_command_share_full(void **st)
{
    (void)st;
    struct mailbox_item c1 = cmd(10), c2 = cmd(10), c3 = cmd(10);
    assert_true(mailbox_post(MB, &c1));
    assert_true(mailbox_post(MB, &c2));
    assert_false(mailbox_post(MB, &c3)); /* the command share (2) is full */
    free(c3.u.cmd.p);                    /* refused: still the caller's */
    assert_int_equal(mailbox_len(MB, MAILBOX_CMD), 2);

    struct mailbox_item k = kick(42);
    assert_true(mailbox_post(MB, &k));
    struct mailbox_item a = adopt(9);
    assert_true(mailbox_post(MB, &a));

    struct mailbox_item got[8];
    assert_int_equal(mailbox_take(MB, got, 8), 4);
    /* in posting order, whatever the kind */
    assert_int_equal(got[0].kind, MAILBOX_CMD);
    assert_int_equal(got[1].kind, MAILBOX_CMD);
    assert_int_equal(got[2].kind, MAILBOX_KICK);
    assert_int_equal(got[2].u.kick.slot, 42);
    assert_int_equal(got[3].kind, MAILBOX_ADOPT);
    assert_int_equal(got[3].u.adopt.fd, 9);
    free(got[0].u.cmd.p);
    free(got[1].u.cmd.p);
    /* taken: room again */
    assert_int_equal(mailbox_len(MB, MAILBOX_CMD), 0);
    assert_int_equal(mailbox_bytes(MB), 0);
}

/* Each kind has its own share: filling kicks does not take commands' room
 * and the other way round. */
static void shares_are_separate(void **st)
{
    (void)st;
    for (uint32_t i = 0; i < 3; i++) {
        struct mailbox_item k = kick(i);
        assert_true(mailbox_post(MB, &k));
    }
    struct mailbox_item k = kick(99);
    assert_false(mailbox_post(MB, &k));
    for (int i = 0; i < 4; i++) {
        struct mailbox_item a = adopt(100 + i);
        assert_true(mailbox_post(MB, &a));
    }
    struct mailbox_item a = adopt(200);
    assert_false(mailbox_post(MB, &a));
    struct mailbox_item c = cmd(1);
    assert_true(mailbox_post(MB, &c)); /* kicks and connections full: a command still fits */
    assert_int_equal(mailbox_len(MB, MAILBOX_KICK), 3);
    assert_int_equal(mailbox_len(MB, MAILBOX_ADOPT), 4);
    assert_int_equal(mailbox_len(MB, MAILBOX_CMD), 1);
    struct mailbox_item bad = {.kind = MAILBOX_KINDS};
    assert_false(mailbox_post(MB, &bad));
}

/* Commands are bounded in bytes as well as in count. */
static void command_bytes_bound(void **st)
{
    (void)st;
    struct mailbox_item big = cmd(900), more = cmd(101), fits = cmd(100);
    assert_true(mailbox_post(MB, &big));
    assert_false(mailbox_post(MB, &more)); /* 1001 > 1000 */
    free(more.u.cmd.p);
    assert_true(mailbox_post(MB, &fits)); /* exactly 1000 */
    assert_int_equal(mailbox_bytes(MB), 1000);
    /* teardown hands the two to drop(), which frees them (ASan checks) */
}

/* One wake-up per empty -> non-empty transition; a bounded take that
 * leaves items behind wakes the owner again. */
static void wakeups(void **st)
{
    (void)st;
    for (uint32_t i = 0; i < 3; i++) {
        struct mailbox_item k = kick(i);
        assert_true(mailbox_post(MB, &k));
    }
    assert_int_equal(run_wakes(), 1); /* three posts, one wake-up */
    struct mailbox_item got[2];
    assert_int_equal(mailbox_take(MB, got, 2), 2);
    assert_int_equal(run_wakes(), 1); /* one left: the take woke the owner */
    assert_int_equal(mailbox_take(MB, got, 2), 1);
    assert_int_equal(got[0].u.kick.slot, 2);
    assert_int_equal(run_wakes(), 0); /* empty: nothing more */
    struct mailbox_item k = kick(7);
    assert_true(mailbox_post(MB, &k));
    assert_int_equal(run_wakes(), 1);
}

/* The acceptor's stuck test: since is set when items arrive in an empty
 * mailbox, moves on every take that leaves items, and is 0 when empty. */
static void stalled_since(void **st)
{
    (void)st;
    assert_int_equal(mailbox_stalled_since(MB), 0);
    uint64_t t0 = loop_clock_ms();
    struct mailbox_item a = adopt(1), b = adopt(2);
    assert_true(mailbox_post(MB, &a));
    uint64_t s1 = mailbox_stalled_since(MB);
    assert_true(s1 >= t0);
    assert_true(mailbox_post(MB, &b));
    assert_int_equal(mailbox_stalled_since(MB), s1); /* a post into a non-empty one is no progress */
    struct mailbox_item got;
    assert_int_equal(mailbox_take(MB, &got, 1), 1);
    assert_true(mailbox_stalled_since(MB) >= s1);
    assert_int_equal(mailbox_take(MB, &got, 1), 1);
    assert_int_equal(mailbox_stalled_since(MB), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(kick_while_command_share_full, setup, teardown),
        cmocka_unit_test_setup_teardown(shares_are_separate, setup, teardown),
        cmocka_unit_test_setup_teardown(command_bytes_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(wakeups, setup, teardown),
        cmocka_unit_test_setup_teardown(stalled_since, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
