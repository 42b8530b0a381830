/* SPDX-License-Identifier: Apache-2.0 */
/* edge/cmdfwd.h - operator commands between the workers of one edge.
 *
 * The notifier sends a cmd to the worker it last heard the device connect
 * on (docs/protocol.md §6). The device may since have reconnected to this
 * edge and landed on another worker; the process-wide device map knows
 * which. cmdfwd_route() delivers the command on this worker, or posts a
 * copy into the owning worker's mailbox (mailbox.h, kind MAILBOX_CMD), or
 * answers `undeliverable`. The owner's cmdfwd_deliver() writes it to the
 * device's connection if the device is still there, and answers
 * `undeliverable` itself otherwise: a command is forwarded at most once,
 * so two workers never pass one back and forth. The device's `res` leaves
 * from the owner like any res: the notifier matches results by (dev, id).
 *
 * It reaches the device and the notifier only through struct cmdfwd_ops
 * (worker.c gives it session_cmd and the bus), so unit tests drive it with
 * stubs. A forwarded command costs one malloc (commands are rare). */
#ifndef EDGE_CMDFWD_H
#define EDGE_CMDFWD_H
#include <stdbool.h>
#include <stdint.h>
#include "sl/stat.h"
#include "sl/envelope.h"
#include "devmap.h"
#include "mailbox.h"

struct cmdfwd_ops {
    /* Write cmd (id, body: never empty) to this worker's connection ref if
     * it still holds cmd->dev. false: it does not (nothing written). */
    bool (*deliver)(void *ud, struct devmap_ref ref, const struct envelope *cmd);
    /* Hand an envelope (the ENV_UNDELIVERABLE answers) to the bus. */
    void (*emit)(void *ud, const struct envelope *e);
};

struct cmdfwd_counts {
    _Atomic uint64_t forwarded;       /* posted to the worker holding the device */
    _Atomic uint64_t forward_refused; /* its mailbox's command share full: answered undeliverable */
    _Atomic uint64_t undeliverable;   /* every undeliverable answer, whatever the cause */
};

/* One per worker (embedded in it). */
struct cmdfwd {
    const struct cmdfwd_ops *ops;
    void *ud;
    uint32_t self;                 /* this worker's index */
    struct devmap *map;            /* the edge's device map */
    struct mailbox *const *mboxes; /* every worker's mailbox, by index */
    uint32_t nworkers;
    bool refusing; /* a run of refusals is being logged (one line per run) */
    struct cmdfwd_counts cnt;
};

/* Apply an ENV_CMD that arrived on this worker's DEALER (e and what it
 * points to are borrowed for the call). Exactly one of: delivered here,
 * posted to the owner's mailbox (which wakes it), answered undeliverable
 * (device not on this edge, or the owner's command share full). Never
 * blocks beyond the mailbox lock. On the worker's thread. */
void cmdfwd_route(struct cmdfwd *f, const struct envelope *e);

/* A MAILBOX_CMD item taken from this worker's mailbox: delivered if the
 * device map still places the device here, else answered undeliverable.
 * Frees the item's copy. On the worker's thread. */
void cmdfwd_deliver(struct cmdfwd *f, struct mailbox_item *it);

/* Free a MAILBOX_CMD item's copy without answering (exit: those commands
 * get no answer from here; the notifier ends them when the sessions close). */
void cmdfwd_drop(struct mailbox_item *it);

#endif
