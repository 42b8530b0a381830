/* acceptor.c - the --accept handoff mode: one listening socket, one thread
 * that accepts, takes the --max-conns place (or answers err{busy}) and posts
 * the fd to the worker with the fewest connections (open + still queued)
 * through that worker's connection ring; the worker sets the connection up
 * on its own thread.
 *
 * Why a thread of its own and not one worker's loop: accepting must not wait
 * for a worker that is busy or stuck, and a worker whose queue has not moved
 * for ACCEPTOR_STUCK_MS is passed over (with SO_REUSEPORT the kernel keeps
 * giving such a worker its share). The thread sleeps in poll() between
 * connections. It deliberately does not read from or write to devices,
 * except for the err{busy} refusal. */
#define _GNU_SOURCE
#include "acceptor.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "sl/log.h"
#include "conn.h"
#include "edge.h"
#include "worker.h"

#define ACCEPTS_PER_POLL 64

struct acceptor {
    struct edge *e;
    int lfd;
    int stopfd;     /* eventfd: acceptor_stop wakes poll() */
    int spare_fd;   /* closed and reopened on EMFILE */
    pthread_t th;
    bool started;
    _Atomic bool listening;
};

uint32_t acceptor_pick(const uint32_t *load, const bool *stuck, uint32_t n)
{
    uint32_t best = 0, best_ok = UINT32_MAX;
    for (uint32_t i = 1; i < n; i++)
        if (load[i] < load[best])
            best = i;
    for (uint32_t i = 0; i < n; i++)
        if (!stuck[i] && (best_ok == UINT32_MAX || load[i] < load[best_ok]))
            best_ok = i;
    return best_ok != UINT32_MAX ? best_ok : best;
}

/* Post fd to a worker: the pick first, then any other with room. */
static bool hand_off(struct edge *e, int fd, const struct conn_peer *peer)
{
    uint32_t load[EDGE_MAX_WORKERS];
    bool stuck[EDGE_MAX_WORKERS];
    uint64_t now = loop_clock_ms();
    for (uint32_t i = 0; i < e->nworkers; i++)
        load[i] = worker_load(e->workers[i], now, ACCEPTOR_STUCK_MS, &stuck[i]);
    uint32_t first = acceptor_pick(load, stuck, e->nworkers);
    if (worker_post_conn(e->workers[first], fd, peer))
        return true;
    for (uint32_t i = 0; i < e->nworkers; i++)
        if (i != first && worker_post_conn(e->workers[i], fd, peer))
            return true;
    return false;
}

static void *run(void *arg)
{
    struct acceptor *a = arg;
    struct pollfd p[2] = {{.fd = a->lfd, .events = POLLIN}, {.fd = a->stopfd, .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            int err = errno;
            if (err == EINTR)
                continue;
            LOG_ERROR("event=acceptor_failed err=\"%s\"", strerror(err));
            break;
        }
        if (p[1].revents)
            break;
        for (int i = 0; i < ACCEPTS_PER_POLL; i++) {
            struct conn_peer peer;
            int fd = conn_accept(a->lfd, &a->spare_fd, &peer, "acceptor=1");
            if (fd < 0)
                break;
            if (!conn_admit(a->e, fd))
                continue;
            if (!hand_off(a->e, fd, &peer)) {
                LOG_WARN("event=handoff_full fd=%d", fd); /* every worker has WORKER_CONNQ waiting */
                conn_refuse(a->e, fd);
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
        LOG_ERROR("event=listen_failed acceptor=1 listen=%s err=\"%s\"", e->cfg.listen, strerror(err));
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

bool acceptor_listening(const struct acceptor *a) { return atomic_load(&a->listening); }
