/* sl/zmqx.h - ZeroMQ helpers shared by the services and the edge.
 *
 * - zmqx_socket: every socket a Sluice process creates comes from here, so
 *   each gets the same protections: a ZMQ_MAXMSGSIZE cap on anything that
 *   receives from another process (required, see struct zmqx_opts), bounded
 *   HWMs, linger, ZMQ_IPV6 (dual stack), ZMQ_IMMEDIATE where asked.
 * - zmqx_fd / zmqx_readable / zmqx_writable: ZMQ_FD is edge-triggered; a
 *   loop callback on it must drain with ZMQ_EVENTS (zmqx_readable) until
 *   nothing is readable or acks stall, and re-check after every send too.
 * - zmqx_resolver: services bind, edges connect to every address a service
 *   host name resolves to, and keep re-resolving. getaddrinfo blocks, so a
 *   resolver thread does it and hands the new endpoint list over through a
 *   mutex-protected slot; the loop thread applies it (connect/disconnect) on
 *   its own sockets, since ZeroMQ sockets belong to one thread.
 * - zmqx_send_take: the zmsg_send(&m) convention for raw buffers held in a
 *   zmq_msg_t: ownership moves with the call.
 * - CURVE: zmqx_opts.curve and friends make a socket a CURVE server (with
 *   the context's ZAP handler, sl/zap.h) or client; zmqx_conns carries the
 *   server key for the connects the resolver makes (docs/security.md). */
#ifndef SL_ZMQX_H
#define SL_ZMQX_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "sl/keys.h"

/* True while the socket has a message to read (ZMQ_EVENTS & ZMQ_POLLIN). */
bool zmqx_readable(void *sock);
/* True while the socket can take a message without blocking. */
bool zmqx_writable(void *sock);
/* The socket's ZMQ_FD for epoll (EPOLLIN, edge-triggered semantics). */
int zmqx_fd(void *sock);

#define ZMQX_ZAP_DOMAIN "sluice" /* ZMQ_ZAP_DOMAIN of every CURVE server socket */

struct zap;

/* Options of zmqx_socket, meant for designated initializers: a field left
 * out (zero) takes the default named here. */
struct zmqx_opts {
    const char *bind;    /* endpoint to bind, or NULL */
    const char *connect; /* endpoint to connect, or NULL (e.g. zmqx_resolver_apply connects later) */
    /* ZMQ_MAXMSGSIZE in bytes: a peer that sends a bigger message is
     * disconnected and the message dropped, so one process cannot make
     * another allocate without bound. Required (> 0) on every socket type
     * that receives (all but PUSH and PUB): zmqx_socket refuses one left at
     * 0. ZMQX_MAX_MSG_NONE says "no cap" on purpose (inproc pairs within one
     * process). */
    int64_t max_msg;
    int sndhwm, rcvhwm;     /* messages; 0 = libzmq's default (1000). There is no "unbounded" */
    int linger_ms;          /* at close: 0 (default) drops what is unsent, -1 waits forever */
    bool immediate;         /* ZMQ_IMMEDIATE: queue only to completed connections (PUSH/DEALER) */
    bool router_mandatory;  /* ROUTER: a send to an unknown identity fails (EHOSTUNREACH), not vanishes */
    bool router_handover;   /* ROUTER: a peer reconnecting with a known identity takes it over */
    const char *routing_id; /* ZMQ_ROUTING_ID (a DEALER's identity), or NULL */
    /* CURVE (docs/security.md); all three NULL: a plain socket.
     * - curve: this process's key pair; required with either of the others.
     * - zap: the socket is a CURVE server (ZMQ_CURVE_SERVER, ZAP domain
     *   ZMQX_ZAP_DOMAIN) that admits only the client keys this handler
     *   allows. The handler must serve the same context (zap_new(ctx)):
     *   zmqx_socket refuses a server socket without one, because libzmq
     *   admits every client key when no ZAP handler is bound.
     * - curve_server_key: the socket is a client of the server holding this
     *   public key (Z85), for .connect. Connects made later by
     *   zmqx_resolver_apply use their zmqx_conns' key instead
     *   (zmqx_conns_set_server_key): one socket may reach servers with
     *   different keys (an edge worker's DEALER reaches persisters and
     *   notifiers). A client with no server key fails its handshakes. */
    const struct keys_pair *curve;
    struct zap *zap;
    const char *curve_server_key;
};

#define ZMQX_MAX_MSG_NONE (-1) /* zmqx_opts.max_msg: no size cap, on purpose */

/* Create a socket of `type` in ctx with o's options and ZMQ_IPV6 on (dual
 * stack: a "*" bind accepts IPv4 and IPv6, connects may use [v6]
 * endpoints; libzmq falls back to IPv4 where IPv6 is off), then bind and/or
 * connect it. Returns the socket (the caller owns it: zmq_close), or NULL
 * with nothing left open: logged once (event=bind_failed / connect_failed
 * endpoint=..., or event=zmq_socket_failed what=...), zmq_errno() tells why
 * (EINVAL for a receiving type without max_msg). Does not block (a bind or
 * connect is asynchronous beyond the local address check). EINVAL also for
 * an inconsistent CURVE setting: zap or curve_server_key without curve,
 * both at once, or a zap handler of another context. */
void *zmqx_socket(void *ctx, int type, const struct zmqx_opts *o);

/* For tests that make their own raw sockets; every service uses
 * zmqx_socket. Applies linger (ms), send/recv HWM (negative = libzmq
 * default), ZMQ_IMMEDIATE when `immediate`, and ZMQ_IPV6, but no
 * ZMQ_MAXMSGSIZE. Returns 0 or -1 (zmq_errno() tells why). */
int zmqx_setup(void *sock, int linger_ms, int sndhwm, int rcvhwm, bool immediate);

/* Send msg and take it: after the call the caller's msg is empty whether
 * the send succeeded or not (on failure it is closed and re-initialised), so
 * the caller never closes it twice or leaks it. Returns 0 or -errno (-EAGAIN
 * with ZMQ_DONTWAIT when the HWM is reached). Never blocks with ZMQ_DONTWAIT. */
int zmqx_send_take(void *sock, zmq_msg_t *msg, int flags);

/* Endpoint list resolver. `spec` is a comma-separated list of
 * tcp://host:port; each host is resolved to all its IPv4/IPv6 addresses
 * every `period_ms`. Numeric addresses, "*", [v6] and other transports pass
 * through unchanged. The first resolution is done (blocking) inside
 * zmqx_resolver_new, so it is available at once; a name that later fails to
 * resolve keeps its previous addresses. Returns NULL on a malformed spec
 * (logged) or out of memory. destroy joins the thread (may wait for a
 * getaddrinfo in flight). */
struct zmqx_resolver;
struct zmqx_resolver *zmqx_resolver_new(const char *spec, int period_ms);
void zmqx_resolver_destroy(struct zmqx_resolver **r);
/* The latest published list, comma-joined and sorted, into buf (truncated to
 * cap-1, NUL-terminated), for logs and tests. Returns its version (bumped on
 * every change; >= 1 once _new returned). Thread-safe, never blocks long. */
uint64_t zmqx_resolver_snapshot(struct zmqx_resolver *r, char *buf, size_t cap);
/* Bring sock's connections in line with the latest resolution: connect new
 * endpoints, disconnect vanished ones. `state` is per-socket bookkeeping the
 * caller keeps (zero-initialised). Call from the socket's thread, e.g. once
 * a second. Returns how many endpoints sock is now connected to. */
struct zmqx_conns;
struct zmqx_conns *zmqx_conns_new(void);
void zmqx_conns_destroy(struct zmqx_conns **c);
/* The CURVE server key (Z85, 40 characters) zmqx_resolver_apply sets on the
 * socket before each connect it makes for c; NULL or "" clears it (plain
 * connects). Copies the key. Returns 0, or -1 (EINVAL) if it is not 40
 * characters of Z85. */
int zmqx_conns_set_server_key(struct zmqx_conns *c, const char *z85);
int zmqx_resolver_apply(struct zmqx_resolver *r, void *sock, struct zmqx_conns *c);
/* True if the last apply connected sock to ep, compared in canonical form
 * (zmqx_ep_canon), so ep may be an endpoint as a socket monitor names it. */
bool zmqx_conns_has(const struct zmqx_conns *c, const char *ep);
/* The canonical form of an endpoint into out (cap bytes, NUL-terminated):
 * "tcp://[::ffff:a.b.c.d]:p" becomes "tcp://a.b.c.d:p", anything else is
 * copied. With ZMQ_IPV6 on, libzmq names an IPv4 peer the first way once it
 * has reconnected (in monitor events), and the second way before. */
void zmqx_ep_canon(const char *ep, char *out, size_t cap);

#endif
