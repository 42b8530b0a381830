/* test_edge_acceptor.c - --accept handoff without sockets: which worker the
 * acceptor picks (least loaded, stuck ones passed over, full ones never),
 * and what a worker's connection ring reports (load = open + queued, FULL
 * at capacity, STUCK only after stuck_ms without progress). Clocks are
 * passed in, so nothing here depends on timing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <string.h>
#include "acceptor.h"
#include "conn.h"
#include "worker.h"

#define OK    WORKER_INTAKE_OK
#define STUCK WORKER_INTAKE_STUCK
#define FULL  WORKER_INTAKE_FULL

static void pick_least_loaded(void **state)
{
    (void)state;
    uint32_t load[] = {5, 3, 4};
    enum worker_intake st[] = {OK, OK, OK};
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
    enum worker_intake st[] = {STUCK, OK, OK};
    assert_int_equal(acceptor_pick(load, st, 3), 2);
    enum worker_intake st2[] = {FULL, OK, FULL};
    assert_int_equal(acceptor_pick(load, st2, 3), 1);
    /* every one stuck: still somewhere, the least loaded */
    enum worker_intake st3[] = {STUCK, STUCK, STUCK};
    assert_int_equal(acceptor_pick(load, st3, 3), 0);
    /* full beats nothing only when stuck is all that is left */
    enum worker_intake st4[] = {FULL, STUCK, FULL};
    assert_int_equal(acceptor_pick(load, st4, 3), 1);
    enum worker_intake st5[] = {FULL, FULL, FULL};
    assert_int_equal(acceptor_pick(load, st5, 3), UINT32_MAX);
}

static void ring_load_full_stuck(void **state)
{
    (void)state;
    static struct worker w;
    struct metric_gauge open = {0};
    memset(&w, 0, sizeof w);
    w.open_g = &open;
    w.loop = loop_new(4);
    assert_non_null(w.loop);
    pthread_mutex_init(&w.connq.mu, NULL);
    uint32_t load = 99;
    atomic_store(&open.v, 3);
    assert_int_equal(worker_intake(&w, 1000, 250, &load), OK);
    assert_int_equal(load, 3);

    struct conn_peer peer = {.port = 1};
    for (int i = 0; i < WORKER_CONNQ; i++)
        assert_true(worker_post_conn(&w, 1000 + i, &peer));
    assert_false(worker_post_conn(&w, 5000, &peer));
    uint64_t since = atomic_load(&w.connq.since_ms);
    assert_true(since > 0);
    assert_int_equal(worker_intake(&w, since, 250, &load), FULL);
    assert_int_equal(load, 3 + WORKER_CONNQ);
    /* FIFO: the first posted is at the head */
    assert_int_equal(w.connq.q[w.connq.head].fd, 1000);

    /* one taken out (as the worker would): queued, no progress for a while */
    w.connq.head = (w.connq.head + 1) % WORKER_CONNQ;
    atomic_store(&w.connq.len, WORKER_CONNQ - 1);
    assert_int_equal(worker_intake(&w, since + 250, 250, &load), OK);
    assert_int_equal(worker_intake(&w, since + 251, 250, &load), STUCK);
    /* an empty ring is never stuck, however old */
    atomic_store(&w.connq.len, 0);
    assert_int_equal(worker_intake(&w, since + 100000, 250, &load), OK);
    assert_int_equal(load, 3);
    pthread_mutex_destroy(&w.connq.mu);
    loop_destroy(&w.loop);
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
