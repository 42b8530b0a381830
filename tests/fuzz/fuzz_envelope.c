/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_envelope.c - one ZeroMQ batch from an edge (proto/envelope.c), read
 * as the persister and the notifier read it.
 *
 * Input: the bytes of one PULL message.
 *
 * Properties:
 * - the reader: every slice of the header (also of a refused version,
 *   kept for the log line) and of every entry lies inside the message; it
 *   stops with SL_AGAIN at the end or SL_DECODE, never loops;
 * - the checks a reader applies (envelope_hdr_check, envelope_check) pass
 *   only what the contract allows: printable bounded names, a dev and id in
 *   the id alphabet, a data seq in range with a body; a refusal names the
 *   field, an unknown kind is SL_AGAIN;
 * - round trip: the header and each entry of a known kind, written again
 *   with envelope_writer, read back equal in every field that kind uses
 *   (protocol.md §6, the kinds table); the same entries re-added as encoded
 *   bytes (envelope_writer_last -> add_encoded) or appended as a whole
 *   batch (envelope_writer_append) give the same bytes;
 * - the persister (persister/rows.c, as persister.c drives it): a header
 *   it accepts maps every entry; after a flush an entry always fits; every
 *   data row's COPY binary tuple is exactly rows_copy_bound long, six
 *   fields that hold the row's own device id, edge id and body JSON, and
 *   its body JSON parses;
 * - the notifier (notifier/ntf.c, through its ntf_out table): the batch
 *   and, past --edge-timeout, the sweep that declares its edge lost; every
 *   publish is a valid topic under the prefix with a strict JSON payload,
 *   and every entry sent back to an edge is one the writer accepts. */
#include <string.h>

#include "fuzz.h"
#include "fuzz_json.h"
#include "ntf.h"
#include "rows.h"
#include "sl/envelope.h"
#include "sl/limits.h"
#include "sl/log.h"
#include "sl/msg.h"

#define PREFIX "devices"

/* Which of the optional fields each kind carries (protocol.md §6). */
enum {
    U_SEQ = 1,
    U_TS = 2,
    U_AT = 4,
    U_PEER = 8,
    U_REASON = 16,
    U_ID = 32,
    U_OK = 64,
    U_BODY = 128,
    U_TO = 256,
    U_RING = 512
};
static const unsigned uses[] = {
    [ENV_DATA] = U_SEQ | U_TS | U_AT | U_BODY,
    [ENV_CONNECT] = U_AT | U_PEER,
    [ENV_DISCONNECT] = U_AT | U_PEER | U_REASON,
    [ENV_RES] = U_AT | U_ID | U_OK | U_BODY,
    [ENV_HEARTBEAT] = U_SEQ | U_AT | U_TO | U_RING,
    [ENV_UNDELIVERABLE] = U_ID | U_REASON,
    [ENV_ACK] = U_SEQ,
    [ENV_CMD] = U_ID | U_BODY,
    [ENV_KICK] = 0,
    [ENV_NOTIFIER_HB] = U_AT | U_TO,
    [ENV_CMD_SENT] = U_AT | U_ID,
};

static bool entry_within(const struct envelope *e, const uint8_t *p, size_t n)
{
    return fuzz_within(e->dev, p, n) && fuzz_within(e->peer, p, n) && fuzz_within(e->reason, p, n) &&
           fuzz_within(e->id, p, n) && fuzz_within(e->body, p, n) && fuzz_within(e->to, p, n) &&
           fuzz_within(e->ring, p, n);
}

static bool same_entry(const struct envelope *a, const struct envelope *b)
{
    unsigned u = uses[a->kind];
    bool same = a->kind == b->kind && a->slot == b->slot && a->gen == b->gen && sl_slice_eq(a->dev, b->dev) &&
                a->epoch == b->epoch;
    if (u & U_SEQ)
        same = same && a->seq == b->seq;
    if (u & U_TS)
        same = same && a->has_ts == b->has_ts && (!a->has_ts || a->ts == b->ts);
    if (u & U_AT)
        same = same && a->at_ns == b->at_ns;
    if (u & U_PEER)
        same = same && sl_slice_eq(a->peer, b->peer);
    if (u & U_REASON)
        same = same && sl_slice_eq(a->reason, b->reason);
    if (u & U_ID)
        same = same && sl_slice_eq(a->id, b->id);
    if (u & U_OK)
        same = same && a->ok == b->ok;
    if (u & U_BODY) {
        same = same && sl_slice_eq(a->body, b->body);
        if (a->kind == ENV_RES) /* only a res may lack its body */
            same = same && a->has_body == b->has_body;
    }
    return same;
}

/* Printable ASCII, 1..max bytes, or empty when allowed. */
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

static void check_hdr_check(const struct envelope_hdr *h)
{
    const char *why = NULL;
    enum sl_err rc = envelope_hdr_check(h, &why);
    if (rc == SL_OK)
        FUZZ_CHECK(printable(h->edge, ENVELOPE_NAME_MAX, false) &&
                   printable(h->reply, ENVELOPE_NAME_MAX, true));
    else
        FUZZ_CHECK(rc == SL_INVAL && why != NULL);
}

static void check_entry_check(const struct envelope *e)
{
    const char *why = NULL;
    enum sl_err rc = envelope_check(e, &why);
    if (e->kind <= ENV_NONE || e->kind > ENV_CMD_SENT) {
        FUZZ_CHECK(rc == SL_AGAIN);
        return;
    }
    if (rc != SL_OK) {
        FUZZ_CHECK(rc == SL_INVAL && why != NULL);
        return;
    }
    unsigned u = uses[e->kind];
    if (e->kind == ENV_HEARTBEAT || e->kind == ENV_NOTIFIER_HB)
        FUZZ_CHECK(e->dev.n == 0);
    else
        FUZZ_CHECK(msg_valid_id(e->dev.p, e->dev.n));
    if (u & U_ID)
        FUZZ_CHECK(msg_valid_id(e->id.p, e->id.n));
    if (e->kind == ENV_DATA)
        FUZZ_CHECK(e->seq >= 1 && e->seq <= (uint64_t)INT64_MAX && e->has_body);
    if (u & U_PEER)
        FUZZ_CHECK(printable(e->peer, ENVELOPE_PEER_MAX, true));
    if (u & U_REASON)
        FUZZ_CHECK(printable(e->reason, ENVELOPE_REASON_MAX, true));
    if (u & U_TO)
        FUZZ_CHECK(printable(e->to, ENVELOPE_TO_MAX, true));
    if (u & U_RING)
        FUZZ_CHECK(printable(e->ring, ENVELOPE_RING_MAX, true));
}

/* ---- the persister ---- */

static struct batch batch;

/* One COPY binary tuple of telemetry: six fields whose lengths add up to
 * the tuple, the device id and edge id as the row has them, device_ts
 * NULL exactly when the row has no ts, and the body jsonb's version byte
 * before the row's JSON text. */
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void check_copy_tuple(const struct row *r, const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    const struct batch_peer *peer = &batch.peers[r->peer];
    FUZZ_CHECK(n >= 2 && p[0] == 0 && p[1] == 6);
    size_t o = 2;
    for (int f = 0; f < 6; f++) {
        FUZZ_CHECK(o + 4 <= n);
        uint32_t len = rd32(p + o);
        o += 4;
        if (f == 2 && !r->has_ts) {
            FUZZ_CHECK(len == UINT32_MAX);
            continue;
        }
        FUZZ_CHECK(len <= n - o);
        if (f == 0)
            FUZZ_CHECK(len == r->dev.n && memcmp(p + o, r->dev.p, len) == 0);
        else if (f == 4)
            FUZZ_CHECK(len == peer->edge.n && memcmp(p + o, peer->edge.p, len) == 0);
        else if (f == 5)
            FUZZ_CHECK(len == 1u + r->json_len && p[o] == 1 &&
                       memcmp(p + o + 1, batch.json + r->json_off, r->json_len) == 0);
        else
            FUZZ_CHECK(len == 8);
        o += len;
    }
    FUZZ_CHECK(o == n);
}

static void check_batch(void)
{
    for (uint32_t i = 0; i < batch.nrows; i++) {
        const struct row *r = &batch.rows[i];
        FUZZ_CHECK(r->peer < batch.npeers);
        if (r->kind != ENV_DATA || r->bad)
            continue;
        bool ok;
        struct json_object *j = fuzz_json_parse(batch.json + r->json_off, r->json_len, &ok);
        FUZZ_CHECK(ok);
        json_object_put(j);
        size_t bound = rows_copy_bound(&batch, i);
        char *tuple = malloc(bound);
        FUZZ_CHECK(tuple != NULL);
        size_t n = rows_copy_tuple(&batch, i, tuple, bound);
        FUZZ_CHECK(n == bound);
        check_copy_tuple(r, tuple, n);
        free(tuple);
    }
}

static void persister_reads(const struct envelope_hdr *h, struct envelope_reader *rd)
{
    /* persister.c pull_one: a header it would refuse drops the message. */
    if (h->edge.n == 0 || h->edge.n > ROWS_EDGE_MAX || h->reply.n > ROWS_EDGE_MAX)
        return;
    batch_reset(&batch);
    int pi = batch_peer(&batch, h);
    FUZZ_CHECK(pi == 0);
    struct envelope e;
    while (envelope_reader_next(rd, &e) == SL_OK) {
        enum sl_err rc = batch_add(&batch, (uint16_t)pi, &e);
        if (rc == SL_NOMEM) {
            /* Flush, then the held entry goes into the fresh batch. */
            check_batch();
            batch_reset(&batch);
            pi = batch_peer(&batch, h);
            FUZZ_CHECK(pi == 0);
            rc = batch_add(&batch, (uint16_t)pi, &e);
            FUZZ_CHECK(rc != SL_NOMEM);
        }
        FUZZ_CHECK(rc == SL_OK || rc == SL_AGAIN);
    }
    check_batch();
}

/* ---- the notifier ---- */

static int ntf_publish(void *ud, enum ntf_pub_class cls, const char *dev, size_t dev_len, const char *topic,
                       size_t topic_len, const char *payload, size_t payload_len, bool retained)
{
    (void)ud;
    (void)cls;
    (void)retained;
    FUZZ_CHECK(msg_valid_id((const uint8_t *)dev, dev_len));
    const size_t pl = sizeof PREFIX - 1;
    FUZZ_CHECK(topic_len > pl + 1 + dev_len && memcmp(topic, PREFIX "/", pl + 1) == 0);
    FUZZ_CHECK(memcmp(topic + pl + 1, dev, dev_len) == 0 && topic[pl + 1 + dev_len] == '/');
    FUZZ_CHECK(!memchr(topic, '+', topic_len) && !memchr(topic, '#', topic_len) &&
               !memchr(topic, 0, topic_len));
    bool ok;
    struct json_object *j = fuzz_json_parse(payload, payload_len, &ok);
    FUZZ_CHECK(ok && json_object_is_type(j, json_type_object));
    json_object_put(j);
    return 0;
}

static int ntf_send_edge(void *ud, const char *reply, uint64_t inc, const struct envelope *e)
{
    (void)ud;
    (void)inc;
    FUZZ_CHECK(reply[0] != '\0');
    uint8_t buf[1024];
    struct envelope_writer w;
    struct envelope_hdr h = {.v = SL_ENVELOPE_VERSION};
    FUZZ_CHECK(envelope_writer_begin(&w, buf, sizeof buf, &h) == SL_OK);
    FUZZ_CHECK(envelope_writer_add(&w, e) == SL_OK);
    return 0;
}

static uint64_t ntf_wall_ms(void *ud)
{
    (void)ud;
    return 1764358200000u;
}

static void notifier_reads(const uint8_t *data, size_t size)
{
    const struct ntf_cfg cfg = {.prefix = PREFIX,
                                .id = "fuzz",
                                .max_devices = 64,
                                .max_workers = 8,
                                .max_cmds = 16,
                                .cmd_timeout_ms = 30000,
                                .edge_timeout_ms = 10000};
    const struct ntf_out out = {.publish = ntf_publish, .send_edge = ntf_send_edge, .wall_ms = ntf_wall_ms};
    struct ntf *n = ntf_new(&cfg, &out);
    FUZZ_CHECK(n != NULL);
    ntf_batch(n, data, size, 1000);
    ntf_batch(n, data, size, 2000); /* an edge resends nothing, but a duplicate must not hurt */
    ntf_tick(n, 2000 + cfg.edge_timeout_ms + 1000);
    FUZZ_CHECK(ntf_online(n) == 0); /* its edge was lost */
    const struct ntf_stats *st = ntf_stats(n);
    FUZZ_CHECK(st->batches == 2 && st->bad_batches + st->bad_version <= 2);
    ntf_destroy(&n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_init("fuzz", SL_LOG_ERROR); /* the notifier logs an edge_lost line per input */
    /* As the persister sizes it, smaller: a few rows force flushes. */
    FUZZ_CHECK(batch_init(&batch, 8, 64u * 1024u) == 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct envelope_reader rd;
    enum sl_err rc = envelope_reader_begin(&rd, data, size);
    FUZZ_CHECK(rc == SL_OK || rc == SL_VERSION || rc == SL_DECODE);
    FUZZ_CHECK(fuzz_within(rd.hdr.edge, data, size) && fuzz_within(rd.hdr.reply, data, size));
    if (rc != SL_OK) {
        notifier_reads(data, size);
        return 0;
    }
    struct envelope_hdr hdr = rd.hdr;
    FUZZ_CHECK(hdr.v == SL_ENVELOPE_VERSION);
    check_hdr_check(&hdr);

    /* Read every entry, writing the known kinds again as we go, and once
     * more from the bytes the writer produced for each. */
    size_t cap = 2 * size + 64;
    uint8_t *buf = malloc(cap), *buf2 = malloc(cap), *buf3 = malloc(cap);
    FUZZ_CHECK(buf && buf2 && buf3);
    struct envelope_writer w, w2, w3;
    FUZZ_CHECK(envelope_writer_begin(&w, buf, cap, &hdr) == SL_OK);
    FUZZ_CHECK(envelope_writer_begin(&w2, buf2, cap, &hdr) == SL_OK);
    size_t entries = 0, known = 0;
    struct envelope e;
    struct envelope_reader first = rd;
    while ((rc = envelope_reader_next(&rd, &e)) == SL_OK) {
        entries++;
        FUZZ_CHECK(entries <= size);
        FUZZ_CHECK(entry_within(&e, data, size));
        check_entry_check(&e);
        if (e.kind > ENV_NONE && e.kind <= ENV_CMD_SENT) {
            FUZZ_CHECK(envelope_writer_add(&w, &e) == SL_OK);
            FUZZ_CHECK(envelope_writer_add_encoded(&w2, envelope_writer_last(&w)) == SL_OK);
            known++;
        } else {
            FUZZ_CHECK(envelope_writer_add(&w, &e) == SL_INVAL);
        }
    }
    FUZZ_CHECK(rc == SL_AGAIN || rc == SL_DECODE);
    FUZZ_CHECK(envelope_writer_count(&w) == known && envelope_writer_count(&w2) == known);
    size_t len = envelope_writer_len(&w);
    FUZZ_CHECK(envelope_writer_len(&w2) == len && memcmp(buf, buf2, len) == 0);
    FUZZ_CHECK(envelope_writer_begin(&w3, buf3, cap, &hdr) == SL_OK &&
               envelope_writer_append(&w3, &w) == SL_OK);
    FUZZ_CHECK(envelope_writer_len(&w3) == len && memcmp(buf, buf3, len) == 0);
    FUZZ_CHECK(envelope_writer_count(&w3) == known);

    /* Read both again side by side. */
    struct envelope_reader again;
    FUZZ_CHECK(envelope_reader_begin(&again, buf, envelope_writer_len(&w)) == SL_OK);
    FUZZ_CHECK(sl_slice_eq(again.hdr.edge, hdr.edge) && sl_slice_eq(again.hdr.reply, hdr.reply) &&
               again.hdr.incarnation == hdr.incarnation);
    rd = first;
    for (size_t i = 0; i < entries; i++) {
        FUZZ_CHECK(envelope_reader_next(&rd, &e) == SL_OK);
        if (e.kind <= ENV_NONE || e.kind > ENV_CMD_SENT)
            continue;
        struct envelope e2;
        FUZZ_CHECK(envelope_reader_next(&again, &e2) == SL_OK);
        FUZZ_CHECK(same_entry(&e, &e2));
    }
    FUZZ_CHECK(envelope_reader_next(&again, &e) == SL_AGAIN);
    free(buf);
    free(buf2);
    free(buf3);

    rd = first;
    persister_reads(&hdr, &rd);
    notifier_reads(data, size);
    return 0;
}
