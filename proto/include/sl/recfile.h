/* SPDX-License-Identifier: Apache-2.0 */
/* sl/recfile.h - the edge's traffic recording format (docs/recording.md).
 *
 * A recording is a 40-byte file header followed by records, each a 24-byte
 * header and `len` payload bytes. Every field is fixed-width little-endian.
 * The edge writes it (edge/record.c), sluice-replay reads it; this module
 * only turns structs into bytes and back, so both sides and the unit tests
 * share one definition. No I/O, no allocation, never blocks.
 *
 * Connections are named by (worker, slot, gen): the edge's own connection
 * id, unique for the life of the process. Times are CLOCK_MONOTONIC
 * nanoseconds; the file header pairs them with the wall clock once. */
#ifndef SL_RECFILE_H
#define SL_RECFILE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/err.h"
#include "sl/slice.h"

#define RECFILE_MAGIC       "SLRECORD" /* 8 bytes, no NUL */
#define RECFILE_VERSION     1u
#define RECFILE_HDR_SIZE    40u        /* file header */
#define RECFILE_REC_HDR     24u        /* record header */
#define RECFILE_MAX_PAYLOAD (1u << 25) /* refused above this when reading (32 MiB) */
#define RECFILE_OPEN_SIZE   20u        /* OPEN payload */
#define RECFILE_GAP_SIZE    16u        /* GAP payload */
#define RECFILE_REASON_MAX  32u        /* CLOSE/END reason text, bytes */
#define RECFILE_WORKER_NONE 0xffffu    /* worker of records the writer itself adds (END) */

enum recfile_flag {
    RECFILE_F_FILTERED = 1, /* header: --record-devices was set */
};

/* Record kinds. Values are part of the file format: never renumber. */
enum recfile_kind {
    RECFILE_OPEN = 1,  /* connection accepted: peer family, port, address */
    RECFILE_IN = 2,    /* bytes exactly as one read(2) returned them */
    RECFILE_OUT = 3,   /* one whole frame the edge queued for the device */
    RECFILE_CLOSE = 4, /* connection closed: reason code + name */
    RECFILE_GAP = 5,   /* this worker's ring was full: records and bytes dropped before here */
    RECFILE_END = 6,   /* the writer stopped: reason ("shutdown", "size limit", "write error") */
    RECFILE_KIND_MAX = RECFILE_END,
};

struct recfile_header {
    uint16_t version;
    uint16_t workers;       /* edge worker threads */
    uint32_t max_frame;     /* the edge's --max-frame */
    uint32_t flags;         /* enum recfile_flag */
    uint64_t start_real_ns; /* CLOCK_REALTIME at start ... */
    uint64_t start_mono_ns; /* ... and CLOCK_MONOTONIC at the same moment */
};

struct recfile_rec {
    uint8_t kind;  /* enum recfile_kind */
    uint8_t flags; /* reserved, 0 */
    uint16_t worker;
    uint32_t slot, gen;
    uint64_t t_ns;          /* CLOCK_MONOTONIC */
    uint32_t len;           /* payload bytes */
    const uint8_t *payload; /* decode: borrowed from the input */
};

/* File header to and from bytes. decode: SL_OK; SL_AGAIN if n is short;
 * SL_DECODE for a wrong magic or header size; SL_VERSION for a version
 * this build does not read. */
void recfile_header_encode(const struct recfile_header *h, uint8_t out[RECFILE_HDR_SIZE]);
enum sl_err recfile_header_decode(const uint8_t *p, size_t n, struct recfile_header *h);

/* The 24-byte record header (r->payload is ignored: the caller writes the
 * payload after it, so the edge copies device bytes once). */
void recfile_rec_encode(const struct recfile_rec *r, uint8_t out[RECFILE_REC_HDR]);

/* One record from p[0..n): SL_OK with *r (payload points into p) and *used;
 * SL_AGAIN if the record is not complete in n bytes (a truncated file
 * tail); SL_DECODE for an unknown kind or len above RECFILE_MAX_PAYLOAD. */
enum sl_err recfile_rec_decode(const uint8_t *p, size_t n, struct recfile_rec *r, size_t *used);

/* Short name of a kind ("open", "in", ...), "?" for others. Never NULL. */
const char *recfile_kind_name(unsigned kind);

/* OPEN payload: v6 selects the family; ip holds 4 or 16 bytes. */
struct recfile_peer {
    bool v6;
    uint16_t port;
    uint8_t ip[16];
};
void recfile_open_encode(const struct recfile_peer *p, uint8_t out[RECFILE_OPEN_SIZE]);
enum sl_err recfile_open_decode(const struct recfile_rec *r,
                                struct recfile_peer *p); /* SL_DECODE if malformed */

/* CLOSE payload: u8 code, then the reason name (cut at RECFILE_REASON_MAX).
 * END payload: the reason alone. Both return the payload length. */
size_t recfile_close_encode(uint8_t code, const char *name, uint8_t out[1 + RECFILE_REASON_MAX]);
enum sl_err recfile_close_decode(const struct recfile_rec *r, uint8_t *code, struct sl_slice *name);

/* GAP payload: u64 records, u64 bytes (record headers included) dropped. */
void recfile_gap_encode(uint64_t recs, uint64_t bytes, uint8_t out[RECFILE_GAP_SIZE]);
enum sl_err recfile_gap_decode(const struct recfile_rec *r, uint64_t *recs, uint64_t *bytes);

/* The device a connection claims: look at the first frame of its inbound
 * stream s[0..n). RECFILE_DEV_FOUND: it is a hello with a valid `dev`
 * (*dev points into s; the token is not checked). RECFILE_DEV_MORE: the
 * first frame is not complete yet and would fit in `max` stream bytes.
 * RECFILE_DEV_NONE: anything else (not a hello, malformed, longer than
 * max): the connection names no device. */
enum recfile_dev_rc { RECFILE_DEV_MORE = 0, RECFILE_DEV_FOUND, RECFILE_DEV_NONE };
enum recfile_dev_rc recfile_hello_dev(const uint8_t *s, size_t n, size_t max, struct sl_slice *dev);

/* True if dev matches `patterns`: a comma-separated list whose entries
 * are globs over the whole id if they hold '*' or '?' ('*' any run, '?'
 * one byte), else a prefix of the id (`prefix`, as --record-devices) or
 * the whole id (!prefix, as sluice-replay --device). An empty list
 * matches every device. */
bool recfile_dev_match(const char *patterns, bool prefix, const uint8_t *dev, size_t n);

#endif
