/* SPDX-License-Identifier: Apache-2.0 */
/* sl/cmdstore.h - submitting a command to the durable queue
 * (persister/migrations/005): the one transaction that sluice-api (POST
 * /v1/devices/{id}/commands) and the notifier (an MQTT command with
 * "queue":true, --db) both run, so the two ways in cannot drift apart: the
 * same per-device cap, the same ordering lock, the same rows.
 *
 * In sl::pg (libpq), apart from sl::common, so that
 * the edge links no libpq. Blocks on the caller's connection; thread-safe
 * as far as the connection is the caller's alone. Never logs: the caller
 * decides what a failure is. */
#ifndef SL_CMDSTORE_H
#define SL_CMDSTORE_H
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A command as GET /v1/commands/{id} shows it (docs/api.yaml Command), of
 * the row c of commands. */
#define CMDSTORE_COMMAND_JSON                                                                                \
    "json_build_object('id', c.id, 'device', c.device_id, 'state', c.state, 'body', c.body, 'created_at',"   \
    " c.created_at, 'expires_at', c.expires_at, 'attempts', c.attempts, 'result', c.result, 'history',"      \
    " c.history)"

/* The statements cmdstore_submit executes by name: prepare each (name,
 * SQL) on every connection it is given. */
#define CMDSTORE_NSTMTS 2
extern const char *const cmdstore_stmts[CMDSTORE_NSTMTS][2];

struct cmdstore_cmd {
    const char *dev, *id; /* NUL-terminated, valid ids */
    const char *json;     /* the body as JSON text */
    const uint8_t *mp;    /* the body as msgpack: what the device gets */
    size_t mp_len;
    int64_t ttl_s;
    bool queue;         /* false: refused at once (stored as rejected) if the device is offline */
    int64_t max_queued; /* pending commands a device may have */
};

enum cmdstore_rc {
    CMDSTORE_OK = 0,    /* stored: queued, or rejected (queue false and the device offline now) */
    CMDSTORE_UNKNOWN,   /* no such device (it never connected) */
    CMDSTORE_FULL,      /* the device has max_queued pending commands already */
    CMDSTORE_DUPLICATE, /* a command with this id exists (stored before: nothing changed) */
    CMDSTORE_FAILED,    /* a statement failed: *failed is its result, the caller's to read and PQclear */
    CMDSTORE_NOMEM,
};

/* Store cmd in one transaction, under the device's advisory lock (one
 * device's submissions are serialized across processes: the cap holds, and
 * submission order is delivery order). On CMDSTORE_OK, *json is the
 * command as CMDSTORE_COMMAND_JSON shows it (malloc'd, the caller frees)
 * and *len its length; otherwise *json is NULL. On CMDSTORE_FAILED,
 * *failed and *what (the step: "begin", "lock", "submit", "commit") say
 * which statement; the transaction has been rolled back if the connection
 * still works. A failed COMMIT leaves the outcome unknown: submitting the
 * same id again is safe (CMDSTORE_DUPLICATE if it was stored). */
enum cmdstore_rc cmdstore_submit(PGconn *c, const struct cmdstore_cmd *cmd, char **json, size_t *len,
                                 PGresult **failed, const char **what);

#endif
