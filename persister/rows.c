/* SPDX-License-Identifier: Apache-2.0 */
/* rows.c - the persister's pure mapper: envelope entries -> batch rows, and
 * rows -> COPY binary tuples.
 *
 * It owns the batch arena (rows, JSON text, error texts, peers), sized once
 * by batch_init, so steady-state mapping never allocates. The body goes to
 * JSON through proto's tojson (docs/protocol.md section 3); a body tojson
 * refuses becomes a ROW_BAD row, dead-lettered and acknowledged by the
 * writer, because resending it would never help.
 *
 * Deliberately not here: sockets, libpq, logging, deciding when to flush. */
#include "rows.h"

#include <stdlib.h>
#include <string.h>

#include "pgbin.h"
#include "sl/tojson.h"

int batch_init(struct batch *b, uint32_t cap_rows, size_t json_cap)
{
    memset(b, 0, sizeof *b);
    b->cap_rows = cap_rows;
    b->json_cap = json_cap;
    /* Error texts are rare (poison rows); room for a few hundred is plenty,
     * and batch_set_err cuts or drops text rather than growing. */
    b->err_cap = 64u * 1024u;
    /* A message carries one header, so there are at most as many peers as
     * rows (+1 for the message being read when the batch filled). */
    b->cap_peers = cap_rows + 1u < 65535u ? cap_rows + 1u : 65535u;
    b->rows = calloc(cap_rows, sizeof *b->rows);
    b->json = malloc(json_cap);
    b->err = malloc(b->err_cap);
    b->peers = calloc(b->cap_peers, sizeof *b->peers);
    if (!b->rows || !b->json || !b->err || !b->peers) {
        batch_fini(b);
        return -1;
    }
    return 0;
}

void batch_fini(struct batch *b)
{
    free(b->rows);
    free(b->json);
    free(b->err);
    free(b->peers);
    memset(b, 0, sizeof *b);
}

void batch_reset(struct batch *b)
{
    b->nrows = 0;
    b->ndata = 0;
    b->json_len = 0;
    b->err_len = 0;
    b->npeers = 0;
}

int batch_peer(struct batch *b, const struct envelope_hdr *h)
{
    if (h->edge.n == 0 || h->edge.n > ROWS_EDGE_MAX || h->reply.n > ROWS_EDGE_MAX)
        return -1;
    /* Consecutive messages mostly come from the same few workers: search
     * from the newest peer backwards. */
    for (uint32_t i = b->npeers; i-- > 0;) {
        struct batch_peer *p = &b->peers[i];
        if (p->incarnation == h->incarnation && sl_slice_eq(p->reply, h->reply) &&
            sl_slice_eq(p->edge, h->edge))
            return (int)i;
    }
    if (b->npeers >= b->cap_peers)
        return -1;
    struct batch_peer *p = &b->peers[b->npeers];
    p->edge = h->edge;
    p->reply = h->reply;
    p->incarnation = h->incarnation;
    p->first = p->last = ROWS_NONE;
    return (int)b->npeers++;
}

void batch_set_err(struct batch *b, uint32_t i, const char *msg, size_t n)
{
    struct row *r = &b->rows[i];
    if (n > ROWS_ERR_MAX)
        n = ROWS_ERR_MAX;
    /* Drop trailing newlines libpq puts on its messages. */
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        n--;
    if (b->err_len + n > b->err_cap) {
        static const char lost[] = "error text lost (buffer full)";
        msg = lost;
        n = sizeof lost - 1;
        if (b->err_len + n > b->err_cap) {
            r->err_off = 0;
            r->err_len = 0;
            return;
        }
    }
    memcpy(b->err + b->err_len, msg, n);
    r->err_off = (uint32_t)b->err_len;
    r->err_len = (uint32_t)n;
    b->err_len += n;
}

static void link_peer(struct batch *b, uint32_t i)
{
    struct row *r = &b->rows[i];
    struct batch_peer *p = &b->peers[r->peer];
    r->next = ROWS_NONE;
    if (p->last == ROWS_NONE)
        p->first = i;
    else
        b->rows[p->last].next = i;
    p->last = i;
}

/* A ms timestamp must survive *1000 into microseconds, and be no earlier
 * than 0001-01-01 UTC: PostgreSQL's binary input (COPY's, and the arrays of
 * db.c's one statement) takes years BC, which its text input refused; the
 * mapper decides for every path, without a round trip. */
#define TS_MS_LIMIT (INT64_MAX / 1000 - 1)
#define TS_MS_MIN   (-62135596800000LL)

enum sl_err batch_add(struct batch *b, uint16_t peer, const struct envelope *e)
{
    if (e->kind != ENV_DATA && e->kind != ENV_CONNECT && e->kind != ENV_DISCONNECT)
        return SL_AGAIN;
    if (e->dev.n == 0 || e->dev.n > 64u)
        return SL_AGAIN;
    if (e->kind == ENV_DATA && e->seq > (uint64_t)INT64_MAX)
        return SL_AGAIN; /* cannot be a bigint key anywhere; the edge never sends it */
    if (batch_full(b))
        return SL_NOMEM;

    uint32_t i = b->nrows;
    struct row *r = &b->rows[i];
    memset(r, 0, sizeof *r);
    r->kind = (uint8_t)e->kind;
    r->state = ROW_NEW;
    r->peer = peer;
    r->slot = e->slot;
    r->gen = e->gen;
    r->dev = e->dev;
    r->seq = e->seq;
    r->epoch = e->epoch;
    r->at_ns = e->at_ns;
    r->next = ROWS_NONE;

    if (e->kind != ENV_DATA) {
        r->addr = e->peer;
        r->reason = e->reason;
        if (r->addr.n > ROWS_EDGE_MAX)
            r->addr.n = ROWS_EDGE_MAX;
        if (r->reason.n > ROWS_EDGE_MAX)
            r->reason.n = ROWS_EDGE_MAX;
        b->nrows++;
        return SL_OK;
    }

    r->has_ts = e->has_ts;
    r->ts = e->ts;
    r->raw = e->body;
    const char *bad = NULL;
    if (!e->has_body) {
        bad = "no body";
    } else if (e->has_ts && (e->ts > TS_MS_LIMIT || e->ts < TS_MS_MIN)) {
        bad = "ts out of range";
    } else {
        struct tojson_buf jb;
        tojson_buf_init(&jb, b->json + b->json_len, b->json_cap - b->json_len);
        enum sl_err rc = tojson_encode(&jb, e->body.p, e->body.n);
        if (rc == SL_TOOBIG || (rc == SL_OK && jb.overflow)) {
            if (b->nrows > 0)
                return SL_NOMEM; /* room in a fresh batch */
            bad = "body too large for the JSON buffer";
        } else if (rc != SL_OK) {
            bad = "body is not valid msgpack";
        } else {
            r->json_off = (uint32_t)b->json_len;
            r->json_len = (uint32_t)jb.len;
            b->json_len += jb.len;
        }
    }
    b->nrows++;
    b->ndata++;
    if (bad) {
        r->state = ROW_BAD;
        r->bad = true;
        batch_set_err(b, i, bad, strlen(bad));
    }
    link_peer(b, i);
    return SL_OK;
}

static size_t fmt_u64(char *out, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    for (size_t k = 0; k < n; k++)
        out[k] = tmp[n - 1 - k];
    return n;
}

static void put2(char *out, unsigned v)
{
    out[0] = (char)('0' + v / 10u);
    out[1] = (char)('0' + v % 10u);
}

size_t rows_fmt_us(char *out, int64_t us)
{
    int64_t secs = us / 1000000;
    int64_t frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    int64_t days = secs / 86400;
    int64_t sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days--;
    }
    /* Howard Hinnant's civil_from_days: exact for the whole int64 range we accept. */
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2)
        y++;
    size_t o = 0;
    /* Years before 1 AD come out as "-NNNN"; PostgreSQL refuses that and the
     * row is dead-lettered, which is the right fate for such a clock. */
    if (y < 0) {
        out[o++] = '-';
        y = -y;
    }
    if (y < 1000) {
        out[o++] = (char)('0' + y / 1000);
        out[o++] = (char)('0' + y / 100 % 10);
        out[o++] = (char)('0' + y / 10 % 10);
        out[o++] = (char)('0' + y % 10);
    } else {
        o += fmt_u64(out + o, (uint64_t)y);
    }
    out[o++] = '-';
    put2(out + o, (unsigned)m);
    o += 2;
    out[o++] = '-';
    put2(out + o, (unsigned)d);
    o += 2;
    out[o++] = ' ';
    put2(out + o, (unsigned)(sod / 3600));
    o += 2;
    out[o++] = ':';
    put2(out + o, (unsigned)(sod / 60 % 60));
    o += 2;
    out[o++] = ':';
    put2(out + o, (unsigned)(sod % 60));
    o += 2;
    out[o++] = '.';
    for (int k = 5; k >= 0; k--) {
        out[o + (size_t)k] = (char)('0' + frac % 10);
        frac /= 10;
    }
    o += 6;
    memcpy(out + o, "+00", 3);
    return o + 3;
}

size_t rows_copy_header(char *out)
{
    static const char sig[11] = "PGCOPY\n\377\r\n";
    memcpy(out, sig, sizeof sig); /* with its NUL: the signature is 11 bytes */
    memset(out + 11, 0, 8);       /* flags (no OIDs), header extension length */
    return ROWS_COPY_HEADER_LEN;
}

size_t rows_copy_trailer(char *out)
{
    pgbin_be16((uint8_t *)out, UINT16_MAX); /* -1 */
    return ROWS_COPY_TRAILER_LEN;
}

/* jsonb's binary input is a version byte (1) and the JSON text. */
#define JSONB_VERSION 1

size_t rows_field_len(const struct batch *b, uint32_t i, enum rows_col c)
{
    const struct row *r = &b->rows[i];
    switch (c) {
    case ROWS_DEV: return 4u + r->dev.n;
    case ROWS_SEQ: return 12u;
    case ROWS_TS: return r->has_ts ? 12u : 4u;
    case ROWS_AT: return 12u;
    case ROWS_EDGE: return 4u + b->peers[r->peer].edge.n;
    default: return 5u + r->json_len;
    }
}

/* jsonb: the version byte, then the JSON text. */
static size_t put_jsonb(uint8_t *o, const char *json, size_t n)
{
    pgbin_be32(o, (uint32_t)(1u + n));
    o[4] = JSONB_VERSION;
    memcpy(o + 5, json, n);
    return 5u + n;
}

size_t rows_field(const struct batch *b, uint32_t i, enum rows_col c, char *out)
{
    const struct row *r = &b->rows[i];
    uint8_t *o = (uint8_t *)out;
    switch (c) {
    case ROWS_DEV: return pgbin_field(o, r->dev.p, r->dev.n);
    case ROWS_SEQ: return pgbin_field_i64(o, r->seq);
    case ROWS_TS: return r->has_ts ? pgbin_field_ts(o, r->ts * 1000) : pgbin_null(o);
    case ROWS_AT: return pgbin_field_ts(o, rows_at_us(r));
    case ROWS_EDGE: return pgbin_field(o, b->peers[r->peer].edge.p, b->peers[r->peer].edge.n);
    default: return put_jsonb(o, b->json + r->json_off, r->json_len);
    }
}

/* The COPY tuples: a field count, then the fields. */
static const enum rows_col row_cols[] = {ROWS_DEV, ROWS_SEQ, ROWS_TS, ROWS_AT, ROWS_EDGE, ROWS_BODY};
static const enum rows_col key_cols[] = {ROWS_DEV, ROWS_SEQ, ROWS_AT};

static size_t tuple_len(const struct batch *b, uint32_t i, const enum rows_col *cols, size_t ncol)
{
    size_t n = 2;
    for (size_t k = 0; k < ncol; k++)
        n += rows_field_len(b, i, cols[k]);
    return n;
}

static size_t tuple(const struct batch *b, uint32_t i, const enum rows_col *cols, size_t ncol, char *out,
                    size_t cap)
{
    if (tuple_len(b, i, cols, ncol) > cap)
        return 0;
    pgbin_be16((uint8_t *)out, (uint16_t)ncol);
    size_t o = 2;
    for (size_t k = 0; k < ncol; k++)
        o += rows_field(b, i, cols[k], out + o);
    return o;
}

#define NCOLS(a) (sizeof(a) / sizeof((a)[0]))

size_t rows_copy_bound(const struct batch *b, uint32_t i)
{
    return tuple_len(b, i, row_cols, NCOLS(row_cols));
}

size_t rows_copy_tuple(const struct batch *b, uint32_t i, char *out, size_t cap)
{
    return tuple(b, i, row_cols, NCOLS(row_cols), out, cap);
}

size_t rows_key_bound(const struct batch *b, uint32_t i)
{
    return tuple_len(b, i, key_cols, NCOLS(key_cols));
}

size_t rows_key_tuple(const struct batch *b, uint32_t i, char *out, size_t cap)
{
    return tuple(b, i, key_cols, NCOLS(key_cols), out, cap);
}
