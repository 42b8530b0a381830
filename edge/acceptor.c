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
    int lfd[2];        /* plain and/or TLS listener, -1 = none */
    unsigned lkind[2]; /* enum conn_kind bits of each */
    int nl;
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

static void refuse(struct acceptor *a, int fd, unsigned kind)
{
    /* a TLS client would not understand a plain frame: just close */
    struct sl_slice busy = {a->e->busy, kind & CONN_KIND_TLS ? 0 : a->e->busy_len};
    conn_refuse(fd, busy);
    stat_inc(&a->cnt.refused);
}

/* Accept what listener l has, as long as a worker has room and the edge's
 * accept bucket has tokens. Returns ms to wait before looking again (0:
 * the backlog is empty). */
static int accept_some(struct acceptor *a, int l)
{
    struct edge *e = a->e;
    for (int i = 0; i < ACCEPTS_PER_POLL; i++) {
        uint32_t wi = pick(e);
        if (wi == UINT32_MAX)
            return FULL_WAIT_MS;
        uint32_t wait = guard_accept(e->guard, loop_clock_ms());
        if (wait)
            return (int)wait;
        struct addr peer;
        int fd = conn_accept(a->lfd[l], &a->spare_fd, &peer, "acceptor=1");
        if (fd < 0)
            return 0;
        stat_inc(&a->cnt.accepted);
        enum worker_admit adm = worker_admit(e, fd, &peer, a->lkind[l]);
        if (adm == WORKER_ADMIT_FULL)
            stat_inc(&a->cnt.refused);
        if (adm != WORKER_ADMIT_OK)
            continue;
        struct mailbox_item it = {.kind = MAILBOX_ADOPT,
                                  .u.adopt = {.fd = fd, .peer = peer, .conn_kind = (uint8_t)a->lkind[l]}};
        if (!mailbox_post(e->mbox[wi], &it)) {
            assert(!"the only producer saw room in this mailbox");
            worker_unadmit(e, &peer, a->lkind[l]);
            refuse(a, fd, a->lkind[l]);
        }
    }
    return 0;
}

static void *run(void *arg)
{
    struct acceptor *a = arg;
    struct pollfd p[3] = {{.fd = a->stopfd, .events = POLLIN}};
    for (int l = 0; l < a->nl; l++)
        p[1 + l] = (struct pollfd){.fd = a->lfd[l], .events = POLLIN};
    int wait_ms = 0; /* > 0: accepting paused, look again after that long */
    for (;;) {
        /* Every mailbox full, or the edge's accept bucket empty: leave the
         * connections in the kernel's backlog (as a busy worker's own
         * listener would) and look again after a while. */
        int rc = wait_ms ? poll(p, 1, wait_ms) : poll(p, (nfds_t)(1 + a->nl), -1);
        if (rc < 0) {
            int err = errno;
            if (err == EINTR)
                continue;
            log_error("event=acceptor_failed err=\"%s\"", strerror(err));
            break;
        }
        if (p[0].revents)
            break;
        int next = 0;
        for (int l = 0; l < a->nl; l++) {
            /* after a pause every listener is tried: poll did not look at them */
            if (!wait_ms && !(p[1 + l].revents & POLLIN))
                continue;
            int w = accept_some(a, l);
            if (w > next)
                next = w;
        }
        wait_ms = next;
    }
    return NULL;
}

static int add_listener(struct acceptor *a, const char *spec, unsigned kind)
{
    if (!spec || !*spec)
        return 0;
    int fd = conn_listen_socket(spec);
    if (fd < 0) {
        log_error("event=listen_failed acceptor=1 listen=%s err=\"%s\"", spec, strerror(-fd));
        return -1;
    }
    a->lfd[a->nl] = fd;
    a->lkind[a->nl++] = kind;
    return 0;
}

struct acceptor *acceptor_new(struct edge *e)
{
    struct acceptor *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->e = e;
    a->lfd[0] = a->lfd[1] = -1;
    a->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    a->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    unsigned proxy = e->cfg.proxy_protocol ? CONN_KIND_PROXY : 0;
    if (a->stopfd < 0 || add_listener(a, e->cfg.listen, CONN_KIND_PLAIN | proxy) != 0 ||
        add_listener(a, e->cfg.listen_tls, CONN_KIND_TLS | proxy) != 0) {
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
    for (int l = 0; l < 2; l++) /* connections still in the backlog get a reset: they reconnect */
        if (a->lfd[l] >= 0) {
            close(a->lfd[l]);
            a->lfd[l] = -1;
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
