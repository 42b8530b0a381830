/* SPDX-License-Identifier: Apache-2.0 */
/* devsim_worker.c - one sluice-devsim worker: `count` simulated devices on
 * one epoll loop (sl/loop.h), each a real struct sl_client from the device
 * library, so backoff, resend, ping and the ack queue are the library's own
 * logic, not a copy.
 *
 * Each device has one loop timer armed at the earlier of its client's
 * deadline and its next scheduled send; after every call into a client the
 * device is reconciled (fd registration, write interest, timer). Seqs come
 * from a per-prefix state file (one u64 per device index, written before a
 * block of seqs is used) or, without --state-dir, from the real-time clock.
 *
 * It deliberately does not print the progress line or talk to PostgreSQL:
 * it sends a struct snap to the parent once a second and writes per-device
 * seq records at the end. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "devsim.h"
#include "sl/client.h"
#include "sl/limits.h"
#include "sl/log.h"
#include "sl/loop.h"
#include "sl/sysres.h"
#include "sl/token.h"

/* When a message was queued, in microseconds: the device library's clock is
 * the loop's cached milliseconds, too coarse for acks that take 1-2 ms. */
struct stamp {
    uint64_t seq; /* 0: free */
    uint64_t us;
};

struct dev {
    struct sl_client *c;
    struct stamp *stamps; /* window entries: one per message in flight */
    struct loop_timer t;
    struct worker *w;
    uint32_t idx; /* device number n of <prefix>-<n> */
    int fd;       /* registered with the loop, -1 none */
    bool ww;      /* registered with EPOLLOUT */
    bool connected;
    bool done;             /* will send no more */
    uint64_t next_send_us; /* loop clock, microseconds */
    uint64_t queued;
    uint64_t lo; /* first seq of this run (0: none yet) */
    uint64_t hi; /* last seq + 1 */
    uint64_t acked;
};

struct worker {
    const struct worker_cfg *wc;
    struct loop *l;
    struct dev *devs;
    int state_fd;
    uint8_t *body;
    uint32_t body_len;
    struct stamp *stamps; /* count x window */
    uint64_t start_ms, stop_send_ms, drain_end_ms;
    bool sending;
    uint32_t not_done;
    uint32_t tls_warned; /* TLS failures logged (the first few only) */
    struct snap s;
    struct loop_timer tick;
};

/* One write(2) of a snap is atomic only below PIPE_BUF. */
_Static_assert(sizeof(struct snap) <= PIPE_BUF, "struct snap must fit one atomic pipe write");

static struct loop *g_loop; /* the client clock reads the loop's cached time */

static uint64_t dev_clock(void *ud)
{
    (void)ud;
    return loop_now_ms(g_loop);
}

/* ---- seq state file: u64 next per device index, at offset idx * 8 ---- */

static int store_load(void *ud, uint64_t *next)
{
    struct dev *d = ud;
    uint64_t v = 0;
    ssize_t r = pread(d->w->state_fd, &v, sizeof v, (off_t)d->idx * 8);
    if (r < 0)
        return -1;
    *next = (r == (ssize_t)sizeof v && v > 0) ? v : 1;
    return 0;
}

/* pwrite without fsync: the reservation survives a crash of devsim (the
 * page cache keeps it), which is what a second run needs; fdatasync runs
 * once at the end. A simulator need not survive a kernel crash. */
static int store_save(void *ud, uint64_t next)
{
    struct dev *d = ud;
    return pwrite(d->w->state_fd, &next, sizeof next, (off_t)d->idx * 8) == (ssize_t)sizeof next ? 0 : -1;
}

/* ---- callbacks ---- */

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Seqs need not be consecutive (clock seqs), so a linear search of the
 * window's few entries, not seq % window. */
static void stamp_put(struct dev *d, uint64_t seq)
{
    uint32_t w = d->w->wc->window;
    for (uint32_t i = 0; i < w; i++) {
        if (d->stamps[i].seq == 0) {
            d->stamps[i].seq = seq;
            d->stamps[i].us = mono_us();
            return;
        }
    }
}

static void on_ack(void *ud, uint64_t seq, uint64_t queued_ms)
{
    struct dev *d = ud;
    d->acked++;
    d->w->s.acked++;
    uint64_t now = mono_us();
    uint64_t lat = UINT64_MAX;
    for (uint32_t i = 0; i < d->w->wc->window; i++) {
        if (d->stamps[i].seq == seq) {
            lat = now >= d->stamps[i].us ? now - d->stamps[i].us : 0;
            d->stamps[i].seq = 0;
            break;
        }
    }
    if (lat == UINT64_MAX) {
        /* not stamped here (cannot happen while the window holds): the
         * library's millisecond stamp */
        uint64_t ms = loop_now_ms(d->w->l);
        lat = (ms >= queued_ms ? ms - queued_ms : 0) * 1000u;
    }
    hist_add(&d->w->s.lat, lat);
}

static void on_cmd(void *ud, const char *id, const uint8_t *body, size_t len)
{
    struct dev *d = ud;
    /* A simulated device answers every command with ok and echoes the body. */
    sl_client_answer(d->c, id, true, body, len);
}

static void on_state(void *ud, enum sl_client_state st, enum sl_err err)
{
    struct dev *d = ud;
    struct snap *s = &d->w->s;
    if (st == SL_CLIENT_CONNECTED) {
        d->connected = true;
        s->connected++;
        s->last_welcome_ms = loop_now_ms(d->w->l);
        if (s->first_welcome_ms == 0)
            s->first_welcome_ms = s->last_welcome_ms;
    } else if (st == SL_CLIENT_IDLE) {
        if (d->connected)
            s->connected--;
        d->connected = false;
        s->disconnects++;
        /* A certificate problem fails every device the same way: say it,
         * a few times, where a default log level shows it. */
        if (err == SL_TLS && d->w->tls_warned < 3) {
            d->w->tls_warned++;
            log_warn("event=tls_failed dev=%s-%u err=\"%s\"", d->w->wc->prefix, d->idx,
                     sl_client_last_error(d->c));
        } else if (err != SL_IO && err != SL_TIMEOUT) {
            log_debug("event=disconnect dev=%s-%u err=%s why=\"%s\"", d->w->wc->prefix, d->idx,
                      sl_strerror(err), sl_client_last_error(d->c));
        }
    }
}

/* ---- per-device scheduling ---- */

static void fd_cb(struct loop *l, int fd, uint32_t events, void *ud);

static uint64_t send_step_us(const struct worker *w)
{
    return w->wc->rate > 0 ? (uint64_t)(1e6 / w->wc->rate) : 0;
}

/* Re-sync the loop with the client after any call into it. */
static void reconcile(struct dev *d)
{
    struct worker *w = d->w;
    int fd = sl_client_fd(d->c);
    bool ww = sl_client_want_write(d->c);
    uint32_t ev = EPOLLIN | (ww ? EPOLLOUT : 0);
    if (fd != d->fd) {
        if (d->fd >= 0)
            loop_del(w->l, d->fd); /* the client closed it: forget the registration */
        d->fd = -1;
        if (fd >= 0 && loop_add(w->l, fd, ev, fd_cb, d) == 0) {
            d->fd = fd;
            d->ww = ww;
        }
    } else if (fd >= 0 && ww != d->ww) {
        if (loop_mod(w->l, fd, ev, fd_cb, d) == 0)
            d->ww = ww;
    }
    /* One timer per device: the earlier of the client's deadline and the
     * next send (when the window has room). Moving it later is left to the
     * timer itself (it fires, finds nothing due, re-arms), which keeps heap
     * operations to about one per event. */
    uint64_t now = loop_now_ms(w->l);
    uint64_t want = sl_client_deadline(d->c);
    if (w->sending && !d->done && sl_client_state(d->c) == SL_CLIENT_CONNECTED &&
        sl_client_queue_free(d->c) > 0) {
        uint64_t ns = send_at_ms(d->next_send_us); /* not sooner: see devsim.h */
        if (ns < want)
            want = ns;
    }
    if (want == UINT64_MAX)
        return;
    if (!loop_timer_armed(&d->t) || want < d->t.when_ms)
        loop_timer_start(w->l, &d->t, want > now ? want - now : 0);
}

static void mark_done(struct dev *d)
{
    if (!d->done) {
        d->done = true;
        d->w->not_done--;
    }
}

/* Send what is due, as long as the window allows. */
static void send_due(struct dev *d)
{
    struct worker *w = d->w;
    const struct worker_cfg *wc = w->wc;
    if (!w->sending || d->done || sl_client_state(d->c) != SL_CLIENT_CONNECTED)
        return;
    uint64_t now_us = loop_now_ms(w->l) * 1000;
    uint64_t step = send_step_us(w);
    /* A device that fell behind (window full, reconnecting) does not build
     * an unbounded debt: at most one second of catch-up. */
    if (step && d->next_send_us + 1000000 < now_us)
        d->next_send_us = now_us - 1000000;
    while (d->next_send_us <= now_us) {
        if (wc->messages && d->queued >= wc->messages) {
            mark_done(d);
            return;
        }
        /* the body: the same bin of body_size bytes for every message */
        uint64_t seq = 0;
        struct timespec rt;
        clock_gettime(CLOCK_REALTIME, &rt);
        int64_t ts = (int64_t)rt.tv_sec * 1000 + rt.tv_nsec / 1000000;
        enum sl_err e = sl_client_send(d->c, w->body, w->body_len, ts, &seq);
        if (e == SL_AGAIN) {
            w->s.backpressure++;
            return;
        }
        if (e != SL_OK) {
            w->s.errors++;
            return;
        }
        stamp_put(d, seq);
        if (d->lo == 0)
            d->lo = seq;
        d->hi = seq + 1;
        d->queued++;
        w->s.queued++;
        if (step == 0)
            continue; /* as fast as the window allows */
        d->next_send_us += step;
    }
}

static void dev_timer(struct loop *l, void *ud)
{
    struct dev *d = ud;
    (void)l;
    sl_client_tick(d->c, 0);
    send_due(d);
    reconcile(d);
}

static void fd_cb(struct loop *l, int fd, uint32_t events, void *ud)
{
    struct dev *d = ud;
    (void)l;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        sl_client_on_readable(d->c);
    if ((events & EPOLLOUT) && sl_client_fd(d->c) == fd)
        sl_client_on_writable(d->c);
    send_due(d); /* an ack may have opened the window */
    reconcile(d);
}

/* ---- the per-second tick: progress, phases, end ---- */

static void snap_send(struct worker *w, bool final)
{
    struct snap *s = &w->s;
    s->final = final;
    s->frames = s->resent = s->tls_handshakes = s->tls_resumed = 0;
    for (uint32_t i = 0; i < w->wc->count; i++) {
        const struct sl_client_stats *cs = sl_client_stats(w->devs[i].c);
        s->frames += cs->sent;
        s->resent += cs->resent;
        s->tls_handshakes += cs->tls_handshakes;
        s->tls_resumed += cs->tls_resumed;
    }
    uint64_t err_frames = 0;
    for (uint32_t i = 0; i < w->wc->count; i++)
        err_frames += sl_client_stats(w->devs[i].c)->errors;
    struct snap out = *s;
    out.errors += err_frames;
    ssize_t n = write(w->wc->pipe_fd, &out, sizeof out);
    (void)n; /* the parent gone: nothing to tell */
}

static void stop_sending(struct worker *w)
{
    if (!w->sending)
        return;
    w->sending = false;
    w->drain_end_ms = loop_now_ms(w->l) + (uint64_t)(w->wc->drain_s * 1000);
}

static void tick_cb(struct loop *l, void *ud)
{
    struct worker *w = ud;
    uint64_t now = loop_now_ms(l);
    if (*w->wc->stop >= 2) {
        loop_stop(l);
        return;
    }
    if (*w->wc->stop == 1 || (w->stop_send_ms && now >= w->stop_send_ms) ||
        (w->wc->messages && w->not_done == 0))
        stop_sending(w);
    if (!w->sending) {
        if (w->s.acked >= w->s.queued || now >= w->drain_end_ms) {
            loop_stop(l);
            return;
        }
    }
    snap_send(w, false);
    /* Snapshots land ~100 ms before the parent's line at t0 + n s, so the
     * line shows this second, not the previous one. */
    uint64_t phase = (now + 100 - w->wc->t0_ms % 1000) % 1000;
    loop_timer_start(l, &w->tick, 1000 - phase);
}

/* ---- setup and teardown ---- */

static int open_state(struct worker *w)
{
    w->state_fd = -1;
    if (w->wc->state_dir == NULL || w->wc->state_dir[0] == '\0')
        return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.seq", w->wc->state_dir, w->wc->prefix);
    w->state_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (w->state_fd < 0) {
        log_error("event=state_open path=%s err=\"%s\"", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int write_records(struct worker *w)
{
    FILE *f = fopen(w->wc->records_path, "wb");
    if (f == NULL)
        return -1;
    uint64_t un[4096];
    for (uint32_t i = 0; i < w->wc->count; i++) {
        struct dev *d = &w->devs[i];
        uint32_t n = sl_client_unacked_seqs(d->c, un, 4096);
        struct dev_rec r = {d->idx, n, d->lo, d->hi, d->acked};
        fwrite(&r, sizeof r, 1, f);
        fwrite(un, sizeof un[0], n, f);
    }
    return fclose(f);
}

int worker_run(const struct worker_cfg *wc)
{
    struct worker w;
    memset(&w, 0, sizeof w);
    w.wc = wc;
    w.s.worker = wc->worker;
    w.s.devices = wc->count;

    /* Each connection is one fd; the hard limit here is 20,000. */
    sysres_raise_nofile();
    if (open_state(&w) != 0)
        return 2;
    w.l = loop_new(wc->count + 16);
    g_loop = w.l;
    w.devs = calloc(wc->count ? wc->count : 1, sizeof *w.devs);
    w.stamps = calloc((size_t)(wc->count ? wc->count : 1) * wc->window, sizeof *w.stamps);
    /* The body: msgpack bin of body_size - (bin header) bytes, so the whole
     * body is body_size bytes; the content is deterministic filler. */
    uint32_t bs = wc->body_size < 3 ? 3 : wc->body_size;
    w.body = malloc(bs);
    w.body_len = bs;
    if (w.l == NULL || w.devs == NULL || w.body == NULL || w.stamps == NULL) {
        log_error("event=nomem");
        return 2;
    }
    if (bs - 2 <= 255) {
        w.body[0] = 0xc4;
        w.body[1] = (uint8_t)(bs - 2);
        memset(w.body + 2, 'x', bs - 2);
    } else {
        w.body[0] = 0xc5;
        w.body[1] = (uint8_t)((bs - 3) >> 8);
        w.body[2] = (uint8_t)(bs - 3);
        memset(w.body + 3, 'x', bs - 3);
    }

    w.start_ms = loop_clock_ms();
    w.sending = true;
    w.not_done = wc->count;
    w.stop_send_ms = wc->duration_s > 0 ? w.start_ms + (uint64_t)(wc->duration_s * 1000) : 0;

    for (uint32_t i = 0; i < wc->count; i++) {
        struct dev *d = &w.devs[i];
        char dev[SL_DEV_MAX + 1], tok[SL_TOKEN_HEX + 1], src[16];
        d->w = &w;
        d->stamps = &w.stamps[(size_t)i * wc->window];
        d->idx = wc->first + i;
        d->fd = -1;
        snprintf(dev, sizeof dev, "%s-%u", wc->prefix, d->idx);
        token_compute(wc->secret, wc->secret_len, (const uint8_t *)dev, strlen(dev), tok);
        ip_range_at(&wc->src, d->idx, src);
        struct sl_client_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.edges = wc->edges;
        cfg.dev = dev;
        cfg.tok = tok;
        cfg.window = wc->window;
        cfg.max_body = bs;
        cfg.rx_max = 1024; /* acks, pongs, welcome, small commands */
        cfg.ack_timeout_ms = wc->ack_timeout_ms;
        cfg.start_edge = d->idx % (wc->n_edges ? wc->n_edges : 1);
        cfg.bind_addr = src[0] ? src : NULL;
        cfg.seed = 0x9e3779b97f4a7c15ull * (d->idx + 1);
        cfg.clock_ms = dev_clock;
        cfg.cb.on_ack = on_ack;
        cfg.cb.on_cmd = on_cmd;
        cfg.cb.on_state = on_state;
        cfg.cb.ud = d;
        cfg.tls = wc->tls;
        cfg.tls_server_name = wc->tls_server_name;
        if (w.state_fd >= 0) {
            cfg.seq_mode = SL_SEQ_STORE;
            cfg.store.load = store_load;
            cfg.store.save = store_save;
            cfg.store.ud = d;
        } else {
            cfg.seq_mode = SL_SEQ_CLOCK;
        }
        enum sl_err err;
        d->c = sl_client_new(&cfg, &err);
        if (d->c == NULL) {
            log_error("event=client_new dev=%s err=\"%s\"", dev, sl_strerror(err));
            return 2;
        }
        loop_timer_init(&d->t, dev_timer, d);
        /* Ramp: device i of this worker connects at i / ramp seconds. */
        uint64_t at = wc->ramp > 0 ? (uint64_t)((double)i * 1000.0 / wc->ramp) : 0;
        /* Spread the first sends over one period so devices do not beat in step. */
        uint64_t step = send_step_us(&w);
        d->next_send_us = (w.start_ms + at) * 1000 + (step ? (cfg.seed >> 11) % step : 0);
        loop_timer_start(w.l, &d->t, at);
    }
    loop_timer_init(&w.tick, tick_cb, &w);
    loop_timer_start(w.l, &w.tick, 1000 - (w.start_ms + 100 - wc->t0_ms % 1000) % 1000);
    loop_run(w.l);

    /* Save exact next seqs, so the next run continues without a gap. */
    for (uint32_t i = 0; i < wc->count; i++)
        sl_client_seq_flush(w.devs[i].c);
    if (w.state_fd >= 0) {
        fdatasync(w.state_fd);
        close(w.state_fd);
    }
    int rc = write_records(&w) == 0 ? 0 : 2;
    snap_send(&w, true);
    bool all = w.s.acked == w.s.queued;
    for (uint32_t i = 0; i < wc->count; i++)
        sl_client_destroy(&w.devs[i].c);
    free(w.devs);
    free(w.stamps);
    free(w.body);
    loop_destroy(&w.l);
    return rc ? rc : (all ? 0 : 1);
}
