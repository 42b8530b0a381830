/* fuzz_msg.c - msg_decode (proto/msg.c) on one frame payload, and the
 * encode round trip.
 *
 * Input: one payload, as the frame decoder hands it to the session.
 *
 * Properties:
 * - a payload that is not exactly one well-formed msgpack object within
 *   the depth cap (mp_check) is never accepted; a refusal leaves no type;
 * - every borrowed slice points inside the payload;
 * - what the contract requires holds for an accepted message: a hello's
 *   dev matches the id alphabet, data seq is 1..2^63-1, a body is one
 *   well-formed object nesting at most one level less than the payload;
 * - round trip: msg_encode of the decoded message succeeds, decodes to an
 *   equal message, and encoding that again gives the same bytes (the
 *   encoding is a fixed point); the same bytes as a whole frame come
 *   back out of the frame decoder unchanged. */
#include <string.h>

#include "fuzz.h"
#include "sl/frame.h"
#include "sl/limits.h"
#include "sl/mp.h"
#include "sl/msg.h"

static bool same_slice(struct sl_slice a, struct sl_slice b)
{
    return sl_slice_eq(a, b) != 0;
}

static bool same_msg(const struct msg *a, const struct msg *b)
{
    if (a->t != b->t)
        return false;
    switch (a->t) {
    case MSG_HELLO:
        return a->u.hello.v == b->u.hello.v && same_slice(a->u.hello.dev, b->u.hello.dev) &&
               same_slice(a->u.hello.tok, b->u.hello.tok);
    case MSG_DATA:
        return a->u.data.seq == b->u.data.seq && a->u.data.has_ts == b->u.data.has_ts &&
               (!a->u.data.has_ts || a->u.data.ts == b->u.data.ts) &&
               same_slice(a->u.data.body, b->u.data.body);
    case MSG_RES:
        return same_slice(a->u.res.id, b->u.res.id) && a->u.res.ok == b->u.res.ok &&
               a->u.res.has_body == b->u.res.has_body && same_slice(a->u.res.body, b->u.res.body);
    case MSG_WELCOME:
        return same_slice(a->u.welcome.edge, b->u.welcome.edge) && a->u.welcome.hb == b->u.welcome.hb &&
               a->u.welcome.max == b->u.welcome.max;
    case MSG_ACK: return a->u.ack.seq == b->u.ack.seq;
    case MSG_ERR:
        return same_slice(a->u.err.code, b->u.err.code) && same_slice(a->u.err.msg, b->u.err.msg) &&
               a->u.err.retry_ms == b->u.err.retry_ms;
    case MSG_CMD: return same_slice(a->u.cmd.id, b->u.cmd.id) && same_slice(a->u.cmd.body, b->u.cmd.body);
    case MSG_PING:
    case MSG_PONG: return true;
    default: return false;
    }
}

/* Every slice of an accepted message lies inside p[0..n). */
static bool slices_within(const struct msg *m, const uint8_t *p, size_t n)
{
    switch (m->t) {
    case MSG_HELLO: return fuzz_within(m->u.hello.dev, p, n) && fuzz_within(m->u.hello.tok, p, n);
    case MSG_DATA: return fuzz_within(m->u.data.body, p, n);
    case MSG_RES: return fuzz_within(m->u.res.id, p, n) && fuzz_within(m->u.res.body, p, n);
    case MSG_WELCOME: return fuzz_within(m->u.welcome.edge, p, n);
    case MSG_ERR: return fuzz_within(m->u.err.code, p, n) && fuzz_within(m->u.err.msg, p, n);
    case MSG_CMD: return fuzz_within(m->u.cmd.id, p, n) && fuzz_within(m->u.cmd.body, p, n);
    default: return true;
    }
}

static bool body_ok(struct sl_slice b)
{
    return b.n > 0 && mp_check(b.p, b.n, SL_MP_MAX_DEPTH - 1) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct msg m;
    enum msg_rc rc = msg_decode(data, size, &m);
    FUZZ_CHECK(rc <= MSG_E_DEV);
    FUZZ_CHECK(msg_rc_str(rc) != NULL);
    enum sl_err wire = msg_rc_err(rc);
    FUZZ_CHECK(rc == MSG_OK ? wire == SL_OK : (wire == SL_DECODE || wire == SL_PROTO || wire == SL_AUTH));
    if (mp_check(data, size, SL_MP_MAX_DEPTH) != 0)
        FUZZ_CHECK(rc != MSG_OK);
    if (rc != MSG_OK) {
        FUZZ_CHECK(m.t == MSG_NONE);
        return 0;
    }

    FUZZ_CHECK(m.t > MSG_NONE && m.t <= MSG_CMD && msg_type_name(m.t) != NULL);
    FUZZ_CHECK(slices_within(&m, data, size));
    switch (m.t) {
    case MSG_HELLO: FUZZ_CHECK(msg_valid_id(m.u.hello.dev.p, m.u.hello.dev.n)); break;
    case MSG_DATA:
        FUZZ_CHECK(m.u.data.seq >= 1 && m.u.data.seq <= (uint64_t)INT64_MAX);
        FUZZ_CHECK(body_ok(m.u.data.body));
        break;
    case MSG_ACK: FUZZ_CHECK(m.u.ack.seq >= 1 && m.u.ack.seq <= (uint64_t)INT64_MAX); break;
    case MSG_RES:
        if (m.u.res.has_body)
            FUZZ_CHECK(body_ok(m.u.res.body));
        break;
    case MSG_CMD: FUZZ_CHECK(body_ok(m.u.cmd.body)); break;
    default: break;
    }

    /* Round trip. Re-encoding keeps only the known keys, in their shortest
     * forms, with the body copied as is: the headroom is generous. */
    size_t cap = size + 64;
    uint8_t *out = malloc(cap + SL_FRAME_HDR);
    uint8_t *again = malloc(cap);
    FUZZ_CHECK(out && again);
    size_t len = 0, len2 = 0;
    FUZZ_CHECK(msg_encode(&m, out, cap, &len) == SL_OK);
    FUZZ_CHECK(len > 0 && len <= cap);
    struct msg m2;
    FUZZ_CHECK(msg_decode(out, len, &m2) == MSG_OK);
    FUZZ_CHECK(same_msg(&m, &m2));
    FUZZ_CHECK(msg_encode(&m2, again, cap, &len2) == SL_OK);
    FUZZ_CHECK(len2 == len && memcmp(out, again, len) == 0);

    /* The same message as a frame, through the frame decoder in one feed:
     * the payload comes back in place and unchanged. */
    size_t flen = 0;
    FUZZ_CHECK(msg_encode_frame(&m, out, cap + SL_FRAME_HDR, &flen) == SL_OK && flen == len + SL_FRAME_HDR);
    struct frame_dec d;
    frame_dec_init(&d, (uint32_t)len);
    size_t used = 0;
    struct sl_slice pl;
    FUZZ_CHECK(frame_dec_feed(&d, out, flen, &used, &pl) == FRAME_READY && used == flen);
    FUZZ_CHECK(pl.p == out + SL_FRAME_HDR && pl.n == len && memcmp(pl.p, again, len) == 0);

    /* One byte short is refused, and nothing is written past the buffer
     * (a heap block of exactly that size: ASan sees any overrun). */
    uint8_t *tight = malloc(len - 1);
    FUZZ_CHECK(tight != NULL);
    FUZZ_CHECK(msg_encode(&m, tight, len - 1, &len2) == SL_TOOBIG && len2 == 0);
    free(tight);

    free(out);
    free(again);
    return 0;
}
