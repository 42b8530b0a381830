/* cmds.h - commands waiting for their device's answer.
 *
 * A fixed table of `cap` entries keyed by (dev, id), kept in arrival order.
 * Every command has the same timeout, so arrival order is deadline order and
 * expiry only looks at the oldest entries. Each entry leaves the table
 * exactly once (take, take_dev or expire), which is what guarantees one
 * result per command. Not thread-safe; never logs; no allocation after
 * cmds_new. */
#ifndef NTF_CMDS_H
#define NTF_CMDS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/err.h"
#include "sl/limits.h"
#include "sl/slice.h"

struct cmds;

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

/* Remove every pending command of dev. Returns how many. */
uint32_t cmds_take_dev(struct cmds *c, struct sl_slice dev, cmds_cb *cb, void *ud);

/* Remove every command whose deadline is <= now_ms. Returns how many. */
uint32_t cmds_expire(struct cmds *c, uint64_t now_ms, cmds_cb *cb, void *ud);

/* Keep a copy of the body of pending (dev, id) because it could not be
 * sent yet (the edge worker's DEALER is not connected, e.g. right after a
 * notifier restart). Copies are bounded by max_bytes in total. SL_OK,
 * SL_NOMEM (bound reached or no memory), SL_AGAIN (not pending). */
enum sl_err cmds_set_unsent(struct cmds *c, struct sl_slice dev, struct sl_slice id, const uint8_t *body,
                            uint32_t len);
bool cmds_is_unsent(const struct cmds *c, struct sl_slice dev, struct sl_slice id);

/* Offer every unsent command to send(); one it returns 0 for is sent (its
 * copy freed). Returns how many are still unsent. */
typedef int cmds_send_cb(void *ud, struct sl_slice dev, struct sl_slice id, struct sl_slice body);
uint32_t cmds_retry(struct cmds *c, cmds_send_cb *send, void *ud);

uint32_t cmds_count(const struct cmds *c);
/* Deadline of the oldest command, or UINT64_MAX when empty. */
uint64_t cmds_next_deadline(const struct cmds *c);

#endif
