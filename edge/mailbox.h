/* edge/mailbox.h - the one inbox of a worker: what other threads hand it.
 *
 * Other threads (the acceptor, the other workers) post tagged items; the
 * owning worker takes them on its own thread, woken through its loop's
 * eventfd (loop_wake): one queue, one lock, one wake-up fd. Items are taken
 * in the order they were posted, whatever their kind.
 *
 * Bounded in items and bytes, with a reserved share per kind: a kind whose
 * share is full is refused while the others still get in, so a flood of
 * forwarded commands can never keep a kick or a new connection out. What a
 * refusal means is the sender's business (mailbox.c says nothing about
 * retrying): the acceptor leaves connections in the kernel's backlog,
 * worker.c keeps a kick and posts it again (a kick is never dropped), and a
 * command is answered `undeliverable`.
 *
 * Thread-safe: every call may come from any thread, except mailbox_take
 * (the owner's thread) and mailbox_destroy (nobody posts any more). The
 * lock is held for a few stores, never across a callback or a syscall
 * other than the eventfd write of the wake-up. */
#ifndef EDGE_MAILBOX_H
#define EDGE_MAILBOX_H
#include <stdbool.h>
#include <stdint.h>
#include "addr.h"

struct loop;
struct mailbox;

enum mailbox_kind {
    MAILBOX_ADOPT = 0, /* an accepted connection for this worker (--accept handoff) */
    MAILBOX_KICK,      /* close this worker's connection (slot, gen) with err{code} */
    MAILBOX_CMD,       /* an operator command forwarded by another worker */
    MAILBOX_KINDS
};

struct mailbox_item {
    uint8_t kind; /* enum mailbox_kind */
    union {
        struct {
            int fd; /* admitted under --max-conns; owned by the item */
            struct addr peer;
            uint8_t conn_kind; /* enum conn_kind bits of its listener */
        } adopt;
        struct {
            uint32_t slot, gen;
            int32_t code; /* enum sl_err of the err frame */
        } kick;
        struct {
            void *p;        /* heap copy made by the sender (cmdfwd.c); owned by the item */
            uint32_t bytes; /* its size, counted against the byte bound */
        } cmd;
    } u;
};

struct mailbox_limits {
    uint32_t share[MAILBOX_KINDS]; /* items of each kind queued at most */
    uint64_t max_bytes;            /* sum of u.cmd.bytes queued at most */
};

/* The default shares (worker.c): 1024 connections, 1024 kicks, 256
 * commands holding at most 4 MiB. */
#define MAILBOX_ADOPT_SHARE 1024u
#define MAILBOX_KICK_SHARE  1024u
#define MAILBOX_CMD_SHARE   256u
#define MAILBOX_CMD_BYTES   (4u << 20)

/* A mailbox whose posts wake `owner` (the owning worker's loop). Allocates
 * the whole ring once. NULL on allocation failure. */
struct mailbox *mailbox_new(const struct mailbox_limits *lim, struct loop *owner);

/* Free the mailbox; items still queued are handed to drop (if not NULL)
 * one by one, in order, so the caller can close fds and free copies. */
typedef void mailbox_drop_fn(void *ud, struct mailbox_item *it);
void mailbox_destroy(struct mailbox **mb, mailbox_drop_fn *drop, void *ud);

/* Queue a copy of *it and wake the owner. true: the item (and what it
 * owns) now belongs to the mailbox. false: its kind's share or the byte
 * bound is full; nothing changed and the item is still the caller's. */
bool mailbox_post(struct mailbox *mb, const struct mailbox_item *it);

/* Owner thread: move up to max items, oldest first, into out. If items
 * remain, the owner's loop is woken again, so a caller that takes a
 * bounded batch per wake-up never strands the rest. Returns the count. */
uint32_t mailbox_take(struct mailbox *mb, struct mailbox_item *out, uint32_t max);

/* Any thread, lock-free: items of kind k queued now (a snapshot). */
uint32_t mailbox_len(const struct mailbox *mb, enum mailbox_kind k);

/* Any thread, lock-free: monotonic ms of the owner's last progress while
 * the mailbox was not empty (the post into an empty mailbox counts as
 * progress); 0 while it is empty. now - this = how long items have waited
 * without the owner taking any: a stuck worker (acceptor.c). */
uint64_t mailbox_stalled_since(const struct mailbox *mb);

/* Sum of u.cmd.bytes queued now (owner or tests). */
uint64_t mailbox_bytes(const struct mailbox *mb);

#endif
