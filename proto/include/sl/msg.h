/* sl/msg.h - the device <-> edge messages of docs/protocol.md.
 *
 * msg_decode() turns one frame payload into a typed struct without
 * allocating: strings and the body point into the payload (borrowed; copy
 * what must outlive it). It decodes every type of both directions, so the
 * edge and the device library share it; which types are allowed in which
 * state is the session's business, not the codec's.
 *
 * Every rejection has its own code (tests and logs tell them apart);
 * msg_rc_err() maps each to the wire error the device receives. This file
 * holds the single table of wire strings ("hello", "seq", ...). */
#ifndef SL_MSG_H
#define SL_MSG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/err.h"
#include "sl/slice.h"

enum msg_type {
    MSG_NONE = 0,
    /* device -> edge */
    MSG_HELLO, /* {t,v,dev,tok} */
    MSG_DATA,  /* {t,seq,ts?,body} */
    MSG_PING,  /* {t} */
    MSG_RES,   /* {t,id,ok,body?} */
    /* edge -> device */
    MSG_WELCOME, /* {t,edge,hb,max} */
    MSG_ACK,     /* {t,seq} */
    MSG_PONG,    /* {t} */
    MSG_ERR,     /* {t,code,msg} */
    MSG_CMD,     /* {t,id,body} */
};

enum msg_rc {
    MSG_OK = 0,
    MSG_E_MALFORMED, /* not msgpack, truncated, oversized or too deep */
    MSG_E_NOTMAP,    /* top-level object is not a map */
    MSG_E_TRAILING,  /* bytes after the map */
    MSG_E_KEY,       /* a top-level key is not a string */
    MSG_E_NOTYPE,    /* no `t`, or `t` not a string */
    MSG_E_TYPE,      /* `t` names no message of the contract */
    MSG_E_MISSING,   /* a required field is absent */
    MSG_E_FIELD,     /* a field has the wrong type or is out of range */
    MSG_E_DEV,       /* `dev` outside [A-Za-z0-9._:-]{1,64} */
};

struct msg {
    enum msg_type t;
    union {
        struct {
            int64_t v;
            struct sl_slice dev, tok;
        } hello;
        struct {
            uint64_t seq;
            int64_t ts;
            bool has_ts;
            struct sl_slice body;
        } data; /* body: raw msgpack */
        struct {
            struct sl_slice id;
            bool ok;
            bool has_body;
            struct sl_slice body;
        } res;
        struct {
            struct sl_slice edge;
            uint32_t hb, max;
        } welcome;
        struct {
            uint64_t seq;
        } ack;
        struct {
            struct sl_slice code, msg;
            uint32_t retry_ms; /* optional: try again no sooner (0 = not said) */
        } err;
        struct {
            struct sl_slice id, body;
        } cmd;
    } u;
};

/* Decode one payload. Unknown keys are ignored (skipped with depth and size
 * bounds). `data.seq` must be 1..2^63-1, `data.ts` an integer (ms). Never
 * allocates; safe on any input. */
enum msg_rc msg_decode(const uint8_t *p, size_t n, struct msg *out);

/* Encode m's payload (no frame header) into buf. Bodies are copied as raw
 * msgpack. Returns SL_OK with *len set, or SL_TOOBIG. Never allocates. */
enum sl_err msg_encode(const struct msg *m, uint8_t *buf, size_t cap, size_t *len);

/* Encode m as a whole frame (4-byte header + payload) into buf. */
enum sl_err msg_encode_frame(const struct msg *m, uint8_t *buf, size_t cap, size_t *len);

/* An err message for a wire error code (SL_FRAME..SL_TIMEOUT; any other
 * value becomes SL_PROTO, which *code is set to) with text borrowed for
 * the life of the returned struct. For every place that tells a device
 * why it is being closed, including refusals encoded once at startup. */
struct msg msg_err(enum sl_err *code, const char *text);

/* The wire error a device gets for a decode failure (SL_DECODE, SL_AUTH, SL_PROTO). */
enum sl_err msg_rc_err(enum msg_rc rc);

/* Short text for logs and err{msg}. Never NULL. */
const char *msg_rc_str(enum msg_rc rc);

/* Wire name of a type ("hello", ...), NULL for MSG_NONE. */
const char *msg_type_name(enum msg_type t);

/* True if s is a valid device id / command id: [A-Za-z0-9._:-]{1,64}. */
bool msg_valid_id(const uint8_t *s, size_t n);

#endif
