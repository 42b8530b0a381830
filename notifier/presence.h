/* SPDX-License-Identifier: Apache-2.0 */
/* presence.h - who holds which device: the notifier's routing table.
 *
 * Per device the newest session seen, (epoch, edge_id), with the connection
 * that holds it (worker = the edge worker's reply address + incarnation,
 * slot, gen) and an online flag. Events older than the stored session are
 * ignored (fencing, docs/protocol.md "Session epoch and fencing"), so a late
 * disconnect of a session on edge A never cancels the newer one on B.
 *
 * Memory is fixed at presence_new: max_devices entries (~200 bytes each)
 * plus a hash index, and max_workers edge workers. When every entry is in
 * use, the entry of the device that went offline longest ago is recycled
 * (its fencing memory is then lost, which only matters for events delayed
 * longer than the table's turnover); with no offline entry to recycle a
 * new device is not tracked (PRESENCE_FULL, counted by the caller).
 *
 * Not thread-safe (the notifier's main thread owns it). Never logs. */
#ifndef NTF_PRESENCE_H
#define NTF_PRESENCE_H
#include <stdbool.h>
#include <stdint.h>
#include "sl/ring.h"
#include "sl/slice.h"
#include "topics.h"

#define PRESENCE_NONE   UINT32_MAX
#define PRESENCE_TO_MAX 320 /* longest endpoint name an edge heartbeat carries */

struct presence;

/* One edge worker incarnation: where commands and kicks for its
 * connections go (ROUTER identity `ident`, header incarnation `inc`).
 *
 * An edge worker's identity is "<edge-id>/<worker>/<secret>"
 * (docs/security.md "Identities"): whoever knows it can take the worker's
 * place on a ROUTER. So workers are keyed by the public part `reply`
 * ("<edge-id>/<worker>"), the only one published (statuses, markers), and
 * the whole identity is learnt from the worker's own batches: every worker
 * heartbeats every notifier each second. A worker known only from a
 * status read back has ident = its public part until then (right for edges
 * without a secret; a send to it fails otherwise, like one to a dead worker). */
struct presence_worker {
    char edge[TOPICS_EDGE_MAX + 1];
    char reply[TOPICS_REPLY_MAX + 1]; /* public part: the key, and what statuses carry */
    char ident[TOPICS_REPLY_MAX + 1]; /* the ROUTER identity sends go to */
    uint64_t inc;
    uint64_t last_ms; /* monotonic ms of the last batch from it */
    uint32_t online;  /* online devices routed through it */
    bool used;
    bool lost; /* timed out; cleared by the next batch */
    uint32_t hnext;
    /* From its heartbeats (edges of this version; absent for older ones):
     * the notifiers it sends device events to (ring keys, sl/ring.h) and
     * the endpoint it reaches us on, which our answers echo. */
    uint8_t nring;
    uint64_t ring[RING_MAX];
    char to[PRESENCE_TO_MAX + 1];
};

struct presence_dev {
    char dev[SL_DEV_MAX + 1];
    char edge[TOPICS_EDGE_MAX + 1]; /* edge of the newest session (fencing ties) */
    uint64_t epoch;                 /* newest session's epoch */
    uint32_t worker;                /* while online: index of its worker */
    uint32_t slot, gen;             /* while online: its connection */
    uint32_t pending;               /* commands in flight (kept by the caller) */
    bool online;
    bool used;
    uint32_t hnext;        /* hash chain */
    uint32_t lprev, lnext; /* offline list, oldest first */
};

/* A session as an event names it. */
struct presence_session {
    uint64_t epoch;
    struct sl_slice edge;
    uint32_t worker; /* from presence_worker() */
    uint32_t slot, gen;
};

enum presence_verdict {
    PRESENCE_STALE = 0, /* older than what is stored: ignored */
    PRESENCE_DUP,       /* the stored session itself, nothing changes */
    PRESENCE_APPLIED,   /* stored; see the change */
    PRESENCE_FULL,      /* no entry free: not tracked */
};

struct presence_change {
    enum presence_verdict verdict;
    bool was_online;
    bool kick; /* close the old connection below */
    uint32_t old_worker, old_slot, old_gen;
    uint64_t old_epoch;
    struct presence_dev *d; /* the entry (NULL when STALE-free paths have none, or FULL) */
};

/* NULL on allocation failure. Sizes are fixed for the object's life. */
struct presence *presence_new(uint32_t max_devices, uint32_t max_workers);
void presence_destroy(struct presence **p);

/* Find or add the worker (edge, inc, reply), matched on reply's public part
 * (any secret stripped). A new worker starts heard at now_ms; an existing
 * one is marked heard only if `heard` (a batch from it, not a retained
 * status read back), which also makes reply its ident.
 * Returns its index, or PRESENCE_NONE if a name is empty, too long or holds
 * a NUL byte, or the worker table is full (workers with no online device
 * that have been silent for their timeout are recycled by presence_sweep). */
uint32_t presence_worker(struct presence *p, struct sl_slice edge, uint64_t inc, struct sl_slice reply,
                         uint64_t now_ms, bool heard);
const struct presence_worker *presence_worker_get(const struct presence *p, uint32_t w);
/* The same for writing (heartbeat fields); NULL for a free index. */
struct presence_worker *presence_worker_mut(struct presence *p, uint32_t w);
/* Find (never add) the worker (edge, inc, reply's public part): its index or
 * PRESENCE_NONE. */
uint32_t presence_worker_find(const struct presence *p, struct sl_slice edge, uint64_t inc,
                              struct sl_slice reply);
/* Call cb for every device (used entries, in table order), for a resync. cb
 * must not add devices. Returns how many it visited, starting at *cursor and
 * stopping after max; *cursor is where to go on (0 when the table is done). */
typedef void presence_each_cb(void *ud, const struct presence_dev *d);
uint32_t presence_each(const struct presence *p, uint32_t *cursor, uint32_t max, presence_each_cb *cb,
                       void *ud);

/* Apply a connect / disconnect event of session s for dev. */
void presence_connect(struct presence *p, struct sl_slice dev, const struct presence_session *s,
                      struct presence_change *out);
void presence_disconnect(struct presence *p, struct sl_slice dev, const struct presence_session *s,
                         struct presence_change *out);

/* The entry of dev, or NULL. Stable until the next call that adds devices. */
struct presence_dev *presence_get(struct presence *p, struct sl_slice dev);

/* Mark offline every device routed through a worker silent for more than
 * timeout_ms; cb is called once per device that went offline (before the
 * worker is recycled). Also recycles silent workers with no online device.
 * Returns the number of devices taken offline. */
typedef void presence_lost_cb(void *ud, struct presence_dev *d, const struct presence_worker *w);
uint32_t presence_sweep(struct presence *p, uint64_t now_ms, uint64_t timeout_ms, presence_lost_cb *cb,
                        void *ud);

uint32_t presence_size(const struct presence *p);   /* devices tracked */
uint32_t presence_online(const struct presence *p); /* devices online */

/* Order of sessions: epoch, then edge id byte-wise. <0, 0, >0. */
int presence_cmp(uint64_t ea, struct sl_slice edge_a, uint64_t eb, const char *edge_b);

#endif
