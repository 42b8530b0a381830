/* replay_net.c - sluice-replay --edge HOST:PORT: play a recording's inbound
 * byte streams against an edge, one TCP connection per recorded
 * connection, at the recorded pace (--speed), and count what comes back.
 *
 * Every recorded read is sent with one send(2), at its recorded time
 * relative to the first selected record (divided by --speed; 0 = no
 * waiting), so a frame the device split across reads is split again.
 * Waits use epoll_pwait2 with nanosecond timeouts while reading every open
 * connection, so answers are counted as they arrive and no socket buffer
 * fills. A recorded device-side close (reason eof or io) waits until the
 * connection got as many frames back as the recording shows, or
 * --linger-ms, then shuts down (eof) or resets (io); edge-side closes
 * (err, timeout, replaced...) are left to the edge. After the last record
 * the tool waits --linger-ms for the edge to finish, closes what is left
 * and prints per-connection and total counts, recorded vs received.
 *
 * With --tls-ca each connection speaks TLS (the device library's ctls.c:
 * the edge's certificate verified, one client certificate for all): the
 * handshake right after the connect, then each recorded read is one
 * SSL_write, so one record (the edge records what it decrypts, so a
 * recording of a TLS port replays as the same bytes); a device-side close
 * sends close_notify first.
 *
 * It deliberately does not play the persister: acks come from whatever
 * services the target edge is connected to, and tokens are the recorded
 * ones, so the target needs the same fleet secret. */
#define _GNU_SOURCE
#include "replay.h"
#include "ctls.h"
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum rstate {
    RS_WAIT = 0, /* not connected yet */
    RS_OPEN,     /* connected, replaying */
    RS_CLOSING,  /* recorded device close due: waiting for the answers first */
    RS_SHUT,     /* we shut down our side: waiting for the edge's close */
    RS_DONE,     /* closed (by the edge, by us, or never connected) */
};

enum closed_by { BY_NONE = 0, BY_EDGE, BY_US, BY_FAIL };

struct rt {
    int fd;
    struct ssl_st *ssl; /* with --tls-ca, while connected */
    uint8_t state;      /* enum rstate */
    uint8_t closed_by;  /* enum closed_by */
    bool sel;           /* selected by --device */
    bool reset;         /* recorded reason io: close with RST */
    uint64_t close_at;  /* RS_CLOSING deadline, monotonic ns */
    struct replay_dec dec;
    struct replay_counts back;
    uint64_t back_n, rec_n; /* frames received / recorded */
    uint64_t sent, chunks, skipped;
};

struct ev {
    uint64_t t;
    size_t off; /* record offset: ties keep file order */
    uint32_t conn;
    uint32_t out_before; /* frames the edge had sent this connection by then */
};

struct net {
    const struct replay_file *f;
    const struct replay_opts *o;
    struct ssl_ctx_st *tls; /* o->tls's context, or NULL */
    char host[256];         /* the edge's host: the name its certificate must carry */
    struct rt *rt;
    struct addrinfo *ai;
    int ep;
    uint32_t nsel, opened, open_now;
    uint32_t *closing, nclosing; /* connections in RS_CLOSING */
    uint64_t start, t0, t_span, next_progress;
    uint64_t sent, chunks, skipped, connect_failed;
    uint8_t rbuf[65536];
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int ev_cmp(const void *a, const void *b)
{
    const struct ev *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

static void finish_conn(struct net *n, struct rt *c, uint8_t by)
{
    if (c->state == RS_DONE)
        return;
    if (c->fd >= 0) {
        epoll_ctl(n->ep, EPOLL_CTL_DEL, c->fd, NULL);
        ctls_conn_free(&c->ssl, !c->reset, NULL); /* a reset sends no close_notify */
        if (c->reset) {
            struct linger lg = {1, 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(c->fd);
        c->fd = -1;
        n->open_now--;
    }
    replay_dec_fini(&c->dec);
    c->state = RS_DONE;
    c->closed_by = by;
}

static void on_frames(struct rt *c, const uint8_t *p, size_t len)
{
    struct sl_slice pl;
    enum frame_rc rc;
    while ((rc = replay_dec_next(&c->dec, &p, &len, &pl)) == FRAME_READY) {
        replay_count_frame(&c->back, pl.p, pl.n);
        c->back_n++;
    }
    if (rc != FRAME_NEED_MORE)
        c->back.type[MSG_NONE]++; /* the edge sent a bad frame header */
}

static void on_readable(struct net *n, struct rt *c)
{
    while (c->ssl) {
        size_t got = 0;
        enum ctls_io rc = ctls_read(c->ssl, n->rbuf, sizeof n->rbuf, &got, NULL, 0);
        if (rc == CTLS_OK) {
            on_frames(c, n->rbuf, got);
            continue;
        }
        if (rc == CTLS_WANT_READ || rc == CTLS_WANT_WRITE)
            return; /* WANT_WRITE: a key update to answer, sent with the next write */
        finish_conn(n, c, c->state == RS_SHUT ? BY_US : BY_EDGE);
        return;
    }
    for (;;) {
        ssize_t r = read(c->fd, n->rbuf, sizeof n->rbuf);
        if (r > 0) {
            on_frames(c, n->rbuf, (size_t)r);
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        finish_conn(n, c, c->state == RS_SHUT ? BY_US : BY_EDGE); /* EOF or reset */
        return;
    }
}

/* Close connections whose recorded close is due and whose answers came. */
static void check_closing(struct net *n, uint64_t now)
{
    for (uint32_t i = 0; i < n->nclosing;) {
        struct rt *c = &n->rt[n->closing[i]];
        if (c->state == RS_CLOSING && c->back_n < c->rec_n && now < c->close_at) {
            i++;
            continue;
        }
        n->closing[i] = n->closing[--n->nclosing];
        if (c->state != RS_CLOSING)
            continue; /* the edge closed it meanwhile */
        if (c->reset) {
            finish_conn(n, c, BY_US);
        } else {
            if (c->ssl)
                ctls_close_notify(c->ssl);
            shutdown(c->fd, SHUT_WR); /* the edge answers EOF by closing */
            c->state = RS_SHUT;
        }
    }
}

static void progress(struct net *n, uint64_t now)
{
    if (!n->o->progress_s || now < n->next_progress)
        return;
    n->next_progress = now + (uint64_t)n->o->progress_s * 1000000000u;
    double done = n->o->speed > 0 ? (double)(now - n->start) * n->o->speed / 1e9 : 0;
    if (done > (double)n->t_span / 1e9)
        done = (double)n->t_span / 1e9;
    fprintf(stderr,
            "sluice-replay: progress %.1f/%.1f s of recording, %u/%u connections opened, %u open, %llu bytes "
            "sent\n",
            done, (double)n->t_span / 1e9, n->opened, n->nsel, n->open_now, (unsigned long long)n->sent);
}

/* Read every connection until `until` (monotonic ns). */
static void pump(struct net *n, uint64_t until)
{
    struct epoll_event evs[64];
    for (;;) {
        uint64_t now = mono_ns();
        check_closing(n, now);
        progress(n, now);
        uint64_t wait = until > now ? until - now : 0;
        if (wait > 100000000u)
            wait = 100000000u; /* wake for closes and progress lines */
        struct timespec ts = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
        int k = epoll_pwait2(n->ep, evs, 64, &ts, NULL);
        for (int i = 0; i < k; i++)
            on_readable(n, &n->rt[evs[i].data.u32]);
        if (mono_ns() >= until && k < 64)
            return;
    }
}

/* The TLS handshake of a new connection, waiting for it like for the
 * connect (at most 10 s). 0, or -1 with a line on stderr. */
static int tls_connect(struct net *n, struct rt *c, int fd)
{
    const char *name = n->o->tls_server_name ? n->o->tls_server_name : n->host;
    char why[192] = "out of memory or a bad server name";
    c->ssl = ctls_conn_new(n->tls, fd, name, NULL);
    uint64_t end = mono_ns() + 10000000000u;
    while (c->ssl) {
        enum ctls_io rc = ctls_handshake(c->ssl, why, sizeof why);
        if (rc == CTLS_OK)
            return 0;
        uint64_t now = mono_ns();
        if ((rc != CTLS_WANT_READ && rc != CTLS_WANT_WRITE) || now >= end) {
            if (now >= end)
                snprintf(why, sizeof why, "timed out");
            break;
        }
        struct pollfd pf = {.fd = fd, .events = rc == CTLS_WANT_READ ? POLLIN : POLLOUT};
        poll(&pf, 1, (int)((end - now) / 1000000u) + 1);
    }
    const struct replay_conn *rc = &n->f->conns[c - n->rt];
    fprintf(stderr, "sluice-replay: connection %u.%u.%u: TLS with %s failed: %s\n", rc->worker, rc->slot,
            rc->gen, n->o->edge, why);
    ctls_conn_free(&c->ssl, false, NULL);
    return -1;
}

static void do_connect(struct net *n, uint32_t idx)
{
    struct rt *c = &n->rt[idx];
    n->opened++;
    int fd = -1, err = 0;
    for (struct addrinfo *a = n->ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0) {
        const struct replay_conn *rc = &n->f->conns[idx];
        fprintf(stderr, "sluice-replay: connection %u.%u.%u: connect to %s failed: %s\n", rc->worker,
                rc->slot, rc->gen, n->o->edge, strerror(err ? err : errno));
        n->connect_failed++;
        finish_conn(n, c, BY_FAIL);
        return;
    }
    /* Connected blocking (simple, and quick on a LAN); read and written
     * non-blocking from here on, so one slow connection stalls no other. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (n->tls && tls_connect(n, c, fd) != 0) {
        close(fd);
        n->connect_failed++;
        finish_conn(n, c, BY_FAIL);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = idx};
    if (epoll_ctl(n->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        n->connect_failed++;
        finish_conn(n, c, BY_FAIL);
        return;
    }
    c->fd = fd;
    c->state = RS_OPEN;
    n->open_now++;
}

/* One recorded read, in one send() where the socket takes it. */
static void send_chunk(struct net *n, struct rt *c, const uint8_t *p, size_t len)
{
    if (c->state == RS_WAIT)
        do_connect(n, (uint32_t)(c - n->rt));
    if (c->state != RS_OPEN) {
        c->skipped++;
        n->skipped++;
        return;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w;
        int e;
        if (c->ssl) {
            /* One record per recorded read (16 KiB at most each); after a
             * WANT_* the same bytes go again. */
            size_t put = 0, n16 = len - off < 16384 ? len - off : 16384;
            enum ctls_io rc = ctls_write(c->ssl, p + off, n16, &put, NULL, 0);
            w = rc == CTLS_OK ? (ssize_t)put : -1;
            e = rc == CTLS_WANT_READ || rc == CTLS_WANT_WRITE ? EAGAIN : EPIPE;
        } else {
            w = send(c->fd, p + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            e = errno;
        }
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && e == EINTR)
            continue;
        if (w < 0 && (e == EAGAIN || e == EWOULDBLOCK)) {
            /* The edge is not reading (backpressure): keep reading the
             * others while this one drains. */
            struct pollfd pf = {.fd = c->fd, .events = POLLOUT};
            pump(n, mono_ns() + 1000000u);
            if (c->state == RS_OPEN)
                poll(&pf, 1, 10);
            if (c->state != RS_OPEN)
                break;
            continue;
        }
        finish_conn(n, c, BY_EDGE); /* EPIPE, ECONNRESET: the edge closed it */
        break;
    }
    c->sent += off;
    n->sent += off;
    if (off == len) {
        c->chunks++;
        n->chunks++;
    } else {
        c->skipped++;
        n->skipped++;
    }
}

/* --await-replies: the device had this many frames from the edge when it
 * sent the next bytes (an ack before its next data, say): wait for them,
 * up to --linger-ms, and shift the rest of the schedule by the wait. */
static void await_answers(struct net *n, struct rt *c, uint32_t out_before)
{
    if (!n->o->await_replies || c->state != RS_OPEN || c->back_n >= out_before)
        return;
    uint64_t t = mono_ns(), end = t + (uint64_t)n->o->linger_ms * 1000000u;
    while (c->state == RS_OPEN && c->back_n < out_before && mono_ns() < end)
        pump(n, mono_ns() + 2000000u);
    n->start += mono_ns() - t;
}

static void on_close_record(struct net *n, struct rt *c, const struct replay_conn *rc)
{
    bool device_side = strcmp(rc->reason, "eof") == 0 || strcmp(rc->reason, "io") == 0;
    if (c->state != RS_OPEN || !device_side)
        return; /* the edge closed it in the recording: let it do so again */
    c->reset = strcmp(rc->reason, "io") == 0;
    c->state = RS_CLOSING;
    c->close_at = mono_ns() + (uint64_t)n->o->linger_ms * 1000000u;
    n->closing[n->nclosing++] = (uint32_t)(c - n->rt);
}

static int resolve(const char *spec, struct addrinfo **out, char *name, size_t cap)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof host || !colon[1])
        return -1;
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = 0;
    char *h = host;
    if (h[0] == '[') {
        h++;
        char *rb = strchr(h, ']');
        if (rb)
            *rb = 0;
    }
    snprintf(name, cap, "%s", h);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    return getaddrinfo(h, colon + 1, &hints, out) == 0 ? 0 : -1;
}

static void summary(struct net *n, FILE *out, double secs)
{
    struct replay_counts back = {0}, rec = {0};
    uint32_t by_edge = 0, by_us = 0, incomplete = 0;
    for (uint32_t i = 0; i < n->f->nconns; i++) {
        const struct replay_conn *rc = &n->f->conns[i];
        struct rt *c = &n->rt[i];
        if (!c->sel)
            continue;
        replay_counts_add(&back, &c->back);
        replay_counts_add(&rec, &rc->out);
        by_edge += c->closed_by == BY_EDGE;
        by_us += c->closed_by == BY_US;
        incomplete += rc->incomplete;
        fprintf(out,
                "conn %u.%u.%u dev=%s sent=%llu chunks=%llu skipped=%llu closed_by=%s back: ", rc->worker,
                rc->slot, rc->gen, rc->dev[0] ? rc->dev : "-", (unsigned long long)c->sent,
                (unsigned long long)c->chunks, (unsigned long long)c->skipped,
                c->closed_by == BY_EDGE   ? "edge"
                : c->closed_by == BY_US   ? "replay"
                : c->closed_by == BY_FAIL ? "connect-failed"
                                          : "never-opened");
        replay_counts_print(out, &c->back);
        fputs(" recorded: ", out);
        replay_counts_print(out, &rc->out);
        fprintf(out, "%s\n", rc->incomplete ? " (recording incomplete)" : "");
    }
    fprintf(out,
            "summary connections=%u connect_failed=%llu closed_by_edge=%u closed_by_replay=%u incomplete=%u "
            "bytes_sent=%llu chunks_sent=%llu chunks_skipped=%llu seconds=%.2f\n",
            n->nsel, (unsigned long long)n->connect_failed, by_edge, by_us, incomplete,
            (unsigned long long)n->sent, (unsigned long long)n->chunks, (unsigned long long)n->skipped, secs);
    fputs("summary back: ", out);
    replay_counts_print(out, &back);
    fputs("\nsummary recorded: ", out);
    replay_counts_print(out, &rec);
    fprintf(out, "\nsummary result=%s\n", replay_counts_equal(&back, &rec) ? "same" : "differs");
}

int replay_net(const struct replay_file *f, const struct replay_opts *o, FILE *out)
{
    struct net n = {.f = f, .o = o, .ep = -1};
    if (resolve(o->edge, &n.ai, n.host, sizeof n.host) != 0) {
        fprintf(stderr, "sluice-replay: cannot resolve --edge %s (want HOST:PORT)\n", o->edge);
        return 1;
    }
    n.tls = o->tls ? ctls_ctx_ref(o->tls) : NULL;
    n.rt = calloc(f->nconns ? f->nconns : 1, sizeof *n.rt);
    n.closing = calloc(f->nconns ? f->nconns : 1, sizeof *n.closing);
    size_t nev = 0, cap = 1024;
    struct ev *ev = malloc(cap * sizeof *ev);
    n.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!n.rt || !n.closing || !ev || n.ep < 0) {
        fprintf(stderr, "sluice-replay: out of memory\n");
        return 1;
    }
    uint32_t *outs = calloc(f->nconns ? f->nconns : 1, sizeof *outs);
    if (!outs) {
        fprintf(stderr, "sluice-replay: out of memory\n");
        return 1;
    }
    /* The schedule: OPEN, IN and CLOSE of the selected connections. */
    for (uint32_t i = 0; i < f->nconns; i++) {
        n.rt[i].sel = replay_selected(&f->conns[i], o->device);
        n.nsel += n.rt[i].sel;
        n.rt[i].fd = -1;
        for (int t = 0; t <= MSG_CMD; t++)
            n.rt[i].rec_n += f->conns[i].out.type[t];
        /* The edge's frames may exceed max_frame by the cmd envelope. */
        replay_dec_init(&n.rt[i].dec, (f->hdr.max_frame ? f->hdr.max_frame : SL_MAX_FRAME_DEFAULT) + 1024u);
    }
    size_t off = 0, at = 0;
    struct recfile_rec r;
    while ((at = off, replay_next(f, &off, &r))) {
        const struct replay_conn *rc = replay_conn_of(f, &r);
        if (!rc || !n.rt[rc - f->conns].sel)
            continue;
        if (r.kind == RECFILE_OUT)
            outs[rc - f->conns]++;
        if (r.kind != RECFILE_OPEN && r.kind != RECFILE_IN && r.kind != RECFILE_CLOSE)
            continue;
        if (nev == cap) {
            struct ev *g = realloc(ev, (cap *= 2) * sizeof *ev);
            if (!g)
                break;
            ev = g;
        }
        ev[nev++] = (struct ev){r.t_ns, at, (uint32_t)(rc - f->conns), outs[rc - f->conns]};
    }
    free(outs);
    qsort(ev, nev, sizeof *ev, ev_cmp);
    n.t0 = nev ? ev[0].t : 0;
    n.t_span = nev ? ev[nev - 1].t - n.t0 : 0;
    n.start = mono_ns();
    n.next_progress = n.start + (uint64_t)o->progress_s * 1000000000u;
    fprintf(stderr,
            "sluice-replay: %u connections, %zu records, %.1f s of recording at speed %g against %s\n",
            n.nsel, nev, (double)n.t_span / 1e9, o->speed, o->edge);

    for (size_t i = 0; i < nev; i++) {
        if (o->speed > 0)
            pump(&n, n.start + (uint64_t)((double)(ev[i].t - n.t0) / o->speed));
        else
            pump(&n, 0);
        size_t roff = ev[i].off;
        if (!replay_next(f, &roff, &r))
            continue;
        struct rt *c = &n.rt[ev[i].conn];
        if (r.kind == RECFILE_OPEN && c->state == RS_WAIT)
            do_connect(&n, ev[i].conn);
        else if (r.kind == RECFILE_IN && (await_answers(&n, c, ev[i].out_before), true))
            send_chunk(&n, c, r.payload, r.len);
        else if (r.kind == RECFILE_CLOSE)
            on_close_record(&n, c, &f->conns[ev[i].conn]);
    }
    /* Let the edge answer and close what it closes; then close the rest. */
    uint64_t end = mono_ns() + (uint64_t)o->linger_ms * 1000000u;
    while (n.open_now > 0 && mono_ns() < end)
        pump(&n, mono_ns() + 20000000u);
    for (uint32_t i = 0; i < f->nconns; i++)
        if (n.rt[i].state != RS_WAIT)
            finish_conn(&n, &n.rt[i], BY_US);
    summary(&n, out, (double)(mono_ns() - n.start) / 1e9);
    int rc = n.connect_failed ? 1 : 0;
    for (uint32_t i = 0; i < f->nconns; i++)
        replay_dec_fini(&n.rt[i].dec);
    free(n.rt);
    free(n.closing);
    free(ev);
    close(n.ep);
    freeaddrinfo(n.ai);
    ctls_ctx_unref(&n.tls);
    return rc;
}
