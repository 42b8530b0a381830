/* SPDX-License-Identifier: Apache-2.0 */
/* test_loop.c - the epoll loop: timers fire in deadline order and can be
 * stopped, re-armed and stopped by other timers' callbacks; the heap stays a
 * heap under 10k random starts/stops; fd callbacks see readiness and do not
 * see events of an fd deleted earlier in the same batch, nor of one
 * forgotten and closed; the after hook runs
 * once per wake-up; loop_wake from another thread runs the wake callback on
 * the loop thread. No timing assertions: only order and counts. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sl/loop.h"

struct rec {
    int order[64];
    int n;
};

struct tctx {
    struct rec *rec;
    int id;
    struct loop_timer t;
    struct loop_timer *victim; /* stopped by this timer's callback */
    int rearm;                 /* times left to re-arm itself */
};

static void on_timer(struct loop *l, void *ud)
{
    struct tctx *c = ud;
    c->rec->order[c->rec->n++] = c->id;
    if (c->victim)
        loop_timer_stop(l, c->victim);
    if (c->rearm > 0) {
        c->rearm--;
        loop_timer_start(l, &c->t, 1);
    }
}

/* Run until no timer is armed among ts (bounded by a generous deadline). */
static void run_until_idle(struct loop *l, struct tctx *ts, int n)
{
    uint64_t end = loop_clock_ms() + 20000;
    for (;;) {
        int armed = 0;
        for (int i = 0; i < n; i++)
            armed += loop_timer_armed(&ts[i].t);
        if (!armed)
            return;
        assert_true(loop_clock_ms() < end);
        assert_true(loop_run_once(l, 1000) >= 0);
    }
}

static void test_timer_order(void **state)
{
    (void)state;
    struct loop *l = loop_new(4);
    assert_non_null(l);
    struct rec rec = {0};
    struct tctx ts[6];
    /* 100 ms apart, so a preemption between two starts cannot swap them. */
    uint64_t delays[6] = {500, 100, 300, 0, 400, 200};
    for (int i = 0; i < 6; i++) {
        ts[i] = (struct tctx){.rec = &rec, .id = i};
        loop_timer_init(&ts[i].t, on_timer, &ts[i]);
        assert_false(loop_timer_armed(&ts[i].t));
    }
    /* Grows past the reserved 4 as well. */
    for (int i = 0; i < 6; i++)
        loop_timer_start(l, &ts[i].t, delays[i]);
    /* Stop one, and re-arm another later than everything else. */
    loop_timer_stop(l, &ts[2].t);
    assert_false(loop_timer_armed(&ts[2].t));
    loop_timer_stop(l, &ts[2].t); /* stopping twice is harmless */
    loop_timer_start(l, &ts[1].t, 700);
    run_until_idle(l, ts, 6);
    int want[] = {3, 5, 4, 0, 1};
    assert_int_equal(rec.n, 5);
    assert_memory_equal(rec.order, want, sizeof want);
    loop_destroy(&l);
    assert_null(l);
}

static void test_timer_stops_other(void **state)
{
    (void)state;
    struct loop *l = loop_new(8);
    struct rec rec = {0};
    struct tctx ts[3];
    for (int i = 0; i < 3; i++) {
        ts[i] = (struct tctx){.rec = &rec, .id = i};
        loop_timer_init(&ts[i].t, on_timer, &ts[i]);
    }
    /* 0 and 1 are both due in the same wake-up; 0 stops 1 before it fires.
     * 2 stops itself-after-rearm: it re-arms twice, so fires 3 times. */
    ts[0].victim = &ts[1].t;
    ts[2].rearm = 2;
    loop_timer_start(l, &ts[0].t, 5);
    loop_timer_start(l, &ts[1].t, 30);
    loop_timer_start(l, &ts[2].t, 60);
    /* Let both 0 and 1 become due before the loop looks. */
    uint64_t until = loop_clock_ms() + 40;
    while (loop_clock_ms() < until)
        usleep(1000);
    run_until_idle(l, ts, 3);
    int want[] = {0, 2, 2, 2};
    assert_int_equal(rec.n, 4);
    assert_memory_equal(rec.order, want, sizeof want);
    loop_destroy(&l);
}

/* Check the heap through the public fields: every armed timer's heap_idx is
 * unique, and firing everything yields non-decreasing deadlines. */
static uint64_t last_fired;
static int fired;
static void on_check(struct loop *l, void *ud)
{
    (void)l;
    struct loop_timer *t = ud;
    assert_true(t->when_ms >= last_fired);
    last_fired = t->when_ms;
    fired++;
}

static void test_heap_random(void **state)
{
    (void)state;
    enum { N = 10000 };
    struct loop *l = loop_new(16);
    struct loop_timer *ts = calloc(N, sizeof *ts);
    assert_non_null(ts);
    for (int i = 0; i < N; i++)
        loop_timer_init(&ts[i], on_check, &ts[i]);
    srand(12345);
    for (int round = 0; round < 5 * N; round++) {
        int i = rand() % N;
        if (rand() % 3 == 0)
            loop_timer_stop(l, &ts[i]);
        else
            loop_timer_start(l, &ts[i], (uint64_t)(rand() % 50));
    }
    int armed = 0;
    char *seen = calloc(N + 1, 1);
    for (int i = 0; i < N; i++) {
        if (!loop_timer_armed(&ts[i]))
            continue;
        armed++;
        assert_true(ts[i].heap_idx <= N);
        assert_int_equal(seen[ts[i].heap_idx], 0);
        seen[ts[i].heap_idx] = 1;
    }
    free(seen);
    /* Positions are exactly 1..armed. */
    for (int i = 0; i < N; i++)
        if (loop_timer_armed(&ts[i]))
            assert_true(ts[i].heap_idx >= 1 && ts[i].heap_idx <= (uint32_t)armed);
    last_fired = 0;
    fired = 0;
    uint64_t end = loop_clock_ms() + 30000;
    while (fired < armed) {
        assert_true(loop_clock_ms() < end);
        assert_true(loop_run_once(l, 100) >= 0);
    }
    assert_int_equal(fired, armed);
    for (int i = 0; i < N; i++)
        assert_false(loop_timer_armed(&ts[i]));
    free(ts);
    loop_destroy(&l);
}

struct fdctx {
    int reads;
    int other_fd;   /* deleted by this callback */
    int other_hits; /* events delivered to the deleted fd */
    char last;
};

static void on_read(struct loop *l, int fd, uint32_t ev, void *ud)
{
    struct fdctx *c = ud;
    assert_true(ev & EPOLLIN);
    char b;
    assert_int_equal(read(fd, &b, 1), 1);
    c->last = b;
    c->reads++;
    if (c->other_fd >= 0) {
        assert_int_equal(loop_del(l, c->other_fd), 0);
        c->other_fd = -1;
    }
}

static void on_other(struct loop *l, int fd, uint32_t ev, void *ud)
{
    (void)l;
    (void)fd;
    (void)ev;
    struct fdctx *c = ud;
    c->other_hits++;
}

static int after_calls;
static void on_after(struct loop *l, void *ud)
{
    (void)l;
    (void)ud;
    after_calls++;
}

static void test_fds_and_after(void **state)
{
    (void)state;
    struct loop *l = loop_new(0);
    int a[2], b[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
    struct fdctx ca = {.other_fd = -1}, cb = {.other_fd = -1};
    assert_int_equal(loop_add(l, a[0], EPOLLIN, on_read, &ca), 0);
    assert_int_equal(loop_add(l, a[0], EPOLLIN, on_read, &ca), -EEXIST);
    assert_int_equal(loop_mod(l, b[0], EPOLLIN, on_read, &cb), -ENOENT);
    assert_int_equal(loop_add(l, b[0], EPOLLIN, on_read, &cb), 0);
    loop_set_after(l, on_after, NULL);

    /* Nothing ready: a timed-out wake-up still runs the after hook once. */
    after_calls = 0;
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_int_equal(after_calls, 1);

    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(write(b[1], "y", 1), 1);
    int got = 0;
    while (ca.reads + cb.reads < 2) {
        int n = loop_run_once(l, 5000);
        assert_true(n > 0);
        got++;
    }
    assert_int_equal(after_calls, 1 + got);
    assert_int_equal(ca.last, 'x');
    assert_int_equal(cb.last, 'y');

    /* Both readable in one batch; whichever callback runs first deletes
     * the other fd, whose already-fetched event must then be dropped. We
     * swap the other fd in via loop_mod (new cb/ud). */
    struct fdctx da = {.other_fd = b[0]}, db = {.other_fd = a[0]};
    assert_int_equal(loop_mod(l, a[0], EPOLLIN, on_read, &da), 0);
    assert_int_equal(loop_mod(l, b[0], EPOLLIN, on_read, &db), 0);
    assert_int_equal(write(a[1], "1", 1), 1);
    assert_int_equal(write(b[1], "2", 1), 1);
    usleep(10000);
    int n = loop_run_once(l, 5000);
    assert_int_equal(n, 2);
    assert_int_equal(da.reads + db.reads, 1);

    /* loop_del tolerates an fd that is already closed. */
    int survivor = da.reads ? a[0] : b[0];
    close(survivor);
    assert_int_equal(loop_del(l, survivor), 0);
    assert_int_equal(loop_del(l, survivor), -ENOENT);

    /* A deleted fd gets no callbacks. */
    int c[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, c), 0);
    struct fdctx cc = {.other_fd = -1};
    assert_int_equal(loop_add(l, c[0], EPOLLIN, on_other, &cc), 0);
    assert_int_equal(loop_del(l, c[0]), 0);
    assert_int_equal(write(c[1], "z", 1), 1);
    assert_int_equal(loop_run_once(l, 20), 0);
    assert_int_equal(cc.other_hits, 0);

    close(a[1]);
    close(b[1]);
    close(c[0]);
    close(c[1]);
    close(survivor == a[0] ? b[0] : a[0]);
    loop_destroy(&l);
}

/* loop_forget then close(): the fd leaves the epoll set with the close, not
 * a syscall of ours. The number, reused at once by the next socket, can be
 * added again and only the new callback sees its events. */
static void test_forget_then_close(void **state)
{
    (void)state;
    struct loop *l = loop_new(0);
    int d[2], e[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, d), 0);
    struct fdctx cd = {.other_fd = -1}, ce = {.other_fd = -1};
    assert_int_equal(loop_add(l, d[0], EPOLLIN, on_other, &cd), 0);
    assert_int_equal(write(d[1], "q", 1), 1);
    int num = d[0];
    assert_int_equal(loop_forget(l, num), 0);
    assert_int_equal(loop_forget(l, num), -ENOENT);
    close(d[0]);
    assert_int_equal(loop_run_once(l, 20), 0); /* gone from epoll: no event, no callback */
    assert_int_equal(cd.other_hits, 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, e), 0);
    assert_int_equal(e[0], num); /* the lowest free number */
    assert_int_equal(loop_add(l, e[0], EPOLLIN, on_other, &ce), 0);
    assert_int_equal(write(e[1], "r", 1), 1);
    assert_int_equal(loop_run_once(l, 5000), 1);
    assert_int_equal(ce.other_hits, 1);
    assert_int_equal(cd.other_hits, 0);
    close(d[1]);
    close(e[0]);
    close(e[1]);
    loop_destroy(&l);
}

struct wctx {
    struct loop *l;
    pthread_t loop_thread;
    int wakes;
    bool on_loop_thread;
};

static void on_wake(struct loop *l, void *ud)
{
    struct wctx *w = ud;
    w->wakes++;
    w->on_loop_thread = pthread_equal(pthread_self(), w->loop_thread);
    loop_stop(l);
}

static void *waker(void *arg)
{
    struct wctx *w = arg;
    usleep(20000);
    loop_wake(w->l);
    return NULL;
}

static void test_cross_thread_wake(void **state)
{
    (void)state;
    struct wctx w = {0};
    w.l = loop_new(0);
    w.loop_thread = pthread_self();
    loop_set_wake(w.l, on_wake, &w);
    after_calls = 0;
    loop_set_after(w.l, on_after, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, waker, &w), 0);
    /* Blocks until the other thread wakes us; the wake cb stops the loop. */
    assert_int_equal(loop_run(w.l), 0);
    pthread_join(th, NULL);
    assert_int_equal(w.wakes, 1);
    assert_true(w.on_loop_thread);
    assert_true(after_calls >= 1);

    /* loop_stop from another thread ends loop_run too. */
    loop_set_wake(w.l, NULL, NULL);
    assert_true(loop_now_ms(w.l) <= loop_clock_ms());
    loop_destroy(&w.l);
}

static void *stopper(void *arg)
{
    usleep(20000);
    loop_stop(arg);
    return NULL;
}

static void test_stop_from_thread(void **state)
{
    (void)state;
    struct loop *l = loop_new(0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stopper, l), 0);
    assert_int_equal(loop_run(l), 0);
    pthread_join(th, NULL);
    loop_destroy(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timer_order),       cmocka_unit_test(test_timer_stops_other),
        cmocka_unit_test(test_heap_random),       cmocka_unit_test(test_fds_and_after),
        cmocka_unit_test(test_cross_thread_wake), cmocka_unit_test(test_stop_from_thread),
        cmocka_unit_test(test_forget_then_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
