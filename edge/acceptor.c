/* acceptor.c - the --accept handoff mode: one listening socket, one thread
 * that accepts, takes the --max-conns place (or answers err{busy}) and posts
 * the fd to the worker with the fewest connections (open + still queued)
 * through that worker's mailbox; the worker sets the connection up on its
 * own thread. When no mailbox has room for connections it stops accepting
 * for a few ms, so a storm waits in the kernel's backlog, not in refusals.
 *
 * Why a thread of its own and not one worker's loop: accepting must not wait
 * for a worker that is busy or stuck, and a worker whose queue has not moved
 * for ACCEPTOR_STUCK_MS is passed over (with SO_REUSEPORT the kernel keeps
 * giving such a worker its share). The thread sleeps in poll() between
 * connections. It deliberately does not read from or write to devices,
 * except for the err{busy} refusal. */
#define _GNU_SOURCE
#include "acceptor.h"
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "sl/stat.h"
#include "sl/log.h"
#include "conn.h"
#include "edge.h"
#include "guard.h"
#include "mailbox.h"
#include "worker.h"

#define ACCEPTS_PER_POLL 64
#define FULL_WAIT_MS     2

struct acceptor {
    struct edge *e;
    int lfd;
    int stopfd;   /* eventfd: acceptor_stop wakes poll() */
    int spare_fd; /* closed and reopened on EMFILE */
    pthread_t th;
    bool started;
    _Atomic bool listening;
    struct acceptor_counts cnt;
};

enum acceptor_intake acceptor_intake(uint32_t open, const struct mailbox *mb, uint64_t now_ms,
                                     uint64_t stuck_ms, uint32_t *load)
{
    uint32_t queued = mailbox_len(mb, MAILBOX_ADOPT);
    *load = open + queued;
    if (queued >= MAILBOX_ADOPT_SHARE)
        return ACCEPTOR_INTAKE_FULL;
    uint64_t since = mailbox_stalled_since(mb);
    return since && now_ms > since + stuck_ms ? ACCEPTOR_INTAKE_STUCK : ACCEPTOR_INTAKE_OK;
}

uint32_t acceptor_pick(const uint32_t *load, const enum acceptor_intake *st, uint32_t n)
{
    uint32_t best[2] = {UINT32_MAX, UINT32_MAX}; /* by intake: OK, STUCK */
    for (uint32_t i = 0; i < n; i++) {
        if (st[i] == ACCEPTOR_INTAKE_FULL)
            continue;
        uint32_t *b = &best[st[i] == ACCEPTOR_INTAKE_STUCK];
        if (*b == UINT32_MAX || load[i] < load[*b])
            *b = i;
    }
    return best[0] != UINT32_MAX ? best[0] : best[1];
}

/* The worker for the next connection, or UINT32_MAX if none has room. */
static uint32_t pick(struct edge *e)
{
    uint32_t load[EDGE_MAX_WORKERS];
    enum acceptor_intake st[EDGE_MAX_WORKERS];
    uint64_t now = loop_clock_ms();
    for (uint32_t i = 0; i < e->nworkers; i++)
        st[i] = acceptor_intake(worker_open(e->workers[i]), e->mbox[i], now, ACCEPTOR_STUCK_MS, &load[i]);
    return acceptor_pick(load, st, e->nworkers);
}

static void refuse(struct acceptor *a, int fd)
{
    conn_refuse(fd, (struct sl_slice){a->e->busy, a->e->busy_len});
    stat_inc(&a->cnt.refused);
}

static void *run(void *arg)
{
    struct acceptor *a = arg;
    struct edge *e = a->e;
    struct pollfd p[2] = {{.fd = a->lfd, .events = POLLIN}, {.fd = a->stopfd, .events = POLLIN}};
    int wait_ms = 0; /* > 0: accepting paused, look again after that long */
    for (;;) {
        /* Every mailbox full, or the edge's accept bucket empty: leave the
         * connections in the kernel's backlog (as a busy worker's own
         * listener would) and look again after a while. */
        int rc = wait_ms ? poll(&p[1], 1, wait_ms) : poll(p, 2, -1);
        if (rc < 0) {
            int err = errno;
            if (err == EINTR)
                continue;
            log_error("event=acceptor_failed err=\"%s\"", strerror(err));
            break;
        }
        if (p[1].revents)
            break;
        wait_ms = 0;
        for (int i = 0; i < ACCEPTS_PER_POLL; i++) {
            uint32_t wi = pick(e);
            if (wi == UINT32_MAX) {
                wait_ms = FULL_WAIT_MS;
                break;
            }
            uint32_t wait = guard_accept(e->guard, loop_clock_ms());
            if (wait) {
                wait_ms = (int)wait;
                break;
            }
            struct addr peer;
            int fd = conn_accept(a->lfd, &a->spare_fd, &peer, "acceptor=1");
            if (fd < 0)
                break;
            stat_inc(&a->cnt.accepted);
            enum worker_admit adm = worker_admit(e, fd, &peer);
            if (adm == WORKER_ADMIT_FULL)
                stat_inc(&a->cnt.refused);
            if (adm != WORKER_ADMIT_OK)
                continue;
            struct mailbox_item it = {.kind = MAILBOX_ADOPT, .u.adopt = {.fd = fd, .peer = peer}};
            if (!mailbox_post(e->mbox[wi], &it)) {
                assert(!"the only producer saw room in this mailbox");
                atomic_fetch_sub(&e->open_total, 1);
                guard_closed(e->guard, &peer, true);
                refuse(a, fd);
            }
        }
    }
    return NULL;
}

struct acceptor *acceptor_new(struct edge *e)
{
    struct acceptor *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->e = e;
    a->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    a->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    a->lfd = conn_listen_socket(e->cfg.listen);
    if (a->lfd < 0 || a->stopfd < 0) {
        int err = a->lfd < 0 ? -a->lfd : errno;
        log_error("event=listen_failed acceptor=1 listen=%s err=\"%s\"", e->cfg.listen, strerror(err));
        acceptor_destroy(&a);
        return NULL;
    }
    atomic_store(&a->listening, true);
    return a;
}

int acceptor_start(struct acceptor *a)
{
    int rc = pthread_create(&a->th, NULL, run, a);
    a->started = rc == 0;
    if (a->started)
        pthread_setname_np(a->th, "edge-accept");
    return rc ? -rc : 0;
}

void acceptor_stop(struct acceptor *a)
{
    if (a->started) {
        uint64_t one = 1;
        (void)!write(a->stopfd, &one, sizeof one);
        pthread_join(a->th, NULL);
        a->started = false;
    }
    if (a->lfd >= 0) {
        /* Connections still in the backlog get a reset: they reconnect. */
        close(a->lfd);
        a->lfd = -1;
    }
    atomic_store(&a->listening, false);
}

void acceptor_destroy(struct acceptor **pa)
{
    struct acceptor *a = *pa;
    if (!a)
        return;
    acceptor_stop(a);
    if (a->stopfd >= 0)
        close(a->stopfd);
    if (a->spare_fd >= 0)
        close(a->spare_fd);
    free(a);
    *pa = NULL;
}

bool acceptor_listening(const struct acceptor *a)
{
    return atomic_load(&a->listening);
}

const struct acceptor_counts *acceptor_counts(const struct acceptor *a)
{
    return &a->cnt;
}
