/* SPDX-License-Identifier: Apache-2.0 */
/* loop.c - the epoll event loop: fds, a timer min-heap, an after hook, a wake fd.
 *
 * Shaped like redis's ae: a table indexed by fd holds each registration's
 * callback, epoll reports readiness, and one wake-up runs the ready fds,
 * then the due timers, then the `after` hook. Each registration carries a
 * generation in the epoll cookie, so an event already fetched for an fd that
 * a callback in the same batch deleted (or closed and reused) is dropped
 * instead of reaching the wrong owner.
 *
 * Timers are caller-owned (libuv): the heap is an array of pointers into the
 * callers' structs, so arming a timer never allocates once the array has its
 * steady size. Deadlines come from a fresh monotonic read at start time, so
 * a timer armed after slow startup work does not fire early.
 *
 * Deliberately not here: threads, signals (services use a signalfd or a flag
 * plus loop_stop), frames or connections. Only loop_wake and loop_stop may
 * be called from another thread or a signal handler. */
#define _GNU_SOURCE
#include "sl/loop.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256

/* One per fd number, in every loop of the process (fd numbers are
 * process-wide, so each loop's table spans all of them): 24 bytes, kept
 * lean. In use while cb != NULL. */
struct fdent {
    loop_fd_cb *cb;
    void *ud;
    uint32_t gen; /* bumped on every add/del; travels in the epoll cookie */
};

struct loop {
    int epfd;
    int wakefd;
    struct fdent *fds;
    int nfds; /* size of fds[] */
    struct loop_timer **heap;
    uint32_t heap_n, heap_cap;
    uint64_t now;
    _Atomic int stop;
    loop_hook_cb *after_cb;
    void *after_ud;
    loop_hook_cb *wake_cb;
    void *wake_ud;
    struct epoll_event ev[MAX_EVENTS];
};

uint64_t loop_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t loop_now_ms(const struct loop *l)
{
    return l->now;
}

/* ---- timer heap ---------------------------------------------------------- */

static void heap_set(struct loop *l, uint32_t i, struct loop_timer *t)
{
    l->heap[i] = t;
    t->heap_idx = i + 1;
}

static void sift_up(struct loop *l, uint32_t i)
{
    struct loop_timer *t = l->heap[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (l->heap[p]->when_ms <= t->when_ms)
            break;
        heap_set(l, i, l->heap[p]);
        i = p;
    }
    heap_set(l, i, t);
}

static void sift_down(struct loop *l, uint32_t i)
{
    struct loop_timer *t = l->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= l->heap_n)
            break;
        if (c + 1 < l->heap_n && l->heap[c + 1]->when_ms < l->heap[c]->when_ms)
            c++;
        if (t->when_ms <= l->heap[c]->when_ms)
            break;
        heap_set(l, i, l->heap[c]);
        i = c;
    }
    heap_set(l, i, t);
}

void loop_timer_init(struct loop_timer *t, loop_timer_cb *cb, void *ud)
{
    t->when_ms = 0;
    t->heap_idx = 0;
    t->cb = cb;
    t->ud = ud;
}

void loop_timer_stop(struct loop *l, struct loop_timer *t)
{
    if (t->heap_idx == 0)
        return;
    uint32_t i = t->heap_idx - 1;
    assert(i < l->heap_n && l->heap[i] == t);
    t->heap_idx = 0;
    l->heap_n--;
    if (i == l->heap_n)
        return;
    /* Move the last element into the hole, then restore the order in
     * whichever direction it is violated. */
    heap_set(l, i, l->heap[l->heap_n]);
    if (i > 0 && l->heap[(i - 1) / 2]->when_ms > l->heap[i]->when_ms)
        sift_up(l, i);
    else
        sift_down(l, i);
}

void loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t ms)
{
    loop_timer_stop(l, t);
    t->when_ms = loop_clock_ms() + ms;
    if (l->heap_n == l->heap_cap) {
        uint32_t ncap = l->heap_cap ? l->heap_cap * 2 : 64;
        struct loop_timer **nh = realloc(l->heap, ncap * sizeof *nh);
        if (!nh) {
            /* A timer that silently never fires is worse than dying: idle
             * connections would pile up forever. */
            fprintf(stderr, "loop: out of memory growing the timer heap to %u\n", ncap);
            abort();
        }
        l->heap = nh;
        l->heap_cap = ncap;
    }
    heap_set(l, l->heap_n, t);
    l->heap_n++;
    sift_up(l, l->heap_n - 1);
}

/* Fire the timers due at l->now. At most as many firings as timers were armed
 * on entry, so a callback re-arming itself with 0 ms cannot starve the fds. */
static void run_timers(struct loop *l)
{
    uint32_t budget = l->heap_n;
    while (budget-- > 0 && l->heap_n > 0 && l->heap[0]->when_ms <= l->now) {
        struct loop_timer *t = l->heap[0];
        loop_timer_stop(l, t);
        /* The timer is disarmed before its callback, so the callback may
         * re-arm it, stop others, or free the struct that holds it. */
        t->cb(l, t->ud);
    }
}

/* ---- fds ------------------------------------------------------------------- */

static int grow_fds(struct loop *l, int fd)
{
    if (fd < l->nfds)
        return 0;
    int n = l->nfds ? l->nfds : 64;
    while (n <= fd)
        n *= 2;
    struct fdent *nf = realloc(l->fds, (size_t)n * sizeof *nf);
    if (!nf)
        return -ENOMEM;
    memset(nf + l->nfds, 0, (size_t)(n - l->nfds) * sizeof *nf);
    l->fds = nf;
    l->nfds = n;
    return 0;
}

static uint64_t cookie(int fd, uint32_t gen)
{
    return (uint64_t)gen << 32 | (uint32_t)fd;
}

int loop_add(struct loop *l, int fd, uint32_t events, loop_fd_cb *cb, void *ud)
{
    if (fd < 0)
        return -EBADF;
    if (!cb)
        return -EINVAL;
    int rc = grow_fds(l, fd);
    if (rc < 0)
        return rc;
    struct fdent *e = &l->fds[fd];
    /* A stale entry means the owner closed the fd without loop_del (the
     * kernel already dropped it from the epoll set); take the slot over. */
    uint32_t gen = e->gen + 1;
    struct epoll_event ev = {.events = events, .data.u64 = cookie(fd, gen)};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = errno;
        return -err;
    }
    e->cb = cb;
    e->ud = ud;
    e->gen = gen;
    return 0;
}

int loop_mod(struct loop *l, int fd, uint32_t events, loop_fd_cb *cb, void *ud)
{
    if (!cb)
        return -EINVAL;
    if (fd < 0 || fd >= l->nfds || !l->fds[fd].cb)
        return -ENOENT;
    struct fdent *e = &l->fds[fd];
    struct epoll_event ev = {.events = events, .data.u64 = cookie(fd, e->gen)};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0) {
        int err = errno;
        return -err;
    }
    e->cb = cb;
    e->ud = ud;
    return 0;
}

int loop_forget(struct loop *l, int fd)
{
    if (fd < 0 || fd >= l->nfds || !l->fds[fd].cb)
        return -ENOENT;
    struct fdent *e = &l->fds[fd];
    e->cb = NULL;
    e->ud = NULL;
    e->gen++; /* events already fetched for this fd are now stale */
    return 0;
}

int loop_del(struct loop *l, int fd)
{
    int rc = loop_forget(l, fd);
    if (rc != 0)
        return rc;
    struct epoll_event ev = {0};
    if (epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, &ev) < 0) {
        int err = errno;
        /* Already closed (EBADF) or already gone from the set (ENOENT, after
         * a close of the last duplicate): the registration is over anyway. */
        if (err != EBADF && err != ENOENT)
            return -err;
    }
    return 0;
}

/* ---- wake fd ----------------------------------------------------------------- */

static void on_wake(struct loop *l, int fd, uint32_t events, void *ud)
{
    (void)events;
    (void)ud;
    uint64_t v;
    /* Non-blocking eventfd: one read resets the counter however many
     * loop_wake calls were coalesced into it. */
    while (read(fd, &v, sizeof v) < 0 && errno == EINTR) {
    }
    if (l->wake_cb)
        l->wake_cb(l, l->wake_ud);
}

void loop_set_wake(struct loop *l, loop_hook_cb *cb, void *ud)
{
    l->wake_cb = cb;
    l->wake_ud = ud;
}

void loop_wake(struct loop *l)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated: a wake-up is pending anyway. */
    while (write(l->wakefd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

/* ---- the loop -------------------------------------------------------------------- */

struct loop *loop_new(uint32_t max_timers)
{
    struct loop *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->heap_cap = max_timers ? max_timers : 64;
    l->heap = malloc(l->heap_cap * sizeof *l->heap);
    if (l->epfd < 0 || l->wakefd < 0 || !l->heap || loop_add(l, l->wakefd, EPOLLIN, on_wake, NULL) < 0) {
        if (l->epfd >= 0)
            close(l->epfd);
        if (l->wakefd >= 0)
            close(l->wakefd);
        free(l->heap);
        free(l->fds);
        free(l);
        return NULL;
    }
    l->now = loop_clock_ms();
    return l;
}

void loop_destroy(struct loop **lp)
{
    if (!lp || !*lp)
        return;
    struct loop *l = *lp;
    close(l->epfd);
    close(l->wakefd);
    /* Timers still armed belong to their owners; they may already be freed,
     * so they are not touched. */
    free(l->heap);
    free(l->fds);
    free(l);
    *lp = NULL;
}

void loop_set_after(struct loop *l, loop_hook_cb *cb, void *ud)
{
    l->after_cb = cb;
    l->after_ud = ud;
}

void loop_stop(struct loop *l)
{
    atomic_store(&l->stop, 1);
    /* Kick epoll_wait so a stop from a signal handler or another thread is
     * seen now, not at the next event. write(2) is async-signal-safe. */
    loop_wake(l);
}

int loop_run_once(struct loop *l, int timeout_ms)
{
    int timeout = timeout_ms;
    if (l->heap_n > 0) {
        uint64_t now = loop_clock_ms();
        uint64_t when = l->heap[0]->when_ms;
        uint64_t d = when > now ? when - now : 0;
        if (d > 0x7fffffff)
            d = 0x7fffffff;
        if (timeout < 0 || (uint64_t)timeout > d)
            timeout = (int)d;
    }
    int n = epoll_wait(l->epfd, l->ev, MAX_EVENTS, timeout);
    if (n < 0) {
        int err = errno;
        if (err != EINTR)
            return -err;
        n = 0;
    }
    l->now = loop_clock_ms();
    for (int i = 0; i < n; i++) {
        int fd = (int)(uint32_t)l->ev[i].data.u64;
        uint32_t gen = (uint32_t)(l->ev[i].data.u64 >> 32);
        if (fd >= l->nfds)
            continue;
        struct fdent *e = &l->fds[fd];
        if (!e->cb || e->gen != gen)
            continue; /* deleted or replaced earlier in this batch */
        e->cb(l, fd, l->ev[i].events, e->ud);
    }
    run_timers(l);
    if (l->after_cb)
        l->after_cb(l, l->after_ud);
    return n;
}

int loop_run(struct loop *l)
{
    int rc = 0;
    while (!atomic_load(&l->stop)) {
        int n = loop_run_once(l, -1);
        if (n < 0) {
            rc = n;
            break;
        }
    }
    atomic_store(&l->stop, 0);
    return rc;
}
