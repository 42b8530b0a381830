/* SPDX-License-Identifier: Apache-2.0 */
/* route.h - the operator API's routing and request parsing: method + path
 * -> route, query string -> typed parameters, timestamps, ids. Pure: no
 * I/O, no allocation, no logging; the HTTP shell (server.c) feeds it what
 * libmicrohttpd parsed, and tests feed it strings (docs/api.md, docs/api.yaml). */
#ifndef API_ROUTE_H
#define API_ROUTE_H
#include <stdbool.h>
#include <stdint.h>

#include "sl/limits.h"

enum route_id {
    ROUTE_HEALTHZ = 1, /* GET /healthz */
    ROUTE_READYZ,      /* GET /readyz */
    ROUTE_METRICS,     /* GET /metrics */
    ROUTE_DEVICES,     /* GET /v1/devices */
    ROUTE_DEVICE,      /* GET /v1/devices/{id} */
    ROUTE_TELEMETRY,   /* GET /v1/devices/{id}/telemetry */
    ROUTE_DATA,        /* DELETE /v1/devices/{id}/data */
    ROUTE_CONNECTION,  /* DELETE /v1/devices/{id}/connection */
    ROUTE_SUBMIT,      /* POST /v1/devices/{id}/commands */
    ROUTE_COMMAND,     /* GET /v1/commands/{id} */
    ROUTE_COUNT
};

enum route_rc {
    ROUTE_OK = 0,
    ROUTE_NOT_FOUND,  /* no such path: 404 */
    ROUTE_BAD_METHOD, /* the path exists, not with this method: 405 */
    ROUTE_BAD_ID,     /* {id} outside [A-Za-z0-9._:-]{1,64}: 400 */
    ROUTE_BAD_QUERY,  /* a query parameter is malformed: 400 */
};

/* What a route needs. */
enum route_scope {
    ROUTE_OPEN = 0, /* no token (health, metrics) */
    ROUTE_READ,     /* a read-only or read-write token */
    ROUTE_WRITE,    /* a read-write token */
};

struct route {
    enum route_id id;
    enum route_scope scope;
    char arg[SL_DEV_MAX + 1]; /* {id}: a device id, or a command id for ROUTE_COMMAND; "" if none */
};

/* Match an HTTP method ("GET", ...) and a decoded path (no query string).
 * A trailing slash is not the same path. Fills *r on ROUTE_OK (and r->id
 * with ROUTE_BAD_METHOD, so the shell can name the allowed method). */
enum route_rc route_match(const char *method, const char *path, struct route *r);

/* The one method a route takes (for Allow headers). */
const char *route_method(enum route_id id);
/* A short fixed name for metrics labels and logs ("devices", "telemetry"...). */
const char *route_name(enum route_id id);

/* ---- query parameters ---------------------------------------------------- */

#define ROUTE_LIMIT_DEFAULT 100
#define ROUTE_LIMIT_MAX     1000

struct route_query {
    int64_t limit;              /* 1..ROUTE_LIMIT_MAX, default ROUTE_LIMIT_DEFAULT */
    char after[SL_DEV_MAX + 1]; /* devices: keyset cursor ("" = from the start) */
    char prefix[SL_DEV_MAX + 1];
    int online;             /* devices: -1 any, 0 offline, 1 online */
    bool has_from, has_to;  /* telemetry: received_at in [from, to) */
    int64_t from_us, to_us; /* microseconds since the epoch, UTC */
    bool has_before;        /* telemetry: seq < before (the next page) */
    int64_t before;
};

/* Look up a query argument by name: its value, or NULL if absent. */
typedef const char *route_arg_fn(void *ud, const char *key);

/* Parse the parameters route `id` takes (others are ignored). ROUTE_OK, or
 * ROUTE_BAD_QUERY with *why saying what is wrong (a static string). */
enum route_rc route_query_parse(enum route_id id, route_arg_fn *get, void *ud, struct route_query *q,
                                const char **why);

/* A timestamp: integer milliseconds since the epoch, or RFC 3339
 * ("2026-12-03T06:30:00Z", fraction and +HH:MM offset allowed). *us =
 * microseconds since the epoch. Returns false on anything else. */
bool route_parse_time(const char *s, int64_t *us);

/* A decimal integer in [min, max], nothing else. */
bool route_parse_int(const char *s, int64_t min, int64_t max, int64_t *v);

/* Whether s (NUL-terminated) is a device or command id. */
bool route_valid_id(const char *s);

#endif
