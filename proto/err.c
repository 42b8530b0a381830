/* err.c - text for the shared error enum (sl/err.h).
 *
 * Two tables: a human-readable message for every value, and the wire code
 * string for the values that are wire errors (docs/protocol.md, "Error
 * codes"). The wire strings live here because they name errors, not
 * messages; msg.c holds the message field and type strings. No I/O, no
 * allocation, no logging. */
#include "sl/err.h"

#include <stddef.h>

struct err_text {
    const char *text; /* for logs */
    const char *wire; /* err{code}, or NULL if not a wire error */
};

/* Indexed by enum sl_err; designated initialisers keep it honest if the
 * enum is ever reordered. */
static const struct err_text errs[] = {
    [SL_OK] = {"ok", NULL},
    [SL_AGAIN] = {"try again", NULL},
    [SL_NOMEM] = {"out of buffers", NULL},
    [SL_TOOBIG] = {"does not fit", NULL},
    [SL_VERSION] = {"unsupported version", NULL},
    [SL_IO] = {"i/o error", NULL},
    [SL_DB] = {"database error", NULL},
    [SL_MQTT] = {"broker error", NULL},
    [SL_INVAL] = {"invalid argument", NULL},
    [SL_FRAME] = {"bad frame length", "frame"},
    [SL_DECODE] = {"malformed payload", "decode"},
    [SL_PROTO] = {"protocol violation", "proto"},
    [SL_AUTH] = {"authentication failed", "auth"},
    [SL_REPLACED] = {"replaced by a newer connection", "replaced"},
    [SL_BUSY] = {"edge full", "busy"},
    [SL_DRAINING] = {"edge draining", "draining"},
    [SL_TIMEOUT] = {"timed out", "timeout"},
    [SL_TLS] = {"TLS failed", NULL},
};

#define NERRS (sizeof errs / sizeof errs[0])

const char *sl_strerror(enum sl_err e)
{
    /* Compare as unsigned: an out-of-range value (including a negative one
     * cast in by a caller) must not index past the table. */
    if ((unsigned)e >= NERRS || errs[e].text == NULL)
        return "unknown error";
    return errs[e].text;
}

const char *sl_wire_code(enum sl_err e)
{
    if ((unsigned)e >= NERRS)
        return NULL;
    return errs[e].wire;
}
