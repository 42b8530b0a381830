/* SPDX-License-Identifier: Apache-2.0 */
/* record.c - the edge's traffic recorder (--record FILE, docs/recording.md).
 *
 * Each worker appends records to its own ring: a single-producer,
 * single-consumer byte ring allocated once at startup, the producer being
 * the worker thread and the consumer the one writer thread. A hook copies
 * the bytes it is given and publishes them with one release store; it
 * never takes a lock, never allocates and never waits. When the writer
 * falls behind and a record does not fit, the record is dropped and
 * counted (sluice_edge_record_dropped_total), and the next record that
 * fits is preceded by a GAP record saying how much is missing there:
 * devices are never paused for the sake of a recording.
 *
 * The writer thread polls the rings (1-20 ms sleeps when idle; the workers
 * must not make a syscall to wake it), writes whole records only, stops
 * at --record-max-mb with an END record, and on shutdown drains
 * everything, adds END and fdatasyncs the file.
 *
 * --record-devices: a device is known only once its hello arrives, so a
 * filtered recorder holds each new connection back. Its OPEN time is kept
 * per slot; the bytes it reads before its first frame is complete are
 * staged (a fixed pool of small stages per worker); the first frame
 * decides: a hello whose `dev` matches releases OPEN and the staged reads
 * into the ring, in order and with their own times; anything else
 * (another device, not a hello, a first frame larger than a stage) leaves
 * the connection out. The common case, a hello that arrives in one read,
 * needs no stage at all.
 *
 * It deliberately knows nothing of sessions: the device id comes from
 * decoding the first frame again (recfile_hello_dev), so a hello that the
 * edge then refuses (bad token) is recorded too. */
#define _GNU_SOURCE
#include "record.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "sl/stat.h"
#include "sl/limits.h"
#include "sl/log.h"
#include "sl/recfile.h"
#include "edge.h"

#define RING_MIN          (4u << 20)     /* bytes per worker; ~60 ms of reads+acks at 2 M frames/s */
#define IN_MAX            (256u * 1024u) /* largest read: conn.c's scratch buffer (SCRATCH_CAP) */
#define STAGES            512            /* pre-hello stages per worker (filter only) */
#define STAGE_CAP         768            /* a hello is ~160 bytes; longer first frames are left out */
#define STAGE_CHUNKS      48             /* reads a stage keeps apart */
#define IDLE_SLEEP_MAX_MS 20
#define END_RESERVE       (RECFILE_REC_HDR + RECFILE_REASON_MAX)

/* Per-slot state of a filtered recorder. */
#define SEL_OFF  0      /* not recorded (or no connection) */
#define SEL_WAIT 0xfffe /* held back, nothing staged yet */
#define SEL_ON   0xffff /* recorded */
/* 1..STAGES: held back, reads staged in stage (value - 1) */

struct stage {
    uint32_t nbytes, nchunks;
    uint64_t t[STAGE_CHUNKS];
    uint16_t len[STAGE_CHUNKS];
    uint8_t bytes[STAGE_CAP];
};

struct ring {
    /* Producer (worker) side. */
    _Alignas(64) _Atomic uint64_t head;
    uint64_t tail_seen;           /* last tail read: reload only when it looks full */
    uint64_t gap_recs, gap_bytes; /* dropped since the last GAP record */
    uint8_t *buf;
    uint16_t *sel;                     /* filter: per slot */
    uint64_t *open_ns;                 /* filter: OPEN time per held-back slot */
    struct addr *open_peer;            /* filter: its peer, for the OPEN record written later */
    _Atomic uint64_t dropped, skipped; /* this ring's worker counts them */
    struct stage *stages;
    uint16_t *stage_free;
    uint32_t nstage_free;
    /* Consumer (writer) side, on its own cache line. */
    _Alignas(64) _Atomic uint64_t tail;
};

struct record {
    struct ring *rings;
    uint32_t nrings, nslots;
    uint64_t size, mask;  /* ring bytes, a power of two */
    const char *devices;  /* NULL = every device */
    _Atomic bool stopped; /* file closed: hooks return at once */
    _Atomic bool quit;
    int fd;
    uint64_t written, max_bytes; /* max_bytes 0 = no limit */
    pthread_t th;
    _Atomic uint64_t bytes; /* the writer thread counts them */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- producer side (worker threads) ------------------------------------ */

static void copy_in(const struct record *r, struct ring *g, uint64_t pos, const uint8_t *p, size_t n)
{
    size_t off = (size_t)(pos & r->mask), first = (size_t)r->size - off;
    if (first >= n) {
        memcpy(g->buf + off, p, n);
    } else {
        memcpy(g->buf + off, p, first);
        memcpy(g->buf, p + first, n - first);
    }
}

/* True if `need` more bytes fit; reads the writer's tail only when the
 * last value seen says no (one shared cache line touched per refill). */
static bool room(const struct record *r, struct ring *g, uint64_t need)
{
    uint64_t head = atomic_load_explicit(&g->head, memory_order_relaxed);
    if (need <= r->size - (head - g->tail_seen))
        return true;
    g->tail_seen = atomic_load_explicit(&g->tail, memory_order_acquire);
    return need <= r->size - (head - g->tail_seen);
}

/* Append one whole record; the caller checked room(). */
static void put(const struct record *r, struct ring *g, const struct recfile_rec *h, const uint8_t *p)
{
    uint64_t head = atomic_load_explicit(&g->head, memory_order_relaxed);
    uint8_t hb[RECFILE_REC_HDR];
    recfile_rec_encode(h, hb);
    copy_in(r, g, head, hb, sizeof hb);
    if (h->len)
        copy_in(r, g, head + RECFILE_REC_HDR, p, h->len);
    atomic_store_explicit(&g->head, head + RECFILE_REC_HDR + h->len, memory_order_release);
}

#define GAP_REC (RECFILE_REC_HDR + RECFILE_GAP_SIZE)

static void put_gap(const struct record *r, struct ring *g, uint16_t worker, uint64_t t)
{
    uint8_t gp[RECFILE_GAP_SIZE];
    recfile_gap_encode(g->gap_recs, g->gap_bytes, gp);
    struct recfile_rec gh = {.kind = RECFILE_GAP, .worker = worker, .t_ns = t, .len = RECFILE_GAP_SIZE};
    put(r, g, &gh, gp);
    g->gap_recs = g->gap_bytes = 0;
}

static void push(struct record *r, struct ring *g, uint8_t kind, struct record_conn c, uint64_t t,
                 const uint8_t *p, size_t n)
{
    struct recfile_rec h = {.kind = kind,
                            .worker = (uint16_t)c.worker,
                            .slot = c.slot,
                            .gen = c.gen,
                            .t_ns = t,
                            .len = (uint32_t)n};
    /* After drops, a GAP goes first (so the file says where records are
     * missing), and only together with the record that follows it: one
     * GAP per run of drops, never a ring full of GAPs. */
    uint64_t need = RECFILE_REC_HDR + n + (g->gap_recs ? GAP_REC : 0);
    if (room(r, g, need)) {
        if (g->gap_recs)
            put_gap(r, g, h.worker, t);
        put(r, g, &h, p);
        return;
    }
    g->gap_recs++;
    g->gap_bytes += RECFILE_REC_HDR + n;
    stat_inc(&g->dropped);
}

static void push_open(struct record *r, struct ring *g, struct record_conn c, const struct addr *a,
                      uint64_t t)
{
    struct recfile_peer peer = {.v6 = a->v6, .port = a->port};
    memcpy(peer.ip, a->ip, sizeof peer.ip);
    uint8_t op[RECFILE_OPEN_SIZE];
    recfile_open_encode(&peer, op);
    push(r, g, RECFILE_OPEN, c, t, op, sizeof op);
}

static void stage_put(struct ring *g, uint16_t sel)
{
    g->stage_free[g->nstage_free++] = (uint16_t)(sel - 1);
}

/* A held-back connection read p[0..n) at t: stage it while its first frame
 * is incomplete, or decide. True if the connection is recorded from now on
 * (OPEN and staged reads are in the ring; the caller pushes this read). */
static bool admit(struct record *r, struct ring *g, struct record_conn c, uint64_t t, const uint8_t *p,
                  size_t n)
{
    uint16_t sel = g->sel[c.slot];
    if (sel == SEL_OFF)
        return false;
    struct stage *s = NULL;
    const uint8_t *stream = p;
    size_t sn = n;
    if (sel != SEL_WAIT) {
        s = &g->stages[sel - 1];
        size_t take = n < STAGE_CAP - s->nbytes ? n : STAGE_CAP - s->nbytes;
        memcpy(s->bytes + s->nbytes, p, take); /* tentatively: kept only if staged below */
        stream = s->bytes;
        sn = s->nbytes + take;
    }
    struct sl_slice dev;
    enum recfile_dev_rc rc = recfile_hello_dev(stream, sn, STAGE_CAP, &dev);
    if (rc == RECFILE_DEV_MORE) {
        /* MORE means sn < STAGE_CAP, so the whole read was taken above. */
        if (!s && g->nstage_free > 0) {
            sel = (uint16_t)(g->stage_free[--g->nstage_free] + 1);
            g->sel[c.slot] = sel;
            s = &g->stages[sel - 1];
            s->nbytes = s->nchunks = 0;
            memcpy(s->bytes, p, n);
        }
        if (s && s->nchunks < STAGE_CHUNKS) {
            s->t[s->nchunks] = t;
            s->len[s->nchunks++] = (uint16_t)n;
            s->nbytes += (uint32_t)n;
            return false;
        }
        stat_inc(&g->skipped); /* out of stages, or a hello in too many pieces */
        if (s)
            stage_put(g, sel);
        g->sel[c.slot] = SEL_OFF;
        return false;
    }
    bool on = rc == RECFILE_DEV_FOUND && recfile_dev_match(r->devices, true, dev.p, dev.n);
    if (on) {
        push_open(r, g, c, &g->open_peer[c.slot], g->open_ns[c.slot]);
        for (uint32_t i = 0, off = 0; s && i < s->nchunks; off += s->len[i++])
            push(r, g, RECFILE_IN, c, s->t[i], s->bytes + off, s->len[i]);
    }
    if (s)
        stage_put(g, sel);
    g->sel[c.slot] = on ? SEL_ON : SEL_OFF;
    return on;
}

void record_open(struct record *r, struct record_conn c, const struct addr *peer)
{
    if (atomic_load_explicit(&r->stopped, memory_order_relaxed))
        return;
    struct ring *g = &r->rings[c.worker];
    uint64_t t = now_ns();
    if (g->sel) {
        g->sel[c.slot] = SEL_WAIT;
        g->open_ns[c.slot] = t;
        g->open_peer[c.slot] = *peer;
        return;
    }
    push_open(r, g, c, peer, t);
}

void record_in(struct record *r, struct record_conn c, const uint8_t *p, size_t n)
{
    if (atomic_load_explicit(&r->stopped, memory_order_relaxed))
        return;
    struct ring *g = &r->rings[c.worker];
    uint64_t t = now_ns();
    if (g->sel && g->sel[c.slot] != SEL_ON && !admit(r, g, c, t, p, n))
        return;
    push(r, g, RECFILE_IN, c, t, p, n);
}

void record_out(struct record *r, struct record_conn c, const uint8_t *p, size_t n)
{
    if (atomic_load_explicit(&r->stopped, memory_order_relaxed))
        return;
    struct ring *g = &r->rings[c.worker];
    if (g->sel && g->sel[c.slot] != SEL_ON)
        return;
    push(r, g, RECFILE_OUT, c, now_ns(), p, n);
}

void record_close(struct record *r, struct record_conn c, uint8_t reason, const char *reason_str)
{
    if (atomic_load_explicit(&r->stopped, memory_order_relaxed))
        return;
    struct ring *g = &r->rings[c.worker];
    if (g->sel) {
        uint16_t sel = g->sel[c.slot];
        g->sel[c.slot] = SEL_OFF;
        if (sel != SEL_ON) {
            if (sel != SEL_OFF && sel != SEL_WAIT)
                stage_put(g, sel);
            return;
        }
    }
    uint8_t cp[1 + RECFILE_REASON_MAX];
    size_t n = recfile_close_encode(reason, reason_str, cp);
    push(r, g, RECFILE_CLOSE, c, now_ns(), cp, n);
}

/* ---- consumer side (the writer thread) --------------------------------- */

static int write_all(struct record *r, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(r->fd, iov, n);
        if (w < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            return -e;
        }
        r->written += (uint64_t)w;
        stat_add(&r->bytes, (uint64_t)w);
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* Close the file after an END record; the hooks stop at once. */
static void finish(struct record *r, const char *reason)
{
    if (r->fd < 0)
        return;
    uint8_t end[RECFILE_REC_HDR + RECFILE_REASON_MAX];
    size_t n = strlen(reason) < RECFILE_REASON_MAX ? strlen(reason) : RECFILE_REASON_MAX;
    struct recfile_rec h = {
        .kind = RECFILE_END, .worker = RECFILE_WORKER_NONE, .t_ns = now_ns(), .len = (uint32_t)n};
    recfile_rec_encode(&h, end);
    memcpy(end + RECFILE_REC_HDR, reason, n);
    struct iovec iov = {end, RECFILE_REC_HDR + n};
    int rc = write_all(r, &iov, 1);
    /* EINVAL: a pipe or FIFO (--record /dev/stdout | zstd ...), nothing to sync. */
    if (rc == 0 && fdatasync(r->fd) != 0 && errno != EINVAL)
        rc = -errno;
    close(r->fd);
    r->fd = -1;
    atomic_store(&r->stopped, true);
    uint64_t dropped = 0;
    for (uint32_t i = 0; i < r->nrings; i++)
        dropped += stat_get(&r->rings[i].dropped);
    if (rc != 0)
        log_error("event=record_stop reason=\"%s\" bytes=%llu dropped=%llu err=\"%s\"", reason,
                  (unsigned long long)r->written, (unsigned long long)dropped, strerror(-rc));
    else /* a recording with holes deserves a warning */
        log_at(dropped ? SL_LOG_WARN : SL_LOG_INFO, "event=record_stop reason=\"%s\" bytes=%llu dropped=%llu",
               reason, (unsigned long long)r->written, (unsigned long long)dropped);
}

static uint32_t len_at(const struct record *r, const struct ring *g, uint64_t pos)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = g->buf[(pos + (uint64_t)i) & r->mask];
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* Bytes of [tail, head) that fit under --record-max-mb, whole records only. */
static uint64_t fit(const struct record *r, const struct ring *g, uint64_t tail, uint64_t head)
{
    if (!r->max_bytes || r->written + (head - tail) + END_RESERVE <= r->max_bytes)
        return head - tail;
    uint64_t pos = tail;
    while (pos < head) {
        uint64_t sz = RECFILE_REC_HDR + (uint64_t)len_at(r, g, pos);
        if (r->written + (pos - tail) + sz + END_RESERVE > r->max_bytes)
            break;
        pos += sz;
    }
    return pos - tail;
}

/* Move every ring's published records to the file (or discard them once
 * the file is closed). Returns the bytes consumed. */
static uint64_t drain(struct record *r)
{
    uint64_t moved = 0;
    for (uint32_t i = 0; i < r->nrings; i++) {
        struct ring *g = &r->rings[i];
        uint64_t tail = atomic_load_explicit(&g->tail, memory_order_relaxed);
        uint64_t head = atomic_load_explicit(&g->head, memory_order_acquire);
        if (head == tail)
            continue;
        if (r->fd >= 0) {
            uint64_t take = fit(r, g, tail, head);
            size_t off = (size_t)(tail & r->mask), first = (size_t)(r->size - off);
            struct iovec iov[2] = {{g->buf + off, take < first ? (size_t)take : first},
                                   {g->buf, take < first ? 0 : (size_t)take - first}};
            int rc = take ? write_all(r, iov, iov[1].iov_len ? 2 : 1) : 0;
            if (rc != 0) {
                log_error("event=record_write_failed err=\"%s\"", strerror(-rc));
                finish(r, "write error");
            } else if (take < head - tail) {
                finish(r, "size limit");
            }
        }
        atomic_store_explicit(&g->tail, head, memory_order_release);
        moved += head - tail;
    }
    return moved;
}

static void *writer_main(void *arg)
{
    struct record *r = arg;
    long sleep_ms = 1;
    for (;;) {
        /* Read quit before draining: whatever the workers wrote before
         * they stopped is then in this last drain. */
        bool quit = atomic_load_explicit(&r->quit, memory_order_acquire);
        uint64_t moved = drain(r);
        if (quit)
            break;
        if (moved) {
            sleep_ms = 1;
            continue;
        }
        struct timespec ts = {0, sleep_ms * 1000000L};
        nanosleep(&ts, NULL);
        if (sleep_ms < IDLE_SLEEP_MAX_MS)
            sleep_ms *= 2;
    }
    /* The workers are gone: record the drops they had no chance to mark. */
    for (uint32_t i = 0; i < r->nrings; i++)
        if (r->rings[i].gap_recs && room(r, &r->rings[i], GAP_REC)) /* drained: always room */
            put_gap(r, &r->rings[i], (uint16_t)i, now_ns());
    drain(r);
    finish(r, "shutdown");
    return NULL;
}

/* ---- lifetime ------------------------------------------------------------ */

static void free_rings(struct record *r)
{
    for (uint32_t i = 0; r->rings && i < r->nrings; i++) {
        struct ring *g = &r->rings[i];
        free(g->buf);
        free(g->sel);
        free(g->open_ns);
        free(g->open_peer);
        free(g->stages);
        free(g->stage_free);
    }
    free(r->rings);
    free(r);
}

static bool rings_init(struct record *r, bool filter)
{
    r->rings = aligned_alloc(64, r->nrings * sizeof *r->rings);
    if (!r->rings)
        return false;
    memset(r->rings, 0, r->nrings * sizeof *r->rings);
    for (uint32_t i = 0; i < r->nrings; i++) {
        struct ring *g = &r->rings[i];
        g->buf = malloc(r->size); /* pages get backed as the ring first wraps */
        if (!g->buf)
            return false;
        if (!filter)
            continue;
        g->sel = calloc(r->nslots, sizeof *g->sel);
        g->open_ns = calloc(r->nslots, sizeof *g->open_ns);
        g->open_peer = calloc(r->nslots, sizeof *g->open_peer);
        g->stages = calloc(STAGES, sizeof *g->stages);
        g->stage_free = malloc(STAGES * sizeof *g->stage_free);
        if (!g->sel || !g->open_ns || !g->open_peer || !g->stages || !g->stage_free)
            return false;
        for (uint32_t k = 0; k < STAGES; k++)
            g->stage_free[g->nstage_free++] = (uint16_t)(STAGES - 1 - k);
    }
    return true;
}

struct record *record_new(const struct edge_cfg *cfg)
{
    char qpath[512];
    log_q(qpath, sizeof qpath, cfg->record_path, strlen(cfg->record_path));
    /* A recording holds device tokens: owner-only, also when an existing
     * file is reused (O_TRUNC keeps its old mode, hence the fchmod). */
    int fd = open(cfg->record_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || fchmod(fd, 0600) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        log_error("event=record_open_failed path=%s err=\"%s\"", qpath, strerror(e));
        return NULL;
    }
    struct record *r = calloc(1, sizeof *r);
    if (!r) {
        close(fd);
        return NULL;
    }
    bool filter = cfg->record_devices && *cfg->record_devices;
    r->fd = fd;
    r->devices = filter ? cfg->record_devices : NULL;
    r->max_bytes = cfg->record_max_bytes;
    r->nrings = cfg->workers;
    r->nslots = cfg->max_conns;
    /* Room for two of the largest records: a full read, or a frame as big
     * as conn.c's encode buffer. */
    uint64_t big =
        cfg->max_frame + SL_FRAME_HDR + 512u > IN_MAX ? cfg->max_frame + SL_FRAME_HDR + 512u : IN_MAX;
    r->size = RING_MIN;
    while (r->size < 2 * (big + RECFILE_REC_HDR))
        r->size *= 2;
    r->mask = r->size - 1;
    if (!rings_init(r, filter)) {
        log_error("event=record_open_failed path=%s err=nomem", qpath);
        close(fd);
        free_rings(r);
        return NULL;
    }

    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    struct recfile_header h = {.version = RECFILE_VERSION,
                               .workers = (uint16_t)cfg->workers,
                               .max_frame = cfg->max_frame,
                               .flags = filter ? RECFILE_F_FILTERED : 0,
                               .start_real_ns = (uint64_t)rt.tv_sec * 1000000000u + (uint64_t)rt.tv_nsec,
                               .start_mono_ns = now_ns()};
    uint8_t hb[RECFILE_HDR_SIZE];
    recfile_header_encode(&h, hb);
    struct iovec iov = {hb, sizeof hb};
    int rc = write_all(r, &iov, 1);
    if (rc == 0)
        rc = -pthread_create(&r->th, NULL, writer_main, r);
    if (rc != 0) {
        log_error("event=record_open_failed path=%s err=\"%s\"", qpath, strerror(-rc));
        close(fd);
        free_rings(r);
        return NULL;
    }
    pthread_setname_np(r->th, "sl-record");
    char qdev[256];
    log_info("event=record_start path=%s devices=%s max_bytes=%llu ring_bytes=%llu", qpath,
             log_q(qdev, sizeof qdev, filter ? r->devices : "*", strlen(filter ? r->devices : "*")),
             (unsigned long long)r->max_bytes, (unsigned long long)r->size);
    return r;
}

void record_destroy(struct record **pr)
{
    struct record *r = *pr;
    if (!r)
        return;
    atomic_store_explicit(&r->quit, true, memory_order_release);
    pthread_join(r->th, NULL);
    free_rings(r);
    *pr = NULL;
}

void record_counts(const struct record *r, uint64_t *dropped, uint64_t *skipped, uint64_t *bytes)
{
    uint64_t d = 0, s = 0;
    for (uint32_t i = 0; i < r->nrings; i++) {
        d += stat_get(&r->rings[i].dropped);
        s += stat_get(&r->rings[i].skipped);
    }
    *dropped = d;
    *skipped = s;
    *bytes = stat_get(&r->bytes);
}
