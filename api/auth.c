/* SPDX-License-Identifier: Apache-2.0 */
/* auth.c - the tokens file and bearer checks (auth.h).
 *
 * Why digests: a comparison of fixed-size SHA-256 digests with
 * CRYPTO_memcmp against every line takes the same time whatever the
 * presented token and wherever it matches, and the process keeps no token
 * text after parsing.
 *
 * Deliberately not here: reading the file, reloading it (restart the API),
 * HTTP. */
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct auth_entry {
    char name[AUTH_NAME_MAX + 1];
    bool write;
    unsigned char digest[SHA256_DIGEST_LENGTH];
};

struct auth {
    struct auth_entry *e;
    unsigned n;
};

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Next blank-separated field of [*p, end): start and length, *p after it. */
static size_t field(const char **p, const char *end, const char **start)
{
    while (*p < end && blank(**p))
        (*p)++;
    *start = *p;
    while (*p < end && !blank(**p))
        (*p)++;
    return (size_t)(*p - *start);
}

static bool printable(const char *s, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if ((unsigned char)s[k] <= 0x20 || (unsigned char)s[k] >= 0x7f)
            return false;
    return true;
}

struct auth *auth_parse(const char *text, size_t n, char *err, size_t errcap)
{
    struct auth *a = calloc(1, sizeof *a);
    if (a)
        a->e = calloc(AUTH_TOKENS_MAX, sizeof *a->e);
    if (!a || !a->e) {
        snprintf(err, errcap, "out of memory");
        auth_destroy(&a);
        return NULL;
    }
    const char *p = text, *end = text + n;
    unsigned line = 0;
    while (p < end) {
        line++;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        if (le > p && le[-1] == '\r')
            le--;
        const char *q = p;
        p = eol ? eol + 1 : end;
        const char *f1, *f2, *f3, *f4;
        size_t n1 = field(&q, le, &f1);
        if (n1 == 0 || f1[0] == '#')
            continue;
        size_t n2 = field(&q, le, &f2), n3 = field(&q, le, &f3), n4 = field(&q, le, &f4);
        const char *why = NULL;
        if (n2 == 0 || n3 == 0 || n4 != 0)
            why = "want NAME SCOPE TOKEN";
        else if (n1 > AUTH_NAME_MAX || !printable(f1, n1))
            why = "NAME: at most 64 printable bytes";
        else if (!((n2 == 2 && !memcmp(f2, "ro", 2)) || (n2 == 2 && !memcmp(f2, "rw", 2))))
            why = "SCOPE: ro or rw";
        else if (n3 < AUTH_TOKEN_MIN || n3 > AUTH_TOKEN_MAX || !printable(f3, n3))
            why = "TOKEN: 16 to 256 printable bytes";
        else if (a->n >= AUTH_TOKENS_MAX)
            why = "too many tokens";
        if (why) {
            snprintf(err, errcap, "line %u: %s", line, why);
            auth_destroy(&a);
            return NULL;
        }
        struct auth_entry *e = &a->e[a->n++];
        memcpy(e->name, f1, n1);
        e->name[n1] = '\0';
        e->write = f2[1] == 'w';
        SHA256((const unsigned char *)f3, n3, e->digest);
    }
    if (a->n == 0) {
        snprintf(err, errcap, "no token");
        auth_destroy(&a);
        return NULL;
    }
    return a;
}

void auth_destroy(struct auth **ap)
{
    struct auth *a = *ap;
    if (!a)
        return;
    if (a->e)
        OPENSSL_cleanse(a->e, AUTH_TOKENS_MAX * sizeof *a->e);
    free(a->e);
    free(a);
    *ap = NULL;
}

unsigned auth_count(const struct auth *a)
{
    return a->n;
}

enum auth_rc auth_check(const struct auth *a, const char *header, bool write, const char **name)
{
    *name = NULL;
    static const char bearer[] = "Bearer ";
    if (!header || strncasecmp(header, bearer, sizeof bearer - 1) != 0)
        return AUTH_MISSING;
    const char *tok = header + sizeof bearer - 1;
    while (blank(*tok))
        tok++;
    size_t n = strlen(tok);
    while (n > 0 && blank(tok[n - 1]))
        n--;
    if (n == 0)
        return AUTH_MISSING;
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)tok, n, d);
    const struct auth_entry *hit = NULL;
    for (unsigned k = 0; k < a->n; k++) /* no early exit: the same time for any match */
        if (CRYPTO_memcmp(d, a->e[k].digest, sizeof d) == 0 && !hit)
            hit = &a->e[k];
    if (!hit)
        return AUTH_BAD;
    *name = hit->name;
    return write && !hit->write ? AUTH_SCOPE : AUTH_OK;
}
