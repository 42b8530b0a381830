/* SPDX-License-Identifier: Apache-2.0 */
/* svcthread.c - start, sleep and stop for the persister's service threads
 * (svcthread.h).
 *
 * Why one place: the lanes, the maintenance thread and the command queue
 * each started their thread with the signals blocked around pthread_create
 * and stopped it with quit + signal + join, the same thirty lines written
 * three times, which had to be kept alike by hand.
 *
 * Deliberately not here: what a thread does, what else its mutex guards, or
 * any wake-up besides quit (each service signals cv itself when it hands
 * its thread work). */
#define _GNU_SOURCE
#include "svcthread.h"

#include <signal.h>
#include <time.h>

#include "sl/log.h"

void svcthread_init(struct svcthread *t)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    t->quit = false;
    t->done = false;
    t->started = false;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The thread's body: the service's function, then done for
 * svcthread_stop_within. */
static void *trampoline(void *arg)
{
    struct svcthread *t = arg;
    t->fn(t->arg);
    pthread_mutex_lock(&t->mu);
    t->done = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

int svcthread_start(struct svcthread *t, const char *what, void *(*fn)(void *), void *arg)
{
    /* A thread inherits its creator's mask: block the two around the
     * create, so the new thread has them blocked and the caller gets its
     * own mask back. */
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);
    t->fn = fn;
    t->arg = arg;
    int rc = pthread_create(&t->th, NULL, trampoline, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        log_error("event=thread_failed what=%s err=%d", what, rc);
        return rc;
    }
    t->started = true;
    return 0;
}

void svcthread_stop(struct svcthread *t)
{
    if (!t->started)
        return;
    pthread_mutex_lock(&t->mu);
    t->quit = true;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->th, NULL);
    t->started = false;
}

bool svcthread_stop_within(struct svcthread *t, uint64_t ms)
{
    if (!t->started)
        return true;
    pthread_mutex_lock(&t->mu);
    t->quit = true;
    pthread_cond_broadcast(&t->cv); /* the thread, wherever it waits on cv */
    uint64_t end = mono_ms() + ms, now;
    while (!t->done && (now = mono_ms()) < end)
        svcthread_wait_ms(t, end - now);
    bool done = t->done;
    pthread_mutex_unlock(&t->mu);
    return done;
}

void svcthread_fini(struct svcthread *t)
{
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
}

void svcthread_wait_ms(struct svcthread *t, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000u);
    ts.tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&t->cv, &t->mu, &ts);
}
