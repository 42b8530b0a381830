/* SPDX-License-Identifier: Apache-2.0 */
/* edge/ntfring.h - which notifier each device's entries go to, as one
 * worker sees the notifiers: a peer per notifier endpoint the resolver
 * gives, named by the id its heartbeats carry, and the ring of the peers
 * heard recently (sl/ring.h: rendezvous hashing over ids, so a notifier
 * that leaves or arrives moves only its own share of the devices).
 *
 * How a peer gets its id: the bus sends a heartbeat to each endpoint
 * carrying that endpoint's name (`to`); a notifier answers on the worker's
 * DEALER with ENV_NOTIFIER_HB echoing `to`, under its own id (header edge).
 * A peer is a member while its id is known, its connection is up and its
 * last answer is younger than NTFRING_TIMEOUT_MS. While no peer is a member,
 * everything goes to the first endpoint that is connected (the fallback): a
 * notifier of the version before heartbeats, which never answers and ran
 * alone, or the first notifier of a starting deployment in the milliseconds
 * before its first answer.
 *
 * I/O-free: the bus owns the sockets (one PUSH per peer slot, same index)
 * and tells this module what it sees. One per worker; not thread-safe. */
#ifndef EDGE_NTFRING_H
#define EDGE_NTFRING_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/limits.h"
#include "sl/ring.h"
#include "sl/slice.h"

#define NTFRING_PEERS      RING_MAX /* notifier endpoints one worker sends to */
#define NTFRING_EP_MAX     320      /* longest endpoint (the resolver's) */
#define NTFRING_TIMEOUT_MS 3000u    /* a member silent this long leaves the ring */

struct ntfring_peer {
    bool used;
    char ep[NTFRING_EP_MAX];
    char id[SL_DEV_MAX + 1]; /* "" until its first heartbeat answer */
    uint64_t key;            /* ring_key(id) */
    uint64_t heard_ms;       /* its last answer */
    uint64_t up_since_ms;    /* connection up since (0: down) */
    bool member;             /* in the ring now */
};

struct ntfring {
    struct ntfring_peer p[NTFRING_PEERS];
    uint32_t slots[NTFRING_PEERS]; /* members' slots, in id order */
    uint64_t keys[NTFRING_PEERS];  /* and their keys, for ring_pick */
    uint32_t nm;
    int legacy;       /* the fallback: takes everything while there is no member, or -1 */
    uint32_t version; /* bumped whenever members or legacy change */
    char list[NTFRING_PEERS * (SL_DEV_MAX + 1) + 1]; /* member ids, comma-joined, id order */
};

void ntfring_init(struct ntfring *r);

/* A new endpoint (as the bus connects to it): its slot, or -1 if all are
 * taken or ep is too long. */
int ntfring_add(struct ntfring *r, const char *ep);
/* The endpoint of slot s vanished from the resolver (bumps the version:
 * what was routed to s is routed again). */
void ntfring_remove(struct ntfring *r, int s);
/* The slot of endpoint ep, or -1. */
int ntfring_find(const struct ntfring *r, const char *ep, size_t n);

/* Slot s's connection went up or down (the socket monitor). */
void ntfring_conn(struct ntfring *r, int s, bool up, uint64_t now_ms);
/* A notifier heartbeat: `to` names the endpoint the worker's heartbeat went
 * to, id the notifier. Returns its slot, or -1 for an endpoint no longer
 * ours or an id outside [A-Za-z0-9._:-]{1,64}. Another slot that claimed
 * the same id (an old address of a restarted notifier) loses it. */
int ntfring_heard(struct ntfring *r, struct sl_slice to, struct sl_slice id, uint64_t now_ms);

/* Recompute the ring at now_ms. True when it changed (version bumped). */
bool ntfring_update(struct ntfring *r, uint64_t now_ms);

/* The slot for a device whose ring_key is dev_key: a member by rendezvous
 * hashing, else the fallback, else -1 (nowhere to send now). */
int ntfring_owner(const struct ntfring *r, uint64_t dev_key);

#endif
