/* SPDX-License-Identifier: Apache-2.0 */
/* cmdreq.h - the body of POST /v1/devices/{id}/commands:
 * {"body": any, "ttl_s": N, "queue": bool} -> what the store inserts: the
 * body as JSON text (shown by GET /v1/commands/{id}) and as msgpack (what
 * the device gets in cmd{body}, docs/protocol.md §3 in reverse), the ttl and
 * whether to queue. Pure (sl/cmdjson.h on caller buffers); the HTTP shell
 * hands it the request body. */
#ifndef API_CMDREQ_H
#define API_CMDREQ_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sl/cmdjson.h"

#define CMDREQ_TTL_QUEUED CMDJSON_TTL_QUEUED
#define CMDREQ_TTL_NOW    CMDJSON_TTL_NOW
#define CMDREQ_TTL_MAX    CMDJSON_TTL_MAX
#define CMDREQ_BODY_MAX   CMDJSON_BODY_MAX

struct cmdreq {
    bool queue;
    int64_t ttl_s;
    uint8_t *mp; /* caller's buffer of CMDREQ_BODY_MAX bytes */
    size_t mp_len;
    char *json; /* the body as compact JSON, malloc'd (cmdreq_fini frees) */
};

/* Parse text[0..n). 0, or -1 with *why a static reason (400). mp must hold
 * CMDREQ_BODY_MAX bytes. Unknown members are ignored. */
int cmdreq_parse(const char *text, size_t n, uint8_t *mp, struct cmdreq *r, const char **why);
void cmdreq_fini(struct cmdreq *r);

#endif
