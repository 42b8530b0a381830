/* msg.c - device <-> edge messages (sl/msg.h): msgpack map <-> struct msg.
 *
 * Decoding is one pass over the top-level map through the bounded cursor of
 * mp.c: every value of a key we know is recorded (its header item and its
 * raw byte range), every other value is skipped with the size and depth
 * bounds; only then is `t` looked at and the fields it needs checked. So
 * keys may come in any order, unknown keys cost a bounded skip, a duplicate
 * key means the last one wins, and no byte from a device ever reaches
 * msgpack-c's unpacker (which would allocate whatever a header claims).
 *
 * Encoding uses msgpack-c's packer writing into a fixed mp_buf; bodies are
 * copied as the raw msgpack bytes they arrived as.
 *
 * This file holds the single table of wire strings: message types and
 * field names (the err{code} strings live with enum sl_err in err.c). It
 * does not decide which message is allowed when (session.c does), nor check
 * tokens, nor allocate, nor log. */
#include "sl/msg.h"

#include <msgpack.h>
#include <string.h>

#include "sl/frame.h"
#include "sl/limits.h"
#include "sl/mp.h"

struct wire_str {
    const char *s;
    uint32_t n;
};

#define WS(lit)                                                                                              \
    {                                                                                                        \
        lit, sizeof(lit) - 1                                                                                 \
    }

/* Message types, indexed by enum msg_type. */
static const struct wire_str type_names[] = {
    [MSG_NONE] = {NULL, 0}, [MSG_HELLO] = WS("hello"),     [MSG_DATA] = WS("data"), [MSG_PING] = WS("ping"),
    [MSG_RES] = WS("res"),  [MSG_WELCOME] = WS("welcome"), [MSG_ACK] = WS("ack"),   [MSG_PONG] = WS("pong"),
    [MSG_ERR] = WS("err"),  [MSG_CMD] = WS("cmd"),
};
#define NTYPES (sizeof type_names / sizeof type_names[0])

/* Field names: every key any message of the contract uses. */
enum key {
    K_T,
    K_V,
    K_DEV,
    K_TOK,
    K_SEQ,
    K_TS,
    K_BODY,
    K_ID,
    K_OK,
    K_EDGE,
    K_HB,
    K_MAX,
    K_CODE,
    K_MSG,
    K_RETRY,
    K_N
};

static const struct wire_str key_names[K_N] = {
    [K_T] = WS("t"),       [K_V] = WS("v"),       [K_DEV] = WS("dev"),        [K_TOK] = WS("tok"),
    [K_SEQ] = WS("seq"),   [K_TS] = WS("ts"),     [K_BODY] = WS("body"),      [K_ID] = WS("id"),
    [K_OK] = WS("ok"),     [K_EDGE] = WS("edge"), [K_HB] = WS("hb"),          [K_MAX] = WS("max"),
    [K_CODE] = WS("code"), [K_MSG] = WS("msg"),   [K_RETRY] = WS("retry_ms"),
};

static const char *const rc_names[] = {
    [MSG_OK] = "ok",
    [MSG_E_MALFORMED] = "malformed msgpack",
    [MSG_E_NOTMAP] = "payload is not a map",
    [MSG_E_TRAILING] = "bytes after the map",
    [MSG_E_KEY] = "map key is not a string",
    [MSG_E_NOTYPE] = "missing t",
    [MSG_E_TYPE] = "unknown t",
    [MSG_E_MISSING] = "missing field",
    [MSG_E_FIELD] = "bad field",
    [MSG_E_DEV] = "bad device id",
};

/* seq is a uint 1..2^63-1: it must fit PostgreSQL's bigint. */
#define SEQ_MAX ((uint64_t)INT64_MAX)

const char *msg_type_name(enum msg_type t)
{
    if ((unsigned)t >= NTYPES)
        return NULL;
    return type_names[t].s;
}

struct msg msg_err(enum sl_err *code, const char *text)
{
    const char *wire = sl_wire_code(*code);
    if (!wire) {
        *code = SL_PROTO;
        wire = sl_wire_code(*code);
    }
    struct msg m = {.t = MSG_ERR};
    m.u.err.code.p = (const uint8_t *)wire;
    m.u.err.code.n = (uint32_t)strlen(wire);
    m.u.err.msg.p = (const uint8_t *)text;
    m.u.err.msg.n = (uint32_t)strlen(text);
    return m;
}

const char *msg_rc_str(enum msg_rc rc)
{
    if ((unsigned)rc >= sizeof rc_names / sizeof rc_names[0])
        return "unknown";
    return rc_names[rc];
}

enum sl_err msg_rc_err(enum msg_rc rc)
{
    switch (rc) {
    case MSG_OK: return SL_OK;
    case MSG_E_TYPE:
        /* An unknown t is a type the device may not send: "proto". */
        return SL_PROTO;
    case MSG_E_DEV: return SL_AUTH;
    default: return SL_DECODE;
    }
}

bool msg_valid_id(const uint8_t *s, size_t n)
{
    if (n < 1 || n > SL_DEV_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
            ch == '_' || ch == ':' || ch == '-')
            continue;
        return false;
    }
    return true;
}

/* ---- decode ---- */

struct field {
    bool present;
    struct mp_item it;   /* header of the value (containers: just the header) */
    struct sl_slice raw; /* the whole value's bytes */
};

static int key_index(struct sl_slice k)
{
    for (int i = 0; i < K_N; i++)
        if (k.n == key_names[i].n && memcmp(k.p, key_names[i].s, k.n) == 0)
            return i;
    return -1;
}

static enum msg_type type_of(struct sl_slice s)
{
    for (unsigned i = 1; i < NTYPES; i++)
        if (s.n == type_names[i].n && memcmp(s.p, type_names[i].s, s.n) == 0)
            return (enum msg_type)i;
    return MSG_NONE;
}

/* Required string field. */
static enum msg_rc want_str(const struct field *f, struct sl_slice *out)
{
    if (!f->present)
        return MSG_E_MISSING;
    if (f->it.type != MP_STR)
        return MSG_E_FIELD;
    *out = f->it.data;
    return MSG_OK;
}

/* Required unsigned integer field in lo..hi. */
static enum msg_rc want_uint(const struct field *f, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!f->present)
        return MSG_E_MISSING;
    if (f->it.type != MP_UINT || f->it.u < lo || f->it.u > hi)
        return MSG_E_FIELD;
    *out = f->it.u;
    return MSG_OK;
}

/* Signed integer field that must fit int64. */
static enum msg_rc want_int(const struct field *f, int64_t *out)
{
    if (!f->present)
        return MSG_E_MISSING;
    if (f->it.type == MP_INT || (f->it.type == MP_UINT && f->it.u <= (uint64_t)INT64_MAX)) {
        *out = f->it.i;
        return MSG_OK;
    }
    return MSG_E_FIELD;
}

/* Required value of any type: its raw msgpack bytes. */
static enum msg_rc want_any(const struct field *f, struct sl_slice *out)
{
    if (!f->present)
        return MSG_E_MISSING;
    *out = f->raw;
    return MSG_OK;
}

#define TRY(expr)                                                                                            \
    do {                                                                                                     \
        enum msg_rc rc_ = (expr);                                                                            \
        if (rc_ != MSG_OK)                                                                                   \
            return rc_;                                                                                      \
    } while (0)

static enum msg_rc fill(enum msg_type t, const struct field *f, struct msg *m)
{
    uint64_t u;

    switch (t) {
    case MSG_HELLO:
        TRY(want_int(&f[K_V], &m->u.hello.v));
        TRY(want_str(&f[K_DEV], &m->u.hello.dev));
        if (!msg_valid_id(m->u.hello.dev.p, m->u.hello.dev.n))
            return MSG_E_DEV;
        TRY(want_str(&f[K_TOK], &m->u.hello.tok));
        return MSG_OK;
    case MSG_DATA:
        TRY(want_uint(&f[K_SEQ], 1, SEQ_MAX, &m->u.data.seq));
        /* ts is optional, and an explicit nil means absent too. */
        if (f[K_TS].present && f[K_TS].it.type != MP_NIL) {
            TRY(want_int(&f[K_TS], &m->u.data.ts));
            m->u.data.has_ts = true;
        }
        TRY(want_any(&f[K_BODY], &m->u.data.body));
        return MSG_OK;
    case MSG_PING:
    case MSG_PONG: return MSG_OK;
    case MSG_RES:
        TRY(want_str(&f[K_ID], &m->u.res.id));
        if (!f[K_OK].present)
            return MSG_E_MISSING;
        if (f[K_OK].it.type != MP_BOOL)
            return MSG_E_FIELD;
        m->u.res.ok = f[K_OK].it.b;
        if (f[K_BODY].present) {
            m->u.res.has_body = true;
            m->u.res.body = f[K_BODY].raw;
        }
        return MSG_OK;
    case MSG_WELCOME:
        TRY(want_str(&f[K_EDGE], &m->u.welcome.edge));
        TRY(want_uint(&f[K_HB], 0, UINT32_MAX, &u));
        m->u.welcome.hb = (uint32_t)u;
        TRY(want_uint(&f[K_MAX], 0, UINT32_MAX, &u));
        m->u.welcome.max = (uint32_t)u;
        return MSG_OK;
    case MSG_ACK: TRY(want_uint(&f[K_SEQ], 1, SEQ_MAX, &m->u.ack.seq)); return MSG_OK;
    case MSG_ERR:
        TRY(want_str(&f[K_CODE], &m->u.err.code));
        TRY(want_str(&f[K_MSG], &m->u.err.msg));
        /* retry_ms is optional (added in 0.2; old edges never send it). */
        if (f[K_RETRY].present && f[K_RETRY].it.type != MP_NIL) {
            TRY(want_uint(&f[K_RETRY], 0, UINT32_MAX, &u));
            m->u.err.retry_ms = (uint32_t)u;
        }
        return MSG_OK;
    case MSG_CMD:
        TRY(want_str(&f[K_ID], &m->u.cmd.id));
        TRY(want_any(&f[K_BODY], &m->u.cmd.body));
        return MSG_OK;
    default: return MSG_E_TYPE;
    }
}

enum msg_rc msg_decode(const uint8_t *p, size_t n, struct msg *out)
{
    struct field f[K_N];
    struct mp_cur c;
    struct mp_item top, key;

    memset(out, 0, sizeof *out);
    memset(f, 0, sizeof f);
    mp_cur_init(&c, p, n);

    if (mp_next(&c, &top) != 0)
        return MSG_E_MALFORMED;
    if (top.type != MP_MAP)
        return MSG_E_NOTMAP;

    for (uint32_t i = 0; i < top.n; i++) {
        if (mp_next(&c, &key) != 0)
            return MSG_E_MALFORMED;
        if (key.type != MP_STR)
            return MSG_E_KEY;

        /* The value: note its header, then skip it whole. The top map is
         * depth 1, so what hangs below it may nest one level less. */
        const uint8_t *vstart = c.p;
        struct mp_cur peek = c;
        struct mp_item val;
        if (mp_next(&peek, &val) != 0 || mp_skip(&c, SL_MP_MAX_DEPTH - 1) != 0)
            return MSG_E_MALFORMED;

        int k = key_index(key.data);
        if (k < 0)
            continue;
        f[k].present = true;
        f[k].it = val;
        f[k].raw.p = vstart;
        f[k].raw.n = (uint32_t)(c.p - vstart);
    }
    if (mp_cur_left(&c) != 0)
        return MSG_E_TRAILING;

    if (!f[K_T].present || f[K_T].it.type != MP_STR)
        return MSG_E_NOTYPE;
    enum msg_type t = type_of(f[K_T].it.data);
    if (t == MSG_NONE)
        return MSG_E_TYPE;

    enum msg_rc rc = fill(t, f, out);
    if (rc != MSG_OK) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    out->t = t;
    return MSG_OK;
}

/* ---- encode ---- */

static void pack_key(msgpack_packer *pk, enum key k)
{
    msgpack_pack_str_with_body(pk, key_names[k].s, key_names[k].n);
}

static void pack_slice(msgpack_packer *pk, struct sl_slice s)
{
    msgpack_pack_str_with_body(pk, s.p, s.n);
}

/* A body is already msgpack: copy it as is. An empty slice is not a
 * msgpack object, so it goes out as nil rather than as a broken map. */
static void pack_raw(msgpack_packer *pk, struct mp_buf *b, struct sl_slice s)
{
    if (s.n == 0)
        msgpack_pack_nil(pk);
    else
        mp_buf_raw(b, s.p, s.n);
}

enum sl_err msg_encode(const struct msg *m, uint8_t *buf, size_t cap, size_t *len)
{
    struct mp_buf b;
    msgpack_packer pk;
    size_t pairs;

    *len = 0;
    switch (m->t) {
    case MSG_HELLO:
    case MSG_DATA:
    case MSG_WELCOME:
        pairs = 4;
        if (m->t == MSG_DATA && !m->u.data.has_ts)
            pairs = 3;
        break;
    case MSG_PING:
    case MSG_PONG: pairs = 1; break;
    case MSG_RES: pairs = m->u.res.has_body ? 4 : 3; break;
    case MSG_ACK: pairs = 2; break;
    case MSG_ERR: pairs = m->u.err.retry_ms ? 4 : 3; break;
    case MSG_CMD: pairs = 3; break;
    default: return SL_INVAL;
    }

    mp_buf_init(&b, buf, cap);
    msgpack_packer_init(&pk, &b, mp_buf_write);
    msgpack_pack_map(&pk, pairs);
    pack_key(&pk, K_T);
    msgpack_pack_str_with_body(&pk, type_names[m->t].s, type_names[m->t].n);

    switch (m->t) {
    case MSG_HELLO:
        pack_key(&pk, K_V);
        msgpack_pack_int64(&pk, m->u.hello.v);
        pack_key(&pk, K_DEV);
        pack_slice(&pk, m->u.hello.dev);
        pack_key(&pk, K_TOK);
        pack_slice(&pk, m->u.hello.tok);
        break;
    case MSG_DATA:
        pack_key(&pk, K_SEQ);
        msgpack_pack_uint64(&pk, m->u.data.seq);
        if (m->u.data.has_ts) {
            pack_key(&pk, K_TS);
            msgpack_pack_int64(&pk, m->u.data.ts);
        }
        pack_key(&pk, K_BODY);
        pack_raw(&pk, &b, m->u.data.body);
        break;
    case MSG_RES:
        pack_key(&pk, K_ID);
        pack_slice(&pk, m->u.res.id);
        pack_key(&pk, K_OK);
        if (m->u.res.ok)
            msgpack_pack_true(&pk);
        else
            msgpack_pack_false(&pk);
        if (m->u.res.has_body) {
            pack_key(&pk, K_BODY);
            pack_raw(&pk, &b, m->u.res.body);
        }
        break;
    case MSG_WELCOME:
        pack_key(&pk, K_EDGE);
        pack_slice(&pk, m->u.welcome.edge);
        pack_key(&pk, K_HB);
        msgpack_pack_uint32(&pk, m->u.welcome.hb);
        pack_key(&pk, K_MAX);
        msgpack_pack_uint32(&pk, m->u.welcome.max);
        break;
    case MSG_ACK:
        pack_key(&pk, K_SEQ);
        msgpack_pack_uint64(&pk, m->u.ack.seq);
        break;
    case MSG_ERR:
        pack_key(&pk, K_CODE);
        pack_slice(&pk, m->u.err.code);
        pack_key(&pk, K_MSG);
        pack_slice(&pk, m->u.err.msg);
        if (m->u.err.retry_ms) {
            pack_key(&pk, K_RETRY);
            msgpack_pack_uint32(&pk, m->u.err.retry_ms);
        }
        break;
    case MSG_CMD:
        pack_key(&pk, K_ID);
        pack_slice(&pk, m->u.cmd.id);
        pack_key(&pk, K_BODY);
        pack_raw(&pk, &b, m->u.cmd.body);
        break;
    default: /* ping, pong: t alone */ break;
    }

    if (b.overflow)
        return SL_TOOBIG;
    *len = b.len;
    return SL_OK;
}

enum sl_err msg_encode_frame(const struct msg *m, uint8_t *buf, size_t cap, size_t *len)
{
    size_t n = 0;

    *len = 0;
    if (cap < SL_FRAME_HDR)
        return SL_TOOBIG;
    enum sl_err e = msg_encode(m, buf + SL_FRAME_HDR, cap - SL_FRAME_HDR, &n);
    if (e != SL_OK)
        return e;
    if (n > UINT32_MAX)
        return SL_TOOBIG;
    frame_encode_header(buf, (uint32_t)n);
    *len = SL_FRAME_HDR + n;
    return SL_OK;
}
