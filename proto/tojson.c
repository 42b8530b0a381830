/* SPDX-License-Identifier: Apache-2.0 */
/* tojson.c - msgpack -> JSON under the rules of docs/protocol.md §3, and a
 * tiny JSON text builder for hand-written payloads.
 *
 * tojson_encode() walks the msgpack with the bounded cursor of sl/mp.h and an
 * explicit stack of SL_MP_MAX_DEPTH frames: no recursion, so no input can
 * exhaust the C stack, and no allocation: output goes to the caller's fixed
 * buffer, which records overflow instead of growing.
 *
 * Output choices, fixed here so the persister and notifier agree byte for byte:
 * - floats: the shortest of %.15g/%.16g/%.17g that strtod reads back to the
 *   same double (a float32 is widened first, so the text is the exact
 *   value of the float32, e.g. 0.1f -> 0.10000000149011612). An
 *   integer-valued float keeps a ".0" ("2.0", "-0.0") so JSON readers that
 *   tell ints from floats (json-c, Python) still see a float; exponents
 *   stay as printf writes them ("1e+300"), which is valid JSON. Assumes
 *   LC_NUMERIC is "C" (no Sluice program calls setlocale).
 * - strings: '"' '\\' and the C0 controls are escaped (\b \f \n \r \t,
 *   others \u00XX); DEL and all valid non-ASCII pass through as UTF-8.
 *   Each maximal invalid UTF-8 subpart (bad lead byte, truncated
 *   sequence, overlong, surrogate, > U+10FFFF) becomes one U+FFFD.
 * - a map key that is not a string is written as its own JSON text inside a
 *   string: key 1 -> "1", key [1,"a"] -> "[1,\"a\"]". Such a key may itself
 *   hold non-string keys one level down (escaped twice); a third level is
 *   refused with SL_DECODE, because every level doubles the backslashes and
 *   an unbounded level would make the output exponential in the input.
 *
 * Deliberately not here: parsing JSON, pretty-printing, logging. */
#include "sl/tojson.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl/limits.h"
#include "sl/mp.h"

/* Deepest escape level: 0 = plain JSON, 1 = inside a non-string key, 2 =
 * inside a non-string key of a non-string key. tojson_bound() depends on it. */
#define KEY_NEST_MAX 2u

/* Worst output bytes per input byte, given KEY_NEST_MAX = 2 (see the proof
 * in tojson_bound). */
#define BOUND_FACTOR 17u

void tojson_buf_init(struct tojson_buf *b, char *p, size_t cap)
{
    b->p = p;
    b->cap = cap;
    b->len = 0;
    b->overflow = false;
}

/* Reserve n bytes at the end of b, or mark overflow and return NULL. A write
 * that does not fit writes nothing, so nothing ever lands past cap. */
static char *room(struct tojson_buf *b, size_t n)
{
    if (b->overflow || n > b->cap - b->len) {
        b->overflow = true;
        return NULL;
    }
    char *w = b->p + b->len;
    b->len += n;
    return w;
}

void tojson_raw(struct tojson_buf *b, const char *s, size_t n)
{
    char *w = room(b, n);
    if (w != NULL && n > 0)
        memcpy(w, s, n);
}

/* Append level-0 JSON text s at escape level lvl: every '"' and '\\' gets
 * 2^lvl - 1 backslashes in front (escaping it once per enclosing key). */
static void put(struct tojson_buf *b, unsigned lvl, const char *s, size_t n)
{
    if (lvl == 0) {
        tojson_raw(b, s, n);
        return;
    }
    size_t extra = ((size_t)1 << lvl) - 1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            char *w = room(b, extra);
            if (w == NULL)
                return;
            memset(w, '\\', extra);
        }
        tojson_raw(b, &s[i], 1);
    }
}

static void putc_lvl(struct tojson_buf *b, unsigned lvl, char c)
{
    put(b, lvl, &c, 1);
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if s starts with an
 * invalid one; *bad gets how many bytes the maximal invalid subpart spans
 * (Unicode's "substitution of maximal subparts": one U+FFFD each). */
static size_t utf8_seq(const uint8_t *s, size_t n, size_t *bad)
{
    uint8_t c = s[0];
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */

    *bad = 1;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong below U+0800 */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates D800-DFFF */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong below U+10000 */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0; /* continuation byte, C0/C1 overlong lead, F5-FF */
    }
    for (size_t i = 1; i < len; i++) {
        if (i >= n)
            goto invalid;
        uint8_t x = s[i];
        if (i == 1 ? (x < lo || x > hi) : (x < 0x80 || x > 0xbf))
            goto invalid;
        *bad = i + 1;
    }
    return len;
invalid:
    return 0;
}

bool tojson_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0, bad;
    while (i < n) {
        size_t len = utf8_seq(s + i, n - i, &bad);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}

/* The letter of JSON's two-character escape for c (\" \\ \b \f \n \r \t), or 0 when
 * c takes the \u00XX form. */
static char json_short_escape(uint8_t c)
{
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return 0;
    }
}

/* The quoted, escaped, UTF-8-repaired form of s, at escape level lvl. */
static void put_str(struct tojson_buf *b, unsigned lvl, const uint8_t *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0, run = 0; /* s[run..i) is pending text that needs no escape */

    putc_lvl(b, lvl, '"');
    while (i < n && !b->overflow) {
        uint8_t c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        size_t bad = 1, len = c < 0x80 ? 1 : utf8_seq(s + i, n - i, &bad);
        if (c >= 0x80 && len > 0) {
            i += len; /* valid multi-byte sequence: copied as is */
            continue;
        }
        put(b, lvl, (const char *)s + run, i - run);
        if (c >= 0x80) {
            put(b, lvl, "\xef\xbf\xbd", 3);
            i += bad;
        } else {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
            size_t en = 6;
            char short_esc = json_short_escape(c);
            if (short_esc) {
                e[1] = short_esc;
                en = 2;
            }
            put(b, lvl, e, en);
            i++;
        }
        run = i;
    }
    if (i > run) /* s may be NULL when n is 0 (a nil slice) */
        put(b, lvl, (const char *)s + run, i - run);
    putc_lvl(b, lvl, '"');
}

void tojson_str(struct tojson_buf *b, const uint8_t *s, size_t n)
{
    put_str(b, 0, s, n);
}

/* Decimal digits of v, right-aligned in buf[0..21); returns the start. */
static char *u64_text(char buf[21], uint64_t v)
{
    char *p = buf + 21;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return p;
}

void tojson_u64(struct tojson_buf *b, uint64_t v)
{
    char buf[21];
    char *p = u64_text(buf, v);
    tojson_raw(b, p, (size_t)(buf + 21 - p));
}

void tojson_i64(struct tojson_buf *b, int64_t v)
{
    char buf[21];
    /* Negate in unsigned arithmetic: -INT64_MIN does not fit an int64_t. */
    uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char *p = u64_text(buf, m);
    if (v < 0)
        *--p = '-';
    tojson_raw(b, p, (size_t)(buf + 21 - p));
}

/* The text float_text's printf loop would give, without printf or strtod,
 * for the values most telemetry carries: short decimals (21.5, 0.25,
 * 1013.2). When d == m / 10^k as IEEE division rounds it (m an integer below
 * 10^15, k <= 6; both operands exact, so the quotient is the double nearest
 * m / 10^k, which is what strtod would read from its text), d lies within
 * half an ulp of m / 10^k, well inside %.15g's rounding step, so %.15g
 * prints m / 10^k's digits and strtod reads them back: the loop's first
 * answer. 1e-4 <= |d| < 1e15 is where %.15g prints no exponent. Returns 0
 * when d is not such a value. test_tojson checks it against the loop. */
static size_t float_short(char out[32], double d)
{
    static const double p10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
    double a = fabs(d);
    if (!(a >= 1e-4 && a < 1e15))
        return 0;
    for (unsigned k = 0; k < sizeof p10 / sizeof p10[0]; k++) {
        double m = a * p10[k];
        if (m >= 1e15)
            return 0;
        if (m != (double)(uint64_t)m || m / p10[k] != a)
            continue;
        uint64_t u = (uint64_t)m, p = (uint64_t)p10[k], fp = u % p;
        char ib[21], fb[21];
        const char *ip = u64_text(ib, u / p);
        size_t n = 0, ni = (size_t)(ib + 21 - ip);
        if (d < 0)
            out[n++] = '-';
        memcpy(out + n, ip, ni);
        n += ni;
        out[n++] = '.';
        if (fp == 0) {
            out[n++] = '0'; /* an integer-valued float keeps ".0" */
            return n;
        }
        /* p + fp is a 1 and then fp's k digits, leading zeros kept */
        const char *f = u64_text(fb, p + fp) + 1;
        size_t nf = k;
        while (f[nf - 1] == '0') /* %g drops trailing zeros */
            nf--;
        memcpy(out + n, f, nf);
        return n + nf;
    }
    return 0;
}

/* Shortest %.{15,16,17}g text of a finite d that reads back to d, with ".0"
 * appended when it would otherwise look like an integer. Returns its length
 * (at most 24 + 2: sign, 17 digits, '.', "e-308"). */
static size_t float_text(char out[32], double d)
{
    size_t fast = float_short(out, d);
    if (fast)
        return fast;
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(out, 32, "%.*g", prec, d);
        if (prec == 17 || strtod(out, NULL) == d)
            break;
    }
    if (n < 0 || n > 28)
        n = 0; /* cannot happen for a finite double: %.17g is <= 24 chars */
    if (strspn(out, "-0123456789") == (size_t)n) {
        out[n++] = '.';
        out[n++] = '0';
    }
    /* -0.0 == 0.0 for strtod's check above but %g keeps the sign: fine. */
    return (size_t)n;
}

static void put_float(struct tojson_buf *b, unsigned lvl, double d)
{
    if (isnan(d)) {
        put(b, lvl, "\"NaN\"", 5);
    } else if (isinf(d)) {
        if (d > 0)
            put(b, lvl, "\"Infinity\"", 10);
        else
            put(b, lvl, "\"-Infinity\"", 11);
    } else {
        char t[32];
        put(b, lvl, t, float_text(t, d));
    }
}

size_t tojson_base64(char *out, const uint8_t *in, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    return o;
}

/* A quoted base64 string. The alphabet holds no '"' or '\\', so only the
 * quotes need the escape level. */
static void put_b64(struct tojson_buf *b, unsigned lvl, struct sl_slice s)
{
    putc_lvl(b, lvl, '"');
    char *w = room(b, 4 * (((size_t)s.n + 2) / 3));
    if (w != NULL)
        tojson_base64(w, s.p, s.n);
    putc_lvl(b, lvl, '"');
}

/* One open container on the explicit stack. */
struct frame {
    uint64_t left;  /* items still to read (a map counts keys and values) */
    bool map;       /* '{' rather than '[' */
    bool first;     /* nothing written inside yet: no comma before the next */
    bool key_close; /* this container is a non-string key: close its quote */
};

enum sl_err tojson_encode(struct tojson_buf *b, const uint8_t *mp, size_t n)
{
    struct frame st[SL_MP_MAX_DEPTH];
    unsigned depth = 0, lvl = 0;
    size_t start = b->len;
    bool was_over = b->overflow;
    struct mp_cur c;
    enum sl_err rc = SL_OK;

    mp_cur_init(&c, mp, n);
    for (;;) {
        bool is_key = false;
        if (depth > 0) {
            struct frame *f = &st[depth - 1];
            if (f->left == 0) {
                putc_lvl(b, lvl, f->map ? '}' : ']');
                if (f->key_close) {
                    lvl--;
                    putc_lvl(b, lvl, '"');
                }
                if (--depth == 0)
                    break;
                continue;
            }
            is_key = f->map && f->left % 2 == 0;
            if (is_key || !f->map) {
                if (!f->first)
                    putc_lvl(b, lvl, ',');
            } else {
                putc_lvl(b, lvl, ':');
            }
            f->first = false;
            f->left--;
        }
        if (b->overflow) {
            rc = SL_TOOBIG; /* stop early: the rest cannot fit either */
            goto fail;
        }

        struct mp_item it;
        if (mp_next(&c, &it) != 0) {
            rc = SL_DECODE;
            goto fail;
        }
        bool key_close = false;
        if (is_key && it.type != MP_STR) {
            if (lvl == KEY_NEST_MAX) {
                rc = SL_DECODE;
                goto fail;
            }
            putc_lvl(b, lvl, '"');
            lvl++;
            key_close = true;
        }
        switch (it.type) {
        case MP_NIL: put(b, lvl, "null", 4); break;
        case MP_BOOL: put(b, lvl, it.b ? "true" : "false", it.b ? 4 : 5); break;
        case MP_UINT: tojson_u64(b, it.u); break; /* digits never need escaping */
        case MP_INT: tojson_i64(b, it.i); break;
        case MP_FLOAT: put_float(b, lvl, it.f); break;
        case MP_STR: put_str(b, lvl, it.data.p, it.data.n); break;
        case MP_BIN: put_b64(b, lvl, it.data); break;
        case MP_EXT:
            put(b, lvl, "{\"ext\":", 7);
            tojson_i64(b, it.ext_type);
            put(b, lvl, ",\"data\":", 8);
            put_b64(b, lvl, it.data);
            putc_lvl(b, lvl, '}');
            break;
        case MP_ARRAY:
        case MP_MAP:
            if (depth == SL_MP_MAX_DEPTH) {
                rc = SL_DECODE;
                goto fail;
            }
            st[depth].map = it.type == MP_MAP;
            st[depth].left = st[depth].map ? 2 * (uint64_t)it.n : it.n;
            st[depth].first = true;
            st[depth].key_close = key_close;
            depth++;
            key_close = false; /* closed when the container is */
            putc_lvl(b, lvl, it.type == MP_MAP ? '{' : '[');
            break;
        default: rc = SL_DECODE; goto fail;
        }
        if (key_close) {
            lvl--;
            putc_lvl(b, lvl, '"');
        }
        if (depth == 0)
            break; /* a top-level scalar */
    }
    if (b->overflow) {
        rc = SL_TOOBIG;
        goto fail;
    }
    if (mp_cur_left(&c) != 0) {
        rc = SL_DECODE; /* bytes after the object */
        goto fail;
    }
    return SL_OK;
fail:
    /* Leave no half-written JSON behind. Overflow stays recorded on TOOBIG so
     * a caller building a larger payload around this still notices. */
    b->len = start;
    if (rc != SL_TOOBIG)
        b->overflow = was_over;
    return rc;
}

/* Why BOUND_FACTOR * n suffices. Charge every output byte to an input item:
 * brackets to their container's header; the ',' or ':' before an item to
 * that item (at most one each); a non-string key's two quotes to the key.
 * Every item takes >= 1 input byte. A '"' or '\\' written at escape level l
 * costs 2^l <= 4 bytes; a key's own quotes are written one level below its
 * content, so they cost <= 2 each (4 for the pair).
 *   nil/bool/int (1..9 bytes): <= 20 chars, none escaped; worst a 1-byte
 *     nil as a key: 4 + 1 sep + 4 quotes = 9 per byte.
 *   float (5 or 9 bytes): <= 26 chars ("-1.2345678901234567e-308" or
 *     "-123...7.0"), or "-Infinity" with quotes: 9 + 2*4 + 1 + 4 = 22.
 *   str (header >= 1 byte): two quotes + sep = 2*4 + 1 = 9 for the header
 *     (a str key gets no extra quotes); each payload byte at most "\u00XX"
 *     (one backslash: 4 + 5 = 9), "\"" (2*4 = 8) or U+FFFD (3).
 *   bin (header >= 2 bytes): 2*4 + 1 + 4 = 13, payload 4 chars per 3 bytes
 *     rounded up, so bin8 of 1 byte: 17 per 3 bytes.
 *   ext (>= 3 bytes, fixext1 = d4 type data): {"ext":-128,"data":"XXXX"} is
 *     26 chars of which 6 quotes: 26 + 6*3 = 44 at level 2, + 1 sep + 4 key
 *     quotes = 49 <= 17*3; more data adds 4 chars per 3 bytes.
 *   array/map header (>= 1 byte): 2 brackets + 1 sep + 4 key quotes = 7.
 * The worst ratio is the ext's 49/3 < 17 (test_tojson.c checks random and
 * hand-built worst cases against it). */
size_t tojson_bound(size_t n)
{
    if (n > SIZE_MAX / BOUND_FACTOR)
        return SIZE_MAX;
    return BOUND_FACTOR * n;
}
