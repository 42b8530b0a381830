/* fuzz_tojson.c - msgpack -> JSON (proto/tojson.c), the conversion the
 * persister (jsonb) and the notifier (MQTT payloads) apply to every body.
 *
 * Input: raw bytes, read as one msgpack object (a body).
 *
 * Properties:
 * - bytes mp_check refuses are refused (SL_DECODE); given
 *   tojson_bound(n) bytes of room, SL_TOOBIG never happens;
 * - accepted output is at most tojson_bound(n) bytes, appended after what
 *   the buffer held, and parses as strict JSON with valid UTF-8 (json-c);
 * - the parsed JSON has the structure and values of the msgpack
 *   (docs/protocol.md §3): null/bool/integers exact, floats read back to
 *   the same double (NaN and infinities as strings), strings equal when
 *   the input is valid UTF-8, bin and ext data base64 of the same bytes,
 *   arrays of the same length, maps with the same keys (last duplicate
 *   wins, as in json-c) and values; a non-string key is the JSON text of
 *   that key, which itself parses back to the key;
 * - one byte less room than needed gives SL_TOOBIG with the buffer's
 *   length back where it was and nothing written past it;
 * - the builder pieces: tojson_str of the input is one JSON string equal
 *   to it (when valid UTF-8) within 6n+2 bytes; tojson_utf8_valid agrees
 *   with an independent validator; tojson_base64 decodes back. */
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_json.h"
#include "sl/limits.h"
#include "sl/mp.h"
#include "sl/tojson.h"

/* Maps with more pairs are checked for size only (the duplicate search
 * below is quadratic). */
#define MAP_CHECK_MAX 256u

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* True if s[0..n) is the padded base64 of d[0..dn). */
static bool is_base64_of(const char *s, size_t n, const uint8_t *d, size_t dn)
{
    if (n != 4 * ((dn + 2) / 3))
        return false;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = s[i + k] == '=' ? 0 : b64val(s[i + k]);
        if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0)
            return false;
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        uint8_t b[3] = {(uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w};
        for (int k = 0; k < 3 && o < dn; k++)
            if (b[k] != d[o++])
                return false;
    }
    /* Padding exactly where the data ends. */
    size_t pad = (3 - dn % 3) % 3;
    for (size_t i = 0; i < n; i++)
        if ((s[i] == '=') != (i >= n - pad))
            return false;
    return true;
}

static bool json_str_is(struct json_object *j, const char *s)
{
    return json_object_is_type(j, json_type_string) && strcmp(json_object_get_string(j), s) == 0 &&
           (size_t)json_object_get_string_len(j) == strlen(s);
}

struct key {
    const uint8_t *p; /* the key's text as it must appear in the JSON object */
    size_t n;
    bool comparable; /* json-c can look it up: valid UTF-8, no NUL */
    char *owned;     /* text of a non-string key (tojson of the key alone) */
    struct mp_cur val;
};

static void check_value(struct mp_cur *c, struct json_object *j);

/* Skip one object at *c and return the cursor over exactly its bytes. */
static struct mp_cur take(struct mp_cur *c)
{
    struct mp_cur one = *c;
    FUZZ_CHECK(mp_skip(c, 64) == 0);
    one.end = c->p;
    return one;
}

static void check_map(struct mp_cur *c, uint32_t pairs, struct json_object *j)
{
    FUZZ_CHECK(json_object_is_type(j, json_type_object));
    size_t have = (size_t)json_object_object_length(j);
    FUZZ_CHECK(have <= pairs);
    if (pairs > MAP_CHECK_MAX) {
        for (uint32_t i = 0; i < 2 * pairs; i++)
            (void)take(c);
        return;
    }
    struct key *k = calloc(pairs ? pairs : 1, sizeof *k);
    FUZZ_CHECK(k != NULL);
    bool all = true;
    for (uint32_t i = 0; i < pairs; i++) {
        struct mp_cur kc = take(c);
        k[i].val = take(c);
        struct mp_cur peek = kc;
        struct mp_item it;
        FUZZ_CHECK(mp_next(&peek, &it) == 0);
        if (it.type == MP_STR) {
            k[i].p = it.data.p;
            k[i].n = it.data.n;
            k[i].comparable = fuzz_utf8_valid(it.data.p, it.data.n) && !memchr(it.data.p, 0, it.data.n);
        } else {
            /* protocol.md §3: a non-string key is its own JSON text. It must
             * encode alone (it nests less than inside the map), and that
             * text must read back to the key. */
            size_t kn = (size_t)(kc.end - kc.p);
            struct tojson_buf kb;
            k[i].owned = malloc(tojson_bound(kn));
            FUZZ_CHECK(k[i].owned != NULL);
            tojson_buf_init(&kb, k[i].owned, tojson_bound(kn));
            FUZZ_CHECK(tojson_encode(&kb, kc.p, kn) == SL_OK);
            bool ok;
            struct json_object *kj = fuzz_json_parse(kb.p, kb.len, &ok);
            FUZZ_CHECK(ok);
            struct mp_cur again = kc;
            check_value(&again, kj);
            json_object_put(kj);
            k[i].p = (const uint8_t *)kb.p;
            k[i].n = kb.len;
            k[i].comparable = !memchr(kb.p, 0, kb.len);
        }
        all = all && k[i].comparable;
    }
    if (all) {
        size_t distinct = 0;
        for (uint32_t i = 0; i < pairs; i++) {
            bool last = true;
            for (uint32_t m = i + 1; m < pairs && last; m++)
                last = !(k[m].n == k[i].n && memcmp(k[m].p, k[i].p, k[i].n) == 0);
            if (!last)
                continue;
            distinct++;
            char *name = malloc(k[i].n + 1);
            FUZZ_CHECK(name != NULL);
            memcpy(name, k[i].p, k[i].n);
            name[k[i].n] = '\0';
            struct json_object *v = NULL;
            FUZZ_CHECK(json_object_object_get_ex(j, name, &v));
            check_value(&k[i].val, v);
            free(name);
        }
        FUZZ_CHECK(distinct == have);
    }
    for (uint32_t i = 0; i < pairs; i++)
        free(k[i].owned);
    free(k);
}

/* Read one object at *c and check that j is its JSON. */
static void check_value(struct mp_cur *c, struct json_object *j)
{
    struct mp_item it;
    FUZZ_CHECK(mp_next(c, &it) == 0);
    switch (it.type) {
    case MP_NIL: FUZZ_CHECK(j == NULL); break;
    case MP_BOOL:
        FUZZ_CHECK(json_object_is_type(j, json_type_boolean) &&
                   json_object_get_boolean(j) == (json_bool)it.b);
        break;
    case MP_UINT:
        FUZZ_CHECK(json_object_is_type(j, json_type_int));
        if (it.u <= (uint64_t)INT64_MAX)
            FUZZ_CHECK(json_object_get_int64(j) == (int64_t)it.u);
        else
            FUZZ_CHECK(json_object_get_uint64(j) == it.u);
        break;
    case MP_INT: FUZZ_CHECK(json_object_is_type(j, json_type_int) && json_object_get_int64(j) == it.i); break;
    case MP_FLOAT:
        if (isnan(it.f)) {
            FUZZ_CHECK(json_str_is(j, "NaN"));
        } else if (isinf(it.f)) {
            FUZZ_CHECK(json_str_is(j, it.f > 0 ? "Infinity" : "-Infinity"));
        } else {
            /* A float stays a float in JSON ("2.0"), and reads back exact. */
            FUZZ_CHECK(json_object_is_type(j, json_type_double));
            double d = json_object_get_double(j);
            FUZZ_CHECK(d == it.f && signbit(d) == signbit(it.f));
        }
        break;
    case MP_STR:
        FUZZ_CHECK(json_object_is_type(j, json_type_string));
        if (fuzz_utf8_valid(it.data.p, it.data.n))
            FUZZ_CHECK((size_t)json_object_get_string_len(j) == it.data.n &&
                       (it.data.n == 0 || memcmp(json_object_get_string(j), it.data.p, it.data.n) == 0));
        break;
    case MP_BIN:
        FUZZ_CHECK(json_object_is_type(j, json_type_string));
        FUZZ_CHECK(is_base64_of(json_object_get_string(j), (size_t)json_object_get_string_len(j), it.data.p,
                                it.data.n));
        break;
    case MP_EXT: {
        struct json_object *t = NULL, *d = NULL;
        FUZZ_CHECK(json_object_is_type(j, json_type_object) && json_object_object_length(j) == 2);
        FUZZ_CHECK(json_object_object_get_ex(j, "ext", &t) && json_object_object_get_ex(j, "data", &d));
        FUZZ_CHECK(json_object_is_type(t, json_type_int) && json_object_get_int64(t) == it.ext_type);
        FUZZ_CHECK(json_object_is_type(d, json_type_string));
        FUZZ_CHECK(is_base64_of(json_object_get_string(d), (size_t)json_object_get_string_len(d), it.data.p,
                                it.data.n));
        break;
    }
    case MP_ARRAY:
        FUZZ_CHECK(json_object_is_type(j, json_type_array) && json_object_array_length(j) == it.n);
        for (uint32_t i = 0; i < it.n; i++)
            check_value(c, json_object_array_get_idx(j, i));
        break;
    case MP_MAP: check_map(c, it.n, j); break;
    }
}

static void check_builders(const uint8_t *data, size_t size)
{
    size_t cap = 6 * size + 2;
    char *s = malloc(cap);
    FUZZ_CHECK(s != NULL);
    struct tojson_buf b;
    tojson_buf_init(&b, s, cap);
    tojson_str(&b, data, size);
    FUZZ_CHECK(!b.overflow && b.len <= cap);
    bool ok;
    struct json_object *j = fuzz_json_parse(b.p, b.len, &ok);
    FUZZ_CHECK(ok && json_object_is_type(j, json_type_string));
    bool valid = fuzz_utf8_valid(data, size);
    FUZZ_CHECK(tojson_utf8_valid(data, size) == valid);
    if (valid)
        FUZZ_CHECK((size_t)json_object_get_string_len(j) == size &&
                   (size == 0 || memcmp(json_object_get_string(j), data, size) == 0));
    json_object_put(j);
    tojson_buf_init(&b, s, 2);
    tojson_str(&b, NULL, 0); /* a nil slice: "" */
    FUZZ_CHECK(!b.overflow && b.len == 2 && memcmp(s, "\"\"", 2) == 0);
    free(s);

    size_t bn = 4 * ((size + 2) / 3);
    char *e = malloc(bn ? bn : 1);
    FUZZ_CHECK(e != NULL);
    FUZZ_CHECK(tojson_base64(e, data, size) == bn);
    FUZZ_CHECK(is_base64_of(e, bn, data, size));
    free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char prefix[] = "{\"body\":"; /* as topics_data_json has written before the body */
    const size_t pre = sizeof prefix - 1;

    check_builders(data, size);

    size_t bound = tojson_bound(size);
    char *out = malloc(pre + bound);
    FUZZ_CHECK(out != NULL);
    struct tojson_buf b;
    tojson_buf_init(&b, out, pre + bound);
    tojson_raw(&b, prefix, pre);
    enum sl_err rc = tojson_encode(&b, data, size);
    FUZZ_CHECK(rc == SL_OK || rc == SL_DECODE);
    if (mp_check(data, size, SL_MP_MAX_DEPTH) != 0)
        FUZZ_CHECK(rc == SL_DECODE);
    FUZZ_CHECK(memcmp(out, prefix, pre) == 0);
    if (rc != SL_OK) {
        FUZZ_CHECK(b.len == pre && !b.overflow);
        free(out);
        return 0;
    }
    size_t len = b.len - pre;
    FUZZ_CHECK(!b.overflow && len >= 1 && len <= bound);

    bool ok;
    struct json_object *j = fuzz_json_parse(out + pre, len, &ok);
    FUZZ_CHECK(ok);
    struct mp_cur c;
    mp_cur_init(&c, data, size);
    check_value(&c, j);
    FUZZ_CHECK(mp_cur_left(&c) == 0);
    json_object_put(j);

    /* Short of room by 1..len bytes: refused cleanly, nothing overrun. */
    size_t short_by = 1 + (size_t)data[0] % len;
    char *tight = malloc(pre + len - short_by);
    FUZZ_CHECK(tight != NULL);
    tojson_buf_init(&b, tight, pre + len - short_by);
    tojson_raw(&b, prefix, pre);
    FUZZ_CHECK(tojson_encode(&b, data, size) == SL_TOOBIG);
    FUZZ_CHECK(b.len == pre && b.overflow);
    free(tight);
    free(out);
    return 0;
}
