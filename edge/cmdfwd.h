/* edge/cmdfwd.h - operator commands between the workers of one edge.
 *
 * The notifier sends a cmd to the worker it last heard the device connect
 * on (docs/protocol.md §6). The device may since have reconnected to this
 * edge and landed on another worker (SO_REUSEPORT picks one per
 * connection); the process-wide device map knows which. cmdfwd_route()
 * delivers the command on this worker, or hands a copy to the owning
 * worker's inbox, or answers `undeliverable`. The owner's cmdfwd_drain()
 * writes it to the device's connection if the device is still there, and
 * answers `undeliverable` itself otherwise. The device's `res` leaves
 * from the owner like any res: the notifier matches results by (dev, id).
 *
 * Each worker has one inbox: a mutex-protected FIFO bounded in count and
 * bytes, separate from the kick ring so both evolve independently. A
 * forwarded command costs one malloc (commands are rare). */
#ifndef EDGE_CMDFWD_H
#define EDGE_CMDFWD_H
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/envelope.h"

#define CMDFWD_MAX       256u       /* commands waiting in one inbox */
#define CMDFWD_MAX_BYTES (4u << 20) /* their allocations, ids and bodies included */

struct worker;
struct cmdfwd_item;

/* A worker's inbox, embedded in struct worker. */
struct cmdfwd {
    pthread_mutex_t mu;
    struct cmdfwd_item *head, *tail;
    uint32_t n;
    size_t bytes;
    bool refusing; /* full since the last drain (log once per run) */
};

void cmdfwd_init(struct cmdfwd *q);
/* Free what is still queued (at exit; those commands get no answer from
 * here: the notifier ends them when their sessions close). */
void cmdfwd_fini(struct cmdfwd *q);

/* Apply an ENV_CMD that arrived on w's DEALER (e and what it points to are
 * borrowed for the call). Delivers it to w's connection for e->dev, or
 * forwards a copy to the worker that holds the device and wakes it, or
 * emits ENV_UNDELIVERABLE "disconnected" (device not on this edge, or the
 * owner's inbox full). Exactly one of the three. Never blocks beyond the
 * inbox mutex. On w's thread. */
void cmdfwd_route(struct worker *w, const struct envelope *e);

/* Deliver every command other workers forwarded to w: written to the
 * device's connection if the device map still places it on w, else
 * answered `undeliverable` (never forwarded again). On w's thread (its
 * wake-up callback). */
void cmdfwd_drain(struct worker *w);

#endif
