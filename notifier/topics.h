/* SPDX-License-Identifier: Apache-2.0 */
/* topics.h - the notifier's pure mappers: envelope -> MQTT topic + JSON, and
 * operator JSON -> command. No sockets, no MQTT client, no logging: every function
 * works on caller buffers and can be tested on byte arrays.
 *
 * Payloads follow docs/protocol.md section 5. */
#ifndef NTF_TOPICS_H
#define NTF_TOPICS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/cmdjson.h"
#include "sl/envelope.h"
#include "sl/err.h"
#include "sl/limits.h"
#include "sl/mp.h"
#include "sl/tojson.h"

#define TOPICS_EDGE_MAX   95u  /* longest edge id the notifier keeps */
#define TOPICS_REPLY_MAX  127u /* longest reply address (DEALER identity) */
#define TOPICS_PREFIX_MAX 128u
#define TOPICS_REASON_MAX 31u /* longest close reason a status carries */
/* Longest status JSON (topics_status_json): every string byte may take 6
 * (\u00XX), plus 165 bytes of names, punctuation and numbers (online). */
#define TOPICS_STATUS_JSON_MAX (6u * (TOPICS_EDGE_MAX + TOPICS_REPLY_MAX + TOPICS_REASON_MAX) + 165u)

/* Topic kinds the notifier subscribes to. */
enum topics_kind {
    TOPICS_OTHER = 0, /* not ours, or a device id outside the alphabet */
    TOPICS_CMD,       /* P/<dev>/cmd */
    TOPICS_STATUS,    /* P/<dev>/status */
};

/* Classify topic[0..n) under prefix; on CMD/STATUS *dev points into topic. */
enum topics_kind topics_parse(const char *prefix, const char *topic, size_t n, struct sl_slice *dev);

/* "P/<dev>/<leaf>" and "P/<dev>/cmd/<id>/result" into b (overflow is recorded in b). */
void topics_dev(struct tojson_buf *b, const char *prefix, struct sl_slice dev, const char *leaf);
void topics_result_topic(struct tojson_buf *b, const char *prefix, struct sl_slice dev, struct sl_slice id);

/* Data JSON {"dev","seq","ts"|null,"rx","edge","body"} of a data entry.
 * A missing body becomes null. Returns SL_OK, SL_DECODE (the body is not
 * well-formed msgpack; b holds garbage) or SL_TOOBIG. */
enum sl_err topics_data_json(struct tojson_buf *b, struct sl_slice edge, const struct envelope *e);

/* A presence status, as published and as read back from the retained topic. */
struct topics_status {
    bool online;
    uint64_t at_ms;
    uint64_t epoch;
    uint64_t inc;
    uint32_t slot, gen;
    char edge[TOPICS_EDGE_MAX + 1];
    char reply[TOPICS_REPLY_MAX + 1];
    char reason[TOPICS_REASON_MAX + 1];
};

/* {"online","edge","at","epoch","reply","inc","slot","gen"[,"reason"]}.
 * reply/inc/slot/gen are written only while online (they route commands);
 * reason only when non-empty. At most TOPICS_STATUS_JSON_MAX bytes. */
void topics_status_json(struct tojson_buf *b, const struct topics_status *s);

/* Parse a retained status. SL_OK or SL_DECODE (not JSON, missing online /
 * edge / epoch, or an online status without reply/inc/slot/gen). Allocates
 * inside json-c only (control path). */
enum sl_err topics_status_parse(const char *json, size_t n, struct topics_status *s);

/* Result JSON: {"ok":ok,"body":<json of body or null>} or, with error != NULL,
 * {"ok":false,"error":error}. A body that is not valid msgpack becomes null
 * and SL_DECODE is returned (the result is still complete). */
enum sl_err topics_result_json(struct tojson_buf *b, bool ok, const struct sl_slice *body, const char *error);

enum topics_cmd_rc {
    TOPICS_CMD_OK = 0, /* id and body filled in */
    TOPICS_CMD_BAD,    /* id readable and valid, the rest is not: answer "bad_command" */
    TOPICS_CMD_BAD_ID, /* id present but not [A-Za-z0-9._:-]{1,64}: drop */
    TOPICS_CMD_NO_ID,  /* not JSON, not an object or no string id: drop */
};

/* Parse an operator command {"id":str,"body":any}. The body (required; it
 * may be null) is converted to msgpack into `body` (overflow -> TOPICS_CMD_BAD).
 * id receives the NUL-terminated id whenever it is readable. */
enum topics_cmd_rc topics_cmd_parse(const char *json, size_t n, char id[SL_CMD_ID_MAX + 1],
                                    struct mp_buf *body);
/* The same, keeping all the parser read in *c: the id, "queue" and
 * "ttl_s" (and whether they were refused: c->opts_why) and, with
 * want_json, the body's JSON text. Call cmdjson_fini(c) whatever the
 * result. Allocates inside json-c (and c->json). */
enum topics_cmd_rc topics_cmd_read(const char *json, size_t n, bool want_json, struct cmdjson *c,
                                   struct mp_buf *body);

/* ---- between notifiers (docs/protocol.md §6, "Between notifiers") ---- */

/* The notifiers' own subtree, P/_sluice/...: '_' is not in the device id
 * alphabet, so no device topic can collide with it. */
#define TOPICS_INTERNAL "_sluice"

/* A pending command's marker: retained on P/_sluice/pending/<dev>/<id>
 * while the command waits for its one result; an empty retained message
 * clears it. */
struct topics_marker {
    char by[SL_DEV_MAX + 1];          /* the notifier that took the command */
    char edge[TOPICS_EDGE_MAX + 1];   /* where it was routed: edge, */
    char reply[TOPICS_REPLY_MAX + 1]; /* worker */
    uint64_t inc;                     /* and incarnation */
    uint64_t deadline_ms;             /* wall-clock ms when it times out */
};

/* "P/_sluice/pending/<dev>/<id>" into b (overflow recorded in b). */
void topics_pending_topic(struct tojson_buf *b, const char *prefix, struct sl_slice dev, struct sl_slice id);
/* Is topic[0..n) a marker topic under prefix? Then *dev and *id point into it. */
bool topics_parse_pending(const char *prefix, const char *topic, size_t n, struct sl_slice *dev,
                          struct sl_slice *id);
/* {"by","edge","reply","inc","deadline"} */
void topics_marker_json(struct tojson_buf *b, const struct topics_marker *m);
/* SL_OK or SL_DECODE (not JSON, a field missing or too long). json-c (control path). */
enum sl_err topics_marker_parse(const char *json, size_t n, struct topics_marker *m);

/* FNV-1a of the device id: picks its MQTT client in the pool. */
uint32_t topics_hash(const uint8_t *p, size_t n);

#endif
