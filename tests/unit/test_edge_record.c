/* SPDX-License-Identifier: Apache-2.0 */
/* test_edge_record.c - the edge's recorder (edge/record.c) without sockets:
 * the hooks are called on hand-made connections, the file is read back
 * with the format module.
 *
 * Covered: what each hook writes and in which order, file mode 0600 also
 * for a file that existed, --record-devices (hello in one read, hello
 * staged over several reads and released in order, other devices and
 * garbage left out, stage pool exhaustion counted), a writer that falls
 * behind (the file is a FIFO nobody reads yet: records are dropped, counted
 * and marked by a GAP, before the next record or at shutdown), and
 * --record-max-mb (whole records, then END "size limit"). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "sl/msg.h"
#include "sl/recfile.h"
#include "conn.h"
#include "edge.h"
#include "record.h"

static char dir[64];

static struct edge_cfg cfg_for(const char *path, const char *devices, uint64_t max_bytes)
{
    struct edge_cfg c = {.workers = 2,
                         .max_conns = 600,
                         .max_frame = 65536,
                         .record_path = path,
                         .record_devices = devices,
                         .record_max_bytes = max_bytes};
    return c;
}

/* A connection as the recorder's hooks name it. */
struct tconn {
    struct record_conn id;
    struct addr peer;
    uint8_t close_reason;
};

static struct tconn mkconn(uint32_t worker, uint32_t slot, uint32_t gen)
{
    struct tconn c;
    memset(&c, 0, sizeof c);
    c.id = (struct record_conn){worker, slot, gen};
    c.peer.ip[0] = 10;
    c.peer.ip[3] = (uint8_t)slot;
    c.peer.port = (uint16_t)(40000 + slot);
    return c;
}

/* The hooks as conn.c calls them, for a test connection. */
#define rec_open(r, c)      record_open(r, (c)->id, &(c)->peer)
#define rec_in(r, c, p, n)  record_in(r, (c)->id, p, n)
#define rec_out(r, c, p, n) record_out(r, (c)->id, p, n)
#define rec_close(r, c)     record_close(r, (c)->id, (c)->close_reason, conn_reason_str((c)->close_reason))

static size_t hello(uint8_t *out, const char *dev)
{
    struct msg m = {.t = MSG_HELLO};
    m.u.hello.v = 1;
    m.u.hello.dev.p = (const uint8_t *)dev;
    m.u.hello.dev.n = (uint32_t)strlen(dev);
    static const char tok[] = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e7abcd";
    m.u.hello.tok.p = (const uint8_t *)tok;
    m.u.hello.tok.n = 64;
    size_t n = 0;
    assert_int_equal(msg_encode_frame(&m, out, 256, &n), SL_OK);
    return n;
}

/* The recorder's counts, under the names stats.c exports them as: of the
 * live recorder, or as it left them when it was destroyed. */
static struct record *cur;
static uint64_t last_counts[3];

static void snapshot(void)
{
    if (cur)
        record_counts(cur, &last_counts[0], &last_counts[1], &last_counts[2]);
}

static struct record *rec_new(const struct edge_cfg *cfg)
{
    cur = record_new(cfg);
    memset(last_counts, 0, sizeof last_counts);
    return cur;
}

static void rec_destroy(struct record **r)
{
    snapshot();
    cur = NULL;
    record_destroy(r);
}

static uint64_t counter(const char *name)
{
    snapshot();
    if (strcmp(name, "sluice_edge_record_dropped_total") == 0)
        return last_counts[0];
    if (strcmp(name, "sluice_edge_record_skipped_total") == 0)
        return last_counts[1];
    assert_string_equal(name, "sluice_edge_record_bytes_total");
    return last_counts[2];
}

/* ---- reading a recording back ------------------------------------------ */

struct got {
    uint8_t *buf;
    size_t n;
    struct recfile_header h;
    struct recfile_rec r[2048];
    size_t nr;
};

static void parse(struct got *g)
{
    assert_int_equal(recfile_header_decode(g->buf, g->n, &g->h), SL_OK);
    size_t off = RECFILE_HDR_SIZE;
    g->nr = 0;
    while (off < g->n) {
        size_t used;
        assert_true(g->nr < 2048);
        assert_int_equal(recfile_rec_decode(g->buf + off, g->n - off, &g->r[g->nr], &used), SL_OK);
        g->nr++;
        off += used;
    }
    assert_int_equal(off, g->n);
    assert_int_equal(g->r[g->nr - 1].kind, RECFILE_END);
}

static void load(const char *path, struct got *g)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    g->n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    g->buf = malloc(g->n + 1);
    assert_int_equal(fread(g->buf, 1, g->n, f), g->n);
    fclose(f);
    parse(g);
}

/* The records of one connection, in file order. */
static size_t of_conn(const struct got *g, const struct tconn *c, const struct recfile_rec **out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < g->nr; i++)
        if (g->r[i].kind <= RECFILE_CLOSE && g->r[i].worker == c->id.worker && g->r[i].slot == c->id.slot &&
            g->r[i].gen == c->id.gen && k < cap)
            out[k++] = &g->r[i];
    return k;
}

static void path_in_dir(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_all_devices(void **st)
{
    (void)st;
    char path[128];
    path_in_dir(path, sizeof path, "all.rec");
    int fd = open(path, O_CREAT | O_WRONLY, 0644); /* exists, world-readable */
    assert_true(fd >= 0 && write(fd, "junk", 4) == 4);
    close(fd);
    struct edge_cfg cfg = cfg_for(path, "", 0);
    struct record *r = rec_new(&cfg);
    assert_non_null(r);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    struct tconn a = mkconn(0, 3, 7), b = mkconn(1, 3, 1);
    uint8_t h[256];
    size_t hn = hello(h, "pump-1");
    rec_open(r, &a);
    rec_open(r, &b);
    rec_in(r, &a, h, 5); /* a split hello: reads are kept apart */
    rec_in(r, &a, h + 5, hn - 5);
    rec_out(r, &a, (const uint8_t *)"\0\0\0\1\xc0", 5);
    rec_in(r, &b, (const uint8_t *)"\0\0\0\0", 4);
    a.close_reason = CR_EOF;
    b.close_reason = CR_FRAME;
    rec_close(r, &b);
    rec_close(r, &a);
    rec_destroy(&r);
    assert_null(r);

    struct got g;
    load(path, &g);
    assert_int_equal(g.h.workers, 2);
    assert_int_equal(g.h.flags, 0);
    assert_int_equal(g.h.max_frame, 65536);
    const struct recfile_rec *ra[8], *rb[8];
    assert_int_equal(of_conn(&g, &a, ra, 8), 5);
    assert_int_equal(of_conn(&g, &b, rb, 8), 3);
    assert_int_equal(ra[0]->kind, RECFILE_OPEN);
    struct recfile_peer p;
    assert_int_equal(recfile_open_decode(ra[0], &p), SL_OK);
    assert_false(p.v6);
    assert_int_equal(p.port, 40003);
    assert_int_equal(p.ip[0], 10);
    assert_int_equal(ra[1]->kind, RECFILE_IN);
    assert_int_equal(ra[1]->len, 5);
    assert_memory_equal(ra[1]->payload, h, 5);
    assert_int_equal(ra[2]->len, hn - 5);
    assert_memory_equal(ra[2]->payload, h + 5, hn - 5);
    assert_int_equal(ra[3]->kind, RECFILE_OUT);
    assert_memory_equal(ra[3]->payload, "\0\0\0\1\xc0", 5);
    assert_int_equal(ra[4]->kind, RECFILE_CLOSE);
    uint8_t code;
    struct sl_slice name;
    assert_int_equal(recfile_close_decode(ra[4], &code, &name), SL_OK);
    assert_int_equal(code, CR_EOF);
    assert_true(sl_slice_eqs(name, "eof"));
    assert_int_equal(recfile_close_decode(rb[2], &code, &name), SL_OK);
    assert_true(sl_slice_eqs(name, "frame"));
    for (int i = 1; i < 5; i++)
        assert_true(ra[i]->t_ns >= ra[i - 1]->t_ns);
    assert_true(g.r[g.nr - 1].len == 8 && memcmp(g.r[g.nr - 1].payload, "shutdown", 8) == 0);
    free(g.buf);
}

static void test_filter(void **st)
{
    (void)st;
    char path[128];
    path_in_dir(path, sizeof path, "filter.rec");
    struct edge_cfg cfg = cfg_for(path, "keep-", 0);
    struct record *r = rec_new(&cfg);
    assert_non_null(r);
    uint64_t skipped0 = counter("sluice_edge_record_skipped_total");
    uint8_t h[256];

    /* Hello in one read, then traffic. */
    struct tconn k1 = mkconn(0, 1, 0);
    size_t hn = hello(h, "keep-1");
    rec_open(r, &k1);
    rec_in(r, &k1, h, hn);
    rec_out(r, &k1, (const uint8_t *)"W", 1);
    k1.close_reason = CR_EOF;
    rec_close(r, &k1);

    /* Hello in three reads, with a pong queued before it completes (not
     * attributable yet: left out), then the rest. */
    struct tconn k2 = mkconn(0, 2, 0);
    uint8_t h2[256];
    size_t hn2 = hello(h2, "keep-2");
    rec_open(r, &k2);
    rec_in(r, &k2, h2, 2);
    rec_in(r, &k2, h2 + 2, 10);
    rec_out(r, &k2, (const uint8_t *)"X", 1);
    rec_in(r, &k2, h2 + 12, hn2 - 12);
    rec_out(r, &k2, (const uint8_t *)"W", 1);

    /* Another device, garbage, a hello that never completes. */
    struct tconn d = mkconn(0, 3, 0), gbg = mkconn(0, 4, 0), part = mkconn(0, 5, 0);
    size_t hd = hello(h, "drop-1");
    rec_open(r, &d);
    rec_in(r, &d, h, hd);
    rec_out(r, &d, (const uint8_t *)"W", 1);
    rec_close(r, &d);
    rec_open(r, &gbg);
    rec_in(r, &gbg, (const uint8_t *)"\0\0\0\0", 4);
    rec_close(r, &gbg);
    rec_open(r, &part);
    rec_in(r, &part, h, 3);
    rec_close(r, &part);

    /* A hello in more reads than a stage keeps apart: left out, counted. */
    struct tconn many = mkconn(1, 9, 0);
    size_t hm = hello(h, "keep-many");
    rec_open(r, &many);
    for (size_t i = 0; i < hm; i++)
        rec_in(r, &many, h + i, 1);
    rec_close(r, &many);
    assert_int_equal(counter("sluice_edge_record_skipped_total"), skipped0 + 1);

    /* Every stage taken (512 held-back connections with half a hello):
     * the next one is left out and counted; closing frees the stages. */
    struct tconn held[513];
    for (uint32_t i = 0; i < 513; i++) {
        held[i] = mkconn(1, 10 + i, 0);
        rec_open(r, &held[i]);
        rec_in(r, &held[i], h, 2);
    }
    assert_int_equal(counter("sluice_edge_record_skipped_total"), skipped0 + 2);
    for (uint32_t i = 0; i < 513; i++)
        rec_close(r, &held[i]);
    struct tconn k3 = mkconn(1, 10, 1); /* a reused slot: new generation */
    size_t hn3 = hello(h, "keep-3");
    rec_open(r, &k3);
    rec_in(r, &k3, h, 3);
    rec_in(r, &k3, h + 3, hn3 - 3);
    k2.close_reason = k3.close_reason = CR_SHUTDOWN;
    rec_close(r, &k2);
    rec_close(r, &k3);
    rec_destroy(&r);

    struct got g;
    load(path, &g);
    assert_int_equal(g.h.flags, RECFILE_F_FILTERED);
    const struct recfile_rec *x[16];
    assert_int_equal(of_conn(&g, &k1, x, 16), 4);
    assert_int_equal(x[0]->kind, RECFILE_OPEN);
    assert_int_equal(x[1]->len, hn);
    assert_int_equal(x[2]->kind, RECFILE_OUT);
    assert_int_equal(x[3]->kind, RECFILE_CLOSE);
    /* keep-2: OPEN at its open time, the three reads as they came. */
    assert_int_equal(of_conn(&g, &k2, x, 16), 6);
    assert_int_equal(x[0]->kind, RECFILE_OPEN);
    assert_int_equal(x[1]->len, 2);
    assert_int_equal(x[2]->len, 10);
    assert_int_equal(x[3]->len, hn2 - 12);
    assert_memory_equal(x[1]->payload, h2, 2);
    assert_memory_equal(x[2]->payload, h2 + 2, 10);
    assert_memory_equal(x[3]->payload, h2 + 12, hn2 - 12);
    assert_true(x[0]->t_ns <= x[1]->t_ns && x[1]->t_ns <= x[2]->t_ns && x[2]->t_ns <= x[3]->t_ns);
    assert_int_equal(x[4]->kind, RECFILE_OUT);
    assert_memory_equal(x[4]->payload, "W", 1);
    assert_int_equal(x[5]->kind, RECFILE_CLOSE);
    assert_int_equal(of_conn(&g, &k3, x, 16), 4);
    const struct tconn *out[] = {&d, &gbg, &part, &many};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(of_conn(&g, out[i], x, 16), 0);
    assert_int_equal(of_conn(&g, &held[0], x, 16), 0);
    assert_null(memmem(g.buf, g.n, "drop-1", 6));
    free(g.buf);
}

/* A FIFO nobody reads: the writer blocks in write(2), the ring fills. */
struct fifo_reader {
    int fd;
    uint8_t *buf;
    size_t n, cap;
    _Atomic size_t have;
    pthread_t th;
};

static void *reader_main(void *arg)
{
    struct fifo_reader *fr = arg;
    int fl = fcntl(fr->fd, F_GETFL);
    fcntl(fr->fd, F_SETFL, fl & ~O_NONBLOCK);
    for (;;) {
        ssize_t k = read(fr->fd, fr->buf + fr->n, fr->cap - fr->n);
        if (k <= 0)
            break;
        fr->n += (size_t)k;
        atomic_store(&fr->have, fr->n);
    }
    return NULL;
}

static struct record *flood(const char *name, struct fifo_reader *fr, struct tconn *c, uint64_t *pushed,
                            uint64_t *dropped0)
{
    char path[128];
    path_in_dir(path, sizeof path, name);
    assert_int_equal(mkfifo(path, 0600), 0);
    fr->fd = open(path, O_RDONLY | O_NONBLOCK); /* so the writer's open does not wait */
    assert_true(fr->fd >= 0);
    fr->cap = 64u << 20;
    fr->buf = malloc(fr->cap);
    struct edge_cfg cfg = cfg_for(path, "", 0);
    struct record *r = rec_new(&cfg);
    assert_non_null(r);
    *dropped0 = counter("sluice_edge_record_dropped_total");
    static uint8_t chunk[65536];
    memset(chunk, 'z', sizeof chunk);
    *c = mkconn(0, 1, 0);
    rec_open(r, c);
    for (int i = 0; i < 160; i++) /* 10 MiB into a 4 MiB ring */
        rec_in(r, c, chunk, sizeof chunk);
    *pushed = 161;
    assert_true(counter("sluice_edge_record_dropped_total") - *dropped0 >= 160 - 64);
    return r;
}

static void check_gaps(struct fifo_reader *fr, const struct tconn *c, uint64_t pushed, uint64_t dropped)
{
    struct got g = {.buf = fr->buf, .n = fr->n};
    parse(&g);
    const struct recfile_rec *x[256];
    size_t kept = of_conn(&g, c, x, 256);
    uint64_t gap_recs = 0, ngaps = 0;
    for (size_t i = 0; i < g.nr; i++)
        if (g.r[i].kind == RECFILE_GAP) {
            uint64_t recs, bytes;
            assert_int_equal(recfile_gap_decode(&g.r[i], &recs, &bytes), SL_OK);
            assert_int_equal(g.r[i].worker, 0);
            assert_true(bytes == recs * (RECFILE_REC_HDR + 65536));
            gap_recs += recs;
            ngaps++;
        }
    assert_int_equal(ngaps, 1);
    assert_true(gap_recs == dropped);
    assert_true(kept + gap_recs == pushed);
}

static void test_writer_behind_gap_before_next(void **st)
{
    (void)st;
    struct fifo_reader fr = {0};
    struct tconn c;
    uint64_t pushed, dropped0;
    struct record *r = flood("behind1.fifo", &fr, &c, &pushed, &dropped0);
    pthread_create(&fr.th, NULL, reader_main, &fr);
    /* Once the writer has caught up, a record fits again: a GAP goes
     * before it. Probe with records of the same size until one fits. */
    static uint8_t chunk[65536];
    struct timespec ms = {0, 1000000};
    bool fit = false;
    for (int i = 0; i < 20000 && !fit; i++) {
        uint64_t before = counter("sluice_edge_record_dropped_total");
        rec_in(r, &c, chunk, sizeof chunk);
        pushed++;
        fit = counter("sluice_edge_record_dropped_total") == before;
        if (!fit)
            nanosleep(&ms, NULL);
    }
    assert_true(fit);
    c.close_reason = CR_EOF;
    rec_close(r, &c);
    pushed++;
    rec_destroy(&r);
    pthread_join(fr.th, NULL);
    close(fr.fd);
    check_gaps(&fr, &c, pushed, counter("sluice_edge_record_dropped_total") - dropped0);
    struct got g = {.buf = fr.buf, .n = fr.n};
    parse(&g);
    assert_int_equal(g.r[g.nr - 2].kind, RECFILE_CLOSE);
    assert_int_equal(g.r[g.nr - 3].kind, RECFILE_IN);
    assert_int_equal(g.r[g.nr - 4].kind, RECFILE_GAP);
    free(fr.buf);
}

static void test_writer_behind_gap_at_shutdown(void **st)
{
    (void)st;
    struct fifo_reader fr = {0};
    struct tconn c;
    uint64_t pushed, dropped0;
    struct record *r = flood("behind2.fifo", &fr, &c, &pushed, &dropped0);
    pthread_create(&fr.th, NULL, reader_main, &fr);
    rec_destroy(&r); /* the workers are done: the writer marks the drops itself */
    pthread_join(fr.th, NULL);
    close(fr.fd);
    check_gaps(&fr, &c, pushed, counter("sluice_edge_record_dropped_total") - dropped0);
    struct got g = {.buf = fr.buf, .n = fr.n};
    parse(&g);
    assert_int_equal(g.r[g.nr - 2].kind, RECFILE_GAP);
    free(fr.buf);
}

static void test_size_limit(void **st)
{
    (void)st;
    char path[128];
    path_in_dir(path, sizeof path, "limit.rec");
    struct edge_cfg cfg = cfg_for(path, "", 1u << 20);
    struct record *r = rec_new(&cfg);
    assert_non_null(r);
    static uint8_t chunk[10000];
    struct tconn c = mkconn(1, 0, 0);
    rec_open(r, &c);
    for (int i = 0; i < 300; i++) /* 3 MB: less than the ring, nothing dropped */
        rec_in(r, &c, chunk, sizeof chunk);
    rec_destroy(&r);
    struct got g;
    load(path, &g);
    assert_true(g.n <= (1u << 20));
    assert_true(g.n > (1u << 20) - (RECFILE_REC_HDR + sizeof chunk) - RECFILE_REC_HDR - RECFILE_REASON_MAX);
    const struct recfile_rec *end = &g.r[g.nr - 1];
    assert_true(end->len == 10 && memcmp(end->payload, "size limit", 10) == 0);
    free(g.buf);
}

static int setup(void **st)
{
    (void)st;
    snprintf(dir, sizeof dir, "/tmp/test_edge_record.XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    const char *names[] = {"all.rec", "filter.rec", "behind1.fifo", "behind2.fifo", "limit.rec"};
    char path[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        path_in_dir(path, sizeof path, names[i]);
        unlink(path);
    }
    rmdir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_devices),
        cmocka_unit_test(test_filter),
        cmocka_unit_test(test_writer_behind_gap_before_next),
        cmocka_unit_test(test_writer_behind_gap_at_shutdown),
        cmocka_unit_test(test_size_limit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
