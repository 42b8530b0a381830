/* SPDX-License-Identifier: Apache-2.0 */
/* cmdjson.c - an operator's command JSON -> id, options and the body as
 * msgpack (sl/cmdjson.h), for the notifier (MQTT commands) and sluice-api
 * (HTTP submissions) alike.
 *
 * Deliberately not here: what a refusal becomes (a "bad_command" result,
 * a 400), the database, MQTT, HTTP. */
#define _GNU_SOURCE
#include "sl/cmdjson.h"

#include <json-c/json.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "sl/msg.h"

/* json-c object -> msgpack. Depth is bounded by json-c's tokener (32). */
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

/* One JSON value with nothing but blanks after it, or NULL. */
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

static void read_id(struct json_object *o, struct cmdjson *c)
{
    struct json_object *m;
    if (!json_object_object_get_ex(o, "id", &m) || !json_object_is_type(m, json_type_string))
        return;
    size_t il = (size_t)json_object_get_string_len(m);
    const char *is = json_object_get_string(m);
    if (!msg_valid_id((const uint8_t *)is, il)) {
        c->id_state = CMDJSON_ID_BAD;
        return;
    }
    memcpy(c->id, is, il);
    c->id[il] = '\0';
    c->id_state = CMDJSON_ID_OK;
}

static void read_opts(struct json_object *o, struct cmdjson *c)
{
    struct json_object *m;
    if (json_object_object_get_ex(o, "queue", &m)) {
        if (json_object_is_type(m, json_type_boolean))
            c->queue = json_object_get_boolean(m);
        else
            c->opts_why = "queue must be true or false";
    }
    c->ttl_s = c->queue ? CMDJSON_TTL_QUEUED : CMDJSON_TTL_NOW;
    if (json_object_object_get_ex(o, "ttl_s", &m)) {
        int64_t t = json_object_get_int64(m);
        if (json_object_is_type(m, json_type_int) && t >= 1 && t <= CMDJSON_TTL_MAX) {
            c->ttl_s = t;
            c->has_ttl = true;
        } else if (!c->opts_why) {
            c->opts_why = "ttl_s must be an integer from 1 to 31536000";
        }
    }
}

enum cmdjson_rc cmdjson_parse(const char *text, size_t n, struct mp_buf *body, bool want_json,
                              struct cmdjson *c)
{
    memset(c, 0, sizeof *c);
    c->ttl_s = CMDJSON_TTL_NOW;
    struct json_object *o = parse_whole(text, n), *m;
    enum cmdjson_rc rc = CMDJSON_NOT_OBJECT;
    if (!o || !json_object_is_type(o, json_type_object))
        goto out;
    read_id(o, c);
    read_opts(o, c);
    rc = CMDJSON_NO_BODY; /* the contracts say body: any, so it must be there */
    if (!json_object_object_get_ex(o, "body", &m))
        goto out;
    msgpack_packer pk;
    msgpack_packer_init(&pk, body, mp_buf_write);
    pack_json(&pk, m);
    rc = CMDJSON_TOO_BIG;
    if (body->overflow)
        goto out;
    c->mp_len = body->len;
    rc = CMDJSON_OK;
    if (want_json) {
        const char *js = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN);
        c->json = js ? strdup(js) : NULL;
        if (!c->json)
            rc = CMDJSON_NOMEM;
    }
out:
    json_object_put(o);
    return rc;
}

void cmdjson_fini(struct cmdjson *c)
{
    free(c->json);
    c->json = NULL;
}
