/* SPDX-License-Identifier: Apache-2.0 */
/* edge/conn.h - one worker's device connections: sockets, read and write
 * buffers, the frame decoder, one deadline timer each, and the close
 * lifecycle. Below the session (session.h), which gives meaning to frames:
 * conn knows bytes and frames, never message types, and reaches up only
 * through the struct conn_ops it is given (docs/internals.md, "edge data
 * path").
 *
 * Lifetime: a slot of the table is FREE, OPEN after conn_adopt, CLOSING
 * after conn_close(), and FREE again once conn_after() has flushed what it
 * could and closed the fd. An OPEN connection starts "early" (before its
 * device is known: hello, later TLS handshake and PROXY header): its frames
 * may be at most hello_max bytes and a partial one is held in a small
 * buffer of the table's early pool, never in a max_frame buffer, so
 * connections that never say hello cannot take the read buffers of
 * authenticated devices. conn_promote() ends the early phase. A slot's generation is bumped on every free, so
 * (slot, gen) never names two connections. Nothing here is thread-safe (a
 * table belongs to its worker thread) except the accepting helpers and the
 * counters' readers named below. */
#ifndef EDGE_CONN_H
#define EDGE_CONN_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/stat.h"
#include "sl/err.h"
#include "sl/frame.h"
#include "sl/loop.h"
#include "sl/slice.h"
#include "addr.h"

struct conn;
struct conn_table;
struct out_chunk;
struct record;
struct tls;

/* Why a connection closed: the label set of sluice_edge_connections_closed_total
 * and the `reason` of disconnect envelopes. Wire errors close with their
 * code as reason (conn_reason_of). */
enum conn_reason {
    CR_EOF = 0, /* device closed */
    CR_IO,      /* socket error */
    CR_OUT_CAP, /* output over --out-cap: device not reading */
    CR_FRAME,
    CR_DECODE,
    CR_PROTO,
    CR_AUTH,
    CR_REPLACED,
    CR_BUSY,
    CR_DRAINING,
    CR_TIMEOUT,
    CR_SHUTDOWN, /* process exit with the connection still open */
    CR_TLS,      /* the TLS handshake or a TLS record failed */
    CR_PROXY,    /* no valid PROXY protocol header on a --proxy-protocol listener */
    CR_COUNT
};

/* What a listener expects before frames (bits). */
enum conn_kind {
    CONN_KIND_PLAIN = 0,
    CONN_KIND_TLS = 1,   /* a TLS handshake (--listen-tls) */
    CONN_KIND_PROXY = 2, /* a PROXY protocol v2 header first (--proxy-protocol) */
};

const char *conn_reason_str(enum conn_reason r);
/* The close reason for a wire error code (CR_IO for anything else). */
enum conn_reason conn_reason_of(enum sl_err e);

enum conn_state {
    CONN_FREE = 0, /* slot unused */
    CONN_OPEN,     /* adopted: frames flow both ways */
    CONN_CLOSING,  /* conn_close() called; freed after the event batch */
};

struct conn {
    struct conn_table *t;
    struct conn *next_flush; /* flush list, or to-free list once CLOSING */
    struct conn *next_read;  /* to-read list */
    struct out_chunk *out_head, *out_tail;
    struct loop_timer timer; /* the layer above's one deadline (conn_timer) */
    struct frame_dec dec;    /* dec.buf taken from the pool only mid-frame */
    uint64_t bytes_in, bytes_out;
    uint32_t frames_in, frames_out;
    uint32_t out_len; /* bytes queued in out chunks */
    uint32_t slot, gen;
    int fd;
    struct addr peer;
    uint8_t state;        /* enum conn_state */
    uint8_t flags;        /* conn.c's list memberships and phases */
    uint8_t close_reason; /* enum conn_reason, once CLOSING */
    uint8_t upper;        /* free for the layer above (worker.c), zeroed at adopt */
};

/* What the layer above (worker.c) is told. Every callback runs on the
 * table's thread, from inside conn_adopt/the loop/conn_after. */
struct conn_ops {
    /* c was adopted (OPEN, registered with the loop). */
    void (*opened)(void *ud, struct conn *c);
    /* One complete frame payload, borrowed for the call. May close c. */
    void (*frame)(void *ud, struct conn *c, const uint8_t *p, size_t n);
    /* The byte stream cannot be cut into frames (SL_FRAME: a length of 0 or
     * above max_frame); the callee tells the device (err) and closes c. */
    void (*broken)(void *ud, struct conn *c, enum sl_err code, const char *why);
    /* c's deadline (conn_timer) passed. */
    void (*timer)(void *ud, struct conn *c);
    /* c became CLOSING (called once, before any output is dropped): let go
     * of what the layer above holds for it. Must not close c again. */
    void (*closing)(void *ud, struct conn *c, enum conn_reason r);
    /* conn_cfg.budgeted only: bytes c may read now (SIZE_MAX: any). 0: none,
     * c is held (not read) until the callee calls conn_release. Called
     * before each read of c. */
    size_t (*read_budget)(void *ud, struct conn *c);
    /* A PROXY header was read (CONN_KIND_PROXY): c->peer is the device's
     * address now, or, with local (a balancer's health check), still the
     * balancer's. The callee may close c. */
    void (*proxied)(void *ud, struct conn *c, bool local);
    /* The table's own listeners (--accept reuseport) only. accept_wait:
     * before each accept, 0 to go on, or ms to leave connections in the
     * backlog (the listeners are paused that long). accepted: a new fd of a
     * listener of that kind (enum conn_kind bits), owned by the callee,
     * which admits it (conn_admit, then conn_adopt) or refuses it
     * (conn_refuse). */
    uint32_t (*accept_wait)(void *ud);
    void (*accepted)(void *ud, int fd, const struct addr *peer, unsigned kind);
};

/* Counts of one table (one writer: the table's thread; read anywhere). */
struct conn_counts {
    _Atomic uint64_t early_buf_waits; /* an early connection found the early pool empty */
    _Atomic uint64_t accepted;        /* by this table's own listener (--accept reuseport) */
    _Atomic uint64_t refused;         /* err{busy}: --max-conns reached or no free slot */
    _Atomic uint64_t closed[CR_COUNT];
    _Atomic uint64_t frames_in, frames_out, bytes_in, bytes_out;
    _Atomic uint64_t out_pool_exhausted;
    _Atomic uint64_t tls_handshakes, tls_resumed, tls_failed; /* completed, of which resumed; failed */
};

struct conn_cfg {
    uint32_t worker; /* index: the recorder's and the logs' name for the table */
    uint32_t slots;  /* connections at most (the table is sized once) */
    uint32_t max_frame, out_cap, read_bufs, out_pool_mb;
    uint32_t hello_max;           /* largest frame of an early connection (its first frame: hello) */
    uint32_t early_bufs;          /* hello_max buffers for early connections' partial frames */
    _Atomic uint32_t *open_total; /* connections open in the whole edge (shared) */
    uint32_t max_total;           /* --max-conns: the bound of *open_total */
    struct sl_slice busy;         /* err{busy} frame bytes for refusals (borrowed for the table's life) */
    struct record *rec;           /* --record, or NULL */
    bool budgeted;                /* ask conn_ops.read_budget before reads (a per-device rate) */
    struct tls *tls;              /* the TLS context for CONN_KIND_TLS connections, or NULL */
    uint32_t handshakes_per_wake; /* TLS handshake steps per loop iteration, the table's whole */
};

/* A table of cfg->slots connections on loop l. The table, its pools and
 * buffers are allocated once (slots are backed by memory only once used).
 * NULL on allocation failure. */
struct conn_table *conn_table_new(const struct conn_cfg *cfg, struct loop *l, const struct conn_ops *ops,
                                  void *ud);
/* Close every open connection (CR_SHUTDOWN: `closing` is called for each),
 * flush best effort, free them, stop listening and free the table. */
void conn_table_destroy(struct conn_table **t);

/* ---- one connection ---------------------------------------------------- */

/* Writes one frame into buf (cap bytes): SL_OK with *len, or SL_TOOBIG. */
typedef enum sl_err conn_encode_fn(const void *arg, uint8_t *buf, size_t cap, size_t *len);

/* Queue one frame, encoded by enc(arg) straight into c's output (a frame
 * that fits the free end of the last chunk costs no copy), written once per
 * loop iteration. Never blocks. SL_OK; SL_AGAIN if c is not OPEN
 * (dropped); SL_TOOBIG if the frame is larger than max_frame allows
 * (dropped, c stays open); SL_NOMEM if c's output cap or the table's chunk
 * pool would be exceeded: c is then closed (CR_OUT_CAP) and the caller must
 * not touch it further. */
enum sl_err conn_send(struct conn *c, conn_encode_fn *enc, const void *arg);

/* Mark c CLOSING (calls ops->closing once) and free it after the event
 * batch; queued output is flushed best effort before the fd is closed.
 * Idempotent. */
void conn_close(struct conn *c, enum conn_reason r);

/* (Re)arm c's one deadline: ops->timer runs once, ms from now, unless c
 * closes first. */
void conn_timer(struct conn *c, uint64_t ms);

/* Read c again from the next iteration, after read_budget held it. */
void conn_release(struct conn *c);
/* Read what c has waiting now, as its readiness event would, unless it is
 * parked on a to-read list (it is read there). For a caller about to close
 * c for being slow whose bytes may only not have been read yet: a whole
 * hello is handled (c may leave the early phase), a broken one closes c. */
void conn_read_now(struct conn *c);

/* End c's early phase: from the next frame on, frames up to max_frame, read
 * through the max_frame pool. Idempotent. */
void conn_promote(struct conn *c);
bool conn_early(const struct conn *c);

/* Whether c came in on a TLS listener; whether it still waits for its PROXY
 * header. */
bool conn_is_tls(const struct conn *c);
bool conn_proxy_pending(const struct conn *c);

/* Does c's client certificate name dev (tls_peer_is)? true for a plain
 * connection and where client certificates are off. */
bool conn_peer_is(const struct conn *c, const char *dev, size_t n);

/* The OPEN connection (slot, gen) of t, or NULL. */
struct conn *conn_get(struct conn_table *t, uint32_t slot, uint32_t gen);
/* The slot's connection whatever its state (slot < cfg->slots). */
struct conn *conn_at(struct conn_table *t, uint32_t slot);
/* The next OPEN connection at or after slot *cursor (wrapping once), with
 * *cursor moved past it; NULL if none is open. For paced eviction. */
struct conn *conn_next_open(struct conn_table *t, uint32_t *cursor);

/* ---- the table, for its worker ---------------------------------------- */

/* Give an admitted fd a slot and register it: `opened` runs (true; `closing`
 * follows some day). false: not adopted, no callback will ever name it
 * (no slot left: refused with err{busy}; or epoll refused it: closed), and
 * its place under --max-conns is given back either way. */
bool conn_adopt(struct conn_table *t, int fd, const struct addr *peer, unsigned kind);
/* Read input left unread (caps, pause, pool) and the after-iteration work:
 * conn_after reads, conn_flush_all writes (one writev per connection),
 * conn_free_closed frees what closed. Called by the worker's after-hook. */
void conn_after(struct conn_table *t);
void conn_flush_all(struct conn_table *t);
void conn_free_closed(struct conn_table *t);
/* Unread input that may be read now (the loop must not sleep). */
bool conn_read_pending(const struct conn_table *t);
/* Stop (true) or resume reading every connection: persister backpressure.
 * Pausing costs no syscall: connections with input park on a list. */
void conn_set_paused(struct conn_table *t, bool paused);

/* --accept reuseport: a SO_REUSEPORT listener of t's own on its loop (one
 * per kind at most), which hands each accepted fd to conn_ops.accepted.
 * 0 or -errno. */
int conn_listen(struct conn_table *t, const char *spec, unsigned kind);
void conn_stop_listening(struct conn_table *t);

/* Any thread. */
uint32_t conn_open_count(const struct conn_table *t);
bool conn_listening(const struct conn_table *t);
const struct conn_counts *conn_counts(const struct conn_table *t);

/* ---- accepting, shared by both --accept modes ---------------------------
 * Thread-safe (they touch only fds and the atomic they are given), none
 * blocks. conn_listen_socket: a non-blocking listening socket on spec
 * "host:port" with SO_REUSEPORT, or -errno. conn_accept: one pending
 * connection of lfd, or -1 when none is left or the process is out of fds
 * (then *spare_fd is spent to drop one, logged as `who`). conn_admit: take
 * one place of *open_total under max (false: none left, nothing taken).
 * conn_refuse: write `frame` best effort, FIN, close. */
int conn_listen_socket(const char *spec);
int conn_accept(int lfd, int *spare_fd, struct addr *peer, const char *who);
bool conn_admit(_Atomic uint32_t *open_total, uint32_t max);
void conn_refuse(int fd, struct sl_slice frame);

#endif
