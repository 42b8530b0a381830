/* SPDX-License-Identifier: Apache-2.0 */
/* test_edge_acceptor.c - --accept handoff without sockets: which worker the
 * acceptor picks (least loaded, stuck ones passed over, full ones never),
 * and what a worker's mailbox tells it (load = open + queued, FULL at the
 * connection share, STUCK only after stuck_ms without progress). Clocks are
 * passed in, so nothing here depends on timing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <string.h>
#include "sl/loop.h"
#include "acceptor.h"
#include "mailbox.h"

#define OK    ACCEPTOR_INTAKE_OK
#define STUCK ACCEPTOR_INTAKE_STUCK
#define FULL  ACCEPTOR_INTAKE_FULL

static void pick_least_loaded(void **state)
{
    (void)state;
    uint32_t load[] = {5, 3, 4};
    enum acceptor_intake st[] = {OK, OK, OK};
    assert_int_equal(acceptor_pick(load, st, 3), 1);
    uint32_t tie[] = {2, 2, 2};
    assert_int_equal(acceptor_pick(tie, st, 3), 0);
    uint32_t one[] = {7};
    assert_int_equal(acceptor_pick(one, st, 1), 0);
}

static void pick_passes_over_stuck_and_full(void **state)
{
    (void)state;
    uint32_t load[] = {0, 9, 1};
    enum acceptor_intake st[] = {STUCK, OK, OK};
    assert_int_equal(acceptor_pick(load, st, 3), 2);
    enum acceptor_intake st2[] = {FULL, OK, FULL};
    assert_int_equal(acceptor_pick(load, st2, 3), 1);
    /* every one stuck: still somewhere, the least loaded */
    enum acceptor_intake st3[] = {STUCK, STUCK, STUCK};
    assert_int_equal(acceptor_pick(load, st3, 3), 0);
    /* full beats nothing only when stuck is all that is left */
    enum acceptor_intake st4[] = {FULL, STUCK, FULL};
    assert_int_equal(acceptor_pick(load, st4, 3), 1);
    enum acceptor_intake st5[] = {FULL, FULL, FULL};
    assert_int_equal(acceptor_pick(load, st5, 3), UINT32_MAX);
}

static void ring_load_full_stuck(void **state)
{
    (void)state;
    struct loop *l = loop_new(4);
    assert_non_null(l);
    struct mailbox_limits lim = {.share = {[MAILBOX_ADOPT] = MAILBOX_ADOPT_SHARE,
                                           [MAILBOX_KICK] = MAILBOX_KICK_SHARE,
                                           [MAILBOX_CMD] = MAILBOX_CMD_SHARE},
                                 .max_bytes = MAILBOX_CMD_BYTES};
    struct mailbox *mb = mailbox_new(&lim, l);
    assert_non_null(mb);
    uint32_t load = 99;
    uint32_t open = 3;
    assert_int_equal(acceptor_intake(open, mb, 1000, 250, &load), OK);
    assert_int_equal(load, 3);

    struct addr peer = {.port = 1};
    for (int i = 0; i < (int)MAILBOX_ADOPT_SHARE; i++) {
        struct mailbox_item it = {.kind = MAILBOX_ADOPT, .u.adopt = {.fd = 1000 + i, .peer = peer}};
        assert_true(mailbox_post(mb, &it));
    }
    struct mailbox_item over = {.kind = MAILBOX_ADOPT, .u.adopt = {.fd = 5000, .peer = peer}};
    assert_false(mailbox_post(mb, &over));
    uint64_t since = mailbox_stalled_since(mb);
    assert_true(since > 0);
    assert_int_equal(acceptor_intake(open, mb, since, 250, &load), FULL);
    assert_int_equal(load, 3 + MAILBOX_ADOPT_SHARE);

    /* one taken out (as the worker would): FIFO, the first posted first;
     * then queued, no progress for a while */
    struct mailbox_item got;
    assert_int_equal(mailbox_take(mb, &got, 1), 1);
    assert_int_equal(got.u.adopt.fd, 1000);
    since = mailbox_stalled_since(mb); /* the take was progress */
    assert_int_equal(acceptor_intake(open, mb, since + 250, 250, &load), OK);
    assert_int_equal(acceptor_intake(open, mb, since + 251, 250, &load), STUCK);
    /* an empty mailbox is never stuck, however old */
    struct mailbox_item rest[MAILBOX_ADOPT_SHARE];
    assert_int_equal(mailbox_take(mb, rest, MAILBOX_ADOPT_SHARE), MAILBOX_ADOPT_SHARE - 1);
    assert_int_equal(acceptor_intake(open, mb, since + 100000, 250, &load), OK);
    assert_int_equal(load, 3);
    mailbox_destroy(&mb, NULL, NULL);
    loop_destroy(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pick_least_loaded),
        cmocka_unit_test(pick_passes_over_stuck_and_full),
        cmocka_unit_test(ring_load_full_stuck),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
