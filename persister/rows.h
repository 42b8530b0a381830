/* SPDX-License-Identifier: Apache-2.0 */
/* rows.h - the batch arena and the pure mapper: envelope entries -> rows.
 *
 * A batch holds the entries of up to `cap_rows` edge entries that the
 * persister will write in one transaction: data rows (telemetry), session
 * rows (connect/disconnect) and the peers (edge worker reply address +
 * incarnation) to acknowledge. Everything is preallocated by batch_init:
 * adding a row never allocates. Slices (dev, raw body, peer, reason, edge,
 * reply) point into the ZeroMQ messages the caller keeps alive until the
 * batch is reset; the body's JSON text is written into the batch's own
 * arena. Nothing here touches a socket or the database. */
#ifndef PERSISTER_ROWS_H
#define PERSISTER_ROWS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/envelope.h"
#include "sl/err.h"
#include "sl/slice.h"

#define ROWS_NONE     UINT32_MAX
#define ROWS_EDGE_MAX 255u /* longest edge id / reply / peer / reason we store */
#define ROWS_ERR_MAX  200u /* a rejected row's error text is cut to this */

/* Life of a row inside one write attempt. */
enum row_state {
    ROW_NEW = 0, /* mapped, not written yet */
    ROW_STORED,  /* telemetry has it (inserted now or before): ack */
    ROW_REJECT,  /* PostgreSQL refused it: goes to telemetry_rejected */
    ROW_BAD,     /* the mapper refused it (e.g. body not msgpack): to telemetry_rejected */
    ROW_DEAD,    /* in telemetry_rejected: ack */
    ROW_DROPPED, /* could not be stored anywhere: never acked (device resends) */
};

struct row {
    uint8_t kind;  /* ENV_DATA, ENV_CONNECT or ENV_DISCONNECT */
    uint8_t state; /* enum row_state */
    bool has_ts;
    bool bad;      /* the mapper refused it: every attempt starts as ROW_BAD */
    uint16_t peer; /* index into batch.peers */
    uint32_t slot, gen;
    uint64_t seq, epoch, at_ns;
    int64_t ts;
    struct sl_slice dev;
    struct sl_slice raw;         /* data: body msgpack, untouched */
    struct sl_slice addr;        /* connect/disconnect: "ip:port" */
    struct sl_slice reason;      /* disconnect */
    uint32_t json_off, json_len; /* data: body JSON in batch.json */
    uint32_t err_off, err_len;   /* ROW_REJECT/ROW_BAD/ROW_DEAD: text in batch.err */
    uint32_t next;               /* next data row of the same peer, or ROWS_NONE */
};

/* One (reply identity, incarnation) to acknowledge; data rows chain from first. */
struct batch_peer {
    struct sl_slice edge;
    struct sl_slice reply;
    uint64_t incarnation;
    uint32_t first, last;
};

struct batch {
    struct row *rows;
    uint32_t nrows, cap_rows;
    uint32_t ndata; /* rows of kind ENV_DATA */
    char *json;
    size_t json_len, json_cap;
    char *err;
    size_t err_len, err_cap;
    struct batch_peer *peers;
    uint32_t npeers, cap_peers;
};

/* Allocate a batch for cap_rows rows and json_cap bytes of JSON text.
 * Returns 0 or -1 (out of memory). Blocks: no. */
int batch_init(struct batch *b, uint32_t cap_rows, size_t json_cap);
void batch_fini(struct batch *b);
/* Forget every row and peer (slices must not be used afterwards). */
void batch_reset(struct batch *b);

static inline bool batch_full(const struct batch *b)
{
    return b->nrows >= b->cap_rows;
}

/* The peer index of a batch header, added if new. Returns the index, or -1
 * if the peer table is full (flush first) or the header's strings are longer
 * than ROWS_EDGE_MAX (the caller drops the message). */
int batch_peer(struct batch *b, const struct envelope_hdr *h);

/* Map one entry read from a message whose header is peers[peer].
 *   SL_OK     a row was added (a data row whose body the JSON mapper refuses
 *             is added as ROW_BAD, so it is dead-lettered and acked);
 *   SL_AGAIN  the entry is not for the persister (heartbeat, res, ...) or is
 *             unusable (dev empty or too long, seq > INT64_MAX): nothing added;
 *   SL_NOMEM  the batch is full (rows or JSON arena): flush, then call again.
 * Blocks: no. Allocates: no. */
enum sl_err batch_add(struct batch *b, uint16_t peer, const struct envelope *e);

/* Record why row i is refused (copied, cut to ROWS_ERR_MAX). */
void batch_set_err(struct batch *b, uint32_t i, const char *msg, size_t n);

/* COPY ... FROM STDIN (FORMAT binary): the stream is a header, one tuple
 * per row, and a trailer. Binary rather than text because PostgreSQL then
 * parses no timestamp or integer and unescapes no text: 7-14 % less of
 * its CPU per stored row (docs/performance.md, session 16). */
#define ROWS_COPY_HEADER_LEN  19u
#define ROWS_COPY_TRAILER_LEN 2u
/* The stream's header ("PGCOPY\n\377\r\n\0", no flags, no extension) and
 * trailer (a field count of -1). Each returns the bytes it wrote. */
size_t rows_copy_header(char *out);
size_t rows_copy_trailer(char *out);

/* A data row's columns, in telemetry's order. */
enum rows_col { ROWS_DEV, ROWS_SEQ, ROWS_TS, ROWS_AT, ROWS_EDGE, ROWS_BODY, ROWS_NCOL };

/* Column c of data row i in PostgreSQL's binary form, which a COPY field
 * and an array element share: its int32 length (-1: NULL, device_ts only)
 * and its bytes (device_id and edge_id as text, seq as int8, the times as
 * timestamptz, the body as jsonb). rows_field writes exactly
 * rows_field_len(b, i, c) bytes and returns that. */
size_t rows_field_len(const struct batch *b, uint32_t i, enum rows_col c);
size_t rows_field(const struct batch *b, uint32_t i, enum rows_col c, char *out);

/* One tuple of telemetry for data row i (6 fields: device_id, seq,
 * device_ts or NULL, received_at, edge_id, body as jsonb). Returns its
 * length, or 0 if it does not fit in cap. */
size_t rows_copy_tuple(const struct batch *b, uint32_t i, char *out, size_t cap);

/* The length of row i's telemetry tuple: exactly what rows_copy_tuple writes. */
size_t rows_copy_bound(const struct batch *b, uint32_t i);

/* One tuple of telemetry_keys for data row i (3 fields: device_id, seq,
 * received_at, the row's to the microsecond). Returns its length, or 0 if
 * it does not fit in cap; rows_key_bound(b, i) bytes, its exact length. */
size_t rows_key_tuple(const struct batch *b, uint32_t i, char *out, size_t cap);
size_t rows_key_bound(const struct batch *b, uint32_t i);

/* "YYYY-MM-DD HH:MM:SS.uuuuuu+00" for a UTC time given as microseconds since
 * the epoch (negative allowed). out needs 40 bytes. Returns the length. */
size_t rows_fmt_us(char *out, int64_t us);

/* Microseconds for the row's received_at (at_ns) and device_ts (ts ms). */
static inline int64_t rows_at_us(const struct row *r)
{
    return (int64_t)(r->at_ns / 1000u);
}

#endif
