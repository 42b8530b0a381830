/* SPDX-License-Identifier: Apache-2.0 */
/* topics.c - pure mappers of the notifier (docs/protocol.md section 5):
 * envelope -> topic + JSON payload, retained status <-> struct, operator
 * command JSON -> (id, msgpack body).
 *
 * Deliberately not here: MQTT, sockets, logging, presence decisions. The
 * JSON we write is built by hand with the tojson builder (no allocation on
 * the data path); only the control path (commands, retained statuses read
 * back) parses JSON, with json-c. */
#include "topics.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "sl/cmdjson.h"
#include "sl/msg.h"

uint32_t topics_hash(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

enum topics_kind topics_parse(const char *prefix, const char *topic, size_t n, struct sl_slice *dev)
{
    size_t pl = strlen(prefix);
    if (n < pl + 2 || memcmp(topic, prefix, pl) != 0 || topic[pl] != '/')
        return TOPICS_OTHER;
    const char *d = topic + pl + 1;
    const char *end = topic + n;
    const char *slash = memchr(d, '/', (size_t)(end - d));
    if (!slash)
        return TOPICS_OTHER;
    size_t dl = (size_t)(slash - d);
    if (!msg_valid_id((const uint8_t *)d, dl))
        return TOPICS_OTHER;
    size_t ll = (size_t)(end - slash - 1);
    enum topics_kind k = TOPICS_OTHER;
    if (ll == 3 && memcmp(slash + 1, "cmd", 3) == 0)
        k = TOPICS_CMD;
    else if (ll == 6 && memcmp(slash + 1, "status", 6) == 0)
        k = TOPICS_STATUS;
    if (k != TOPICS_OTHER) {
        dev->p = (const uint8_t *)d;
        dev->n = (uint32_t)dl;
    }
    return k;
}

void topics_dev(struct tojson_buf *b, const char *prefix, struct sl_slice dev, const char *leaf)
{
    tojson_raw(b, prefix, strlen(prefix));
    tojson_raw(b, "/", 1);
    tojson_raw(b, (const char *)dev.p, dev.n);
    tojson_raw(b, "/", 1);
    tojson_raw(b, leaf, strlen(leaf));
}

void topics_result_topic(struct tojson_buf *b, const char *prefix, struct sl_slice dev, struct sl_slice id)
{
    topics_dev(b, prefix, dev, "cmd/");
    tojson_raw(b, (const char *)id.p, id.n);
    tojson_raw(b, "/result", 7);
}

#define LIT(b, s) tojson_raw((b), (s), sizeof(s) - 1)

enum sl_err topics_data_json(struct tojson_buf *b, struct sl_slice edge, const struct envelope *e)
{
    LIT(b, "{\"dev\":");
    tojson_str(b, e->dev.p, e->dev.n);
    LIT(b, ",\"seq\":");
    tojson_u64(b, e->seq);
    LIT(b, ",\"ts\":");
    if (e->has_ts)
        tojson_i64(b, e->ts);
    else
        LIT(b, "null");
    LIT(b, ",\"rx\":");
    tojson_u64(b, e->at_ns / 1000000u);
    LIT(b, ",\"edge\":");
    tojson_str(b, edge.p, edge.n);
    LIT(b, ",\"body\":");
    if (e->has_body && e->body.n > 0) {
        enum sl_err rc = tojson_encode(b, e->body.p, e->body.n);
        if (rc != SL_OK)
            return rc;
    } else {
        LIT(b, "null");
    }
    LIT(b, "}");
    return b->overflow ? SL_TOOBIG : SL_OK;
}

static void str_field(struct tojson_buf *b, const char *key, const char *v)
{
    tojson_raw(b, key, strlen(key));
    tojson_str(b, (const uint8_t *)v, strlen(v));
}

void topics_status_json(struct tojson_buf *b, const struct topics_status *s)
{
    LIT(b, "{\"online\":");
    if (s->online)
        LIT(b, "true");
    else
        LIT(b, "false");
    str_field(b, ",\"edge\":", s->edge);
    LIT(b, ",\"at\":");
    tojson_u64(b, s->at_ms);
    LIT(b, ",\"epoch\":");
    tojson_u64(b, s->epoch);
    if (s->online) {
        str_field(b, ",\"reply\":", s->reply);
        LIT(b, ",\"inc\":");
        tojson_u64(b, s->inc);
        LIT(b, ",\"slot\":");
        tojson_u64(b, s->slot);
        LIT(b, ",\"gen\":");
        tojson_u64(b, s->gen);
    }
    if (s->reason[0])
        str_field(b, ",\"reason\":", s->reason);
    LIT(b, "}");
}

/* Parse n bytes as one JSON value with nothing but whitespace after it. */
static struct json_object *parse_whole(const char *json, size_t n)
{
    if (n > INT32_MAX)
        return NULL;
    struct json_tokener *tok = json_tokener_new();
    if (!tok)
        return NULL;
    struct json_object *o = json_tokener_parse_ex(tok, json, (int)n);
    if (o && json_tokener_get_error(tok) == json_tokener_success) {
        for (size_t i = tok->char_offset; i < n; i++) {
            char c = json[i];
            if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
                json_object_put(o);
                o = NULL;
                break;
            }
        }
    } else if (o) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

/* Read a non-negative integer member into *v (json-c keeps int64 and uint64). */
static bool get_u64(struct json_object *o, const char *key, uint64_t *v)
{
    struct json_object *m;
    if (!json_object_object_get_ex(o, key, &m) || !json_object_is_type(m, json_type_int))
        return false;
    errno = 0;
    int64_t i = json_object_get_int64(m);
    if (i < 0)
        return false;
    if (i == INT64_MAX)
        *v = json_object_get_uint64(m); /* may be above INT64_MAX */
    else
        *v = (uint64_t)i;
    return true;
}

static bool get_str(struct json_object *o, const char *key, char *out, size_t cap)
{
    struct json_object *m;
    if (!json_object_object_get_ex(o, key, &m) || !json_object_is_type(m, json_type_string))
        return false;
    size_t n = (size_t)json_object_get_string_len(m);
    /* Only UTF-8 (json-c does not check it): topics_status_json would write
     * anything else repaired, up to 3 times longer, and a status we publish
     * must read back the same after a restart. */
    if (n >= cap || !tojson_utf8_valid((const uint8_t *)json_object_get_string(m), n))
        return false;
    memcpy(out, json_object_get_string(m), n);
    out[n] = '\0';
    return true;
}

enum sl_err topics_status_parse(const char *json, size_t n, struct topics_status *s)
{
    memset(s, 0, sizeof *s);
    struct json_object *o = parse_whole(json, n);
    if (!o)
        return SL_DECODE;
    enum sl_err rc = SL_DECODE;
    struct json_object *m;
    uint64_t slot = 0, gen = 0;
    if (!json_object_is_type(o, json_type_object))
        goto out;
    if (!json_object_object_get_ex(o, "online", &m) || !json_object_is_type(m, json_type_boolean))
        goto out;
    s->online = json_object_get_boolean(m);
    if (!get_str(o, "edge", s->edge, sizeof s->edge) || !get_u64(o, "epoch", &s->epoch))
        goto out;
    (void)get_u64(o, "at", &s->at_ms);
    (void)get_str(o, "reason", s->reason, sizeof s->reason);
    if (s->online) {
        if (!get_str(o, "reply", s->reply, sizeof s->reply) || !get_u64(o, "inc", &s->inc) ||
            !get_u64(o, "slot", &slot) || !get_u64(o, "gen", &gen) || slot > UINT32_MAX || gen > UINT32_MAX)
            goto out;
        s->slot = (uint32_t)slot;
        s->gen = (uint32_t)gen;
    }
    rc = SL_OK;
out:
    json_object_put(o);
    return rc;
}

enum sl_err topics_result_json(struct tojson_buf *b, bool ok, const struct sl_slice *body, const char *error)
{
    if (error) {
        LIT(b, "{\"ok\":false,\"error\":");
        tojson_str(b, (const uint8_t *)error, strlen(error));
        LIT(b, "}");
        return b->overflow ? SL_TOOBIG : SL_OK;
    }
    enum sl_err rc = SL_OK;
    if (ok)
        LIT(b, "{\"ok\":true,\"body\":");
    else
        LIT(b, "{\"ok\":false,\"body\":");
    size_t mark = b->len;
    if (body && body->n > 0) {
        rc = tojson_encode(b, body->p, body->n);
        if (rc == SL_DECODE) {
            b->len = mark; /* drop the partial text */
            LIT(b, "null");
        }
    } else {
        LIT(b, "null");
    }
    LIT(b, "}");
    if (b->overflow)
        return SL_TOOBIG;
    return rc;
}

enum topics_cmd_rc topics_cmd_read(const char *json, size_t n, bool want_json, struct cmdjson *c,
                                   struct mp_buf *body)
{
    enum cmdjson_rc rc = cmdjson_parse(json, n, body, want_json, c);
    if (rc == CMDJSON_NOT_OBJECT || c->id_state == CMDJSON_ID_NONE)
        return TOPICS_CMD_NO_ID;
    if (c->id_state == CMDJSON_ID_BAD)
        return TOPICS_CMD_BAD_ID;
    return rc == CMDJSON_OK ? TOPICS_CMD_OK : TOPICS_CMD_BAD;
}

enum topics_cmd_rc topics_cmd_parse(const char *json, size_t n, char id[SL_CMD_ID_MAX + 1],
                                    struct mp_buf *body)
{
    struct cmdjson c;
    enum topics_cmd_rc rc = topics_cmd_read(json, n, false, &c, body);
    memcpy(id, c.id, sizeof c.id); /* "" unless the id is valid */
    cmdjson_fini(&c);
    return rc;
}

/* ---- between notifiers ---- */

void topics_pending_topic(struct tojson_buf *b, const char *prefix, struct sl_slice dev, struct sl_slice id)
{
    tojson_raw(b, prefix, strlen(prefix));
    LIT(b, "/" TOPICS_INTERNAL "/pending/");
    tojson_raw(b, (const char *)dev.p, dev.n);
    tojson_raw(b, "/", 1);
    tojson_raw(b, (const char *)id.p, id.n);
}

bool topics_parse_pending(const char *prefix, const char *topic, size_t n, struct sl_slice *dev,
                          struct sl_slice *id)
{
    static const char mid[] = "/" TOPICS_INTERNAL "/pending/";
    size_t pl = strlen(prefix), ml = sizeof mid - 1;
    if (n < pl + ml + 3 || memcmp(topic, prefix, pl) != 0 || memcmp(topic + pl, mid, ml) != 0)
        return false;
    const char *d = topic + pl + ml, *end = topic + n;
    const char *slash = memchr(d, '/', (size_t)(end - d));
    if (!slash)
        return false;
    size_t dl = (size_t)(slash - d), il = (size_t)(end - slash - 1);
    if (!msg_valid_id((const uint8_t *)d, dl) || !msg_valid_id((const uint8_t *)slash + 1, il))
        return false;
    *dev = (struct sl_slice){(const uint8_t *)d, (uint32_t)dl};
    *id = (struct sl_slice){(const uint8_t *)slash + 1, (uint32_t)il};
    return true;
}

void topics_marker_json(struct tojson_buf *b, const struct topics_marker *m)
{
    str_field(b, "{\"by\":", m->by);
    str_field(b, ",\"edge\":", m->edge);
    str_field(b, ",\"reply\":", m->reply);
    LIT(b, ",\"inc\":");
    tojson_u64(b, m->inc);
    LIT(b, ",\"deadline\":");
    tojson_u64(b, m->deadline_ms);
    LIT(b, "}");
}

enum sl_err topics_marker_parse(const char *json, size_t n, struct topics_marker *m)
{
    memset(m, 0, sizeof *m);
    struct json_object *o = parse_whole(json, n);
    if (!o)
        return SL_DECODE;
    enum sl_err rc = SL_DECODE;
    if (json_object_is_type(o, json_type_object) && get_str(o, "by", m->by, sizeof m->by) &&
        get_str(o, "edge", m->edge, sizeof m->edge) && get_str(o, "reply", m->reply, sizeof m->reply) &&
        get_u64(o, "inc", &m->inc) && get_u64(o, "deadline", &m->deadline_ms))
        rc = SL_OK;
    json_object_put(o);
    return rc;
}
