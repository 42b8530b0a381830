/* SPDX-License-Identifier: Apache-2.0 */
/* route.c - paths, methods and query parameters of the operator API
 * (route.h). One table of paths; ids are checked against the wire alphabet
 * here, so nothing later has to think about quoting or path tricks ("..",
 * "%2F": libmicrohttpd has decoded the path, and a decoded slash or dot-dot
 * cannot pass the alphabet check as an id).
 *
 * Deliberately not here: authentication (auth.c), limits (ratelim.c), the
 * database (store.c), HTTP (server.c). */
#define _GNU_SOURCE
#include "route.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sl/msg.h"

struct route_def {
    enum route_id id;
    const char *method;
    enum route_scope scope;
    const char *name;
};

/* Indexed by enum route_id. */
static const struct route_def defs[ROUTE_COUNT] = {
    [ROUTE_HEALTHZ] = {ROUTE_HEALTHZ, "GET", ROUTE_OPEN, "healthz"},
    [ROUTE_READYZ] = {ROUTE_READYZ, "GET", ROUTE_OPEN, "readyz"},
    [ROUTE_METRICS] = {ROUTE_METRICS, "GET", ROUTE_OPEN, "metrics"},
    [ROUTE_DEVICES] = {ROUTE_DEVICES, "GET", ROUTE_READ, "devices"},
    [ROUTE_DEVICE] = {ROUTE_DEVICE, "GET", ROUTE_READ, "device"},
    [ROUTE_TELEMETRY] = {ROUTE_TELEMETRY, "GET", ROUTE_READ, "telemetry"},
    [ROUTE_DATA] = {ROUTE_DATA, "DELETE", ROUTE_WRITE, "data"},
    [ROUTE_CONNECTION] = {ROUTE_CONNECTION, "DELETE", ROUTE_WRITE, "connection"},
    [ROUTE_SUBMIT] = {ROUTE_SUBMIT, "POST", ROUTE_WRITE, "submit"},
    [ROUTE_COMMAND] = {ROUTE_COMMAND, "GET", ROUTE_READ, "command"},
};

const char *route_method(enum route_id id)
{
    return id > 0 && id < ROUTE_COUNT ? defs[id].method : "GET";
}

const char *route_name(enum route_id id)
{
    return id > 0 && id < ROUTE_COUNT ? defs[id].name : "other";
}

bool route_valid_id(const char *s)
{
    return msg_valid_id((const uint8_t *)s, strlen(s));
}

/* Copy the id segment [s, s+n) into r->arg if it is one. */
static bool take_id(struct route *r, const char *s, size_t n)
{
    if (n == 0 || n > SL_DEV_MAX || !msg_valid_id((const uint8_t *)s, n))
        return false;
    memcpy(r->arg, s, n);
    r->arg[n] = '\0';
    return true;
}

static enum route_rc found(const char *method, enum route_id id, struct route *r)
{
    r->id = id;
    r->scope = defs[id].scope;
    /* HEAD is GET without the body (libmicrohttpd drops it). */
    if (strcmp(method, defs[id].method) == 0 ||
        (strcmp(method, "HEAD") == 0 && !strcmp(defs[id].method, "GET")))
        return ROUTE_OK;
    return ROUTE_BAD_METHOD;
}

enum route_rc route_match(const char *method, const char *path, struct route *r)
{
    memset(r, 0, sizeof *r);
    if (!strcmp(path, "/healthz"))
        return found(method, ROUTE_HEALTHZ, r);
    if (!strcmp(path, "/readyz"))
        return found(method, ROUTE_READYZ, r);
    if (!strcmp(path, "/metrics"))
        return found(method, ROUTE_METRICS, r);
    if (!strcmp(path, "/v1/devices"))
        return found(method, ROUTE_DEVICES, r);
    static const char dev[] = "/v1/devices/", cmd[] = "/v1/commands/";
    if (!strncmp(path, cmd, sizeof cmd - 1)) {
        const char *id = path + sizeof cmd - 1;
        if (strchr(id, '/'))
            return ROUTE_NOT_FOUND;
        return take_id(r, id, strlen(id)) ? found(method, ROUTE_COMMAND, r) : ROUTE_BAD_ID;
    }
    if (strncmp(path, dev, sizeof dev - 1) != 0)
        return ROUTE_NOT_FOUND;
    const char *id = path + sizeof dev - 1;
    const char *slash = strchr(id, '/');
    size_t n = slash ? (size_t)(slash - id) : strlen(id);
    enum route_id which;
    if (!slash)
        which = ROUTE_DEVICE;
    else if (!strcmp(slash, "/telemetry"))
        which = ROUTE_TELEMETRY;
    else if (!strcmp(slash, "/data"))
        which = ROUTE_DATA;
    else if (!strcmp(slash, "/connection"))
        which = ROUTE_CONNECTION;
    else if (!strcmp(slash, "/commands"))
        which = ROUTE_SUBMIT;
    else
        return ROUTE_NOT_FOUND;
    if (!take_id(r, id, n))
        return ROUTE_BAD_ID;
    return found(method, which, r);
}

/* ---- values ------------------------------------------------------------- */

bool route_parse_int(const char *s, int64_t min, int64_t max, int64_t *v)
{
    if (!s || !*s)
        return false;
    const char *p = s;
    bool neg = *p == '-';
    if (neg)
        p++;
    if (!*p || strlen(p) > 19)
        return false;
    uint64_t acc = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        acc = acc * 10u + (uint64_t)(*p - '0');
    }
    if (acc > (uint64_t)INT64_MAX)
        return false;
    int64_t x = neg ? -(int64_t)acc : (int64_t)acc;
    if (x < min || x > max)
        return false;
    *v = x;
    return true;
}

/* n digits at s as a number; false if any is not a digit. */
static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int k = 0; k < n; k++) {
        if (s[k] < '0' || s[k] > '9')
            return false;
        v = v * 10 + (s[k] - '0');
    }
    *out = v;
    return true;
}

bool route_parse_time(const char *s, int64_t *us)
{
    if (!s || !*s)
        return false;
    int64_t ms;
    /* 10^15 ms is year ~33,700: anything larger is not a time. */
    if (route_parse_int(s, -1000000000000000LL, 1000000000000000LL, &ms)) {
        *us = ms * 1000;
        return true;
    }
    /* YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM) */
    int Y, M, D, h, m, sec;
    if (strlen(s) < 20 || !digits(s, 4, &Y) || s[4] != '-' || !digits(s + 5, 2, &M) || s[7] != '-' ||
        !digits(s + 8, 2, &D) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s + 11, 2, &h) ||
        s[13] != ':' || !digits(s + 14, 2, &m) || s[16] != ':' || !digits(s + 17, 2, &sec))
        return false;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return false;
    const char *p = s + 19;
    int64_t frac_us = 0;
    if (*p == '.') {
        p++;
        int nd = 0;
        int64_t scale = 100000;
        while (*p >= '0' && *p <= '9') {
            if (nd < 6) {
                frac_us += (*p - '0') * scale;
                scale /= 10;
            }
            nd++;
            p++;
        }
        if (nd == 0 || nd > 9)
            return false;
    }
    int off_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return false;
        off_min = (oh * 60 + om) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return false;
    }
    if (*p)
        return false;
    struct tm tm = {0};
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    /* timegm normalizes: 2026-02-31 would become March 3rd. Refuse it. */
    if (tm.tm_mday != D || tm.tm_mon != M - 1)
        return false;
    *us = ((int64_t)t - (int64_t)off_min * 60) * 1000000 + frac_us;
    return true;
}

/* ---- query -------------------------------------------------------------- */

static bool copy_id(const char *v, char *out)
{
    if (!route_valid_id(v))
        return false;
    strcpy(out, v); /* valid ids are at most SL_DEV_MAX bytes */
    return true;
}

enum route_rc route_query_parse(enum route_id id, route_arg_fn *get, void *ud, struct route_query *q,
                                const char **why)
{
    memset(q, 0, sizeof *q);
    q->limit = ROUTE_LIMIT_DEFAULT;
    q->online = -1;
    *why = NULL;
    if (id != ROUTE_DEVICES && id != ROUTE_TELEMETRY)
        return ROUTE_OK;
    const char *v = get(ud, "limit");
    if (v && !route_parse_int(v, 1, ROUTE_LIMIT_MAX, &q->limit)) {
        *why = "limit must be an integer from 1 to 1000";
        return ROUTE_BAD_QUERY;
    }
    if (id == ROUTE_DEVICES) {
        if ((v = get(ud, "after")) && !copy_id(v, q->after)) {
            *why = "after must be a device id";
            return ROUTE_BAD_QUERY;
        }
        /* A prefix is any start of an id: the id alphabet, at most 64 bytes. */
        if ((v = get(ud, "prefix")) && *v && !copy_id(v, q->prefix)) {
            *why = "prefix must be the start of a device id";
            return ROUTE_BAD_QUERY;
        }
        if ((v = get(ud, "online"))) {
            if (!strcmp(v, "true"))
                q->online = 1;
            else if (!strcmp(v, "false"))
                q->online = 0;
            else {
                *why = "online must be true or false";
                return ROUTE_BAD_QUERY;
            }
        }
        return ROUTE_OK;
    }
    if ((v = get(ud, "from"))) {
        if (!route_parse_time(v, &q->from_us)) {
            *why = "from must be RFC 3339 or milliseconds since the epoch";
            return ROUTE_BAD_QUERY;
        }
        q->has_from = true;
    }
    if ((v = get(ud, "to"))) {
        if (!route_parse_time(v, &q->to_us)) {
            *why = "to must be RFC 3339 or milliseconds since the epoch";
            return ROUTE_BAD_QUERY;
        }
        q->has_to = true;
    }
    if ((v = get(ud, "before"))) {
        if (!route_parse_int(v, 1, INT64_MAX, &q->before)) {
            *why = "before must be a seq (a positive integer)";
            return ROUTE_BAD_QUERY;
        }
        q->has_before = true;
    }
    return ROUTE_OK;
}
