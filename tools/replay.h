/* tools/replay.h - sluice-replay's parts: a loaded recording with its
 * connection index (replay_load.c), the dump (replay_dump.c) and the
 * replay against an edge (replay_net.c). Single-threaded; the tool may
 * allocate freely (it is not on any device's path). */
#ifndef TOOLS_REPLAY_H
#define TOOLS_REPLAY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "sl/err.h"
#include "sl/frame.h"
#include "sl/limits.h"
#include "sl/msg.h"
#include "sl/recfile.h"

#define REPLAY_HELLO_MAX 4096u /* first-frame bytes looked at to find the device */

/* Frames by message type, errs also by wire code. */
struct replay_counts {
    uint64_t type[MSG_CMD + 1];   /* MSG_NONE counts frames that did not decode */
    uint64_t err[SL_TIMEOUT + 1]; /* by enum sl_err of the wire code; SL_OK = unknown code */
};

struct replay_conn {
    uint16_t worker;
    uint32_t slot, gen;
    uint64_t t_first, t_last; /* monotonic ns of its first and last record */
    bool has_open, has_close;
    bool incomplete;                     /* a GAP of its worker fell while it was open, or no OPEN */
    uint8_t dev_rc;                      /* enum recfile_dev_rc */
    char dev[SL_DEV_MAX + 1];            /* the device its first frame names, "" if none */
    char reason[RECFILE_REASON_MAX + 1]; /* close reason, "" if no CLOSE */
    struct recfile_peer peer;
    uint32_t nin;
    uint64_t in_bytes;
    struct replay_counts out; /* frames the edge queued, as recorded */
    uint8_t *head;            /* while the device is unknown: its first bytes */
    uint32_t head_n;
};

struct replay_file {
    const uint8_t *map;
    size_t size;
    struct recfile_header hdr;
    size_t end;          /* offset after the last whole record */
    const char *problem; /* NULL, or why reading stopped before the file's end */
    uint64_t nrecs, ngaps, gap_recs;
    struct replay_conn *conns; /* in order of first appearance */
    uint32_t nconns, cap;
    uint32_t *hash; /* open addressing, conn index + 1, 0 = empty */
    uint32_t hcap;
};

/* Map path and index its connections. 0, or -1 with a message on stderr. */
int replay_load(const char *path, struct replay_file *f);
void replay_unload(struct replay_file *f);

/* Iterate the records: start with *off = 0; false at the end. */
bool replay_next(const struct replay_file *f, size_t *off, struct recfile_rec *r);

/* The connection a record belongs to (NULL for GAP and END). */
struct replay_conn *replay_conn_of(const struct replay_file *f, const struct recfile_rec *r);

/* True if c is selected by --device (an empty pattern selects all). */
bool replay_selected(const struct replay_conn *c, const char *device);

/* Wall-clock text of a record time: "2026-11-28T10:00:00.123456Z". */
void replay_time_str(const struct replay_file *f, uint64_t t_ns, char *out, size_t cap);

/* A frame decoder that lends itself a max-byte buffer while a frame spans
 * feeds (the tool may allocate; the buffer goes once the decoder is idle). */
struct replay_dec {
    struct frame_dec dec;
    uint8_t *buf;
    bool dead; /* a bad length (or no memory): nothing more is decoded */
};
void replay_dec_init(struct replay_dec *d, uint32_t max);
void replay_dec_fini(struct replay_dec *d);
/* The next frame of *p[0..*n), advancing both: FRAME_READY with *pl (valid
 * until the next call), FRAME_NEED_MORE once all is consumed, or the error
 * (FRAME_ERR_EMPTY, FRAME_ERR_TOOBIG, FRAME_NEED_BUF = out of memory) that
 * made d dead; a dead decoder returns FRAME_NEED_MORE and consumes nothing. */
enum frame_rc replay_dec_next(struct replay_dec *d, const uint8_t **p, size_t *n, struct sl_slice *pl);

/* Count one frame payload; print counts as "welcome=1 ack=3 err:decode=1". */
void replay_count_frame(struct replay_counts *k, const uint8_t *p, size_t n);
void replay_counts_print(FILE *out, const struct replay_counts *k);
bool replay_counts_equal(const struct replay_counts *a, const struct replay_counts *b);
void replay_counts_add(struct replay_counts *sum, const struct replay_counts *k);

/* --dump: one line per record on out. Returns the exit status. */
int replay_dump(const struct replay_file *f, const char *device, FILE *out);

struct sl_tls;

struct replay_opts {
    const char *edge;            /* host:port */
    struct sl_tls *tls;          /* NULL: plain TCP; else TLS to the edge with this context */
    const char *tls_server_name; /* NULL: the host of edge */
    const char *device;          /* "" = every connection */
    double speed;                /* > 0 */
    uint32_t linger_ms;          /* wait for the edge's answers before closing */
    bool await_replies;          /* before each read, wait for the frames the device had by then */
    uint32_t progress_s;         /* 0 = no progress lines */
};

/* --edge: replay the selected connections. Returns the exit status. */
int replay_net(const struct replay_file *f, const struct replay_opts *o, FILE *out);

#endif
