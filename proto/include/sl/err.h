/* sl/err.h - the one error enum shared by every Sluice module.
 *
 * A value exists only because some caller branches on it. The wire error
 * codes of docs/protocol.md (err{code}) each have exactly one value here;
 * sl_wire_code() gives their string. */
#ifndef SL_ERR_H
#define SL_ERR_H

enum sl_err {
    SL_OK = 0,
    SL_AGAIN,   /* not now: need more input, would block, or end of a sequence */
    SL_NOMEM,   /* a fixed pool or buffer is full */
    SL_TOOBIG,  /* output does not fit the caller's buffer */
    SL_VERSION, /* internal message of a version this build does not speak */
    SL_IO,      /* socket or file error */
    SL_DB,      /* PostgreSQL error */
    SL_MQTT,    /* broker error */
    SL_INVAL,   /* bad configuration or argument */
    /* The wire error codes, in the order docs/protocol.md lists them. */
    SL_FRAME,    /* "frame":    frame length 0 or above max_frame */
    SL_DECODE,   /* "decode":   payload not a map, trailing bytes, bad field */
    SL_PROTO,    /* "proto":    wrong message for the state, or v != 1 */
    SL_AUTH,     /* "auth":     bad token or device id */
    SL_REPLACED, /* "replaced": the device connected again elsewhere */
    SL_BUSY,     /* "busy":     edge full */
    SL_DRAINING, /* "draining": edge shutting down */
    SL_TIMEOUT,  /* "timeout":  hello or idle timeout */
    /* Not a wire code: the device library's TLS failed (the edge's
     * certificate not verified, the edge refused ours, a bad record). A
     * device branches on it: a configuration problem, not a network one. */
    SL_TLS,
};

/* Human-readable text for any value. Never NULL. */
const char *sl_strerror(enum sl_err e);

/* The wire code string ("frame", "decode", ...) for the wire errors, NULL for the others. */
const char *sl_wire_code(enum sl_err e);

#endif
