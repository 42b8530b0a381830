/* SPDX-License-Identifier: Apache-2.0 */
/* server.h - the operator API's HTTP shell (libmicrohttpd): reads requests,
 * asks route.c what they are, auth.c who sent them, ratelim.c whether they
 * may, store.c for the answer, and writes JSON replies (docs/api.md).
 *
 * libmicrohttpd runs `threads` threads, each with its own epoll set; a
 * request is handled on its connection's thread and blocks it for the
 * store call, so threads = the store's connections is the natural size. */
#ifndef API_SERVER_H
#define API_SERVER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "ratelim.h"
#include "route.h"
#include "sl/stat.h"
#include "store.h"

/* What the server counts (relaxed atomics, written by the request threads);
 * main.c exports it (sluice_api_*). */
enum server_class { SERVER_2XX, SERVER_4XX, SERVER_5XX, SERVER_CLASSES };
enum server_refusal {
    SERVER_REFUSED_AUTH,  /* 401 */
    SERVER_REFUSED_SCOPE, /* 403 */
    SERVER_REFUSED_RATE,  /* 429 */
    SERVER_REFUSED_SIZE,  /* 413 */
    SERVER_REFUSALS
};
struct server_stats {
    _Atomic uint64_t requests[ROUTE_COUNT][SERVER_CLASSES]; /* [0] = no route */
    _Atomic uint64_t refused[SERVER_REFUSALS];
    struct stat_hist seconds; /* request handling time, first byte to reply queued */
};
void server_stats_init(struct server_stats *s);

struct server_cfg {
    const char *listen;    /* "host:port" ("*:8080", "[::1]:8080") */
    unsigned threads;      /* libmicrohttpd's thread pool */
    unsigned max_conns;    /* connections at once, all clients */
    unsigned per_ip;       /* connections at once from one address */
    unsigned timeout_s;    /* an idle connection is closed after this */
    size_t max_body;       /* request body bytes at most (413 beyond) */
    int64_t max_queued;    /* pending commands per device at most (409 beyond) */
    const char *tls_cert;  /* PEM text, or NULL for plain HTTP */
    const char *tls_key;   /* PEM text (with tls_cert) */
    struct auth *auth;     /* borrowed, read-only; replaced by server_swap_auth */
    struct ratelim *limit; /* borrowed */
    struct store *store;   /* borrowed */
    struct server_stats *stats;
};

struct server;

/* Bind and start serving. NULL on failure (logged): a bad address, a port
 * in use, TLS asked of a libmicrohttpd without it. */
struct server *server_new(const struct server_cfg *cfg);
/* Make next the tokens every later request is checked against (a SIGHUP
 * reload). Returns the tokens used until now: the caller owns them again
 * and may destroy them at once, as no request reads them after this
 * returns. Both are borrowed as cfg->auth is. Blocks until the requests
 * checking a token at that moment are done with it (microseconds). */
struct auth *server_swap_auth(struct server *s, struct auth *next);
/* Stop accepting, let requests in progress finish, close everything. */
void server_destroy(struct server **s);

#endif
