/* SPDX-License-Identifier: Apache-2.0 */
/* sl/loop.h - the epoll event loop: fds, masks, timers and callbacks.
 *
 * One loop per thread; nothing here is thread-safe except loop_wake().
 * It knows nothing of frames or connections (that is conn.c's business).
 *
 * Timers are caller-owned structs embedded in the caller's objects
 * (libuv-style), kept in a binary min-heap: start/stop are O(log n) and
 * allocation-free once the heap array has grown to its steady size
 * (loop_new reserves room for `max_timers`). A connection whose deadline
 * moves on every frame should not restart its timer per frame: keep a
 * timestamp and re-arm when the timer fires (see edge/conn.c).
 *
 * After each epoll_wait batch and the timers due, the loop calls the
 * `after` hook: the place to flush coalesced writes, send batched ZeroMQ
 * messages and free connections closed during the batch. */
#ifndef SL_LOOP_H
#define SL_LOOP_H
#include <stdbool.h>
#include <stdint.h>

struct loop;

typedef void loop_fd_cb(struct loop *l, int fd, uint32_t events, void *ud);
typedef void loop_timer_cb(struct loop *l, void *ud);
typedef void loop_hook_cb(struct loop *l, void *ud);

struct loop_timer {
    uint64_t when_ms;  /* monotonic ms deadline */
    uint32_t heap_idx; /* position in the heap + 1; 0 = not armed */
    loop_timer_cb *cb;
    void *ud;
};

/* max_timers: heap capacity reserved up front (grows if exceeded). NULL on failure. */
struct loop *loop_new(uint32_t max_timers);
void loop_destroy(struct loop **l);

/* Register fd for events (EPOLLIN|EPOLLOUT|EPOLLET...). cb (not NULL: -EINVAL) is called with the
 * returned events and ud. Return 0 or -errno. loop_mod on an fd not added
 * returns -ENOENT. loop_del may be called after close(fd) (returns 0); events
 * already fetched for a deleted fd are not delivered. */
int loop_add(struct loop *l, int fd, uint32_t events, loop_fd_cb *cb, void *ud);
int loop_mod(struct loop *l, int fd, uint32_t events, loop_fd_cb *cb, void *ud);
int loop_del(struct loop *l, int fd);
/* loop_del for an fd the caller closes next and never duplicated: close()
 * takes it out of the epoll set, so the EPOLL_CTL_DEL syscall is skipped
 * (one syscall less per connection an edge closes). Return as loop_del. */
int loop_forget(struct loop *l, int fd);

void loop_timer_init(struct loop_timer *t, loop_timer_cb *cb, void *ud);
/* Arm (or re-arm) t to fire once after ms milliseconds (from a fresh clock
 * read). The timer is disarmed before its callback runs, so a callback may
 * re-arm it, stop other timers, or free the struct holding it. */
void loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t ms);
void loop_timer_stop(struct loop *l, struct loop_timer *t);
static inline bool loop_timer_armed(const struct loop_timer *t)
{
    return t->heap_idx != 0;
}

/* Called once after every wake-up's events and timers. */
void loop_set_after(struct loop *l, loop_hook_cb *cb, void *ud);

/* Cached monotonic time in ms, updated once per wake-up. */
uint64_t loop_now_ms(const struct loop *l);
/* Fresh monotonic ms, for code outside a loop. */
uint64_t loop_clock_ms(void);

/* Run until loop_stop(). Returns 0, or -errno if epoll fails. */
int loop_run(struct loop *l);
/* One wake-up: wait at most timeout_ms (-1 = until an event or timer).
 * Returns the number of fd events fetched (>= 0), or -errno if epoll fails. */
int loop_run_once(struct loop *l, int timeout_ms);
/* Make loop_run return after the current wake-up. Safe from another thread
 * and from a signal handler (it only sets a flag and writes the eventfd). */
void loop_stop(struct loop *l);

/* Thread-safe: make the loop's thread return from epoll_wait and run `cb`
 * registered with loop_set_wake (an eventfd inside). For cross-thread queues. */
void loop_set_wake(struct loop *l, loop_hook_cb *cb, void *ud);
void loop_wake(struct loop *l);

#endif
