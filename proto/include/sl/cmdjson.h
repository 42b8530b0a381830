/* SPDX-License-Identifier: Apache-2.0 */
/* sl/cmdjson.h - an operator's command as JSON -> what the device gets.
 *
 * One parser for both ways a command comes in: MQTT (P/<dev>/cmd,
 * {"id","body","queue","ttl_s"}: docs/protocol.md §5) and HTTP (POST
 * /v1/devices/{id}/commands, {"body","queue","ttl_s"}: docs/api.md), so a
 * device cannot tell which way a command came. The body maps to msgpack
 * (docs/protocol.md §3 in reverse): integers stay integers (uint64 above
 * INT64_MAX too), floats doubles, strings str, objects maps with str keys,
 * in member order; json-c's depth limit (32) bounds the nesting.
 *
 * Pure: json-c and msgpack-c on the caller's buffers, no I/O, no logging.
 * Its own library (sl::cmdjson) so that what links sl::proto alone (the
 * edge, the device library) does not link json-c. */
#ifndef SL_CMDJSON_H
#define SL_CMDJSON_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sl/limits.h"
#include "sl/mp.h"

#define CMDJSON_TTL_QUEUED 86400    /* ttl_s when queue is true and none is given */
#define CMDJSON_TTL_NOW    30       /* ttl_s when queue is false: deliver now or fail soon */
#define CMDJSON_TTL_MAX    31536000 /* a year */
/* The largest body (msgpack bytes) the durable queue stores: with id and
 * map, its cmd frame stays under 64 KiB. */
#define CMDJSON_BODY_MAX 60000u

/* What is wrong with the document or its body (first found, in this order). */
enum cmdjson_rc {
    CMDJSON_OK = 0,
    CMDJSON_NOT_OBJECT, /* not one JSON object with nothing but blanks after it */
    CMDJSON_NO_BODY,    /* no "body" member (null is a body) */
    CMDJSON_TOO_BIG,    /* the body's msgpack does not fit the caller's buffer */
    CMDJSON_NOMEM,      /* the body's JSON text could not be copied */
};

/* What "id" held. */
enum cmdjson_id {
    CMDJSON_ID_NONE = 0, /* absent, not a string, or the document is not an object */
    CMDJSON_ID_BAD,      /* a string outside [A-Za-z0-9._:-]{1,64} */
    CMDJSON_ID_OK,       /* in id */
};

struct cmdjson {
    enum cmdjson_id id_state;
    char id[SL_CMD_ID_MAX + 1]; /* NUL-terminated when ID_OK, else "" */
    /* queue and ttl_s, with their defaults when absent. opts_why is NULL
     * when both are valid, else a static reason (the member is then left
     * at its default): queue must be a boolean, ttl_s an integer in
     * [1, CMDJSON_TTL_MAX]. Reported apart from the body's rc, so that a
     * caller that ignores them (MQTT without a queue) is not refused. */
    bool queue;
    bool has_ttl;
    int64_t ttl_s;
    const char *opts_why;
    size_t mp_len; /* the body's msgpack bytes written into the caller's buffer */
    char *json;    /* with want_json, on CMDJSON_OK: the body as compact JSON, malloc'd (cmdjson_fini) */
};

/* Parse text[0..n). The body's msgpack goes into body (its overflow gives
 * CMDJSON_TOO_BIG); with want_json the body's compact JSON text is also
 * kept (c->json). Unknown members are ignored. c is always filled as far
 * as the document allows (id_state, queue, ttl_s, opts_why even when the
 * body is refused); call cmdjson_fini whatever the result. Allocates only
 * inside json-c, and c->json. */
enum cmdjson_rc cmdjson_parse(const char *text, size_t n, struct mp_buf *body, bool want_json,
                              struct cmdjson *c);
/* Free c->json (NULLed). */
void cmdjson_fini(struct cmdjson *c);

#endif
