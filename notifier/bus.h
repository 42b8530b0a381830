/* SPDX-License-Identifier: Apache-2.0 */
/* bus.h - the notifier's ZeroMQ side: PULL for edge batches, ROUTER for
 * cmd and kick batches to edge workers. Main thread only. */
#ifndef NTF_BUS_H
#define NTF_BUS_H
#include <stddef.h>
#include <stdint.h>
#include "sl/envelope.h"
#include "sl/zap.h"
#include "sl/zmqx.h"

struct bus;

/* Bind both sockets (zmqx_socket), each capped at max_msg bytes per
 * message (a peer sending more is disconnected). name is the notifier's
 * identity in the headers it writes. With curve (NULL = plain), both are
 * CURVE servers with that key pair admitting the edge certificates in
 * curve_allow (sl/zap.h). NULL on failure (logged). */
struct bus *bus_new(const char *pull, const char *router, const char *name, int64_t max_msg,
                    const struct keys_pair *curve, const char *curve_allow);
void bus_destroy(struct bus **b);

/* The PULL socket (for zmqx_fd / zmqx_readable). */
void *bus_pull(struct bus *b);

/* Receive one batch without blocking into the bus's message; p and n stay
 * valid until the next bus_recv. Returns SL_OK, SL_AGAIN (nothing) or SL_IO.
 * With CURVE, a batch whose header names an edge id or reply address its
 * sender's key is not bound to is dropped here (counted in the ZAP
 * handler's impostor count, logged once per key binding). */
int bus_recv(struct bus *b, const uint8_t **p, size_t *n);

/* Send one entry to the worker whose DEALER identity is reply, for edge
 * incarnation inc. Never blocks. 0, or -1 if the worker is not connected
 * (ROUTER_MANDATORY) or its queue is full. */
int bus_send_edge(struct bus *b, const char *reply, uint64_t inc, const struct envelope *e);

uint64_t bus_unroutable(const struct bus *b);

/* The ZAP handler's counts, or NULL when CURVE is off. */
const struct zap_counts *bus_zap_counts(const struct bus *b);

#endif
