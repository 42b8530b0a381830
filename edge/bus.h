/* edge/bus.h - a worker's ZeroMQ side: envelope batches out to the
 * persisters and notifiers (PUSH), ack/cmd/kick batches in (DEALER).
 *
 * Everything runs on the worker's thread (ZeroMQ sockets are not
 * thread-safe). Entries are batched per loop iteration: bus_flush() sends
 * at most one message per destination, and is called from the after-hook.
 *
 * Backpressure: when the persister PUSH cannot take a batch, the batch is
 * kept and bus_paused() turns true, which stops all reads of the worker
 * until a later flush succeeds. Data is never dropped on that path. The
 * notifier path never pauses: data copies for it are shed and counted,
 * while control entries (connect, disconnect, res, heartbeat,
 * undeliverable) wait in a bounded queue and are retried. */
#ifndef EDGE_BUS_H
#define EDGE_BUS_H
#include <stdbool.h>
#include <stdint.h>
#include "sl/envelope.h"

struct bus;
struct worker;

/* Create the worker's sockets on the edge's context and register their
 * ZMQ_FDs with the worker's loop. NULL on failure (logged). */
struct bus *bus_new(struct worker *w);
void bus_destroy(struct bus **b);

/* Queue one entry for the destinations of its kind. Borrowed fields are
 * copied before the call returns. Never blocks. */
void bus_emit(struct bus *b, const struct envelope *e);

/* True while the persister batch could not be sent: stop reading. */
bool bus_paused(const struct bus *b);

/* Receive and apply every reply batch waiting on the DEALER. */
void bus_recv(struct bus *b);

/* Send the batches of this iteration (one message per destination). */
void bus_flush(struct bus *b);

/* Which services a worker is connected to: its PUSH has a peer and its
 * DEALER is connected to one of that service's ROUTERs. */
enum bus_up {
    BUS_UP_PERSISTER = 1,
    BUS_UP_NOTIFIER = 2,
};

/* Periodic work (from the worker tick): re-apply resolved endpoints,
 * heartbeat, connection state. Returns the enum bus_up bits. */
unsigned bus_tick(struct bus *b, uint32_t open_conns);

/* True when nothing waits to be sent (for a clean exit). */
bool bus_idle(const struct bus *b);

#endif
