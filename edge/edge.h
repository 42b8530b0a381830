/* SPDX-License-Identifier: Apache-2.0 */
/* edge/edge.h - process-wide configuration and state of sluice-edge.
 *
 * One struct edge per process, shared read-only by the worker threads after
 * startup, except for the atomics (connection count, drain/stop flags) and
 * the device map, which has its own lock. */
#ifndef EDGE_EDGE_H
#define EDGE_EDGE_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EDGE_MAX_WORKERS 64
#define EDGE_MAX_FRAME   (1024 * 1024) /* --max-frame at most: what the bus's batches hold (bus.c) */

/* How connections reach the workers (--accept; docs/internals.md, "accepting"). */
enum edge_accept {
    EDGE_ACCEPT_HANDOFF,   /* one listener, an acceptor thread hands each to the least loaded worker */
    EDGE_ACCEPT_REUSEPORT, /* one SO_REUSEPORT listener per worker: the kernel spreads them */
};

struct edge_cfg {
    const char *listen;     /* "host:port" of plain TCP, "" = none */
    const char *listen_tls; /* "host:port" of TLS, "" = none */
    bool proxy_protocol;    /* every listener expects a PROXY v2 header first */
    uint32_t tls_handshakes_per_wake;
    enum edge_accept accept;
    const char *edge_id; /* default <hostname>:<port> */
    const char *persister_push, *persister_router, *notifier_push, *notifier_router;
    uint32_t workers;
    uint32_t max_frame;
    uint32_t hb_s;
    uint32_t hello_timeout_ms;
    uint32_t hello_timeout_min_ms;    /* floor of the hello deadline under pressure */
    uint32_t hello_max;               /* largest first frame (hello), bytes */
    uint32_t early_max;               /* connections without a hello yet, per worker */
    double device_rate, device_burst; /* frames per second after hello, per device (0 = no limit) */
    uint32_t device_hold_max_ms;      /* longest pause of a device over its rate */
    uint32_t idle_timeout_ms;
    uint32_t max_conns;   /* total across workers; beyond it: err busy */
    uint32_t out_cap;     /* per-connection output cap, bytes */
    uint32_t read_bufs;   /* pooled max_frame read buffers per worker */
    uint32_t out_pool_mb; /* output chunk pool per worker, MiB */
    int zmq_hwm;          /* SNDHWM/RCVHWM of the bus sockets, messages */
    int64_t zmq_max_msg;  /* largest reply batch the DEALER accepts, bytes */
    double drain_rate;    /* evictions per second while draining (whole edge) */
    uint32_t drain_timeout_ms;
    /* data copies for the notifiers wait this long to share a message */
    uint32_t ntf_window_ms;
    const char *record_path;    /* --record: "" = off */
    const char *record_devices; /* --record-devices: "" = every device */
    uint64_t record_max_bytes;  /* --record-max-mb in bytes, 0 = no limit */
    /* CURVE on the bus (docs/security.md): NULL = plain. This edge's key
     * pair and the services' public keys (Z85). */
    const struct keys_pair *curve;
    const char *persister_key, *notifier_key;
};

struct devmap;
struct guard;
struct mailbox;
struct record;
struct cidr;
struct tls;
struct trust;
struct worker;
struct zmqx_resolver;

#define EDGE_BUSY_MAX 128 /* room for the pre-encoded err{busy} frame */

struct edge {
    struct edge_cfg cfg;
    uint64_t incarnation; /* random at each start (getrandom) */
    void *zctx;           /* ZeroMQ context (thread-safe) */
    struct devmap *map;   /* device -> (worker, slot, gen), newest hello wins */
    struct worker *workers[EDGE_MAX_WORKERS];
    struct mailbox *mbox[EDGE_MAX_WORKERS]; /* workers[i]'s, for the others to post to */
    uint32_t nworkers;
    struct zmqx_resolver *r_pp, *r_pr, *r_np, *r_nr;
    struct record *rec;      /* traffic recorder, NULL unless --record */
    struct guard *guard;     /* who may connect, how often (thread-safe) */
    struct trust *trust;     /* fleet secrets, deny list (thread-safe, reloadable) */
    struct tls *tls;         /* the TLS listener's context (reloadable), or NULL */
    struct cidr *proxy_from; /* who may send PROXY headers (--proxy-from) */
    int nproxy_from;
    uint8_t busy[EDGE_BUSY_MAX]; /* err{busy} frame, encoded once (main) for every refusal */
    uint32_t busy_len;
    _Atomic uint32_t open_total; /* accepted connections open, all workers */
    _Atomic bool draining;       /* SIGTERM seen: stop accepting, evict */
    _Atomic uint64_t drain_deadline_ms;
    /* Shedding (POST /admin/shed, docs/internals.md "shedding"): main
     * writes shed_rate then shed; the workers read both on their tick and
     * close authenticated devices with err{draining}, the way SIGTERM's
     * drain does, until open_total <= the target, then clear shed. */
    _Atomic uint64_t shed;         /* 0 = none, else (request number << 32) | target */
    _Atomic uint32_t shed_rate;    /* closes per second for the whole edge */
    _Atomic uint32_t shed_pending; /* closes started but maybe not yet out of open_total */
    _Atomic uint32_t shed_done;    /* closes of the current request (for its end line) */
};

#endif
