/* replay_load.c - sluice-replay: map a recording, check its header and
 * index its connections (device, peer, close reason, what the edge sent
 * back), so the dump and the replay can select by device and compare.
 *
 * It reads the file once through mmap and never writes. A recording cut
 * short (the edge was killed: the last record is incomplete) or corrupt
 * is read up to the last whole record and the reason is kept in
 * f->problem for the caller to report. */
#define _GNU_SOURCE
#include "replay.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t conn_hash(uint16_t w, uint32_t slot, uint32_t gen)
{
    uint64_t k = (uint64_t)w << 48 ^ (uint64_t)slot << 20 ^ gen;
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

static uint32_t *find_slot(uint32_t *hash, uint32_t hcap, const struct replay_conn *conns, uint16_t w,
                           uint32_t slot, uint32_t gen)
{
    uint32_t i = (uint32_t)conn_hash(w, slot, gen) & (hcap - 1);
    for (;; i = (i + 1) & (hcap - 1)) {
        uint32_t v = hash[i];
        if (!v)
            return &hash[i];
        const struct replay_conn *c = &conns[v - 1];
        if (c->worker == w && c->slot == slot && c->gen == gen)
            return &hash[i];
    }
}

static bool grow(struct replay_file *f)
{
    if (f->nconns == f->cap) {
        uint32_t cap = f->cap ? f->cap * 2 : 64;
        struct replay_conn *n = realloc(f->conns, cap * sizeof *n);
        if (!n)
            return false;
        f->conns = n;
        f->cap = cap;
    }
    if ((f->nconns + 1) * 2 > f->hcap) {
        uint32_t hcap = f->hcap ? f->hcap * 2 : 256;
        uint32_t *h = calloc(hcap, sizeof *h);
        if (!h)
            return false;
        for (uint32_t i = 0; i < f->nconns; i++) {
            const struct replay_conn *c = &f->conns[i];
            *find_slot(h, hcap, f->conns, c->worker, c->slot, c->gen) = i + 1;
        }
        free(f->hash);
        f->hash = h;
        f->hcap = hcap;
    }
    return true;
}

struct replay_conn *replay_conn_of(const struct replay_file *f, const struct recfile_rec *r)
{
    if (r->kind == RECFILE_GAP || r->kind == RECFILE_END || !f->hcap)
        return NULL;
    uint32_t v = *find_slot(f->hash, f->hcap, f->conns, r->worker, r->slot, r->gen);
    return v ? &f->conns[v - 1] : NULL;
}

static struct replay_conn *conn_add(struct replay_file *f, const struct recfile_rec *r)
{
    if (!grow(f))
        return NULL;
    struct replay_conn *c = &f->conns[f->nconns++];
    memset(c, 0, sizeof *c);
    c->worker = r->worker;
    c->slot = r->slot;
    c->gen = r->gen;
    c->t_first = r->t_ns;
    c->dev_rc = RECFILE_DEV_MORE;
    /* Its OPEN was dropped (or it began before a filter let it in): the
     * stream may start mid-frame. */
    c->incomplete = r->kind != RECFILE_OPEN;
    *find_slot(f->hash, f->hcap, f->conns, r->worker, r->slot, r->gen) = f->nconns;
    return c;
}

/* Look for the device in the first inbound bytes. */
static void find_dev(struct replay_conn *c, const uint8_t *p, uint32_t n)
{
    if (c->dev_rc != RECFILE_DEV_MORE)
        return;
    if (!c->head && !(c->head = malloc(REPLAY_HELLO_MAX))) {
        c->dev_rc = RECFILE_DEV_NONE;
        return;
    }
    uint32_t take = n < REPLAY_HELLO_MAX - c->head_n ? n : REPLAY_HELLO_MAX - c->head_n;
    memcpy(c->head + c->head_n, p, take);
    c->head_n += take;
    struct sl_slice dev;
    c->dev_rc = (uint8_t)recfile_hello_dev(c->head, c->head_n, REPLAY_HELLO_MAX, &dev);
    if (c->dev_rc == RECFILE_DEV_FOUND) {
        memcpy(c->dev, dev.p, dev.n);
        c->dev[dev.n] = 0;
    }
    if (c->dev_rc != RECFILE_DEV_MORE) {
        free(c->head);
        c->head = NULL;
    }
}

static void index_record(struct replay_file *f, const struct recfile_rec *r)
{
    if (r->kind == RECFILE_END)
        return;
    if (r->kind == RECFILE_GAP) {
        uint64_t recs = 0, bytes = 0;
        (void)recfile_gap_decode(r, &recs, &bytes);
        f->ngaps++;
        f->gap_recs += recs;
        /* Whatever was dropped belonged to this worker's open connections. */
        for (uint32_t i = 0; i < f->nconns; i++)
            if (f->conns[i].worker == r->worker && !f->conns[i].has_close)
                f->conns[i].incomplete = true;
        return;
    }
    struct replay_conn *c = replay_conn_of(f, r);
    if (!c && !(c = conn_add(f, r)))
        return;
    c->t_last = r->t_ns;
    switch (r->kind) {
    case RECFILE_OPEN: c->has_open = recfile_open_decode(r, &c->peer) == SL_OK; break;
    case RECFILE_IN:
        c->nin++;
        c->in_bytes += r->len;
        find_dev(c, r->payload, r->len);
        break;
    case RECFILE_OUT:
        if (r->len > SL_FRAME_HDR)
            replay_count_frame(&c->out, r->payload + SL_FRAME_HDR, r->len - SL_FRAME_HDR);
        break;
    case RECFILE_CLOSE: {
        uint8_t code;
        struct sl_slice name;
        c->has_close = true;
        if (recfile_close_decode(r, &code, &name) == SL_OK) {
            memcpy(c->reason, name.p, name.n);
            c->reason[name.n] = 0;
        }
        break;
    }
    }
}

int replay_load(const char *path, struct replay_file *f)
{
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "sluice-replay: %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    f->size = (size_t)st.st_size;
    if (f->size > 0) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            fprintf(stderr, "sluice-replay: %s: mmap: %s\n", path, strerror(errno));
            close(fd);
            return -1;
        }
        f->map = m;
    }
    close(fd);
    enum sl_err rc = recfile_header_decode(f->map, f->size, &f->hdr);
    if (rc != SL_OK) {
        fprintf(stderr, "sluice-replay: %s: %s\n", path,
                rc == SL_VERSION ? "recording of a newer format version"
                                 : "not a Sluice recording (bad magic or too short)");
        replay_unload(f);
        return -1;
    }
    /* The dump and the replay size frame buffers from max_frame: a corrupt
     * or hostile header must not make them ask for 4 GiB. */
    if (f->hdr.max_frame > SL_MAX_FRAME_LIMIT)
        f->hdr.max_frame = SL_MAX_FRAME_LIMIT;
    f->end = RECFILE_HDR_SIZE;
    for (;;) {
        struct recfile_rec r;
        size_t used = 0;
        rc = recfile_rec_decode(f->map + f->end, f->size - f->end, &r, &used);
        if (rc != SL_OK) {
            if (f->end < f->size)
                f->problem = rc == SL_AGAIN ? "last record cut short (edge killed before its final flush?)"
                                            : "corrupt record: reading stopped there";
            break;
        }
        f->nrecs++;
        index_record(f, &r);
        f->end += used;
    }
    for (uint32_t i = 0; i < f->nconns; i++) {
        free(f->conns[i].head);
        f->conns[i].head = NULL;
    }
    return 0;
}

void replay_unload(struct replay_file *f)
{
    if (f->map)
        munmap((void *)f->map, f->size);
    free(f->conns);
    free(f->hash);
    memset(f, 0, sizeof *f);
}

bool replay_next(const struct replay_file *f, size_t *off, struct recfile_rec *r)
{
    if (*off < RECFILE_HDR_SIZE)
        *off = RECFILE_HDR_SIZE;
    size_t used;
    if (*off >= f->end || recfile_rec_decode(f->map + *off, f->end - *off, r, &used) != SL_OK)
        return false;
    *off += used;
    return true;
}

bool replay_selected(const struct replay_conn *c, const char *device)
{
    if (!device || !*device)
        return true;
    return c->dev_rc == RECFILE_DEV_FOUND &&
           recfile_dev_match(device, false, (const uint8_t *)c->dev, strlen(c->dev));
}

void replay_time_str(const struct replay_file *f, uint64_t t_ns, char *out, size_t cap)
{
    /* In unsigned arithmetic: times from a corrupt file may be anything, and
     * wrapping is defined there where signed overflow is not. */
    int64_t real = (int64_t)(f->hdr.start_real_ns + (t_ns - f->hdr.start_mono_ns));
    int64_t sec = real / 1000000000, ns = real % 1000000000;
    if (ns < 0) { /* before 1970: floor, so the fraction counts forward */
        ns += 1000000000;
        sec--;
    }
    time_t s = (time_t)sec;
    struct tm tm;
    gmtime_r(&s, &tm); /* cannot fail: int64 ns end in the year 2262 */
    char ymd[32];
    strftime(ymd, sizeof ymd, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%06dZ", ymd, (int)(ns / 1000));
}

void replay_dec_init(struct replay_dec *d, uint32_t max)
{
    memset(d, 0, sizeof *d);
    frame_dec_init(&d->dec, max);
}

void replay_dec_fini(struct replay_dec *d)
{
    free(d->buf);
    d->buf = d->dec.buf = NULL;
}

enum frame_rc replay_dec_next(struct replay_dec *d, const uint8_t **p, size_t *n, struct sl_slice *pl)
{
    if (d->buf && frame_dec_idle(&d->dec)) /* the last payload has been used */
        replay_dec_fini(d);
    while (*n > 0 && !d->dead) {
        size_t used = 0;
        enum frame_rc rc = frame_dec_feed(&d->dec, *p, *n, &used, pl);
        *p += used;
        *n -= used;
        if (rc == FRAME_READY)
            return rc;
        if (rc == FRAME_NEED_BUF && (d->buf = d->dec.buf = malloc(d->dec.max)) != NULL)
            continue;
        if (rc != FRAME_NEED_MORE) {
            d->dead = true;
            return rc;
        }
    }
    return FRAME_NEED_MORE;
}

void replay_count_frame(struct replay_counts *k, const uint8_t *p, size_t n)
{
    struct msg m;
    if (msg_decode(p, n, &m) != MSG_OK) {
        k->type[MSG_NONE]++;
        return;
    }
    k->type[m.t]++;
    if (m.t != MSG_ERR)
        return;
    for (int e = SL_FRAME; e <= SL_TIMEOUT; e++)
        if (sl_slice_eqs(m.u.err.code, sl_wire_code((enum sl_err)e))) {
            k->err[e]++;
            return;
        }
    k->err[SL_OK]++;
}

void replay_counts_print(FILE *out, const struct replay_counts *k)
{
    int n = 0;
    for (int t = MSG_HELLO; t <= MSG_CMD; t++)
        if (k->type[t] && t != MSG_ERR)
            fprintf(out, "%s%s=%llu", n++ ? " " : "", msg_type_name((enum msg_type)t),
                    (unsigned long long)k->type[t]);
    for (int e = SL_OK; e <= SL_TIMEOUT; e++)
        if (k->err[e])
            fprintf(out, "%serr:%s=%llu", n++ ? " " : "", e == SL_OK ? "other" : sl_wire_code((enum sl_err)e),
                    (unsigned long long)k->err[e]);
    if (k->type[MSG_NONE])
        fprintf(out, "%sundecodable=%llu", n++ ? " " : "", (unsigned long long)k->type[MSG_NONE]);
    if (!n)
        fputs("none", out);
}

bool replay_counts_equal(const struct replay_counts *a, const struct replay_counts *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

void replay_counts_add(struct replay_counts *sum, const struct replay_counts *k)
{
    for (int t = 0; t <= MSG_CMD; t++)
        sum->type[t] += k->type[t];
    for (int e = 0; e <= SL_TIMEOUT; e++)
        sum->err[e] += k->err[e];
}
