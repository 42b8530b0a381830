/* fuzz_ntf_status.c - the notifier's retained status parser
 * (notifier/topics.c topics_status_parse): the JSON of P/<dev>/status that
 * the notifier reads back after a restart to rebuild its routing.
 *
 * Input: the MQTT payload, any bytes.
 *
 * Properties:
 * - an accepted status has NUL-terminated UTF-8 strings within their
 *   arrays;
 * - round trip: the status the notifier would publish from it
 *   (topics_status_json) fits TOPICS_STATUS_JSON_MAX (the notifier's buffer), is
 *   strict JSON, and parses back to the same status (strings compared as
 *   C strings: a "\u0000" inside ends one). */
#define _POSIX_C_SOURCE 200809L /* strnlen */
#include <string.h>

#include "fuzz.h"
#include "fuzz_json.h"
#include "topics.h"

static bool same_str(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

/* NUL-terminated inside its array, and UTF-8 up to there. */
static bool good_str(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    return n < cap && fuzz_utf8_valid((const uint8_t *)s, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct topics_status s;
    enum sl_err rc = topics_status_parse((const char *)data, size, &s);
    FUZZ_CHECK(rc == SL_OK || rc == SL_DECODE);
    if (rc != SL_OK)
        return 0;
    FUZZ_CHECK(good_str(s.edge, sizeof s.edge) && good_str(s.reply, sizeof s.reply) &&
               good_str(s.reason, sizeof s.reason));

    char *out = malloc(TOPICS_STATUS_JSON_MAX);
    FUZZ_CHECK(out != NULL);
    struct tojson_buf b;
    tojson_buf_init(&b, out, TOPICS_STATUS_JSON_MAX);
    topics_status_json(&b, &s);
    FUZZ_CHECK(!b.overflow);
    bool ok;
    struct json_object *j = fuzz_json_parse(b.p, b.len, &ok);
    FUZZ_CHECK(ok);
    json_object_put(j);

    struct topics_status s2;
    FUZZ_CHECK(topics_status_parse(b.p, b.len, &s2) == SL_OK);
    FUZZ_CHECK(s2.online == s.online && s2.at_ms == s.at_ms && s2.epoch == s.epoch);
    FUZZ_CHECK(same_str(s.edge, s2.edge) && same_str(s.reason, s2.reason));
    if (s.online)
        FUZZ_CHECK(same_str(s.reply, s2.reply) && s2.inc == s.inc && s2.slot == s.slot && s2.gen == s.gen);
    free(out);
    return 0;
}
