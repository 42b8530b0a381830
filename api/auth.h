/* SPDX-License-Identifier: Apache-2.0 */
/* auth.h - bearer tokens of the operator API and their scopes.
 *
 * The tokens file (--tokens-file) has one token a line: NAME SCOPE TOKEN,
 * separated by blanks; SCOPE is `ro` (GET) or `rw` (everything); `#` starts
 * a comment line. NAME appears in logs and rate limits, never the token.
 * A token is 16 to 256 printable bytes without blanks. Only SHA-256 digests
 * of the tokens are kept, and a presented token is compared with every one
 * in constant time. Pure: no I/O (the caller reads the file). */
#ifndef API_AUTH_H
#define API_AUTH_H
#include <stdbool.h>
#include <stddef.h>

#define AUTH_NAME_MAX   64
#define AUTH_TOKEN_MIN  16
#define AUTH_TOKEN_MAX  256
#define AUTH_TOKENS_MAX 1024

enum auth_rc {
    AUTH_OK = 0,
    AUTH_MISSING, /* no Authorization header, or not "Bearer ...": 401 */
    AUTH_BAD,     /* a token no line has: 401 */
    AUTH_SCOPE,   /* a read-only token for a write: 403 */
};

struct auth;

/* Parse the file's text (n bytes). NULL on a malformed line or no token at
 * all, with a one-line reason (and the line number) in err; or out of
 * memory. The caller may wipe text afterwards: nothing points into it. */
struct auth *auth_parse(const char *text, size_t n, char *err, size_t errcap);
void auth_destroy(struct auth **a);
/* Tokens held. */
unsigned auth_count(const struct auth *a);

/* Check an Authorization header value (NULL = absent) for a request that
 * writes (write) or only reads. On AUTH_OK and AUTH_SCOPE, *name is the
 * token's NAME (valid until auth_destroy). Thread-safe (read-only). */
enum auth_rc auth_check(const struct auth *a, const char *header, bool write, const char **name);

#endif
