/* SPDX-License-Identifier: Apache-2.0 */
/* cmdreq.c - a command submission's JSON -> msgpack and parameters
 * (cmdreq.h). The JSON -> msgpack mapping is the notifier's for MQTT
 * commands (notifier/topics.c), so a device cannot tell which way a
 * command came: integers stay integers (uint64 above INT64_MAX too),
 * floats doubles, strings str, objects maps with str keys.
 *
 * Deliberately not here: ids, the database, HTTP. */
#define _GNU_SOURCE
#include "cmdreq.h"

#include <json-c/json.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "sl/mp.h"

static void pack_json(msgpack_packer *pk, struct json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_null: msgpack_pack_nil(pk); break;
    case json_type_boolean:
        if (json_object_get_boolean(o))
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    case json_type_int: {
        int64_t i = json_object_get_int64(o);
        if (i == INT64_MAX && json_object_get_uint64(o) > (uint64_t)INT64_MAX)
            msgpack_pack_uint64(pk, json_object_get_uint64(o));
        else
            msgpack_pack_int64(pk, i);
        break;
    }
    case json_type_double: msgpack_pack_double(pk, json_object_get_double(o)); break;
    case json_type_string: {
        size_t n = (size_t)json_object_get_string_len(o);
        msgpack_pack_str(pk, n);
        msgpack_pack_str_body(pk, json_object_get_string(o), n);
        break;
    }
    case json_type_array: {
        size_t n = json_object_array_length(o);
        msgpack_pack_array(pk, n);
        for (size_t i = 0; i < n; i++)
            pack_json(pk, json_object_array_get_idx(o, i));
        break;
    }
    case json_type_object: {
        msgpack_pack_map(pk, (size_t)json_object_object_length(o));
        json_object_object_foreach(o, k, v)
        {
            size_t kl = strlen(k);
            msgpack_pack_str(pk, kl);
            msgpack_pack_str_body(pk, k, kl);
            pack_json(pk, v);
        }
        break;
    }
    }
}

/* One JSON value with nothing but blanks after it (json-c's depth limit,
 * 32, bounds the nesting), or NULL. */
static struct json_object *parse_whole(const char *t, size_t n)
{
    if (n > INT32_MAX)
        return NULL;
    struct json_tokener *tok = json_tokener_new();
    if (!tok)
        return NULL;
    struct json_object *o = json_tokener_parse_ex(tok, t, (int)n);
    if (!o || json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(o);
        o = NULL;
    } else {
        for (size_t i = (size_t)json_tokener_get_parse_end(tok); i < n; i++)
            if (t[i] != ' ' && t[i] != '\t' && t[i] != '\r' && t[i] != '\n') {
                json_object_put(o);
                o = NULL;
                break;
            }
    }
    json_tokener_free(tok);
    return o;
}

int cmdreq_parse(const char *text, size_t n, uint8_t *mp, struct cmdreq *r, const char **why)
{
    memset(r, 0, sizeof *r);
    *why = NULL;
    struct json_object *o = parse_whole(text, n), *m;
    if (!o || !json_object_is_type(o, json_type_object)) {
        *why = "the request body must be a JSON object";
        goto out;
    }
    if (json_object_object_get_ex(o, "queue", &m)) {
        if (!json_object_is_type(m, json_type_boolean)) {
            *why = "queue must be true or false";
            goto out;
        }
        r->queue = json_object_get_boolean(m);
    }
    r->ttl_s = r->queue ? CMDREQ_TTL_QUEUED : CMDREQ_TTL_NOW;
    if (json_object_object_get_ex(o, "ttl_s", &m)) {
        int64_t t = json_object_get_int64(m);
        if (!json_object_is_type(m, json_type_int) || t < 1 || t > CMDREQ_TTL_MAX) {
            *why = "ttl_s must be an integer from 1 to 31536000";
            goto out;
        }
        r->ttl_s = t;
    }
    if (!json_object_object_get_ex(o, "body", &m)) {
        *why = "body is required (any JSON value, null included)";
        goto out;
    }
    struct mp_buf b;
    mp_buf_init(&b, mp, CMDREQ_BODY_MAX);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, mp_buf_write);
    pack_json(&pk, m);
    if (b.overflow) {
        *why = "body is too large for a cmd frame";
        goto out;
    }
    r->mp = mp;
    r->mp_len = b.len;
    const char *js = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN);
    r->json = js ? strdup(js) : NULL;
    if (!r->json)
        *why = "out of memory";
out:
    json_object_put(o);
    return *why ? -1 : 0;
}

void cmdreq_fini(struct cmdreq *r)
{
    free(r->json);
    r->json = NULL;
}
