/* SPDX-License-Identifier: Apache-2.0 */
/* envelope.c - batches between edges and services (sl/envelope.h,
 * docs/protocol.md §6).
 *
 * The writer packs a header array and then one positional array per entry
 * with msgpack-c's packer into a caller buffer; which of the 15 positions an
 * entry carries follows from its kind (the table below), and trailing nils
 * are left out. The reader walks the batch with the bounded mp cursor and
 * points into it: nothing is copied, nothing allocated.
 *
 * Deliberately not here: sockets, batching policy (when to flush), or any
 * check of what a body contains. A body travels as a bin holding the raw
 * msgpack bytes the edge already bounded and validated; whoever converts it
 * (tojson.c) reads it through the same bounded cursor. */
#include "sl/envelope.h"
#include "sl/msg.h"

#include <string.h>

#include "sl/limits.h"

/* Entry positions, in wire order. */
enum pos {
    P_KIND,
    P_SLOT,
    P_GEN,
    P_DEV,
    P_EPOCH,
    P_SEQ,
    P_TS,
    P_AT,
    P_PEER,
    P_REASON,
    P_ID,
    P_OK,
    P_BODY,
    P_TO,   /* appended: heartbeat only */
    P_RING, /* appended: heartbeat only */
    P_N,    /* positions this build knows; readers skip any beyond */
};

/* Positions 0..4 (kind, slot, gen, dev, epoch) are always written. */
#define P_ALWAYS 5
#define BIT(p)   (1u << (p))

/* Which of positions 5..14 each kind uses (protocol.md §6, the kinds table).
 * A used optional field (ts, res body) still goes as nil when absent. */
static const unsigned kind_uses[] = {
    [ENV_NONE] = 0,
    [ENV_DATA] = BIT(P_SEQ) | BIT(P_TS) | BIT(P_AT) | BIT(P_BODY),
    [ENV_CONNECT] = BIT(P_AT) | BIT(P_PEER),
    [ENV_DISCONNECT] = BIT(P_AT) | BIT(P_PEER) | BIT(P_REASON),
    [ENV_RES] = BIT(P_AT) | BIT(P_ID) | BIT(P_OK) | BIT(P_BODY),
    [ENV_HEARTBEAT] = BIT(P_SEQ) | BIT(P_AT) | BIT(P_TO) | BIT(P_RING),
    [ENV_UNDELIVERABLE] = BIT(P_ID) | BIT(P_REASON),
    [ENV_ACK] = BIT(P_SEQ),
    [ENV_CMD] = BIT(P_ID) | BIT(P_BODY),
    [ENV_KICK] = 0,
    [ENV_NOTIFIER_HB] = BIT(P_AT) | BIT(P_TO),
    [ENV_CMD_SENT] = BIT(P_AT) | BIT(P_ID),
};
#define NKINDS (sizeof kind_uses / sizeof kind_uses[0])

static const char *const kind_names[] = {
    [ENV_NONE] = "none",
    [ENV_DATA] = "data",
    [ENV_CONNECT] = "connect",
    [ENV_DISCONNECT] = "disconnect",
    [ENV_RES] = "res",
    [ENV_HEARTBEAT] = "heartbeat",
    [ENV_UNDELIVERABLE] = "undeliverable",
    [ENV_ACK] = "ack",
    [ENV_CMD] = "cmd",
    [ENV_KICK] = "kick",
    [ENV_NOTIFIER_HB] = "notifier_heartbeat",
    [ENV_CMD_SENT] = "cmd_sent",
};

const char *envelope_kind_name(enum envelope_kind k)
{
    if ((unsigned)k >= NKINDS)
        return "unknown";
    return kind_names[k];
}

/* ---- checking what was read ---- */

/* Printable ASCII, no NUL, 1..max bytes (or empty when allowed). */
static bool printable(struct sl_slice s, uint32_t max, bool may_be_empty)
{
    if (s.n == 0)
        return may_be_empty;
    if (s.n > max)
        return false;
    for (uint32_t i = 0; i < s.n; i++)
        if (s.p[i] < 0x20 || s.p[i] > 0x7e)
            return false;
    return true;
}

enum sl_err envelope_hdr_check(const struct envelope_hdr *h, const char **why)
{
    if (!printable(h->edge, ENVELOPE_NAME_MAX, false)) {
        *why = "edge";
        return SL_INVAL;
    }
    if (!printable(h->reply, ENVELOPE_NAME_MAX, true)) {
        *why = "reply";
        return SL_INVAL;
    }
    return SL_OK;
}

enum sl_err envelope_check(const struct envelope *e, const char **why)
{
    if ((unsigned)e->kind >= NKINDS || e->kind == ENV_NONE)
        return SL_AGAIN; /* a kind of a later version: ignore it */
    unsigned uses = kind_uses[e->kind];
    *why = NULL;
    if (e->kind == ENV_HEARTBEAT || e->kind == ENV_NOTIFIER_HB) {
        if (e->dev.n)
            *why = "dev";
    } else if (!msg_valid_id(e->dev.p, e->dev.n)) {
        *why = "dev";
    }
    if (!*why && (uses & BIT(P_ID)) && !msg_valid_id(e->id.p, e->id.n))
        *why = "id";
    if (!*why && e->kind == ENV_DATA && (e->seq == 0 || e->seq > (uint64_t)INT64_MAX))
        *why = "seq";
    if (!*why && e->kind == ENV_DATA && !e->has_body)
        *why = "body";
    if (!*why && (uses & BIT(P_PEER)) && !printable(e->peer, ENVELOPE_PEER_MAX, true))
        *why = "peer";
    if (!*why && (uses & BIT(P_REASON)) && !printable(e->reason, ENVELOPE_REASON_MAX, true))
        *why = "reason";
    if (!*why && (uses & BIT(P_TO)) && !printable(e->to, ENVELOPE_TO_MAX, true))
        *why = "to";
    if (!*why && (uses & BIT(P_RING)) && !printable(e->ring, ENVELOPE_RING_MAX, true))
        *why = "ring";
    return *why ? SL_INVAL : SL_OK;
}

/* ---- writer ---- */

static void pack_str(msgpack_packer *pk, struct sl_slice s)
{
    msgpack_pack_str_with_body(pk, s.p, s.n);
}

enum sl_err envelope_writer_begin(struct envelope_writer *w, uint8_t *buf, size_t cap,
                                  const struct envelope_hdr *h)
{
    msgpack_packer pk;

    mp_buf_init(&w->buf, buf, cap);
    w->count = 0;
    msgpack_packer_init(&pk, &w->buf, mp_buf_write);
    msgpack_pack_array(&pk, 4);
    /* h->v = 0 means "this build's version"; tests set another to check
     * that readers refuse it. */
    msgpack_pack_uint32(&pk, h->v ? h->v : SL_ENVELOPE_VERSION);
    pack_str(&pk, h->edge);
    msgpack_pack_uint64(&pk, h->incarnation);
    pack_str(&pk, h->reply);
    w->hdr_len = w->last = w->buf.len;
    return w->buf.overflow ? SL_TOOBIG : SL_OK;
}

/* Is position p of e nil on the wire? */
static bool is_nil(const struct envelope *e, unsigned uses, unsigned p)
{
    if (p < P_ALWAYS)
        return false;
    if (!(uses & BIT(p)))
        return true;
    if (p == P_TS)
        return !e->has_ts;
    /* A res may come without a body; data and cmd always carry one. */
    if (p == P_BODY && e->kind == ENV_RES)
        return !e->has_body;
    if (p == P_TO)
        return e->to.n == 0;
    if (p == P_RING)
        return e->ring.n == 0;
    return false;
}

enum sl_err envelope_writer_add(struct envelope_writer *w, const struct envelope *e)
{
    msgpack_packer pk;

    if ((unsigned)e->kind >= NKINDS || e->kind == ENV_NONE)
        return SL_INVAL;
    if (w->buf.overflow)
        return SL_TOOBIG;
    unsigned uses = kind_uses[e->kind];
    unsigned n = P_N;
    while (n > P_ALWAYS && is_nil(e, uses, n - 1))
        n--;

    size_t mark = w->buf.len;
    msgpack_packer_init(&pk, &w->buf, mp_buf_write);
    msgpack_pack_array(&pk, n);
    for (unsigned p = 0; p < n; p++) {
        if (is_nil(e, uses, p)) {
            msgpack_pack_nil(&pk);
            continue;
        }
        switch (p) {
        case P_KIND: msgpack_pack_uint32(&pk, (uint32_t)e->kind); break;
        case P_SLOT: msgpack_pack_uint32(&pk, e->slot); break;
        case P_GEN: msgpack_pack_uint32(&pk, e->gen); break;
        case P_DEV: pack_str(&pk, e->dev); break;
        case P_EPOCH: msgpack_pack_uint64(&pk, e->epoch); break;
        case P_SEQ: msgpack_pack_uint64(&pk, e->seq); break;
        case P_TS: msgpack_pack_int64(&pk, e->ts); break;
        case P_AT: msgpack_pack_uint64(&pk, e->at_ns); break;
        case P_PEER: pack_str(&pk, e->peer); break;
        case P_REASON: pack_str(&pk, e->reason); break;
        case P_ID: pack_str(&pk, e->id); break;
        case P_OK:
            if (e->ok)
                msgpack_pack_true(&pk);
            else
                msgpack_pack_false(&pk);
            break;
        case P_BODY: msgpack_pack_bin_with_body(&pk, e->body.p, e->body.n); break;
        case P_TO: pack_str(&pk, e->to); break;
        case P_RING: pack_str(&pk, e->ring); break;
        }
    }
    if (w->buf.overflow) {
        /* Roll back to the last whole entry: the batch stays sendable. */
        w->buf.len = mark;
        w->buf.overflow = false;
        return SL_TOOBIG;
    }
    w->count++;
    w->last = mark;
    return SL_OK;
}

/* Room for n more bytes, leaving the batch sendable either way. */
static bool room(const struct envelope_writer *w, size_t n)
{
    return !w->buf.overflow && w->buf.cap - w->buf.len >= n;
}

enum sl_err envelope_writer_add_encoded(struct envelope_writer *w, struct sl_slice entry)
{
    /* An entry is an array: fixarray 0x90-0x9f, array 16 0xdc, array 32 0xdd. */
    if (entry.n == 0 || !((entry.p[0] & 0xf0u) == 0x90u || entry.p[0] == 0xdcu || entry.p[0] == 0xddu))
        return SL_INVAL;
    if (!room(w, entry.n))
        return SL_TOOBIG;
    w->last = w->buf.len;
    mp_buf_raw(&w->buf, entry.p, entry.n);
    w->count++;
    return SL_OK;
}

enum sl_err envelope_writer_append(struct envelope_writer *w, const struct envelope_writer *src)
{
    if (src->hdr_len != w->hdr_len || memcmp(src->buf.p, w->buf.p, w->hdr_len) != 0)
        return SL_INVAL;
    struct sl_slice e = envelope_writer_entries(src);
    if (e.n == 0)
        return SL_OK;
    if (!room(w, e.n))
        return SL_TOOBIG;
    w->last = w->buf.len + (src->last - src->hdr_len);
    mp_buf_raw(&w->buf, e.p, e.n);
    w->count += src->count;
    return SL_OK;
}

/* ---- reader ---- */

static int read_uint(struct mp_cur *c, uint64_t max, uint64_t *out)
{
    struct mp_item it;
    if (mp_next(c, &it) != 0)
        return -1;
    if (it.type == MP_NIL) {
        *out = 0;
        return 0;
    }
    if (it.type != MP_UINT || it.u > max)
        return -1;
    *out = it.u;
    return 0;
}

static int read_str(struct mp_cur *c, struct sl_slice *out)
{
    struct mp_item it;
    if (mp_next(c, &it) != 0)
        return -1;
    if (it.type == MP_NIL) {
        out->p = NULL;
        out->n = 0;
        return 0;
    }
    if (it.type != MP_STR)
        return -1;
    *out = it.data;
    return 0;
}

enum sl_err envelope_reader_begin(struct envelope_reader *r, const uint8_t *p, size_t n)
{
    struct mp_item it;
    uint64_t u;

    memset(&r->hdr, 0, sizeof r->hdr);
    mp_cur_init(&r->cur, p, n);
    if (mp_next(&r->cur, &it) != 0 || it.type != MP_ARRAY || it.n < 1)
        return SL_DECODE;
    uint32_t elems = it.n;
    if (read_uint(&r->cur, UINT64_MAX, &u) != 0)
        return SL_DECODE;
    r->hdr.v = u > UINT32_MAX ? UINT32_MAX : (uint32_t)u;
    bool other = r->hdr.v != SL_ENVELOPE_VERSION;

    /* For another version, fill in what reads like a v1 header so the
     * refusal can be logged with the peer's name; its shape may differ,
     * so a failure to read it changes nothing. */
    if (elems < 4 || read_str(&r->cur, &r->hdr.edge) != 0 ||
        read_uint(&r->cur, UINT64_MAX, &r->hdr.incarnation) != 0 || read_str(&r->cur, &r->hdr.reply) != 0)
        return other ? SL_VERSION : SL_DECODE;
    if (other)
        return SL_VERSION;
    /* A later compatible header may append positions. */
    for (uint32_t i = 4; i < elems; i++)
        if (mp_skip(&r->cur, SL_MP_MAX_DEPTH) != 0)
            return SL_DECODE;
    return SL_OK;
}

static int read_pos(struct mp_cur *c, unsigned p, struct envelope *e)
{
    struct mp_item it;
    uint64_t u;

    switch (p) {
    case P_KIND:
        /* Unknown kinds read fine: a newer edge may send one, and the
         * service ignores what it does not know. */
        if (mp_next(c, &it) != 0 || it.type != MP_UINT || it.u > INT32_MAX)
            return -1;
        e->kind = (enum envelope_kind)it.u;
        return 0;
    case P_SLOT:
        if (read_uint(c, UINT32_MAX, &u) != 0)
            return -1;
        e->slot = (uint32_t)u;
        return 0;
    case P_GEN:
        if (read_uint(c, UINT32_MAX, &u) != 0)
            return -1;
        e->gen = (uint32_t)u;
        return 0;
    case P_DEV: return read_str(c, &e->dev);
    case P_EPOCH: return read_uint(c, UINT64_MAX, &e->epoch);
    case P_SEQ: return read_uint(c, UINT64_MAX, &e->seq);
    case P_TS:
        if (mp_next(c, &it) != 0)
            return -1;
        if (it.type == MP_NIL)
            return 0;
        if (it.type == MP_INT || (it.type == MP_UINT && it.u <= (uint64_t)INT64_MAX)) {
            e->ts = it.i;
            e->has_ts = true;
            return 0;
        }
        return -1;
    case P_AT: return read_uint(c, UINT64_MAX, &e->at_ns);
    case P_PEER: return read_str(c, &e->peer);
    case P_REASON: return read_str(c, &e->reason);
    case P_ID: return read_str(c, &e->id);
    case P_OK:
        if (mp_next(c, &it) != 0)
            return -1;
        if (it.type == MP_NIL)
            return 0;
        if (it.type != MP_BOOL)
            return -1;
        e->ok = it.b;
        e->has_ok = true;
        return 0;
    case P_BODY:
        if (mp_next(c, &it) != 0)
            return -1;
        if (it.type == MP_NIL)
            return 0;
        if (it.type != MP_BIN)
            return -1;
        e->body = it.data;
        e->has_body = true;
        return 0;
    case P_TO:
    case P_RING:
        /* Appended in version 1: a string; anything else there is a field
         * this reader does not know and skips, as any appended position. */
        {
            struct mp_cur at = *c;
            if (mp_next(c, &it) != 0)
                return -1;
            if (it.type == MP_STR) {
                *(p == P_TO ? &e->to : &e->ring) = it.data;
                return 0;
            }
            *c = at;
            return mp_skip(c, SL_MP_MAX_DEPTH);
        }
    default:
        /* A position a later version appended. */
        return mp_skip(c, SL_MP_MAX_DEPTH);
    }
}

enum sl_err envelope_reader_next(struct envelope_reader *r, struct envelope *e)
{
    struct mp_item it;

    memset(e, 0, sizeof *e);
    if (mp_cur_left(&r->cur) == 0)
        return SL_AGAIN;
    if (mp_next(&r->cur, &it) != 0 || it.type != MP_ARRAY || it.n < 4)
        return SL_DECODE;
    for (uint32_t p = 0; p < it.n; p++)
        if (read_pos(&r->cur, p, e) != 0)
            return SL_DECODE;
    return SL_OK;
}
