/* SPDX-License-Identifier: Apache-2.0 */
/* cmds.h - commands waiting for their device's answer.
 *
 * A fixed table of `cap` entries keyed by (dev, id), kept in arrival order.
 * Every command has the same timeout, so arrival order is deadline order and
 * expiry only looks at the oldest entries (an entry the expiry callback
 * keeps goes to the back with its new deadline). Each entry leaves the
 * table exactly once (take, take_dev or expire), which is what guarantees
 * one result per command. Beside each entry the caller keeps a struct
 * cmds_meta (who took the command, where it was routed): cmds stores it and
 * never reads it. Not thread-safe; never logs; no allocation after
 * cmds_new (bodies held for a retry aside). */
#ifndef NTF_CMDS_H
#define NTF_CMDS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/err.h"
#include "sl/limits.h"
#include "sl/slice.h"

struct cmds;

/* The caller's notes on one command (ntf.c: "Several notifiers"). */
struct cmds_meta {
    uint8_t flags;          /* the caller's bits */
    uint64_t ack;           /* the MQTT acknowledgement the taker still owes, 0 when none */
    uint64_t deadline_wall; /* wall-clock ms of the deadline (as markers carry it) */
    uint64_t inc;           /* where it was routed: edge incarnation, */
    char edge[96];          /* edge id, */
    char reply[128];        /* and the worker's reply address */
    char by[65];            /* the notifier that took it */
    uint64_t taken_us;      /* taker: monotonic us when it arrived */
};

/* NULL on allocation failure. */
struct cmds *cmds_new(uint32_t cap, size_t max_unsent_bytes);
void cmds_destroy(struct cmds **c);

/* Add (dev, id) with a deadline. SL_OK, SL_AGAIN if that id is already
 * pending for dev (a duplicate), SL_NOMEM if the table is full, SL_INVAL
 * for an id or dev that is empty or too long. */
enum sl_err cmds_add(struct cmds *c, struct sl_slice dev, struct sl_slice id, uint64_t deadline_ms);

/* Remove (dev, id) if pending. True if it was. */
bool cmds_take(struct cmds *c, struct sl_slice dev, struct sl_slice id);

/* Called for each command removed by take_dev / expire, before removal. */
typedef void cmds_cb(void *ud, struct sl_slice dev, struct sl_slice id);

/* Remove every pending command of dev, or (with take) only those take()
 * says yes to; cb sees each before its removal. Returns how many. */
typedef bool cmds_pred(void *ud, struct sl_slice dev, struct sl_slice id, struct cmds_meta *meta);
uint32_t cmds_take_dev(struct cmds *c, struct sl_slice dev, cmds_pred *take, cmds_cb *cb, void *ud);

/* Every command whose deadline is <= now_ms goes to keep(): 0 removes it,
 * another value is its new deadline (it moves to the back). Returns how
 * many were removed. */
typedef uint64_t cmds_keep_cb(void *ud, struct sl_slice dev, struct sl_slice id, struct cmds_meta *meta);
uint32_t cmds_expire(struct cmds *c, uint64_t now_ms, cmds_keep_cb *keep, void *ud);

/* The notes of (dev, id), or NULL. Valid until that entry is removed. */
struct cmds_meta *cmds_meta(struct cmds *c, struct sl_slice dev, struct sl_slice id);
/* A handle naming (dev, id) for as long as it stays in the table (0 if it is
 * not there), and the way back: false once that entry is gone, even if the
 * slot was reused. */
uint64_t cmds_handle(const struct cmds *c, struct sl_slice dev, struct sl_slice id);
bool cmds_from_handle(const struct cmds *c, uint64_t h, struct sl_slice *dev, struct sl_slice *id);
/* Call cb for every command, oldest first (cb must not add or remove). */
typedef void cmds_each_cb(void *ud, struct sl_slice dev, struct sl_slice id, struct cmds_meta *meta);
void cmds_each(struct cmds *c, cmds_each_cb *cb, void *ud);

/* Keep a copy of the body of pending (dev, id) because it could not be
 * sent yet (the edge worker's DEALER is not connected, e.g. right after a
 * notifier restart). Copies are bounded by max_bytes in total. SL_OK,
 * SL_NOMEM (bound reached or no memory), SL_AGAIN (not pending). */
enum sl_err cmds_set_unsent(struct cmds *c, struct sl_slice dev, struct sl_slice id, const uint8_t *body,
                            uint32_t len);
bool cmds_is_unsent(const struct cmds *c, struct sl_slice dev, struct sl_slice id);
/* Free the copy cmds_set_unsent kept for (dev, id), if any (it was sent). */
void cmds_clear_unsent(struct cmds *c, struct sl_slice dev, struct sl_slice id);
/* The body kept by cmds_set_unsent for (dev, id): true with *body set, or false. */
bool cmds_body(const struct cmds *c, struct sl_slice dev, struct sl_slice id, struct sl_slice *body);

/* Offer every unsent command to send(); one it returns 0 for is sent (its
 * copy freed). Returns how many are still unsent. */
typedef int cmds_send_cb(void *ud, struct sl_slice dev, struct sl_slice id, struct sl_slice body);
uint32_t cmds_retry(struct cmds *c, cmds_send_cb *send, void *ud);

uint32_t cmds_count(const struct cmds *c);
/* Deadline of the oldest command, or UINT64_MAX when empty. */
uint64_t cmds_next_deadline(const struct cmds *c);

#endif
