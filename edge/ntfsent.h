/* SPDX-License-Identifier: Apache-2.0 */
/* edge/ntfsent.h - control entries (connect, disconnect, res,
 * undeliverable, cmd_sent) a worker has handed to a notifier and the
 * notifier has not confirmed yet, so that they can go to its successor if
 * it dies with them unread.
 *
 * Why: a PUSH that took a message says nothing about the notifier reading
 * it. A notifier killed in the ~0.1 s before the worker sees its connection
 * close loses what was in its socket, and a device's answer lost there ends
 * its command with the new owner's `timeout` instead of the answer
 * (docs/notifier.md, "What "exactly one" means with kill -9").
 *
 * How a notifier confirms: the bus sends each notifier a heartbeat every
 * second on the same PUSH, after the entries before it; the notifier reads
 * its socket in order and answers each heartbeat with its at_ns echoed in
 * `seq` (docs/protocol.md §6). An answer to heartbeat h confirms every entry
 * sent to that notifier before h. A notifier of the version before the echo
 * answers with seq 0: that confirms everything sent to it so far, which is
 * what the worker assumed before this module.
 *
 * Bounded: NTFSENT_BYTES and NTFSENT_ENTRIES per worker; when full the
 * oldest eighth is forgotten (counted), and nothing older than
 * NTFSENT_AGE_MS is handed on: a notifier that answers confirms within
 * a second, so an older entry was read by a notifier whose answers did not
 * reach us, and resending a stale connect is worse than not resending it.
 *
 * I/O-free, no allocation after ntfsent_init; one per worker. */
#ifndef EDGE_NTFSENT_H
#define EDGE_NTFSENT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/ring.h"
#include "sl/slice.h"

#define NTFSENT_SLOTS   RING_MAX /* the bus's notifier slots (NTFRING_PEERS) */
#define NTFSENT_BYTES   (1024u * 1024u)
#define NTFSENT_ENTRIES 16384u
#define NTFSENT_MARKS   8u     /* heartbeats awaiting their answer, per notifier */
#define NTFSENT_AGE_MS  10000u /* never hand on an entry older than this */

struct ntfsent_ent {
    uint32_t off, len;
    int32_t slot; /* -1: confirmed, handed on or forgotten */
    uint32_t num; /* the slot's running number (wraps: compared by difference) */
    uint64_t at_ms;
};

struct ntfsent_mark {
    uint64_t hb;   /* the heartbeat's at_ns */
    uint32_t upto; /* entries of the slot numbered before this are covered */
};

struct ntfsent {
    uint8_t *buf;
    size_t len; /* bytes in use, from the oldest kept entry's offset */
    struct ntfsent_ent *e;
    uint32_t n;    /* entries in e[], live or not, in send order */
    uint32_t head; /* the first that may be live */
    uint32_t live[NTFSENT_SLOTS];
    uint32_t next[NTFSENT_SLOTS]; /* number of the slot's next entry */
    struct ntfsent_mark marks[NTFSENT_SLOTS][NTFSENT_MARKS];
    uint32_t nmarks[NTFSENT_SLOTS];
    uint64_t forgotten; /* dropped unconfirmed: room or age */
};

/* 0, or -1 when the buffers could not be allocated. */
int ntfsent_init(struct ntfsent *t);
void ntfsent_free(struct ntfsent *t);

/* Entry ent (an encoded envelope entry) was sent to slot s at now_ms. */
void ntfsent_add(struct ntfsent *t, int s, struct sl_slice ent, uint64_t now_ms);

/* A heartbeat stamped hb (its at_ns, never 0) was sent to slot s after the
 * entries added so far. */
void ntfsent_mark(struct ntfsent *t, int s, uint64_t hb);

/* Slot s answered the heartbeat stamped hb (0: a notifier that does not
 * echo). Returns how many entries this confirmed. */
uint32_t ntfsent_confirm(struct ntfsent *t, int s, uint64_t hb);

/* Entries of slot s not yet confirmed (including any too old to hand on). */
static inline uint32_t ntfsent_live(const struct ntfsent *t, int s)
{
    return t->live[s];
}

/* Slot s is gone: hand each of its unconfirmed entries younger than
 * NTFSENT_AGE_MS to fn, oldest first, and forget them all (and its
 * marks). Returns how many were handed on. */
uint32_t ntfsent_take(struct ntfsent *t, int s, uint64_t now_ms, void (*fn)(void *ud, struct sl_slice ent),
                      void *ud);

#endif
