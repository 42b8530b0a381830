/* SPDX-License-Identifier: Apache-2.0 */
/* pubproc.c - data publisher child processes for the notifier (see
 * pubproc.h for why they exist).
 *
 * Parent -> child: a pipe carrying records
 *   u16 topic_len | u8 retained | u8 0 | u32 payload_len | topic | payload
 * appended to a per-child byte FIFO and written many at a time. The pipe
 * and the FIFO are bounded; the parent stops pulling from the edges when a
 * child holds `bound` records it has not reported done.
 * Child -> parent: a pipe of fixed-size reports with cumulative counters
 * (smaller than PIPE_BUF, so each write is atomic; a skipped report is
 * harmless, the next one carries the totals).
 *
 * A child hands its client a pipe read's worth of records at a time while
 * the client is connected and fewer than max_inflight of its publishes wait
 * for paho; the rest waits in the
 * pipe, which is the backpressure. Reports are rate-limited (every
 * REPORT_RECORDS records or REPORT_MS): each one wakes the parent.
 *
 * Why this file calls mqtt.c (and mqttsync.c) and not the reverse: a child
 * is an MQTT client fed from a pipe, so the clients are the library here
 * and stay free of processes. The parent side needs no mqtt at all; main.c
 * routes data here and control to its own mqtt client.
 *
 * Deliberately not here: JSON and topics (the parent's core builds them),
 * control traffic (status, results and subscriptions stay on the parent's
 * own client: never shed, never behind data), MQTT details (mqtt.c,
 * mqttsync.c). */
#define _GNU_SOURCE
#include "pubproc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mqtt.h"
#include "mqttsync.h"
#include "sl/log.h"
#include "sl/loop.h"
#include "topics.h"

#define REC_HDR        8u
#define OUT_CAP        (4u << 20) /* parent FIFO per child */
#define IN_CAP         (4u << 20) /* child read buffer */
#define REC_MAX        (1u << 20) /* larger records are refused (counted lost) */
#define PIPE_SZ        (1 << 20)
#define RESPAWN_MS     1000u
#define REPORT_MS      5u   /* reports at least this often while counters move */
#define REPORT_RECORDS 64u  /* ... or after this many more records are done */
#define IDLE_REPORT_MS 100u /* and this often when nothing moves (connection state) */

extern char **environ;

struct report {
    uint64_t done; /* published + lost: records finished */
    uint64_t published, failed, lost, reconnects;
    uint32_t connected, pad;
};

struct child {
    struct pubproc *p;
    int idx;
    pid_t pid;
    int wfd, rfd;
    bool alive;
    char *out;
    size_t ohead, olen; /* FIFO bytes [ohead, olen) */
    uint64_t handed;    /* records queued since this incarnation started */
    struct report rep;  /* latest report of this incarnation */
    uint64_t respawn_at;
};

struct pubproc {
    int n;
    char *const *argv;
    char exe[4096]; /* our own executable: exec'd by path so the children keep its name */
    int64_t bound;
    struct loop *loop;
    void (*room)(void *ud);
    void *room_ud;
    struct child *c;
    /* finished incarnations, plus records lost with dead children */
    uint64_t base_published, base_failed, base_lost, base_reconnects, respawns, died_lost;
    uint64_t refused;   /* pubproc_publish said no */
    bool stopping;      /* pubproc_stop: inputs closed, children finishing; none respawned */
    uint64_t stop_lost; /* records children that finished after pubproc_stop had not published */
};

/* ---- parent ---- */

static void on_report(struct loop *l, int fd, uint32_t ev, void *ud);

static int spawn(struct child *c)
{
    struct pubproc *p = c->p;
    int d[2], r[2];
    if (pipe2(d, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(r, O_CLOEXEC) != 0) {
        close(d[0]);
        close(d[1]);
        return -1;
    }
    (void)fcntl(d[1], F_SETPIPE_SZ, PIPE_SZ); /* best effort: more records per wake-up */
    char role[64];
    snprintf(role, sizeof role, PUBPROC_ENV "=%d:%d:%d", c->idx, d[0], r[1]);
    size_t ne = 0;
    while (environ[ne])
        ne++;
    char **envp = calloc(ne + 2, sizeof *envp); /* start-up and respawn only */
    if (!envp)
        goto fail;
    size_t k = 0;
    for (size_t i = 0; i < ne; i++)
        if (strncmp(environ[i], PUBPROC_ENV "=", sizeof PUBPROC_ENV) != 0)
            envp[k++] = environ[i];
    envp[k++] = role;
    envp[k] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        free(envp);
        goto fail;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls until execve (the parent has threads). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        fcntl(d[0], F_SETFD, 0);
        fcntl(r[1], F_SETFD, 0);
        execve(p->exe, p->argv, envp);
        _exit(127);
    }
    free(envp);
    close(d[0]);
    close(r[1]);
    fcntl(d[1], F_SETFL, O_NONBLOCK);
    fcntl(r[0], F_SETFL, O_NONBLOCK);
    c->pid = pid;
    c->wfd = d[1];
    c->rfd = r[0];
    c->alive = true;
    c->ohead = c->olen = 0;
    c->handed = 0;
    memset(&c->rep, 0, sizeof c->rep);
    loop_add(p->loop, c->rfd, EPOLLIN, on_report, c);
    log_info("event=publisher_started index=%d pid=%d", c->idx, (int)pid);
    return 0;
fail:
    close(d[0]);
    close(d[1]);
    close(r[0]);
    close(r[1]);
    return -1;
}

static void child_dead(struct child *c, const char *why)
{
    struct pubproc *p = c->p;
    loop_del(p->loop, c->rfd);
    close(c->rfd);
    if (c->wfd >= 0)
        close(c->wfd);
    c->rfd = c->wfd = -1;
    int st = 0;
    pid_t w = waitpid(c->pid, &st, WNOHANG);
    for (int k = 0; w == 0 && p->stopping && k < 50; k++) {
        /* a child closes its report pipe as the last thing before it exits */
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
        w = waitpid(c->pid, &st, WNOHANG);
    }
    if (w == 0) { /* pipe closed but still running: make sure it is gone */
        kill(c->pid, SIGKILL);
        waitpid(c->pid, &st, 0);
    }
    int64_t held = (int64_t)(c->handed - c->rep.done);
    p->base_published += c->rep.published;
    p->base_failed += c->rep.failed;
    p->base_lost += c->rep.lost;
    p->base_reconnects += c->rep.reconnects;
    c->alive = false;
    if (p->stopping) {
        /* The end of pubproc_stop: what it had not published by then stays
         * unpublished (the caller reports it). */
        p->stop_lost += (uint64_t)(held > 0 ? held : 0);
        log_info("event=publisher_stopped index=%d pid=%d why=%s status=%d unflushed=%lld", c->idx,
                 (int)c->pid, why, st, (long long)(held > 0 ? held : 0));
        return;
    }
    p->died_lost += (uint64_t)(held > 0 ? held : 0);
    p->respawns++;
    c->respawn_at = loop_clock_ms() + RESPAWN_MS;
    log_error("event=publisher_died index=%d pid=%d why=%s status=%d lost=%lld", c->idx, (int)c->pid, why, st,
              (long long)(held > 0 ? held : 0));
}

/* Read every report; false if the child is gone. */
static bool read_reports(struct child *c)
{
    for (;;) {
        struct report r;
        ssize_t n = read(c->rfd, &r, sizeof r);
        if (n == (ssize_t)sizeof r) {
            c->rep = r;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return true;
        child_dead(c, n == 0 ? "exited" : "read_error");
        return false;
    }
}

static void flush_child(struct child *c)
{
    /* wfd < 0: pubproc_stop closed the pipe; what it left in the FIFO stays
     * unpublished (counted: handed, never done). Writing to -1 would fail
     * and kill the child before it flushed what it had read. */
    while (c->alive && c->wfd >= 0 && c->olen > c->ohead) {
        ssize_t n = write(c->wfd, c->out + c->ohead, c->olen - c->ohead);
        if (n > 0) {
            c->ohead += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break; /* the pipe is full: the child's report wakes us */
        child_dead(c, "write_error");
        return;
    }
    if (c->ohead == c->olen)
        c->ohead = c->olen = 0;
}

static void on_report(struct loop *l, int fd, uint32_t ev, void *ud)
{
    (void)l, (void)fd, (void)ev;
    struct child *c = ud;
    if (read_reports(c))
        flush_child(c);
    if (c->p->room)
        c->p->room(c->p->room_ud); /* room may have appeared: the caller pulls again */
}

struct pubproc *pubproc_new(int n, char *const *argv, int64_t bound, struct loop *l, void (*room)(void *ud),
                            void *ud)
{
    struct pubproc *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->room = room;
    p->room_ud = ud;
    p->n = n;
    p->argv = argv;
    p->bound = bound;
    p->loop = l;
    ssize_t el = readlink("/proc/self/exe", p->exe, sizeof p->exe - 1);
    if (el <= 0) {
        free(p);
        return NULL;
    }
    p->exe[el] = '\0';
    p->c = calloc((size_t)n, sizeof *p->c);
    if (!p->c) {
        free(p);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        struct child *c = &p->c[i];
        c->p = p;
        c->idx = i + 1; /* client 0 is the parent's own (control) client */
        c->rfd = c->wfd = -1;
        c->out = malloc(OUT_CAP);
        if (!c->out || spawn(c) != 0) {
            log_error("event=publisher_spawn_failed index=%d errno=%d", c->idx, errno);
            pubproc_destroy(&p);
            return NULL;
        }
    }
    return p;
}

void pubproc_stop(struct pubproc *p)
{
    p->stopping = true;
    for (int i = 0; i < p->n; i++) {
        struct child *c = &p->c[i];
        if (!c->alive)
            continue;
        flush_child(c); /* what the pipe takes now; the rest of the buffer stays unpublished */
        if (c->alive && c->wfd >= 0) {
            close(c->wfd); /* EOF: the child publishes what it read, waits for its PUBACKs, exits */
            c->wfd = -1;
        }
    }
}

bool pubproc_stopped(struct pubproc *p)
{
    for (int i = 0; i < p->n; i++)
        if (p->c[i].alive)
            return false;
    return true;
}

int pubproc_default_pool(int data_qos, unsigned cpus)
{
    if (data_qos == 0)
        return 1;
    unsigned n = cpus / 2u;
    return n < 1u ? 1 : n > 4u ? 4 : (int)n;
}

int64_t pubproc_unflushed(struct pubproc *p)
{
    int64_t n = (int64_t)p->stop_lost;
    for (int i = 0; i < p->n; i++)
        if (p->c[i].alive)
            n += (int64_t)(p->c[i].handed - p->c[i].rep.done);
    return n;
}

void pubproc_destroy(struct pubproc **pp)
{
    struct pubproc *p = *pp;
    if (!p)
        return;
    for (int i = 0; i < p->n; i++) {
        struct child *c = &p->c[i];
        if (!c->alive)
            continue;
        loop_del(p->loop, c->rfd);
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        close(c->rfd);
        if (c->wfd >= 0)
            close(c->wfd);
        c->alive = false;
    }
    for (int i = 0; i < p->n; i++)
        free(p->c[i].out);
    free(p->c);
    free(p);
    *pp = NULL;
}

static int refuse(struct pubproc *p)
{
    p->refused++;
    return -1;
}

int pubproc_publish(struct pubproc *p, const char *dev, size_t dev_len, const char *topic, size_t topic_len,
                    const void *payload, size_t len, bool retained)
{
    struct child *c = &p->c[topics_hash((const uint8_t *)dev, dev_len) % (uint32_t)p->n];
    size_t need = REC_HDR + topic_len + len;
    /* The child's client would refuse a longer topic: say no here, at once. */
    if (!c->alive || topic_len > MQTT_TOPIC_MAX || need > REC_MAX)
        return refuse(p);
    if (c->olen + need > OUT_CAP) {
        flush_child(c);
        if (c->alive && c->ohead > 0) { /* the pipe stayed busy: move what is left to the front */
            memmove(c->out, c->out + c->ohead, c->olen - c->ohead);
            c->olen -= c->ohead;
            c->ohead = 0;
        }
        if (!c->alive || c->olen + need > OUT_CAP)
            return refuse(p);
    }
    uint8_t *h = (uint8_t *)c->out + c->olen;
    uint16_t tl = (uint16_t)topic_len;
    uint32_t pl = (uint32_t)len;
    memcpy(h, &tl, 2);
    h[2] = retained ? 1 : 0;
    h[3] = 0;
    memcpy(h + 4, &pl, 4);
    memcpy(h + REC_HDR, topic, topic_len);
    if (len)
        memcpy(h + REC_HDR + topic_len, payload, len);
    c->olen += need;
    c->handed++;
    return 0;
}

void pubproc_flush(struct pubproc *p)
{
    pubproc_flush_over(p, 0);
}

void pubproc_flush_over(struct pubproc *p, size_t bytes)
{
    for (int i = 0; i < p->n; i++)
        if (p->c[i].olen - p->c[i].ohead > bytes)
            flush_child(&p->c[i]);
}

bool pubproc_ready(struct pubproc *p)
{
    for (int i = 0; i < p->n; i++) {
        struct child *c = &p->c[i];
        if (!c->alive || !c->rep.connected || (int64_t)(c->handed - c->rep.done) >= p->bound ||
            c->olen - c->ohead > OUT_CAP / 2)
            return false;
    }
    return true;
}

void pubproc_tick(struct pubproc *p, uint64_t now_ms)
{
    for (int i = 0; i < p->n; i++) {
        struct child *c = &p->c[i];
        if (c->alive) {
            if (read_reports(c))
                flush_child(c);
        } else if (!p->stopping && now_ms >= c->respawn_at) {
            if (spawn(c) != 0) {
                log_error("event=publisher_spawn_failed index=%d errno=%d", c->idx, errno);
                c->respawn_at = now_ms + RESPAWN_MS;
            }
        }
    }
}

int64_t pubproc_outstanding(struct pubproc *p)
{
    int64_t n = 0;
    for (int i = 0; i < p->n; i++)
        if (p->c[i].alive)
            n += (int64_t)(p->c[i].handed - p->c[i].rep.done);
    return n;
}

void pubproc_totals(struct pubproc *p, struct pubproc_totals *o)
{
    memset(o, 0, sizeof *o);
    o->published = p->base_published;
    o->failed = p->base_failed;
    o->lost = p->base_lost;
    o->reconnects = p->base_reconnects;
    o->respawns = p->respawns;
    o->died_lost = p->died_lost;
    o->refused = p->refused;
    for (int i = 0; i < p->n; i++) {
        struct child *c = &p->c[i];
        if (!c->alive)
            continue;
        o->published += c->rep.published;
        o->failed += c->rep.failed;
        o->lost += c->rep.lost;
        o->reconnects += c->rep.reconnects;
        o->inflight += (int64_t)(c->handed - c->rep.done);
        o->connected += (int)c->rep.connected;
    }
}

/* ---- child ---- */

/* A child runs one client: m (mqtt.c, MQTTAsync) at QoS 1, s (mqttsync.c,
 * MQTTClient, publishes written in this thread) at QoS 0. */
struct kid {
    struct loop *loop;
    struct mqtt *m;
    struct mqs *s;
    int dfd, rfd;
    char *in;
    size_t ihead, ilen;
    bool eof, reading;
    struct report last;
    struct loop_timer tick;
    struct loop_timer retry; /* s: the socket was full, look again soon */
};

bool pubproc_is_child(void)
{
    return getenv(PUBPROC_ENV) != NULL;
}

/* Tell the parent the counters. Not after every acknowledgement: each report
 * wakes the parent, so one goes when the connection state changes, when
 * REPORT_RECORDS more records are done, or from the REPORT_MS timer (force). */
static bool kid_report(struct kid *k, bool force)
{
    struct mqtt_stats s;
    if (k->s)
        mqs_stats(k->s, &s);
    else
        mqtt_stats(k->m, &s);
    struct report r = {0};
    r.published = s.published;
    r.failed = s.failed;
    r.lost = s.refused + s.failed;
    r.reconnects = s.reconnects;
    r.connected = (uint32_t)s.connected;
    r.done = r.published + r.lost;
    if (memcmp(&r, &k->last, sizeof r) == 0)
        return false;
    if (!force && r.connected == k->last.connected && r.done - k->last.done < REPORT_RECORDS)
        return true; /* the timer says it soon */
    if (write(k->rfd, &r, sizeof r) == (ssize_t)sizeof r)
        k->last = r;
    return false;
}

static void kid_on_data(struct loop *l, int fd, uint32_t ev, void *ud);

/* The client takes a record of this size now. */
static bool kid_can(struct kid *k, uint16_t tl, uint32_t pl)
{
    if (k->s)
        return mqs_ready(k->s, tl, pl);
    return mqtt_ready(k->m) && mqtt_room(k->m, tl, pl);
}

/* Hand the client what it takes, from one pipe read or more, as one batch:
 * QoS 1 (mqtt.c) writes it from paho's thread at mqtt_flush; QoS 0
 * (mqttsync.c) writes each publish here, corked until the batch ends. Read
 * more from the pipe while the client takes it. What does not fit waits in
 * the pipe: that is the parent's backpressure. */
static void kid_pump(struct kid *k)
{
    bool blocked;
again:
    blocked = false;
    if (k->s)
        mqs_begin(k->s);
    for (;;) {
        while (k->ilen - k->ihead >= REC_HDR) {
            const uint8_t *h = (const uint8_t *)k->in + k->ihead;
            uint16_t tl;
            uint32_t pl;
            memcpy(&tl, h, 2);
            memcpy(&pl, h + 4, 4);
            size_t need = REC_HDR + tl + pl;
            if (k->ilen - k->ihead < need)
                break;
            if (!kid_can(k, tl, pl)) {
                blocked = true; /* acknowledgements (ops.room), the socket's room or a connection wake us */
                goto out;
            }
            const char *topic = (const char *)h + REC_HDR;
            if (k->s) /* written, or lost (counted there) */
                mqs_publish(k->s, topic, tl, topic + tl, pl, h[2] != 0);
            else /* a refusal is counted there */
                mqtt_publish(k->m, topic, tl, topic + tl, pl, h[2] != 0, 0, false);
            k->ihead += need;
        }
        if (k->eof)
            break;
        if (k->ihead > 0) {
            memmove(k->in, k->in + k->ihead, k->ilen - k->ihead);
            k->ilen -= k->ihead;
            k->ihead = 0;
        }
        ssize_t n = read(k->dfd, k->in + k->ilen, IN_CAP - k->ilen);
        if (n > 0) {
            k->ilen += (size_t)n;
            continue;
        }
        if (n == 0) {
            k->eof = true;
            break;
        }
        if (errno == EINTR)
            continue;
        break; /* EAGAIN: nothing more now */
    }
out:
    if (k->s) {
        mqs_end(k->s);
        /* Connected but the socket was full: look again in a moment (the
         * broker reads on its own time; no event tells us). Not connected:
         * the tick reconnects and pumps. */
        if (blocked && mqs_connected(k->s) && !loop_timer_armed(&k->retry))
            loop_timer_start(k->loop, &k->retry, 1);
    } else {
        mqtt_flush(k->m);
        if (blocked && mqtt_ready(k->m) && k->ilen - k->ihead >= REC_HDR) {
            /* The flush made room at once (everything written: QoS 0, or
             * the window opened): no acknowledgement will come to say so. */
            uint16_t tl;
            uint32_t pl;
            memcpy(&tl, k->in + k->ihead, 2);
            memcpy(&pl, k->in + k->ihead + 4, 4);
            if (mqtt_room(k->m, tl, pl))
                goto again;
        }
    }
    if (blocked && k->reading) { /* level-triggered: stop watching until the client has room */
        loop_mod(k->loop, k->dfd, 0, kid_on_data, k);
        k->reading = false;
    } else if (!blocked && !k->reading && !k->eof) {
        loop_mod(k->loop, k->dfd, EPOLLIN, kid_on_data, k);
        k->reading = true;
    }
    if (k->eof && k->reading) {
        loop_del(k->loop, k->dfd);
        k->reading = false;
        loop_stop(k->loop);
    }
    if (kid_report(k, k->eof) && loop_timer_armed(&k->tick) &&
        k->tick.when_ms > loop_now_ms(k->loop) + REPORT_MS)
        loop_timer_start(k->loop, &k->tick, REPORT_MS);
}

static void kid_on_data(struct loop *l, int fd, uint32_t ev, void *ud)
{
    (void)l, (void)fd, (void)ev;
    kid_pump(ud);
}

static void kid_room(void *ud)
{
    kid_pump(ud);
}

static void kid_up(void *ud, int broker, bool switched)
{
    (void)broker, (void)switched;
    kid_pump(ud);
}

static void kid_on_tick(struct loop *l, void *ud)
{
    struct kid *k = ud;
    if (k->s) { /* the sync client has no thread: keepalive, reconnects and the return happen here */
        bool was = mqs_connected(k->s);
        mqs_tick(k->s);
        if (!was && mqs_connected(k->s))
            kid_pump(k);
    }
    kid_report(k, true); /* what the pumps left unsaid; and a lost connection, within IDLE_REPORT_MS */
    loop_timer_start(l, &k->tick, IDLE_REPORT_MS);
}

static void kid_on_retry(struct loop *l, void *ud)
{
    (void)l;
    kid_pump(ud);
}

int pubproc_child_main(const struct mqtt_cfg *cfg, const char *client_prefix, int flush_ms)
{
    int idx = 0;
    struct kid k = {0};
    if (sscanf(getenv(PUBPROC_ENV), "%d:%d:%d", &idx, &k.dfd, &k.rfd) != 3 || idx < 1)
        return 2;
    /* Nothing the parent had open but our pipes: paho opens its sockets
     * without O_CLOEXEC, so a child spawned while the parent was connected
     * would keep the parent's broker connection open (the broker would not
     * see it close) and the sync client could not tell its own socket from
     * it (mqttsync.c). */
    unsigned lo = (unsigned)(k.dfd < k.rfd ? k.dfd : k.rfd), hi = (unsigned)(k.dfd < k.rfd ? k.rfd : k.dfd);
    if (lo < 3)
        return 2;
    if (lo > 3)
        close_range(3, lo - 1, 0);
    if (hi > lo + 1)
        close_range(lo + 1, hi - 1, 0);
    close_range(hi + 1, ~0u, 0);
    fcntl(k.dfd, F_SETFD, FD_CLOEXEC);
    fcntl(k.rfd, F_SETFD, FD_CLOEXEC);
    fcntl(k.dfd, F_SETFL, O_NONBLOCK);
    fcntl(k.rfd, F_SETFL, O_NONBLOCK);
    signal(SIGPIPE, SIG_IGN);
    /* SIGTERM/SIGINT stay blocked (inherited mask): the parent decides when
     * we stop by closing the pipe, and PR_SET_PDEATHSIG covers its death. */
    char id[300];
    snprintf(id, sizeof id, "%s-%d", client_prefix, idx);
    struct mqtt_cfg c = *cfg;
    c.client_id = id;
    c.subs = NULL;
    c.nsubs = 0;
    k.loop = loop_new(8);
    k.in = malloc(IN_CAP);
    if (!k.loop || !k.in)
        return 1;
    if (c.qos == 0) {
        struct mqs_cfg sc = {.uris = c.uris,
                             .client_id = id,
                             .username = c.username,
                             .password = c.password,
                             .tls_ca = c.tls_ca,
                             .keepalive_s = c.keepalive_s};
        k.s = mqs_new(&sc, k.loop);
        if (!k.s)
            return 1;
    } else {
        struct mqtt_ops ops = {.ud = &k, .room = kid_room, .up = kid_up};
        k.m = mqtt_new(&c, &ops, k.loop);
        if (!k.m)
            return 1;
    }
    log_info("event=publisher_client index=%d client=%s qos=%d api=%s", idx, id, c.qos,
             k.s ? "sync" : "async");
    loop_add(k.loop, k.dfd, EPOLLIN, kid_on_data, &k);
    k.reading = true;
    loop_timer_init(&k.tick, kid_on_tick, &k);
    loop_timer_init(&k.retry, kid_on_retry, &k);
    loop_timer_start(k.loop, &k.tick, k.s ? 0 : IDLE_REPORT_MS); /* the sync client connects from the tick */
    loop_run(k.loop);

    /* Input closed (the parent stops): hand the client what is buffered and
     * wait for the acknowledgements, within the flush bound. The parent
     * kills us at its own deadline; whatever is then unreported is counted
     * lost there. */
    uint64_t until = loop_clock_ms() + (uint64_t)flush_ms;
    if (k.s) /* a connect blocks: none that would end past the bound */
        mqs_set_deadline(k.s, until);
    while (loop_clock_ms() < until) {
        kid_pump(&k);
        if (k.ilen - k.ihead == 0 && (k.s || mqtt_outstanding(k.m) == 0))
            break; /* QoS 0: written is done */
        loop_run_once(k.loop, 5);
    }
    kid_report(&k, true);
    mqtt_destroy(&k.m);
    mqs_destroy(&k.s);
    loop_timer_stop(k.loop, &k.tick);
    loop_timer_stop(k.loop, &k.retry);
    loop_destroy(&k.loop);
    free(k.in);
    close(k.dfd);
    close(k.rfd);
    return 0;
}
