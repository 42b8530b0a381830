/* SPDX-License-Identifier: Apache-2.0 */
/* edge/session.h - the device protocol state machine (docs/protocol.md §2):
 * hello/auth, data, ping, res in; welcome, ack, pong, cmd, err out; the
 * hello and idle deadlines; takeover in the device map; the envelopes a
 * session produces.
 *
 * It does no I/O and holds no pointer to a connection: everything it does
 * to the world goes through the struct session_ops its worker gives it
 * (send a frame, close, arm the deadline, emit an envelope, kick another
 * connection, the clocks), so unit tests drive it with a stub table. All
 * calls for one session happen on its worker's thread. */
#ifndef EDGE_SESSION_H
#define EDGE_SESSION_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/stat.h"
#include "sl/envelope.h"
#include "sl/err.h"
#include "sl/msg.h"
#include "sl/slice.h"
#include "devmap.h"

struct edge_cfg;
struct trust;

enum session_phase {
    SESSION_NONE = 0, /* no connection, or closed */
    SESSION_HELLO,    /* opened, waiting for hello (hello deadline armed) */
    SESSION_READY,    /* authenticated: data/ping/res allowed (idle deadline armed) */
};

/* One per connection, in the worker's array beside the connection table
 * (same index). 40 bytes: it is half of what an idle connection costs. */
struct session {
    uint64_t epoch;     /* session epoch: CLOCK_REALTIME ns at hello accept */
    uint64_t rtt_us;    /* receive time of the sampled data frame, monotonic us */
    uint32_t rtt_seq;   /* low 32 bits of its seq, awaiting its ack (0 = none) */
    uint32_t last_ms;   /* loop time of the last frame received (ms, wraps: compared as a difference) */
    float tokens;       /* frames it may still send at once (--device-rate bucket) */
    uint32_t refill_ms; /* loop time of the last refill */
    uint8_t phase;      /* enum session_phase */
    uint8_t dev_len;    /* after hello; the id itself is in the device map's node of this slot */
    uint8_t held;       /* reading stopped by the rate bucket until the deadline */
};

/* What a session does to the world. ud is session_env.ud. */
struct session_ops {
    /* Queue frame m on s's connection. SL_OK; SL_AGAIN if it is closing
     * (dropped); SL_TOOBIG (dropped, still open); SL_NOMEM: the output cap
     * was hit and the connection is now closed: do not touch s further. */
    enum sl_err (*send)(void *ud, struct session *s, const struct msg *m);
    /* Close s's connection; the reason is the wire code's (conn_reason_of).
     * session_closed follows from inside this call. */
    void (*close)(void *ud, struct session *s, enum sl_err code);
    /* (Re)arm s's one deadline: session_on_timer after ms. */
    void (*arm)(void *ud, struct session *s, uint64_t ms);
    /* Hand one envelope to the bus (borrowed fields are copied). */
    void (*emit)(void *ud, const struct envelope *e);
    /* Close connection `old` (this worker's or another's) with err{code}. */
    void (*kick)(void *ud, struct devmap_ref old, enum sl_err code);
    /* Does s's connection prove it is dev (mutual TLS: its certificate's CN
     * or a SAN equals dev)? NULL, or true, where nothing is to be proven. */
    bool (*peer_id)(void *ud, const struct session *s, const char *dev, size_t n);
    /* May device dev (its token is valid) start a session now? 0, or the
     * ms until it may (it is refused err{busy, retry_ms}: flapping). */
    uint32_t (*admit_device)(void *ud, const char *dev, size_t n);
    /* s's hello was accepted (before its welcome is sent): the connection
     * leaves its early phase. */
    void (*authenticated)(void *ud, struct session *s);
    /* s's connection may be read again: a hold of --device-rate ended
     * (session_read_budget returned 0 when it began). */
    void (*release)(void *ud, struct session *s);
    /* s's peer as "ip:port" into out (>= 48 bytes); returns its length. */
    uint32_t (*peer)(void *ud, const struct session *s, char *out, uint32_t cap);
    uint64_t (*wall_ns)(void *ud); /* CLOCK_REALTIME, ns */
    uint64_t (*mono_us)(void *ud); /* CLOCK_MONOTONIC, us */
    uint64_t (*now_ms)(void *ud);  /* the loop's cached monotonic ms */
};

/* Ack round trips are counted in these buckets (upper bounds, seconds). */
#define SESSION_RTT_BUCKETS 13
extern const double session_rtt_bounds[SESSION_RTT_BUCKETS];

/* Counts of one worker's sessions (one writer: that worker). */
struct session_counts {
    _Atomic uint64_t errors[SL_TIMEOUT + 1]; /* err frames sent, by wire code */
    _Atomic uint64_t auth_failures;
    _Atomic uint64_t revoked; /* hellos of devices on the deny list */
    _Atomic uint64_t acks, cmds;
    _Atomic uint64_t holds, held_us; /* reads stopped by --device-rate, and for how long */
    struct stat_hist rtt;            /* sampled ack round trips (session_env_init sets its buckets) */
};

/* What every session of one worker shares. */
struct session_env {
    const struct session_ops *ops;
    void *ud;
    const struct edge_cfg *cfg;   /* edge id, timeouts, hb, max_frame */
    struct trust *trust;          /* fleet secrets and the deny list */
    struct devmap *map;           /* newest hello wins */
    const _Atomic bool *draining; /* refuse hellos while set */
    double rate, burst;           /* frames per second a device may send, and its burst (rate 0 = no limit) */
    uint32_t hold_max_ms;         /* the longest hold: well below a device's ack timeout */
    struct session_counts cnt;
};

/* Zero x's counts and set up its histogram. Before any session runs. */
void session_env_init(struct session_env *x);

/* A connection was opened: phase HELLO, hello deadline armed to hello_ms
 * (the worker shortens it under pressure: docs/protocol.md §1). */
void session_open(struct session_env *x, struct session *s, uint64_t hello_ms);

/* One complete frame payload (borrowed for the call); self names s's
 * connection (for envelopes and the device map). May close it. */
void session_on_frame(struct session_env *x, struct session *s, struct devmap_ref self, const uint8_t *p,
                      size_t n);

/* s's deadline passed: hello timeout, or an idle check that re-arms. */
void session_on_timer(struct session_env *x, struct session *s);

/* Send err{code, text} (best effort) and close with that code as reason. */
void session_fail(struct session_env *x, struct session *s, enum sl_err code, const char *text);
/* The same with retry_ms: the device should not come back sooner. */
void session_fail_retry(struct session_env *x, struct session *s, enum sl_err code, const char *text,
                        uint32_t retry_ms);

/* A refusal for a connection that never got a session (edge full, a source
 * over its limits): err{code, text, retry_ms} as frame bytes into buf.
 * Returns the length, 0 if cap is too small. */
size_t session_encode_refusal(enum sl_err code, const char *text, uint32_t retry_ms, uint8_t *buf,
                              size_t cap);

/* s's connection is closing (once, whatever closed it): release the device
 * map entry and emit the disconnect envelope of an authenticated session,
 * reason being the close reason's name. */
void session_closed(struct session_env *x, struct session *s, struct devmap_ref self, const char *reason);

/* The persister committed seq: write ack (and sample the round trip). */
void session_ack(struct session_env *x, struct session *s, uint64_t seq);

/* How many bytes s's connection may read now (--device-rate): SIZE_MAX
 * without a limit, else about as many frames as s has tokens for (of
 * frame_bytes each, the connection's average), 0 when it has none: the
 * connection is then held (not read) until the deadline, when
 * session_on_timer calls ops->release. */
size_t session_read_budget(struct session_env *x, struct session *s, uint32_t frame_bytes);

/* Deliver a command (id, body: raw msgpack, both borrowed) to s, which is
 * the connection self; once its frame is queued, emit cmd_sent. */
void session_cmd(struct session_env *x, struct session *s, struct devmap_ref self, struct sl_slice id,
                 struct sl_slice body);

/* True if s is authenticated as dev (a reply addressed to (slot, gen, dev)
 * is for this session only if the device matches too). */
bool session_is(const struct session_env *x, const struct session *s, struct devmap_ref self,
                struct sl_slice dev);

/* s's device id (NUL-terminated; "-" before hello). */
const char *session_dev(const struct session_env *x, const struct session *s, struct devmap_ref self);

#endif
