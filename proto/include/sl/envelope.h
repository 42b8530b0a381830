/* SPDX-License-Identifier: Apache-2.0 */
/* sl/envelope.h - the internal messages between edges and services
 * (docs/protocol.md, "Internal messages").
 *
 * One ZeroMQ message carries a batch: a header followed by any number of
 * entries, all msgpack, concatenated. Every entry has the same positional
 * shape (struct envelope), whatever its kind and direction:
 *
 *   header: [v, edge_id, incarnation, reply]
 *   entry:  [kind, slot, gen, dev, epoch, seq, ts, at_ns, peer, reason, id, ok, body, to, ring]
 *
 * Trailing nil fields of an entry are left out by the writer, so an ack is
 * [kind, slot, gen, dev, epoch, seq]. Readers ignore elements past the ones
 * they know, so a later version may append fields; a changed meaning bumps v
 * and a reader refuses a batch whose v it does not speak (SL_VERSION).
 *
 * Writer and reader are I/O-free and never allocate: the writer fills a
 * caller buffer, the reader points into the message it reads. */
#ifndef SL_ENVELOPE_H
#define SL_ENVELOPE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/err.h"
#include "sl/mp.h"
#include "sl/slice.h"

enum envelope_kind {
    ENV_NONE = 0,
    /* edge -> persister and notifier (PUSH) */
    ENV_DATA = 1,          /* a data frame: seq, ts, at_ns = edge receive time, body */
    ENV_CONNECT = 2,       /* a session began (hello accepted): at_ns, peer */
    ENV_DISCONNECT = 3,    /* a session ended: at_ns, peer, reason */
    ENV_RES = 4,           /* a device answered a command: id, ok, body (may be absent) */
    ENV_HEARTBEAT = 5,     /* the edge is alive: at_ns, seq = open connections */
    ENV_UNDELIVERABLE = 6, /* edge -> notifier: a cmd found no connection: id, reason */
    /* service -> edge (ROUTER to the edge worker's DEALER) */
    ENV_ACK = 7,  /* persister: (slot, gen, dev, seq) is committed */
    ENV_CMD = 8,  /* notifier: deliver cmd id with body to dev */
    ENV_KICK = 9, /* notifier: close exactly (slot, gen, dev) with err "replaced" */
    /* notifier -> edge worker: "I am alive", answering a heartbeat that
     * carried `to`: at_ns, to (echoed); the header's edge names the notifier */
    ENV_NOTIFIER_HB = 10,
    /* edge -> persister and notifier (PUSH), added in 0.2 (append-only: older
     * readers skip it) */
    ENV_CMD_SENT = 11, /* the cmd frame `id` was written to dev's connection: at_ns, id */
};

/* Batch header. In edge -> service batches, reply is the ZeroMQ identity of
 * the edge worker's DEALER ("<edge-id>/<worker>"): any service answers there.
 * In service -> edge batches, incarnation is the one the service is answering
 * (an edge drops batches meant for an earlier incarnation) and edge/reply
 * name the sender. */
struct envelope_hdr {
    uint32_t v;
    struct sl_slice edge;
    uint64_t incarnation;
    struct sl_slice reply;
};

/* One entry. A connection id is (header incarnation, slot, gen). Fields a
 * kind does not use are zero / empty and go on the wire as nil. */
struct envelope {
    enum envelope_kind kind;
    uint32_t slot;
    uint32_t gen;
    struct sl_slice dev;
    uint64_t epoch; /* session epoch: orders sessions of one device */
    uint64_t seq;   /* data/ack: device seq; heartbeat: open connections */
    int64_t ts;     /* data: device timestamp, ms */
    bool has_ts;
    uint64_t at_ns;         /* wall-clock ns when the edge saw it */
    struct sl_slice peer;   /* connect/disconnect: "ip:port" */
    struct sl_slice reason; /* disconnect: close reason; undeliverable: why */
    struct sl_slice id;     /* res/cmd/undeliverable: command id */
    bool ok;                /* res */
    bool has_ok;
    struct sl_slice body; /* data/res/cmd: raw msgpack bytes, untouched */
    bool has_body;
    /* Appended in the same version (readers that predate them skip them):
     * to: heartbeat, the notifier endpoint it was sent to, echoed back in
     * ENV_NOTIFIER_HB; ring: heartbeat, the ids of the notifiers the worker
     * sends device events to, comma-separated. Empty = absent (nil). */
    struct sl_slice to;
    struct sl_slice ring;
};

/* Fields are the writer's: read them through the functions below, never
 * write them. */
struct envelope_writer {
    struct mp_buf buf;
    uint32_t count;
    size_t hdr_len; /* bytes of the header at the start of buf */
    size_t last;    /* offset of the entry appended last (== buf.len: none) */
};

/* Start a batch in buf (caller-owned). Returns SL_OK or SL_TOOBIG. */
enum sl_err envelope_writer_begin(struct envelope_writer *w, uint8_t *buf, size_t cap,
                                  const struct envelope_hdr *h);

/* Append one entry. SL_TOOBIG leaves the batch as it was before the call
 * (flush it and start a new one). */
enum sl_err envelope_writer_add(struct envelope_writer *w, const struct envelope *e);

/* Append one entry already encoded: bytes that envelope_writer_last gave
 * for another batch (an entry's bytes do not depend on its batch's header,
 * so one encoding can go into two batches). Copies. SL_OK, SL_TOOBIG
 * (batch unchanged), SL_INVAL if the bytes do not start a msgpack array. */
enum sl_err envelope_writer_add_encoded(struct envelope_writer *w, struct sl_slice entry);

/* Append every entry of src to w: for joining batches that were built
 * apart but share a header (e.g. a control part and a data part). Copies.
 * SL_OK, SL_TOOBIG (w unchanged), SL_INVAL if the headers' bytes differ
 * (the entries would be attributed to another edge or incarnation). */
enum sl_err envelope_writer_append(struct envelope_writer *w, const struct envelope_writer *src);

/* The whole batch so far: header and entries, ready to send. */
static inline size_t envelope_writer_len(const struct envelope_writer *w)
{
    return w->buf.len;
}

/* Entries in the batch. */
static inline uint32_t envelope_writer_count(const struct envelope_writer *w)
{
    return w->count;
}

/* The bytes of the entries, without the header (empty after begin). Valid
 * until the writer's buffer is reused. */
static inline struct sl_slice envelope_writer_entries(const struct envelope_writer *w)
{
    struct sl_slice s = {w->buf.p + w->hdr_len, (uint32_t)(w->buf.len - w->hdr_len)};
    return s;
}

/* The bytes of the entry the last successful add, add_encoded or append
 * appended (for append: src's last entry), empty when none has been since
 * begin. Valid until the writer's buffer is reused. */
static inline struct sl_slice envelope_writer_last(const struct envelope_writer *w)
{
    struct sl_slice s = {w->buf.p + w->last, (uint32_t)(w->buf.len - w->last)};
    return s;
}

struct envelope_reader {
    struct mp_cur cur;
    struct envelope_hdr hdr;
};

/* Read a batch header. SL_VERSION if v is not SL_ENVELOPE_VERSION (the
 * header is still filled in, for the log line), SL_DECODE if malformed. */
enum sl_err envelope_reader_begin(struct envelope_reader *r, const uint8_t *p, size_t n);

/* Next entry: SL_OK, SL_AGAIN at the end of the batch, SL_DECODE if
 * malformed (stop reading the batch). */
enum sl_err envelope_reader_next(struct envelope_reader *r, struct envelope *e);

/* What a reader may trust of a batch it was sent (another process, maybe
 * an old or a broken one: the services distrust the wire). */
#define ENVELOPE_NAME_MAX   255  /* edge id, reply identity */
#define ENVELOPE_PEER_MAX   64   /* "ip:port" */
#define ENVELOPE_REASON_MAX 64   /* close reason, undeliverable why */
#define ENVELOPE_TO_MAX     320  /* heartbeat: the notifier endpoint it went to */
#define ENVELOPE_RING_MAX   2080 /* heartbeat: up to 32 notifier ids and their commas */

/* SL_OK if the header's strings are printable ASCII within their bounds
 * (no NUL: they become hash keys, log fields and ZeroMQ identities), else
 * SL_INVAL with *why naming the field. */
enum sl_err envelope_hdr_check(const struct envelope_hdr *h, const char **why);

/* One entry as read, against the contract of its kind: dev (every kind
 * but the heartbeats, where it is empty) and id (res, cmd, undeliverable)
 * in the device-id alphabet [A-Za-z0-9._:-]{1,64}, data seq 1..2^63-1 with
 * a body, peer, reason, to and ring printable and bounded. SL_OK; SL_INVAL (count it and skip it:
 * *why names the field); SL_AGAIN for a kind this build does not know
 * (skip it silently: a later version may add kinds). Pure, no allocation. */
enum sl_err envelope_check(const struct envelope *e, const char **why);

/* Wire-independent name of a kind, for logs and metrics labels. */
const char *envelope_kind_name(enum envelope_kind k);

#endif
