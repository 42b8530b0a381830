/* fuzz.h - what the fuzz targets of tests/fuzz/ share (docs/fuzzing.md).
 *
 * Each target is one file defining LLVMFuzzerTestOneInput. With SL_FUZZ
 * (clang, scripts/fuzz) it links libFuzzer; otherwise replay_main.c drives
 * it over files, so every build runs each target over its checked-in corpus
 * as a unit test. A target checks properties with FUZZ_CHECK, which aborts:
 * libFuzzer then saves the input as a crash like any sanitizer report. */
#ifndef SL_FUZZ_H
#define SL_FUZZ_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "sl/slice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Where FUZZ_CHECK reports: stderr, unless a target that silences stderr
 * around a noisy call set the real stream here. */
static inline FILE **fuzz_err_stream(void)
{
    static FILE *f;
    return &f;
}

static inline void fuzz_fail(const char *what, const char *file, int line)
{
    FILE *f = *fuzz_err_stream();
    fprintf(f ? f : stderr, "fuzz: property violated: %s (%s:%d)\n", what, file, line);
    abort();
}

#define FUZZ_CHECK(cond)                                                                                     \
    do {                                                                                                     \
        if (!(cond))                                                                                         \
            fuzz_fail(#cond, __FILE__, __LINE__);                                                            \
    } while (0)

/* True if s is empty or lies wholly inside p[0..n): a decoder's borrowed
 * slices never point outside the bytes it was given. */
static inline int fuzz_within(struct sl_slice s, const uint8_t *p, size_t n)
{
    uintptr_t a = (uintptr_t)s.p, lo = (uintptr_t)p;
    if (s.n == 0)
        return 1;
    return a >= lo && a - lo <= n && n - (a - lo) >= s.n;
}

/* True if p[0..n) is well-formed UTF-8 (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF). Independent of tojson.c's repair. */
static inline int fuzz_utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1fu;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0fu;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07u;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3fu);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

#endif
