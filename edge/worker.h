/* SPDX-License-Identifier: Apache-2.0 */
/* edge/worker.h - one event-loop thread of the edge. It owns its loop, its
 * connection table (conn.h), the sessions beside it (session.h), its bus
 * (bus.h) and its mailbox (mailbox.h), and it is where they meet: it
 * dispatches frames to sessions, replies to connections, mailbox items to
 * whoever they are for. Calls go one way from here (docs/internals.md,
 * "edge data path"); nothing below calls back up except through the ops
 * tables the worker hands out.
 *
 * Only worker_new/destroy/start/join are for main; the thread-safe calls
 * below are what other threads (the acceptor, the other workers, main's
 * readiness and metrics) may use. */
#ifndef EDGE_WORKER_H
#define EDGE_WORKER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/err.h"
#include "sl/stat.h"

struct edge;
struct worker;
struct conn_counts;
struct session_counts;
struct bus_counts;
struct cmdfwd_counts;

/* Allocate and set up worker idx (loop, mailbox, table, sessions, bus,
 * and with --accept reuseport its listener). Called from main before any
 * thread starts; it stores its mailbox in e->mbox[idx]. NULL on failure
 * (logged). */
struct worker *worker_new(struct edge *e, uint32_t idx);
/* Close what is left (disconnect envelopes get one last send) and free. */
void worker_destroy(struct worker **w);
int worker_start(struct worker *w); /* spawn the thread: 0 or -errno */
void worker_join(struct worker *w);

/* Thread-safe: wake w to notice draining. */
void worker_notify(struct worker *w);

/* Thread-safe: may this accepted fd stay? Checks the source's limits
 * (guard.h) and takes a place under --max-conns. OK: both taken (released
 * by the connection's close, or by guard_closed + the open count if it is
 * never adopted). Otherwise the fd was answered err{busy} (with retry_ms
 * for a source over its limits) and closed; the guard counted a source
 * refusal, the caller counts FULL. Never blocks beyond the guard's lock
 * and a write to a fresh socket. */
enum worker_admit {
    WORKER_ADMIT_OK,
    WORKER_ADMIT_SOURCE, /* the source is over a limit or banned */
    WORKER_ADMIT_FULL,   /* --max-conns reached */
    WORKER_ADMIT_PROXY,  /* a PROXY listener, and the peer is not in --proxy-from */
};
struct addr;
/* kind: the listener's enum conn_kind bits (a PROXY listener's connections
 * are judged by the guard only once their header names the device). */
enum worker_admit worker_admit(struct edge *e, int fd, const struct addr *peer, unsigned kind);
/* Give back what worker_admit took for an fd that was never adopted. */
void worker_unadmit(struct edge *e, const struct addr *peer, unsigned kind);

/* Thread-safe: close device dev wherever it is connected on this edge,
 * with err{code} (revocation: SL_AUTH), through its worker's mailbox.
 * true if done or not connected; false if that mailbox's kick share is
 * full (try again later). */
bool worker_kick_device(struct edge *e, const char *dev, size_t n, enum sl_err code);

/* Thread-safe, lock-free: connections open on w now. (Other threads hand
 * w connections, kicks and commands through its mailbox, e->mbox[idx].) */
uint32_t worker_open(const struct worker *w);

/* What the worker itself counts (one writer: its thread). */
struct worker_counts {
    _Atomic uint64_t stale_replies; /* acks, cmds or kicks whose connection or device no longer matched */
    _Atomic uint64_t stale_batches; /* reply batches for another incarnation or version, or malformed */
    _Atomic uint64_t kicks;         /* connections closed on a kick from the notifier */
    _Atomic uint64_t kicks_retried; /* kicks another worker's mailbox could not take at once */
    _Atomic uint64_t early_evicted; /* early connections closed to make room for a newer one */
    _Atomic uint64_t refused_full;  /* its own listener's refusals: --max-conns reached */
    _Atomic uint64_t shed;          /* devices closed by POST /admin/shed (err draining) */
};

/* Thread-safe views for readiness and metrics (stats.c). */
struct worker_view {
    uint32_t open;
    uint32_t early;  /* connections without an accepted hello yet */
    unsigned bus_up; /* enum bus_up bits of the last bus tick */
    bool listening;  /* --accept reuseport: its own listener is open */
    const struct conn_counts *conn;
    const struct session_counts *session;
    const struct bus_counts *bus;
    const struct cmdfwd_counts *cmdfwd;
    const struct worker_counts *own;
};
void worker_view(const struct worker *w, struct worker_view *out);

#endif
