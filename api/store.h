/* SPDX-License-Identifier: Apache-2.0 */
/* store.h - the operator API's PostgreSQL side: a small pool of libpq
 * connections and one function per endpoint. PostgreSQL builds each JSON
 * document itself (json_build_object, json_agg), so a reply is one text
 * value handed through: no JSON is assembled in C.
 *
 * Every call blocks (libpq, synchronous) on the calling thread, waiting at
 * most the pool's timeout for a free connection. Thread-safe: each call
 * takes a connection for its duration. */
#ifndef API_STORE_H
#define API_STORE_H
#include <stdbool.h>
#include <stddef.h>

#include "cmdreq.h"
#include "route.h"

enum store_rc {
    STORE_OK = 0,
    STORE_NOT_FOUND,   /* no such device or command: 404 */
    STORE_BAD,         /* PostgreSQL refused a value (SQLSTATE class 22): 400 */
    STORE_CONFLICT,    /* refused by a rule (e.g. the device's queue is full): 409 */
    STORE_UNAVAILABLE, /* no connection (PostgreSQL down, pool busy past the timeout): 503 */
    STORE_ERROR,       /* anything else (logged): 500 */
};

struct store;

/* conninfo: libpq keyword string or URI ("" = PG* variables), copied.
 * conns: connections at most (made on first use, remade after a failure);
 * wait_ms: how long a call waits for a free one. NULL on out of memory. */
struct store *store_new(const char *conninfo, unsigned conns, unsigned wait_ms);
void store_destroy(struct store **s);

/* Every function below: on STORE_OK, *json is a NUL-terminated document the
 * caller frees, and *len its length; otherwise *json is NULL. */

/* GET /v1/devices: {"devices":[...], "next": id or null}. */
enum store_rc store_devices(struct store *s, const struct route_query *q, char **json, size_t *len);
/* GET /v1/devices/{id}: the device with its 10 newest sessions. */
enum store_rc store_device(struct store *s, const char *dev, char **json, size_t *len);
/* GET /v1/devices/{id}/telemetry: {"device", "rows":[...], "next_before"}.
 * STORE_NOT_FOUND when the device is unknown and has no rows. */
enum store_rc store_telemetry(struct store *s, const char *dev, const struct route_query *q, char **json,
                              size_t *len);
/* DELETE /v1/devices/{id}/data: every stored row of the device, in one
 * transaction: {"device", "deleted": {table: rows}}. */
enum store_rc store_delete_data(struct store *s, const char *dev, char **json, size_t *len);

/* POST /v1/devices/{id}/commands: store command id (queued, or rejected:
 * queue false and the device offline now). STORE_NOT_FOUND: no such
 * device; STORE_CONFLICT: it has max_queued pending commands already. */
enum store_rc store_submit(struct store *s, const char *dev, const char *id, const struct cmdreq *req,
                           int64_t max_queued, char **json, size_t *len);
/* DELETE /v1/devices/{id}/connection: ask the persister to close the
 * device's open session. STORE_CONFLICT: it is not connected. */
enum store_rc store_kick(struct store *s, const char *dev, char **json, size_t *len);
/* GET /v1/commands/{id}. */
enum store_rc store_command(struct store *s, const char *id, char **json, size_t *len);

/* A round trip on one connection (for /readyz). */
bool store_ping(struct store *s);

#endif
