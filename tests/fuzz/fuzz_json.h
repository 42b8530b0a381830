/* fuzz_json.h - strict JSON parsing with json-c, for the targets that check
 * JSON we produce (tojson, the notifier's payloads). */
#ifndef SL_FUZZ_JSON_H
#define SL_FUZZ_JSON_H
#include <stdbool.h>
#include <string.h>

#include <json-c/json.h>

#include "fuzz.h"
#include "sl/limits.h"

/* Parse s[0..n) as one strict JSON value with valid UTF-8 and nothing but
 * whitespace after it; *ok says whether it was. json null is a NULL
 * object, hence the flag. A top-level number needs a delimiter to end, so
 * a copy with a space is parsed. The depth allows what tojson writes: 32
 * containers, an ext object inside the deepest, and a wrapping payload. */
static inline struct json_object *fuzz_json_parse(const char *s, size_t n, bool *ok)
{
    char *copy = malloc(n + 1);
    FUZZ_CHECK(copy != NULL);
    if (n > 0)
        memcpy(copy, s, n);
    copy[n] = ' ';
    struct json_tokener *tok = json_tokener_new_ex(SL_MP_MAX_DEPTH + 8);
    FUZZ_CHECK(tok != NULL);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    struct json_object *o = json_tokener_parse_ex(tok, copy, (int)(n + 1));
    *ok = json_tokener_get_error(tok) == json_tokener_success;
    for (size_t i = json_tokener_get_parse_end(tok); *ok && i < n + 1; i++)
        *ok = copy[i] == ' ' || copy[i] == '\t' || copy[i] == '\r' || copy[i] == '\n';
    if (!*ok && o) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    free(copy);
    return o;
}

#endif
