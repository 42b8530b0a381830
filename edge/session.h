/* edge/session.h - the device protocol state machine (hello/auth, data,
 * ping, res; welcome, ack, pong, cmd, err).
 *
 * I/O-free apart from the narrow conn interface (conn_send_frame,
 * conn_close, conn_kick) and bus_emit(), so unit tests drive it with stubs.
 * Timers run on the worker's loop. All calls happen on c's worker thread. */
#ifndef EDGE_SESSION_H
#define EDGE_SESSION_H
#include <stddef.h>
#include <stdint.h>
#include "sl/err.h"
#include "sl/slice.h"
#include "stats.h"

struct conn;

/* A connection was accepted: state HELLO, hello timer armed. */
void session_open(struct conn *c);

/* One complete frame payload (borrowed for the call). May close c. */
void session_on_frame(struct conn *c, const uint8_t *p, size_t n);

/* Send err{code, msg} (best effort) and close c with that code as reason. */
void session_fail(struct conn *c, enum sl_err code, const char *msg);

/* Called once by conn_close: stops the timer, releases the device map
 * entry and emits the disconnect envelope for an authenticated session. */
void session_closed(struct conn *c, enum close_reason r);

/* The persister committed seq: write ack (and sample the round trip). */
void session_ack(struct conn *c, uint64_t seq);

/* Deliver a command (id, body: raw msgpack, borrowed). */
void session_cmd(struct conn *c, struct sl_slice id, struct sl_slice body);

/* Monotonic microseconds (for the ack round-trip sample). */
uint64_t session_now_us(void);

#endif
