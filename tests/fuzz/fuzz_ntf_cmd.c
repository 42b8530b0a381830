/* fuzz_ntf_cmd.c - the notifier's operator command parser
 * (notifier/topics.c topics_cmd_parse): the JSON payload of P/<dev>/cmd.
 *
 * Input: the MQTT payload, any bytes.
 *
 * Properties:
 * - the id buffer always holds a NUL-terminated string: empty unless the
 *   id was readable and valid, and then in the id alphabet;
 * - an accepted command's body is one well-formed msgpack object, nesting
 *   at most one level less than a payload (it travels inside a cmd map),
 *   and never overflows the notifier's 64 KiB command buffer;
 * - the device gets it: cmd{id, body} encodes and msg_decode gives back
 *   the same id and body bytes;
 * - the body means what the operator wrote: its JSON (tojson) parses to
 *   the same value json-c read from the payload (numbers exact, strings
 *   and keys exact when UTF-8: json-c does not check, and tojson repairs;
 *   NaN and infinities, which json-c accepts, become the strings "NaN",
 *   "Infinity", "-Infinity"). */
#define _POSIX_C_SOURCE 200809L /* strnlen */
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_json.h"
#include "sl/limits.h"
#include "sl/mp.h"
#include "sl/msg.h"
#include "sl/tojson.h"
#include "topics.h"

#define CMD_BODY_CAP (64 * 1024) /* as notifier/ntf.c */

static uint8_t body_buf[CMD_BODY_CAP];

/* a: what json-c read from the operator; b: the JSON of the msgpack we made. */
static void same_json(struct json_object *a, struct json_object *b)
{
    enum json_type ta = json_object_get_type(a);
    if (ta == json_type_double && !isfinite(json_object_get_double(a))) {
        double d = json_object_get_double(a);
        const char *want = isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity";
        FUZZ_CHECK(json_object_is_type(b, json_type_string) && strcmp(json_object_get_string(b), want) == 0);
        return;
    }
    FUZZ_CHECK(json_object_get_type(b) == ta);
    switch (ta) {
    case json_type_null: break;
    case json_type_boolean: FUZZ_CHECK(json_object_get_boolean(a) == json_object_get_boolean(b)); break;
    case json_type_int:
        FUZZ_CHECK(json_object_get_int64(a) == json_object_get_int64(b) &&
                   json_object_get_uint64(a) == json_object_get_uint64(b));
        break;
    case json_type_double: {
        double x = json_object_get_double(a), y = json_object_get_double(b);
        FUZZ_CHECK(x == y && signbit(x) == signbit(y));
        break;
    }
    case json_type_string: {
        const uint8_t *s = (const uint8_t *)json_object_get_string(a);
        size_t n = (size_t)json_object_get_string_len(a);
        if (fuzz_utf8_valid(s, n))
            FUZZ_CHECK((size_t)json_object_get_string_len(b) == n &&
                       (n == 0 || memcmp(json_object_get_string(b), s, n) == 0));
        break;
    }
    case json_type_array: {
        size_t n = json_object_array_length(a);
        FUZZ_CHECK(json_object_array_length(b) == n);
        for (size_t i = 0; i < n; i++)
            same_json(json_object_array_get_idx(a, i), json_object_array_get_idx(b, i));
        break;
    }
    case json_type_object: {
        /* Keys that are not UTF-8 come back repaired and may then collide:
         * compare member by member only when every key is. */
        bool valid = true;
        json_object_object_foreach(a, k, v)
        {
            (void)v;
            valid = valid && fuzz_utf8_valid((const uint8_t *)k, strlen(k));
        }
        if (!valid)
            break;
        FUZZ_CHECK(json_object_object_length(b) == json_object_object_length(a));
        json_object_object_foreach(a, k2, v2)
        {
            struct json_object *w = NULL;
            FUZZ_CHECK(json_object_object_get_ex(b, k2, &w));
            same_json(v2, w);
        }
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char id[SL_CMD_ID_MAX + 1];
    memset(id, 'x', sizeof id); /* no NUL: the parser must write one */
    struct mp_buf body;
    mp_buf_init(&body, body_buf, sizeof body_buf);
    enum topics_cmd_rc rc = topics_cmd_parse((const char *)data, size, id, &body);
    FUZZ_CHECK(rc >= TOPICS_CMD_OK && rc <= TOPICS_CMD_NO_ID);
    size_t il = strnlen(id, sizeof id);
    FUZZ_CHECK(il < sizeof id);
    if (rc == TOPICS_CMD_NO_ID || rc == TOPICS_CMD_BAD_ID)
        FUZZ_CHECK(il == 0);
    else
        FUZZ_CHECK(msg_valid_id((const uint8_t *)id, il));
    if (rc != TOPICS_CMD_OK)
        return 0;

    FUZZ_CHECK(!body.overflow && body.len > 0 && body.len <= sizeof body_buf);
    FUZZ_CHECK(mp_check(body.p, body.len, SL_MP_MAX_DEPTH - 1) == 0);

    /* To the device: the edge sends cmd{id, body}; the device decodes it. */
    struct msg m = {.t = MSG_CMD};
    m.u.cmd.id = (struct sl_slice){(const uint8_t *)id, (uint32_t)il};
    m.u.cmd.body = (struct sl_slice){body.p, (uint32_t)body.len};
    size_t cap = body.len + 128, len = 0;
    uint8_t *frame = malloc(cap);
    FUZZ_CHECK(frame != NULL);
    FUZZ_CHECK(msg_encode(&m, frame, cap, &len) == SL_OK);
    struct msg back;
    FUZZ_CHECK(msg_decode(frame, len, &back) == MSG_OK && back.t == MSG_CMD);
    FUZZ_CHECK(sl_slice_eq(back.u.cmd.id, m.u.cmd.id) && sl_slice_eq(back.u.cmd.body, m.u.cmd.body));
    free(frame);

    /* The meaning survives: payload JSON -> msgpack -> JSON. */
    struct json_tokener *tok = json_tokener_new(); /* as topics.c reads it */
    struct json_object *cmd = json_tokener_parse_ex(tok, (const char *)data, (int)size);
    FUZZ_CHECK(cmd != NULL);
    json_tokener_free(tok);
    struct json_object *want = NULL;
    FUZZ_CHECK(json_object_object_get_ex(cmd, "body", &want));
    size_t jcap = tojson_bound(body.len);
    char *js = malloc(jcap);
    FUZZ_CHECK(js != NULL);
    struct tojson_buf jb;
    tojson_buf_init(&jb, js, jcap);
    FUZZ_CHECK(tojson_encode(&jb, body.p, body.len) == SL_OK);
    bool ok;
    struct json_object *got = fuzz_json_parse(jb.p, jb.len, &ok);
    FUZZ_CHECK(ok);
    same_json(want, got);
    json_object_put(got);
    json_object_put(cmd);
    free(js);
    return 0;
}
