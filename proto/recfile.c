/* SPDX-License-Identifier: Apache-2.0 */
/* recfile.c - encode and decode the records of an edge traffic recording
 * (sl/recfile.h, docs/recording.md).
 *
 * Fields are written byte by byte in little-endian order, so the format is
 * the same on every host and the code never casts a byte pointer to a
 * wider type (recordings are read from arbitrary offsets of an mmap).
 *
 * It deliberately does no I/O and keeps no state: the edge's ring and
 * writer thread (edge/record.c) and sluice-replay do the reading and
 * writing. Besides the codec it holds the two decisions both of them
 * make the same way: which device a connection's first frame names, and
 * whether a device id matches --record-devices / --device. */
#include "sl/recfile.h"

#include <string.h>

#include "sl/limits.h"
#include "sl/msg.h"

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

void recfile_header_encode(const struct recfile_header *h, uint8_t out[RECFILE_HDR_SIZE])
{
    memcpy(out, RECFILE_MAGIC, 8);
    put16(out + 8, h->version);
    put16(out + 10, (uint16_t)RECFILE_HDR_SIZE);
    put16(out + 12, (uint16_t)RECFILE_REC_HDR);
    put16(out + 14, h->workers);
    put64(out + 16, h->start_real_ns);
    put64(out + 24, h->start_mono_ns);
    put32(out + 32, h->max_frame);
    put32(out + 36, h->flags);
}

enum sl_err recfile_header_decode(const uint8_t *p, size_t n, struct recfile_header *h)
{
    if (n >= 8 && memcmp(p, RECFILE_MAGIC, 8) != 0)
        return SL_DECODE;
    if (n < RECFILE_HDR_SIZE)
        return SL_AGAIN;
    h->version = get16(p + 8);
    /* The version is judged before the sizes: a later version may grow its
     * headers, and "unsupported version" is the useful message then. */
    if (h->version != RECFILE_VERSION)
        return SL_VERSION;
    if (get16(p + 10) != RECFILE_HDR_SIZE || get16(p + 12) != RECFILE_REC_HDR)
        return SL_DECODE;
    h->workers = get16(p + 14);
    h->start_real_ns = get64(p + 16);
    h->start_mono_ns = get64(p + 24);
    h->max_frame = get32(p + 32);
    h->flags = get32(p + 36);
    return SL_OK;
}

void recfile_rec_encode(const struct recfile_rec *r, uint8_t out[RECFILE_REC_HDR])
{
    put32(out, r->len);
    out[4] = r->kind;
    out[5] = r->flags;
    put16(out + 6, r->worker);
    put32(out + 8, r->slot);
    put32(out + 12, r->gen);
    put64(out + 16, r->t_ns);
}

enum sl_err recfile_rec_decode(const uint8_t *p, size_t n, struct recfile_rec *r, size_t *used)
{
    *used = 0;
    if (n < RECFILE_REC_HDR)
        return SL_AGAIN;
    uint32_t len = get32(p);
    uint8_t kind = p[4];
    if (kind < RECFILE_OPEN || kind > RECFILE_KIND_MAX || len > RECFILE_MAX_PAYLOAD)
        return SL_DECODE;
    if (n - RECFILE_REC_HDR < len)
        return SL_AGAIN;
    r->len = len;
    r->kind = kind;
    r->flags = p[5];
    r->worker = get16(p + 6);
    r->slot = get32(p + 8);
    r->gen = get32(p + 12);
    r->t_ns = get64(p + 16);
    r->payload = p + RECFILE_REC_HDR;
    *used = RECFILE_REC_HDR + (size_t)len;
    return SL_OK;
}

const char *recfile_kind_name(unsigned kind)
{
    static const char *const names[] = {"?", "open", "in", "out", "close", "gap", "end"};
    return kind <= RECFILE_KIND_MAX ? names[kind] : "?";
}

void recfile_open_encode(const struct recfile_peer *p, uint8_t out[RECFILE_OPEN_SIZE])
{
    memset(out, 0, RECFILE_OPEN_SIZE);
    out[0] = p->v6 ? 6 : 4;
    put16(out + 2, p->port);
    memcpy(out + 4, p->ip, p->v6 ? 16 : 4);
}

enum sl_err recfile_open_decode(const struct recfile_rec *r, struct recfile_peer *p)
{
    if (r->kind != RECFILE_OPEN || r->len != RECFILE_OPEN_SIZE || (r->payload[0] != 4 && r->payload[0] != 6))
        return SL_DECODE;
    memset(p, 0, sizeof *p);
    p->v6 = r->payload[0] == 6;
    p->port = get16(r->payload + 2);
    memcpy(p->ip, r->payload + 4, p->v6 ? 16 : 4);
    return SL_OK;
}

size_t recfile_close_encode(uint8_t code, const char *name, uint8_t out[1 + RECFILE_REASON_MAX])
{
    size_t n = strlen(name);
    if (n > RECFILE_REASON_MAX)
        n = RECFILE_REASON_MAX;
    out[0] = code;
    memcpy(out + 1, name, n);
    return 1 + n;
}

enum sl_err recfile_close_decode(const struct recfile_rec *r, uint8_t *code, struct sl_slice *name)
{
    if (r->kind != RECFILE_CLOSE || r->len < 1 || r->len > 1 + RECFILE_REASON_MAX)
        return SL_DECODE;
    *code = r->payload[0];
    name->p = r->payload + 1;
    name->n = r->len - 1;
    return SL_OK;
}

void recfile_gap_encode(uint64_t recs, uint64_t bytes, uint8_t out[RECFILE_GAP_SIZE])
{
    put64(out, recs);
    put64(out + 8, bytes);
}

enum sl_err recfile_gap_decode(const struct recfile_rec *r, uint64_t *recs, uint64_t *bytes)
{
    if (r->kind != RECFILE_GAP || r->len != RECFILE_GAP_SIZE)
        return SL_DECODE;
    *recs = get64(r->payload);
    *bytes = get64(r->payload + 8);
    return SL_OK;
}

enum recfile_dev_rc recfile_hello_dev(const uint8_t *s, size_t n, size_t max, struct sl_slice *dev)
{
    if (n < SL_FRAME_HDR)
        return max >= SL_FRAME_HDR ? RECFILE_DEV_MORE : RECFILE_DEV_NONE;
    uint32_t len = (uint32_t)s[0] << 24 | (uint32_t)s[1] << 16 | (uint32_t)s[2] << 8 | s[3];
    if (len == 0 || max < SL_FRAME_HDR || (size_t)len > max - SL_FRAME_HDR)
        return RECFILE_DEV_NONE;
    if (n - SL_FRAME_HDR < len)
        return RECFILE_DEV_MORE;
    struct msg m;
    if (msg_decode(s + SL_FRAME_HDR, len, &m) != MSG_OK || m.t != MSG_HELLO)
        return RECFILE_DEV_NONE;
    *dev = m.u.hello.dev;
    return RECFILE_DEV_FOUND;
}

/* Glob over the whole id: '*' any run (also empty), '?' one byte. The
 * classic iterative matcher: on a mismatch, let the last '*' take one
 * more byte. Linear in practice, no recursion. */
static bool glob(const char *pat, size_t pn, const uint8_t *s, size_t sn)
{
    size_t p = 0, i = 0, star_p = (size_t)-1, star_i = 0;
    while (i < sn) {
        if (p < pn && (pat[p] == '?' || (uint8_t)pat[p] == s[i])) {
            p++;
            i++;
        } else if (p < pn && pat[p] == '*') {
            star_p = p++;
            star_i = i;
        } else if (star_p != (size_t)-1) {
            p = star_p + 1;
            i = ++star_i;
        } else {
            return false;
        }
    }
    while (p < pn && pat[p] == '*')
        p++;
    return p == pn;
}

bool recfile_dev_match(const char *patterns, bool prefix, const uint8_t *dev, size_t n)
{
    if (!patterns || !*patterns)
        return true;
    const char *p = patterns;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t pn = end ? (size_t)(end - p) : strlen(p);
        if (pn > 0) {
            bool is_glob = memchr(p, '*', pn) || memchr(p, '?', pn);
            bool plain = (prefix ? pn <= n : pn == n) && memcmp(p, dev, pn) == 0;
            if (is_glob ? glob(p, pn, dev, n) : plain)
                return true;
        }
        if (!end)
            return false;
        p = end + 1;
    }
}
