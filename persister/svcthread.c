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
    t->started = false;
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
    int rc = pthread_create(&t->th, NULL, fn, arg);
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
