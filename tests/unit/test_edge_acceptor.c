/* SPDX-License-Identifier: Apache-2.0 */
/* test_edge_acceptor.c - --accept handoff without sockets: which worker the
 * acceptor picks (least loaded, stuck ones passed over, full ones never),
 * and what a worker's mailbox tells it (load = open + queued, FULL at the
 * connection share, STUCK only after stuck_ms without progress). Clocks are
 * passed in, so nothing here depends on timing. And one socket test: the
 * listener carries TCP_NODELAY and an accepted socket inherits it, since
 * conn_adopt no longer sets it per connection. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include "sl/loop.h"
#include "acceptor.h"
#include "conn.h"
#include "mailbox.h"

#define OK    ACCEPTOR_INTAKE_OK
#define STUCK ACCEPTOR_INTAKE_STUCK
#define FULL  ACCEPTOR_INTAKE_FULL

static int nodelay(int fd)
{
    int v = -1;
    socklen_t n = sizeof v;
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &n), 0);
    return v;
}

static void listener_nodelay_inherited(void **state)
{
    (void)state;
    int lfd = conn_listen_socket("127.0.0.1:0");
    assert_true(lfd >= 0);
    assert_int_equal(nodelay(lfd), 1);
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    int cfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(cfd, (struct sockaddr *)&sa, sl), 0);
    int afd = -1;
    for (int i = 0; i < 1000 && afd < 0; i++) { /* the listener is non-blocking */
        afd = accept(lfd, NULL, NULL);
        if (afd < 0)
            usleep(1000);
    }
    assert_true(afd >= 0);
    assert_int_equal(nodelay(afd), 1);
    close(afd);
    close(cfd);
    close(lfd);
}

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
        cmocka_unit_test(listener_nodelay_inherited),
        cmocka_unit_test(pick_least_loaded),
        cmocka_unit_test(pick_passes_over_stuck_and_full),
        cmocka_unit_test(ring_load_full_stuck),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
