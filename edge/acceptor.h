/* edge/acceptor.h - --accept handoff: one listening socket and one thread
 * that accepts and hands each connection to the least loaded worker. */
#ifndef EDGE_ACCEPTOR_H
#define EDGE_ACCEPTOR_H
#include <stdbool.h>
#include <stdint.h>
#include "sl/stat.h"
#include "worker.h"

struct acceptor;
struct edge;
struct mailbox;

/* A worker whose handed-over connections made no progress for this long is
 * passed over while another one is not (its loop is busy or blocked). */
#define ACCEPTOR_STUCK_MS 250u

/* Bind e->cfg.listen (SO_REUSEPORT, so a replacement edge can bind while this
 * one drains). Call after the workers exist. NULL on failure (logged). */
struct acceptor *acceptor_new(struct edge *e);
/* Spawn the thread. 0 or -errno. */
int acceptor_start(struct acceptor *a);
/* Stop accepting, close the listener, join the thread. Idempotent; blocks
 * until the thread has left (at most one accept batch). */
void acceptor_stop(struct acceptor *a);
void acceptor_destroy(struct acceptor **a);
/* Thread-safe: the listener is open (for /readyz). */
bool acceptor_listening(const struct acceptor *a);

/* Counts of the acceptor thread (its one writer); read anywhere. */
struct acceptor_counts {
    _Atomic uint64_t accepted;
    _Atomic uint64_t refused; /* err{busy}: --max-conns reached (source limits: guard_counts) */
};
const struct acceptor_counts *acceptor_counts(const struct acceptor *a);

/* Whether a worker can take a handed-off connection now. */
enum acceptor_intake {
    ACCEPTOR_INTAKE_OK,
    ACCEPTOR_INTAKE_STUCK, /* its mailbox made no progress for stuck_ms */
    ACCEPTOR_INTAKE_FULL,  /* its mailbox has no room for connections */
};

/* A worker's intake at now_ms (monotonic) from its open connections and
 * its mailbox, and its *load = connections open plus those handed to it
 * and not yet taken. Lock-free (a snapshot: with one producer, the
 * acceptor, room seen stays until that producer posts). Exposed for the
 * unit test. */
enum acceptor_intake acceptor_intake(uint32_t open, const struct mailbox *mb, uint64_t now_ms,
                                     uint64_t stuck_ms, uint32_t *load);

/* The worker for the next connection: the least loaded one whose intake is
 * OK; else the least loaded STUCK one; UINT32_MAX when all are FULL. Ties go
 * to the lowest index. Pure (exposed for the unit test). */
uint32_t acceptor_pick(const uint32_t *load, const enum acceptor_intake *st, uint32_t n);

#endif
