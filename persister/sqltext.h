/* SPDX-License-Identifier: Apache-2.0 */
/* sqltext.h - pieces of SQL text written as literals into a buffer the
 * caller sized beforehand: devsum.c's devices upsert is a simple query of one
 * round trip, so its values go in the text, and this is the one place that
 * quotes them.
 *
 * Every function writes at out and returns how many bytes it wrote; none
 * writes a NUL, checks a capacity, allocates or fails: the caller's bound
 * (the sizes below) is what keeps it in the buffer. Pure: no I/O. */
#ifndef PERSISTER_SQLTEXT_H
#define PERSISTER_SQLTEXT_H
#include <stddef.h>
#include <stdint.h>

/* Bytes sqltext_lit writes at most for n bytes of input. */
#define SQLTEXT_LIT_MAX(n) (2u * (size_t)(n) + 3u)
/* Bytes sqltext_ts writes at most ('...': rows_fmt_us's 40 and the quotes). */
#define SQLTEXT_TS_MAX 42u

/* s (NUL-terminated) as it is, without its NUL: for the statement's own
 * words, never for values. */
size_t sqltext_put(char *out, const char *s);

/* s[0..n) as an escape string literal E'...', with every ' and \ doubled, so
 * it reads the same whatever standard_conforming_strings says. Other bytes
 * go as they are (UTF-8 included). s must hold no NUL byte (a text value
 * cannot; callers check, as devsum.c does). Writes at most
 * SQLTEXT_LIT_MAX(n) bytes. */
size_t sqltext_lit(char *out, const void *s, size_t n);

/* The UTC time `us` (microseconds since the epoch) as a quoted literal
 * 'YYYY-MM-DD HH:MM:SS.uuuuuu+00' (rows_fmt_us), with no cast. Writes at
 * most SQLTEXT_TS_MAX bytes. */
size_t sqltext_ts(char *out, int64_t us);

#endif
