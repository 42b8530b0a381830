/* SPDX-License-Identifier: Apache-2.0 */
/* edge/bus.h - a worker's ZeroMQ side: envelope batches out to the
 * persisters and notifiers (PUSH), reply batches in (DEALER).
 *
 * It moves bytes and nothing else: entries go into per-destination batches
 * as they are emitted, bus_flush() sends at most one message per
 * destination (from the worker's after-hook), and bus_recv() hands each
 * reply batch to the caller as bytes. What a reply means (ack, cmd, kick)
 * is the worker's business. Everything runs on the worker's thread
 * (ZeroMQ sockets are not thread-safe).
 *
 * Backpressure: when the persister PUSH cannot take a batch, the batch is
 * kept and bus_paused() turns true, until a later flush succeeds; the
 * worker stops reading devices meanwhile. Data is never dropped on that
 * path. The notifier path never pauses: data copies for it are shed and
 * counted, while control entries (connect, disconnect, res, undeliverable)
 * wait in a bounded queue and are retried.
 *
 * Notifiers: each device's entries go to one notifier, chosen by its id on
 * the ring of notifiers this worker hears (ntfring.h); each notifier gets a
 * heartbeat every second naming that ring. */
#ifndef EDGE_BUS_H
#define EDGE_BUS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/stat.h"
#include "sl/envelope.h"
#include "sl/zmqx.h"

struct bus;
struct loop;
struct zmqx_resolver;

struct bus_cfg {
    void *zctx;        /* the edge's ZeroMQ context */
    struct loop *loop; /* the worker's: the sockets' ZMQ_FDs wake it */
    uint32_t worker;   /* index, for the DEALER identity "<edge-id>/<worker>/<secret>" and logs */
    const char *edge_id;
    uint64_t incarnation;
    int hwm;         /* SNDHWM/RCVHWM, messages */
    int64_t max_msg; /* ZMQ_MAXMSGSIZE of the DEALER: the largest reply batch accepted */
    /* Endpoint lists, resolved by the edge (shared, thread-safe). */
    struct zmqx_resolver *persister_push, *persister_router, *notifier_push, *notifier_router;
    /* CURVE: this edge's key pair (NULL = plain) and each service's public
     * key (Z85), set on every connect to that service. */
    const struct keys_pair *curve;
    const char *persister_key, *notifier_key;
    /* Data copies for the notifiers wait up to this long for more to share
     * their message (0: sent with the iteration that made them). Control
     * entries (connect, disconnect, res, ...) never wait, and one made while
     * data waits sends that data first, so each device's order holds. */
    uint32_t ntf_window_ms;
};

/* Counts of one bus (one writer: its worker). */
struct bus_counts {
    _Atomic uint64_t bp_pauses, bp_paused_us;
    _Atomic uint64_t notifier_shed, notifier_ctl_dropped, persister_ctl_dropped;
    _Atomic uint64_t notifier_ctl_rerouted, notifier_ctl_forgotten; /* unconfirmed when their notifier left */
    _Atomic uint64_t batches_persister, batches_notifier;
};

/* Create the worker's sockets and register their ZMQ_FDs with the loop.
 * NULL on failure (logged). */
struct bus *bus_new(const struct bus_cfg *cfg);
void bus_destroy(struct bus **b);

/* Queue one entry for the destinations of its kind. Borrowed fields are
 * copied before the call returns. Never blocks. */
void bus_emit(struct bus *b, const struct envelope *e);

/* True while the persister batch could not be sent: stop reading. */
bool bus_paused(const struct bus *b);

/* The next reply batch waiting on the DEALER: true with its bytes in
 * (*p, *n), valid until the next bus_recv or bus_destroy; false when none
 * is left. Never blocks. Call until false after every wake-up (ZMQ_FD is
 * edge-triggered). */
bool bus_recv(struct bus *b, const uint8_t **p, size_t *n);

/* A notifier's heartbeat answer (ENV_NOTIFIER_HB on the DEALER; notifier =
 * the batch header's edge field, its id): names the endpoint e->to and
 * keeps that notifier in the worker's ring. Borrowed for the call. */
void bus_notifier_hb(struct bus *b, struct sl_slice notifier, const struct envelope *e);

/* Send the batches of this iteration (one message per destination); the
 * notifiers' data copies only once their window is over (bus_ntf_due). */
void bus_flush(struct bus *b);

/* bus_flush, the notifiers' data copies included whatever their window
 * (the worker's last send before exit). */
void bus_flush_all(struct bus *b);

/* When the notifiers' waiting data copies are due (monotonic ms, as
 * loop_clock_ms): the worker wakes then for a bus_flush. 0: none waits. */
uint64_t bus_ntf_due(const struct bus *b);

/* Which services a worker is connected to: its PUSH has a peer and its
 * DEALER is connected to one of that service's ROUTERs. */
enum bus_up {
    BUS_UP_PERSISTER = 1,
    BUS_UP_NOTIFIER = 2,
};

/* Periodic work (from the worker tick): re-apply resolved endpoints and
 * look at the connections. Returns the enum bus_up bits. */
unsigned bus_tick(struct bus *b);

/* True when nothing for the persister waits to be sent (for a clean exit). */
bool bus_idle(const struct bus *b);

const struct bus_counts *bus_counts(const struct bus *b);

#endif
