/* SPDX-License-Identifier: Apache-2.0 */
/* edge/devmap.h - the process-wide device -> connection map used for
 * takeover ("newest hello wins") across the worker threads of one edge.
 *
 * Fixed capacity: one node per connection slot of every worker, allocated
 * once at startup, so claiming never allocates. All calls take the map's
 * mutex briefly and never block otherwise. A node is identified by its
 * global slot (worker * slots_per_worker + slot). */
#ifndef EDGE_DEVMAP_H
#define EDGE_DEVMAP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct devmap_ref {
    uint32_t worker, slot, gen;
};

/* NULL on allocation failure. */
struct devmap *devmap_new(uint32_t workers, uint32_t slots_per_worker);
void devmap_destroy(struct devmap **m);

/* Make (worker, slot, gen) the owner of dev. If another connection owned
 * it, returns true and fills *old: the caller must close that one with
 * err "replaced". */
bool devmap_claim(struct devmap *m, const char *dev, size_t n, struct devmap_ref ref, struct devmap_ref *old);

/* Forget dev's entry only if (worker, slot, gen) still owns it (a replaced
 * connection closing later must not remove its successor). */
void devmap_release(struct devmap *m, struct devmap_ref ref);

/* The device id ref's slot claimed last (NUL-terminated): a connection
 * reads its own id here instead of keeping a second copy. Stable until that
 * same slot claims again, i.e. for the connection's whole life, also after
 * it was replaced or released. Lock-free for the worker owning the slot:
 * only that worker's claims write the node. */
const char *devmap_dev(struct devmap *m, struct devmap_ref ref);

/* Current owner of dev, if any. */
bool devmap_find(struct devmap *m, const char *dev, size_t n, struct devmap_ref *out);

/* Number of devices in the map (for tests). */
uint32_t devmap_count(struct devmap *m);

#endif
