/* trust.c - fleet secrets and the deny list (see trust.h).
 *
 * The secrets are at most two byte strings; a token is checked against
 * each (constant time within token_check). The deny list is a sorted array
 * of ids, searched by bisection. A reload builds the new set completely,
 * then swaps it in under the write lock, so readers never see half of it;
 * old secret bytes are wiped (explicit_bzero) before they are freed. */
#define _GNU_SOURCE
#include "trust.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "sl/limits.h"
#include "sl/msg.h"
#include "sl/token.h"

struct secret {
    uint8_t *p;
    size_t n;
};

struct trust {
    pthread_rwlock_t lock;
    struct secret sec[2];
    int nsec;
    char (*denied)[SL_DEV_MAX + 1]; /* sorted, NUL-terminated */
    size_t ndenied;
};

/* Every example or test secret this repository has shipped in a place a
 * user could copy it from (deploy/, docs/, README, scripts). */
static const char *const shipped[] = {
    "change-me-fleet-secret",
    "demo-fleet-secret",
};

bool trust_secret_weak(const uint8_t *s, size_t n, const char **why)
{
    if (n < TRUST_SECRET_MIN) {
        *why = "shorter than 16 bytes";
        return true;
    }
    for (size_t i = 0; i < sizeof shipped / sizeof shipped[0]; i++)
        if (n == strlen(shipped[i]) && memcmp(s, shipped[i], n) == 0) {
            *why = "an example secret shipped with Sluice";
            return true;
        }
    return false;
}

struct trust *trust_new(void)
{
    struct trust *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    pthread_rwlock_init(&t->lock, NULL);
    return t;
}

static void wipe(struct secret *s)
{
    if (s->p) {
        explicit_bzero(s->p, s->n);
        free(s->p);
    }
    s->p = NULL;
    s->n = 0;
}

void trust_destroy(struct trust **pt)
{
    struct trust *t = *pt;
    if (!t)
        return;
    for (int i = 0; i < 2; i++)
        wipe(&t->sec[i]);
    free(t->denied);
    pthread_rwlock_destroy(&t->lock);
    free(t);
    *pt = NULL;
}

/* The next line of [p, end): its bytes without CR/LF; *p moves past it. */
static void next_line(const uint8_t **p, const uint8_t *end, const uint8_t **line, size_t *len)
{
    const uint8_t *s = *p, *e = memchr(s, '\n', (size_t)(end - s));
    if (!e)
        e = end;
    *p = e < end ? e + 1 : end;
    *line = s;
    *len = (size_t)(e - s);
    if (*len && s[*len - 1] == '\r')
        (*len)--;
}

int trust_set_secrets(struct trust *t, const uint8_t *file, size_t n, int *count, const char **why)
{
    struct secret got[2] = {{0}};
    int k = 0;
    const uint8_t *p = file, *end = file + n;
    while (p < end) {
        const uint8_t *line;
        size_t len;
        next_line(&p, end, &line, &len);
        if (len == 0)
            continue;
        if (k == 2) {
            *why = "more than two secrets (current, previous)";
            goto fail;
        }
        if (len > TRUST_SECRET_MAX) {
            *why = "a secret longer than 512 bytes";
            goto fail;
        }
        if (trust_secret_weak(line, len, why))
            goto fail;
        got[k].p = malloc(len);
        if (!got[k].p) {
            *why = "out of memory";
            goto fail;
        }
        memcpy(got[k].p, line, len);
        got[k].n = len;
        k++;
    }
    if (k == 0) {
        *why = "no secret";
        goto fail;
    }
    pthread_rwlock_wrlock(&t->lock);
    struct secret old[2] = {t->sec[0], t->sec[1]};
    t->sec[0] = got[0];
    t->sec[1] = got[1];
    t->nsec = k;
    pthread_rwlock_unlock(&t->lock);
    wipe(&old[0]);
    wipe(&old[1]);
    *count = k;
    return 0;
fail:
    wipe(&got[0]);
    wipe(&got[1]);
    return -1;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

int trust_set_denied(struct trust *t, const char *file, size_t n, const char **why, int *line_no)
{
    size_t cap = 16, cnt = 0;
    char(*ids)[SL_DEV_MAX + 1] = malloc(cap * sizeof *ids);
    if (!ids) {
        *why = "out of memory";
        return -1;
    }
    const uint8_t *p = (const uint8_t *)file, *end = p + n;
    int ln = 0;
    while (p < end) {
        const uint8_t *line;
        size_t len;
        next_line(&p, end, &line, &len);
        ln++;
        const uint8_t *hash = memchr(line, '#', len);
        if (hash)
            len = (size_t)(hash - line);
        while (len && (line[0] == ' ' || line[0] == '\t')) {
            line++;
            len--;
        }
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\t'))
            len--;
        if (len == 0)
            continue;
        if (!msg_valid_id(line, len)) {
            *why = "not a device id ([A-Za-z0-9._:-]{1,64})";
            *line_no = ln;
            free(ids);
            return -1;
        }
        if (cnt == cap) {
            char(*more)[SL_DEV_MAX + 1] = realloc(ids, 2 * cap * sizeof *ids);
            if (!more) {
                *why = "out of memory";
                free(ids);
                return -1;
            }
            ids = more;
            cap *= 2;
        }
        memcpy(ids[cnt], line, len);
        ids[cnt][len] = 0;
        cnt++;
    }
    qsort(ids, cnt, sizeof *ids, cmp_id);
    pthread_rwlock_wrlock(&t->lock);
    char(*old)[SL_DEV_MAX + 1] = t->denied;
    t->denied = ids;
    t->ndenied = cnt;
    pthread_rwlock_unlock(&t->lock);
    free(old);
    return (int)cnt;
}

bool trust_token_ok(struct trust *t, const uint8_t *dev, size_t n, const uint8_t *tok, size_t tn)
{
    bool ok = false;
    pthread_rwlock_rdlock(&t->lock);
    for (int i = 0; i < t->nsec && !ok; i++)
        ok = token_check(t->sec[i].p, t->sec[i].n, dev, n, tok, tn);
    pthread_rwlock_unlock(&t->lock);
    return ok;
}

bool trust_denied(struct trust *t, const uint8_t *dev, size_t n)
{
    if (n == 0 || n > SL_DEV_MAX)
        return false;
    char key[SL_DEV_MAX + 1];
    memcpy(key, dev, n);
    key[n] = 0;
    pthread_rwlock_rdlock(&t->lock);
    bool hit = t->ndenied && bsearch(key, t->denied, t->ndenied, sizeof *t->denied, cmp_id) != NULL;
    pthread_rwlock_unlock(&t->lock);
    return hit;
}

void trust_each_denied(struct trust *t, void (*cb)(void *ud, const char *dev, size_t n), void *ud)
{
    pthread_rwlock_rdlock(&t->lock);
    for (size_t i = 0; i < t->ndenied; i++)
        cb(ud, t->denied[i], strlen(t->denied[i]));
    pthread_rwlock_unlock(&t->lock);
}
