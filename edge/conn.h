/* edge/conn.h - device connections: the fixed-size per-connection struct,
 * and the narrow interface session.c and bus.c use to act on one.
 *
 * Lifetime (docs/internals.md, "edge connections"): a slot of the worker's
 * preallocated table is FREE, then HELLO after accept, READY after a good
 * hello, CLOSING after conn_close(), and FREE again once the worker's
 * after-hook has flushed what it could and closed the fd. The generation
 * of a slot is bumped on every free, so (slot, gen) never names two
 * connections. Nothing here is thread-safe (a conn belongs to its worker)
 * except the accepting helpers named below. */
#ifndef EDGE_CONN_H
#define EDGE_CONN_H
#include <stdbool.h>
#include <stdint.h>
#include "sl/err.h"
#include "sl/frame.h"
#include "sl/limits.h"
#include "sl/loop.h"
#include "sl/msg.h"
#include "sl/slice.h"
#include "devmap.h"
#include "stats.h"

struct edge;
struct worker;
struct out_chunk;

/* A device's address as accept() reported it. */
struct conn_peer {
    uint8_t ip[16];
    uint16_t port;
    bool v6;
};

enum conn_state {
    CONN_FREE = 0, /* slot unused */
    CONN_HELLO,    /* accepted, waiting for hello (hello timer armed) */
    CONN_READY,    /* authenticated: data/ping/res allowed (idle timer armed) */
    CONN_CLOSING,  /* conn_close() called; freed after the event batch */
};

enum conn_flag {
    CONN_F_FLUSH = 1, /* on the worker's flush list */
    CONN_F_READY = 2, /* on the worker's to-read list (unread input pending) */
    CONN_F_V6 = 4,    /* peer address is IPv6 */
};

struct conn {
    struct worker *w;
    struct conn *next_flush; /* flush list, or to-free list once CLOSING */
    struct conn *next_read;  /* to-read list */
    struct out_chunk *out_head, *out_tail;
    struct loop_timer timer; /* hello timeout, then idle check */
    struct frame_dec dec;    /* dec.buf taken from the pool only mid-frame */
    uint64_t epoch;          /* session epoch: CLOCK_REALTIME ns at hello accept */
    uint64_t last_ms;        /* loop time of the last frame received */
    uint64_t rtt_seq;        /* sampled data seq awaiting its ack (0 = none) */
    uint64_t rtt_us;         /* its receive time, monotonic us */
    uint64_t bytes_in, bytes_out;
    uint32_t frames_in, frames_out;
    uint32_t out_len; /* bytes queued in out chunks */
    uint32_t slot, gen;
    int fd;
    uint16_t peer_port;
    uint8_t state;        /* enum conn_state */
    uint8_t flags;        /* enum conn_flag */
    uint8_t close_reason; /* enum close_reason, once CLOSING */
    uint8_t dev_len;
    uint8_t peer_ip[16];
    char dev[SL_DEV_MAX + 1];
};

/* Encode m as a frame and queue it on c's output (written once per loop
 * iteration). Never blocks. SL_OK; SL_AGAIN if c is closing (dropped);
 * SL_NOMEM if the output cap or the worker's chunk pool was exceeded: c is
 * then closed (reason out_cap) and the caller must not touch it further. */
enum sl_err conn_send_frame(struct conn *c, const struct msg *m);

/* Mark c CLOSING and schedule it for freeing after the event batch; calls
 * session_closed() once. Queued output is flushed best effort before the
 * fd is closed. Idempotent. */
void conn_close(struct conn *c, enum close_reason r);

/* Close connection `ref` with err{code}: directly when it belongs to w,
 * otherwise through its worker's queue (never touching its state). */
void conn_kick(struct worker *w, struct devmap_ref ref, enum sl_err code);

/* The READY connection (slot, gen) of w whose device is dev, or NULL. */
struct conn *conn_find(struct worker *w, uint32_t slot, uint32_t gen, struct sl_slice dev);

/* Format c's peer as "ip:port" into out (>= 48 bytes). Returns length. */
uint32_t conn_peer_str(const struct conn *c, char *out, uint32_t cap);

/* Worker-side plumbing (worker.c): set up the table, pools and listener;
 * the after-hook work; teardown. Return 0 or -errno. */
int conn_worker_init(struct worker *w);
void conn_worker_fini(struct worker *w);
/* --accept reuseport: w's own SO_REUSEPORT listener on its loop. */
int conn_listen(struct worker *w);
void conn_stop_listening(struct worker *w);

/* Accepting, shared by both --accept modes (docs/internals.md, "edge: accepting").
 * conn_listen_socket: a non-blocking listening socket on spec "host:port" (with
 * SO_REUSEPORT), or -errno. conn_accept: one pending connection of lfd
 * (non-blocking), or -1 when none is left or the process is out of fds (then
 * *spare_fd is spent to drop one, logged as `who`). conn_admit: take one
 * place under --max-conns, or refuse fd with err{busy} and close it (false).
 * conn_refuse: give an admitted fd's place back, answer err{busy}, close.
 * conn_adopt: give an admitted fd a slot of w and start its session (w's
 * thread only; closes it and frees the place on failure). None blocks;
 * all but conn_adopt are thread-safe (they touch only atomics and fd). */
int conn_listen_socket(const char *spec);
int conn_accept(int lfd, int *spare_fd, struct conn_peer *peer, const char *who);
bool conn_admit(struct edge *e, int fd);
void conn_refuse(struct edge *e, int fd);
void conn_adopt(struct worker *w, int fd, const struct conn_peer *peer);
void conn_after(struct worker *w); /* read deferred input, flush output, free closed */
void conn_flush_all(struct worker *w);
void conn_free_closed(struct worker *w);
bool conn_read_pending(const struct worker *w); /* unread input that may be read now */
/* Close up to n READY/HELLO connections with err draining; returns how many. */
uint32_t conn_evict(struct worker *w, uint32_t n);

#endif
