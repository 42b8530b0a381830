/* SPDX-License-Identifier: Apache-2.0 */
/* test_persister_svcthread.c - the persister's service thread helper
 * (persister/svcthread.c): the thread runs with SIGINT and SIGTERM blocked
 * while the caller's mask comes back as it was (blocked ones stay blocked);
 * stop wakes a thread asleep on a long wait and joins it, and is a no-op
 * before a start, after a failed start and a second time; a failed
 * pthread_create (substituted at link time) is returned as its error number;
 * a timed wait lasts at least what it was asked for, across a second
 * boundary too; stop_within tells a thread that returned from one still
 * working, which it leaves running. Timing assertions are lower bounds
 * only, but two: stop and stop_within must not wait for a 60 s sleep to end. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>

#include "svcthread.h"

/* pthread_create fails with this error while non-zero. */
static int create_fails;
int __real_pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    if (create_fails)
        return create_fails;
    return __real_pthread_create(th, attr, fn, arg);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct svc {
    struct svcthread t;
    sigset_t mask; /* the thread's, as it found it */
    int wakes;     /* waits that returned before quit */
    bool returned;
};

/* A service thread as lane.c/maint.c/cmdq.c write them: sleep on cv until
 * quit. */
static void *svc_main(void *arg)
{
    struct svc *s = arg;
    pthread_sigmask(SIG_SETMASK, NULL, &s->mask);
    pthread_mutex_lock(&s->t.mu);
    while (!s->t.quit) {
        svcthread_wait_ms(&s->t, 60000u);
        if (!s->t.quit)
            s->wakes++;
    }
    s->returned = true;
    pthread_mutex_unlock(&s->t.mu);
    return NULL;
}

static void test_signals(void **state)
{
    (void)state;
    sigset_t one, before, after;
    /* SIGTERM blocked by the caller beforehand, SIGINT not. */
    sigemptyset(&one);
    sigaddset(&one, SIGINT);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    sigemptyset(&one);
    sigaddset(&one, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &one, &before);

    struct svc s = {0};
    svcthread_init(&s.t);
    assert_int_equal(svcthread_start(&s.t, "test", svc_main, &s), 0);
    assert_true(s.t.started);
    pthread_sigmask(SIG_SETMASK, NULL, &after);
    svcthread_stop(&s.t);
    assert_true(s.returned);

    /* The thread: both blocked. */
    assert_int_equal(sigismember(&s.mask, SIGINT), 1);
    assert_int_equal(sigismember(&s.mask, SIGTERM), 1);
    /* The caller: its own mask back, neither unblocked nor newly blocked. */
    assert_int_equal(sigismember(&after, SIGINT), 0);
    assert_int_equal(sigismember(&after, SIGTERM), 1);

    svcthread_fini(&s.t);
    pthread_sigmask(SIG_SETMASK, &before, NULL);
}

static void test_stop_wakes_and_joins(void **state)
{
    (void)state;
    struct svc s = {0};
    svcthread_init(&s.t);
    assert_false(s.t.quit);
    assert_int_equal(svcthread_start(&s.t, "test", svc_main, &s), 0);
    /* Let it reach its 60 s wait (not needed for correctness: stop works
     * whether or not the thread sleeps yet). */
    struct timespec nap = {0, 50 * 1000000L};
    nanosleep(&nap, NULL);
    uint64_t t0 = mono_ms();
    svcthread_stop(&s.t);
    uint64_t took = mono_ms() - t0;
    assert_true(s.returned);      /* joined: the thread function has returned */
    assert_true(took < 30000u);   /* woken by the signal, not by the timeout */
    assert_int_equal(s.wakes, 0); /* and only once quit was set */
    assert_true(s.t.quit);
    assert_false(s.t.started);
    svcthread_stop(&s.t); /* again: nothing to join */
    svcthread_fini(&s.t);
}

/* A service still working when asked to stop: it returns only once
 * `release` is set, whatever quit says. */
static bool release;
static void *busy_main(void *arg)
{
    struct svc *s = arg;
    pthread_mutex_lock(&s->t.mu);
    while (!release)
        svcthread_wait_ms(&s->t, 60000u);
    s->returned = true;
    pthread_mutex_unlock(&s->t.mu);
    return NULL;
}

static void test_stop_within(void **state)
{
    (void)state;
    /* A thread that returns on quit: true, long before the time given. */
    struct svc s = {0};
    svcthread_init(&s.t);
    assert_int_equal(svcthread_start(&s.t, "test", svc_main, &s), 0);
    uint64_t t0 = mono_ms();
    assert_true(svcthread_stop_within(&s.t, 60000u));
    assert_true(mono_ms() - t0 < 30000u);
    assert_true(s.returned);
    svcthread_stop(&s.t);
    svcthread_fini(&s.t);

    /* One still working: false after the time given, and it runs on until
     * it is unblocked; then true, and the join. */
    struct svc b = {0};
    release = false;
    svcthread_init(&b.t);
    assert_int_equal(svcthread_start(&b.t, "test", busy_main, &b), 0);
    t0 = mono_ms();
    assert_false(svcthread_stop_within(&b.t, 100u));
    assert_true(mono_ms() - t0 >= 99u);
    assert_true(b.t.quit);
    pthread_mutex_lock(&b.t.mu);
    assert_false(b.returned);
    release = true;
    pthread_cond_broadcast(&b.t.cv);
    pthread_mutex_unlock(&b.t.mu);
    assert_true(svcthread_stop_within(&b.t, 60000u));
    assert_true(b.returned);
    svcthread_stop(&b.t);
    assert_false(b.t.started);

    /* No thread: true at once. */
    struct svcthread n;
    svcthread_init(&n);
    assert_true(svcthread_stop_within(&n, 60000u));
    svcthread_fini(&n);
    svcthread_fini(&b.t);
}

static void test_never_started(void **state)
{
    (void)state;
    struct svcthread t;
    svcthread_init(&t);
    assert_false(t.started);
    svcthread_stop(&t); /* a destroy on a half-built object */
    assert_false(t.quit);
    svcthread_fini(&t);
}

static void test_start_fails(void **state)
{
    (void)state;
    struct svc s = {0};
    svcthread_init(&s.t);
    create_fails = EAGAIN;
    assert_int_equal(svcthread_start(&s.t, "test", svc_main, &s), EAGAIN);
    create_fails = 0;
    assert_false(s.t.started);
    svcthread_stop(&s.t); /* returns at once: no thread to join */
    assert_false(s.returned);
    svcthread_fini(&s.t);
}

static void test_wait_ms(void **state)
{
    (void)state;
    struct svcthread t;
    svcthread_init(&t);
    pthread_mutex_lock(&t.mu);
    /* 50 ms: only the nanoseconds move; 1200 ms: a second and a carry. */
    static const uint64_t waits[] = {50u, 1200u};
    for (size_t k = 0; k < sizeof waits / sizeof waits[0]; k++) {
        uint64_t t0 = mono_ms();
        svcthread_wait_ms(&t, waits[k]);
        assert_true(mono_ms() - t0 >= waits[k] - 1u); /* whole ms: rounding */
    }
    svcthread_wait_ms(&t, 0); /* no wait, no hang */
    pthread_mutex_unlock(&t.mu);
    /* mu was held again on return: the unlock above succeeded, and it can
     * be taken again. */
    assert_int_equal(pthread_mutex_trylock(&t.mu), 0);
    pthread_mutex_unlock(&t.mu);
    svcthread_fini(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signals),       cmocka_unit_test(test_stop_wakes_and_joins),
        cmocka_unit_test(test_never_started), cmocka_unit_test(test_start_fails),
        cmocka_unit_test(test_wait_ms),       cmocka_unit_test(test_stop_within),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
