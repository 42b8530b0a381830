/* fuzz_recfile.c - a traffic recording (proto/recfile.c, docs/recording.md)
 * read as sluice-replay reads a file: replay_load (header, records,
 * connection index, the device each first frame names) and replay_dump
 * (every inbound stream cut into frames again, each frame as JSON).
 *
 * Input: the bytes of a recording file. They are written to a memfd that
 * replay_load opens through /proc/self/fd, so the tool's own code runs,
 * mmap included.
 *
 * Properties:
 * - the codec: a header or record header that decodes encodes back to the
 *   same bytes; a record never claims more than the file holds; the OPEN,
 *   CLOSE and GAP payload decoders accept only their exact shapes; a
 *   device found in a first frame is a valid id inside that frame;
 * - the loader: it reads whole records up to f.end <= the file size, says
 *   why it stopped short (f.problem) exactly when it did, replay_next
 *   walks the same records, every record of a connection finds it, every
 *   connection's device is "" or a valid id, and the max_frame that the
 *   header claims is clamped to SL_MAX_FRAME_LIMIT (16 MiB), so the dump
 *   never sizes a buffer from a larger claim;
 * - the dump runs to the end (with and without a --device filter). */
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "replay.h"
#include "sl/limits.h"
#include "sl/msg.h"
#include "sl/recfile.h"

static int memfd = -1;
static char path[64];
static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    memfd = memfd_create("fuzz-recording", 0);
    devnull = fopen("/dev/null", "w");
    FUZZ_CHECK(memfd >= 0 && devnull != NULL);
    snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    return 0;
}

static void check_record(const struct recfile_rec *r)
{
    switch (r->kind) {
    case RECFILE_OPEN: {
        struct recfile_peer p, p2;
        if (recfile_open_decode(r, &p) != SL_OK)
            break;
        FUZZ_CHECK(r->len == RECFILE_OPEN_SIZE);
        uint8_t out[RECFILE_OPEN_SIZE];
        recfile_open_encode(&p, out);
        struct recfile_rec r2 = *r;
        r2.payload = out;
        FUZZ_CHECK(recfile_open_decode(&r2, &p2) == SL_OK && memcmp(&p, &p2, sizeof p) == 0);
        break;
    }
    case RECFILE_CLOSE: {
        uint8_t code;
        struct sl_slice name;
        if (recfile_close_decode(r, &code, &name) != SL_OK)
            break;
        FUZZ_CHECK(name.n <= RECFILE_REASON_MAX && name.p == r->payload + 1 && name.n == r->len - 1);
        break;
    }
    case RECFILE_GAP: {
        uint64_t recs, bytes;
        if (recfile_gap_decode(r, &recs, &bytes) != SL_OK)
            break;
        uint8_t out[RECFILE_GAP_SIZE];
        recfile_gap_encode(recs, bytes, out);
        FUZZ_CHECK(r->len == RECFILE_GAP_SIZE && memcmp(out, r->payload, RECFILE_GAP_SIZE) == 0);
        break;
    }
    case RECFILE_IN: {
        struct sl_slice dev;
        if (recfile_hello_dev(r->payload, r->len, REPLAY_HELLO_MAX, &dev) == RECFILE_DEV_FOUND)
            FUZZ_CHECK(msg_valid_id(dev.p, dev.n) && fuzz_within(dev, r->payload, r->len));
        break;
    }
    default: break;
    }
}

/* The codec alone, on the bytes as they are. */
static void check_codec(const uint8_t *data, size_t size)
{
    struct recfile_header h;
    enum sl_err rc = recfile_header_decode(data, size, &h);
    if (size >= 8 && memcmp(data, RECFILE_MAGIC, 8) != 0)
        FUZZ_CHECK(rc == SL_DECODE);
    else if (size < RECFILE_HDR_SIZE)
        FUZZ_CHECK(rc == SL_AGAIN);
    if (rc != SL_OK)
        return;
    uint8_t out[RECFILE_HDR_SIZE];
    recfile_header_encode(&h, out);
    FUZZ_CHECK(memcmp(out, data, RECFILE_HDR_SIZE) == 0);

    size_t off = RECFILE_HDR_SIZE;
    for (;;) {
        struct recfile_rec r;
        size_t used = 1;
        rc = recfile_rec_decode(data + off, size - off, &r, &used);
        if (rc != SL_OK) {
            FUZZ_CHECK(used == 0 && (rc == SL_AGAIN || rc == SL_DECODE));
            if (rc == SL_AGAIN && size - off >= RECFILE_REC_HDR) {
                /* A cut tail: the record claims more than the file holds. */
                const uint8_t *p = data + off;
                uint32_t claimed =
                    (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
                FUZZ_CHECK(claimed > size - off - RECFILE_REC_HDR);
            }
            break;
        }
        FUZZ_CHECK(used == RECFILE_REC_HDR + (size_t)r.len && used <= size - off);
        FUZZ_CHECK(r.kind >= RECFILE_OPEN && r.kind <= RECFILE_KIND_MAX && r.len <= RECFILE_MAX_PAYLOAD);
        FUZZ_CHECK(r.payload == data + off + RECFILE_REC_HDR);
        uint8_t rh[RECFILE_REC_HDR];
        recfile_rec_encode(&r, rh);
        FUZZ_CHECK(memcmp(rh, data + off, RECFILE_REC_HDR) == 0);
        check_record(&r);
        off += used;
    }
}

/* sluice-replay --dump FILE, on a file holding the input. */
static void check_tool(const uint8_t *data, size_t size)
{
    FUZZ_CHECK(ftruncate(memfd, 0) == 0);
    FUZZ_CHECK(pwrite(memfd, data, size, 0) == (ssize_t)size);

    /* The tool reports on stderr per file (a refusal, the totals line):
     * silence the stream, not fd 2, so sanitizer reports still show. */
    FILE *real = stderr;
    *fuzz_err_stream() = real;
    stderr = devnull;
    struct replay_file f;
    int rc = replay_load(path, &f);
    stderr = real;
    if (rc != 0)
        return;

    FUZZ_CHECK(f.size == size && f.end >= RECFILE_HDR_SIZE && f.end <= f.size);
    FUZZ_CHECK((f.problem != NULL) == (f.end < f.size));
    FUZZ_CHECK(f.hdr.max_frame <= SL_MAX_FRAME_LIMIT);
    FUZZ_CHECK(f.ngaps <= f.nrecs && f.nconns <= f.nrecs);
    size_t off = 0;
    uint64_t n = 0;
    struct recfile_rec r;
    while (replay_next(&f, &off, &r)) {
        n++;
        if (r.kind != RECFILE_GAP && r.kind != RECFILE_END)
            FUZZ_CHECK(replay_conn_of(&f, &r) != NULL);
    }
    FUZZ_CHECK(n == f.nrecs && off == f.end);
    for (uint32_t i = 0; i < f.nconns; i++) {
        const struct replay_conn *c = &f.conns[i];
        size_t dl = strnlen(c->dev, sizeof c->dev);
        FUZZ_CHECK(dl < sizeof c->dev && strnlen(c->reason, sizeof c->reason) < sizeof c->reason);
        FUZZ_CHECK((c->dev_rc == RECFILE_DEV_FOUND) == (dl > 0));
        FUZZ_CHECK(dl == 0 || msg_valid_id((const uint8_t *)c->dev, dl));
        FUZZ_CHECK(c->head == NULL);
    }

    stderr = devnull;
    rc = replay_dump(&f, "", devnull) | replay_dump(&f, "pump-*,tank-0001", devnull);
    stderr = real;
    FUZZ_CHECK(rc == 0);
    replay_unload(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_codec(data, size);
    check_tool(data, size);
    return 0;
}
