/* SPDX-License-Identifier: Apache-2.0 */
/* cmdreq.c - a command submission's JSON -> msgpack and parameters
 * (cmdreq.h). The parsing is sl/cmdjson.h's, the notifier's for MQTT
 * commands too, so a device cannot tell which way a command came; here
 * only its refusals become the 400's messages.
 *
 * Deliberately not here: ids, the database, HTTP. */
#define _GNU_SOURCE
#include "cmdreq.h"

#include <stdlib.h>
#include <string.h>

#include "sl/cmdjson.h"

int cmdreq_parse(const char *text, size_t n, uint8_t *mp, struct cmdreq *r, const char **why)
{
    memset(r, 0, sizeof *r);
    struct mp_buf b;
    mp_buf_init(&b, mp, CMDREQ_BODY_MAX);
    struct cmdjson c;
    enum cmdjson_rc rc = cmdjson_parse(text, n, &b, true, &c);
    /* The reasons in the order a reader fixes them: the document, the
     * options, the body. */
    *why = rc == CMDJSON_NOT_OBJECT ? "the request body must be a JSON object"
           : c.opts_why             ? c.opts_why
           : rc == CMDJSON_NO_BODY  ? "body is required (any JSON value, null included)"
           : rc == CMDJSON_TOO_BIG  ? "body is too large for a cmd frame"
           : rc == CMDJSON_NOMEM    ? "out of memory"
                                    : NULL;
    if (*why) {
        cmdjson_fini(&c);
        return -1;
    }
    r->queue = c.queue;
    r->ttl_s = c.ttl_s;
    r->mp = mp;
    r->mp_len = c.mp_len;
    r->json = c.json; /* ours now: cmdreq_fini frees it */
    return 0;
}

void cmdreq_fini(struct cmdreq *r)
{
    free(r->json);
    r->json = NULL;
}
