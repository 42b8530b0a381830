/* SPDX-License-Identifier: Apache-2.0 */
/* svcthread.h - the thread of a persister service that keeps a database
 * connection of its own (lane.c, maint.c, cmdq.c, devwriter.c), with the
 * mutex and condition variable it sleeps on and the quit flag that ends it.
 *
 * Each of those services is a struct embedding a struct svcthread. The
 * service's thread function sleeps on cv under mu (svcthread_wait_ms),
 * returns once it sees quit, and keeps whatever else it shares with the
 * loop's thread under the same mu. The loop's thread owns the struct:
 * svcthread_init, svcthread_start, and at the end svcthread_stop then
 * svcthread_fini. A stop with a time limit (svcthread_stop_within) first
 * tells whether the thread returned in time, so the owner can unblock it
 * before the join.
 *
 * Signals: the thread starts with SIGINT and SIGTERM blocked, so they reach
 * the loop's thread, whose poll returns early on them; the caller's own mask
 * is left as it was. */
#ifndef PERSISTER_SVCTHREAD_H
#define PERSISTER_SVCTHREAD_H
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct svcthread {
    pthread_mutex_t mu; /* guards quit, done, and what the embedding service keeps beside it */
    pthread_cond_t cv;  /* on CLOCK_MONOTONIC (svcthread_wait_ms); signalled by svcthread_stop */
    bool quit;          /* set (under mu) by svcthread_stop: the thread function returns */
    bool done;          /* set (under mu, cv broadcast) once the thread function has returned */
    bool started;       /* svcthread_start succeeded and the thread is not joined yet */
    pthread_t th;
    void *(*fn)(void *); /* the thread function and its argument (svcthread_start) */
    void *arg;
};

/* Initialize mu and cv (cv timed on CLOCK_MONOTONIC); quit and started
 * false. Call once, before anything else here. Does not block, cannot fail
 * (the default mutex and condition attributes allocate nothing on glibc). */
void svcthread_init(struct svcthread *t);

/* Run fn(arg) on a new thread with SIGINT and SIGTERM blocked. Returns 0, or
 * pthread_create's error number (logged once, as event=thread_failed
 * what=<what>): no thread then, and svcthread_stop is a no-op. arg is
 * borrowed: it must outlive the thread (svcthread_stop). Does not block. */
int svcthread_start(struct svcthread *t, const char *what, void *(*fn)(void *), void *arg);

/* Set quit, signal cv, and join the thread: blocks until fn returns (the
 * work in progress is finished first). No-op if no thread is running, so
 * the owner's destroy may call it on a half-built object. */
void svcthread_stop(struct svcthread *t);

/* Set quit, signal cv, and wait at most ms for the thread function to
 * return; true if it did (svcthread_stop then joins at once), false if it
 * is still working: the caller may then unblock it (a service stuck in a
 * statement cancels it, devwriter.c) before svcthread_stop. Blocks at most
 * ms. True if no thread is running. */
bool svcthread_stop_within(struct svcthread *t, uint64_t ms);

/* Destroy mu and cv. The thread must be stopped (or never started). */
void svcthread_fini(struct svcthread *t);

/* For the thread (or anyone holding mu): wait on cv for at most ms
 * milliseconds, or until it is signalled (or a spurious wake-up). mu must
 * be held; it is held again on return. Blocks. */
void svcthread_wait_ms(struct svcthread *t, uint64_t ms);

#endif
