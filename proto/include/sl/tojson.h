/* sl/tojson.h - msgpack -> JSON, and a small JSON text builder.
 *
 * Used for PostgreSQL jsonb (persister) and MQTT payloads (notifier). The
 * mapping rules (docs/protocol.md, "Body as JSON"):
 *   nil/bool/int/uint -> JSON literal; float -> shortest text that
 *   round-trips (first of %.15g/%.16g/%.17g that strtod reads back equal;
 *   an integer-valued float keeps ".0", e.g. 2.0, -0.0; exponents as printf
 *   writes them, e.g. 1e+300), NaN/Infinity/-Infinity -> those words as strings;
 *   str -> string, escaped, invalid UTF-8 replaced by U+FFFD;
 *   bin -> base64 string; ext -> {"ext":type,"data":"<base64>"};
 *   map keys that are not strings -> their JSON text, as a string. Such a
 *   key may itself contain non-string keys one level down; a third level
 *   is refused (SL_DECODE), as each level doubles the escaping.
 * Nesting deeper than SL_MP_MAX_DEPTH is refused; the writer is iterative,
 * so no input can overflow the stack. Nothing here allocates. */
#ifndef SL_TOJSON_H
#define SL_TOJSON_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/err.h"

/* A fixed output buffer; records overflow instead of growing. */
struct tojson_buf {
    char *p;
    size_t cap;
    size_t len;
    bool overflow;
};

void tojson_buf_init(struct tojson_buf *b, char *p, size_t cap);

/* Append the JSON of the one msgpack object in mp[0..n). SL_OK, SL_DECODE
 * (malformed, trailing bytes or too deep) or SL_TOOBIG (out of room). The
 * buffer is not NUL-terminated. On error b->len is back where it was (no
 * half-written JSON); on SL_TOOBIG b->overflow stays set. Never writes past
 * b->cap. */
enum sl_err tojson_encode(struct tojson_buf *b, const uint8_t *mp, size_t n);

/* An output size that always suffices for an n-byte msgpack input
 * (17 * n; the proof is in tojson.c). SIZE_MAX if that would overflow. */
size_t tojson_bound(size_t n);

/* Builder pieces for JSON written by hand (MQTT payloads). None allocates or
 * writes past cap; when out of room they set b->overflow and may leave a
 * partial piece, so check b->overflow once at the end. tojson_str repairs
 * invalid UTF-8 like tojson_encode. s may be NULL when n is 0 (a nil slice). */
void tojson_raw(struct tojson_buf *b, const char *s, size_t n);    /* as is */
void tojson_str(struct tojson_buf *b, const uint8_t *s, size_t n); /* quoted, escaped: <= 6*n+2 bytes */
void tojson_i64(struct tojson_buf *b, int64_t v);
void tojson_u64(struct tojson_buf *b, uint64_t v);

/* True if s[0..n) is well-formed UTF-8 (RFC 3629: no overlong forms,
 * surrogates or code points above U+10FFFF): exactly the text tojson_str
 * writes without repairing. */
bool tojson_utf8_valid(const uint8_t *s, size_t n);

/* Standard base64 (RFC 4648, padded) of n bytes into out; returns length. out needs 4*((n+2)/3). */
size_t tojson_base64(char *out, const uint8_t *in, size_t n);

#endif
