/* SPDX-License-Identifier: Apache-2.0 */
/* edge/peermon.h - which endpoints one bus socket is connected to, for
 * /readyz and the sluice_edge_*_connected gauges.
 *
 * A ZeroMQ socket monitor reports, per endpoint, when the ZMTP handshake
 * succeeded (with ZMQ_IMMEDIATE, from then on the socket routes to that
 * peer) and when the connection dropped. ZMQ_EVENTS cannot tell this
 * apart: POLLOUT on a PUSH also drops while the peer is merely at its HWM,
 * and the DEALER talks to persisters and notifiers alike. All calls happen
 * on the socket's thread and never block. */
#ifndef EDGE_PEERMON_H
#define EDGE_PEERMON_H
#include <stdint.h>

struct peermon;
struct zmqx_conns;

/* Start monitoring sock (before it connects anywhere, so no event is
 * missed). name makes the inproc address unique in the context. NULL on
 * failure (zmq_errno() tells why). */
struct peermon *peermon_new(void *zctx, void *sock, const char *name);
/* Stop monitoring; call before closing the socket. */
void peermon_destroy(struct peermon **m);

/* Apply the events waiting, then forget endpoints that are in neither a
 * nor b (b may be NULL): zmq_disconnect, which the resolver uses, reports
 * no event. Never blocks. */
void peermon_sync(struct peermon *m, const struct zmqx_conns *a, const struct zmqx_conns *b);

/* How many endpoints of `in` are up (handshake done, not dropped since). */
uint32_t peermon_count(const struct peermon *m, const struct zmqx_conns *in);

/* For a socket connected to one endpoint (the bus's per-notifier PUSH):
 * apply the events waiting and return how many endpoints are up (0 or 1).
 * Never blocks. */
uint32_t peermon_poll(struct peermon *m);

/* How many connections that were up have dropped since peermon_new (as of
 * the last poll or sync): a drop and a reconnect between two polls leave
 * peermon_poll's answer unchanged, and whatever was in flight on the
 * dropped connection may be lost. */
uint64_t peermon_drops(const struct peermon *m);

#endif
