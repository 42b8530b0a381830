/* SPDX-License-Identifier: Apache-2.0 */
/* sl/ring.h - which notifier a device's events go to: rendezvous (highest
 * random weight) hashing over the notifiers' stable ids.
 *
 * Every member scores every device: score = mix(key(device) ^ key(member));
 * the highest score wins. Adding a member moves to it only the devices it
 * now wins; removing one moves only the devices it had, each to its own
 * runner-up. Nothing depends on the order of the members or on addresses,
 * so every edge worker that knows the same set of ids picks the same member
 * for a device, and a notifier that knows the set can tell which devices
 * are its own (docs/notifier.md, "Several notifiers").
 *
 * Pure functions on caller memory; the edge and the notifier both link this
 * one definition, so they cannot disagree. */
#ifndef SL_RING_H
#define SL_RING_H
#include <stddef.h>
#include <stdint.h>

/* Most members a ring holds (a heartbeat names them all). */
#define RING_MAX 32u

/* The 64-bit key of a device or member id (FNV-1a 64, then a final mix). */
uint64_t ring_key(const void *id, size_t n);

/* Index (0..n-1) of the member whose key wins the device key dev; ties go
 * to the smaller member key. n must be >= 1. */
uint32_t ring_pick(uint64_t dev, const uint64_t *members, uint32_t n);

/* Parse a comma-separated list of member ids (as heartbeats carry it) into
 * their keys, at most RING_MAX. Returns how many; empty ids are skipped. */
uint32_t ring_parse(const char *list, size_t n, uint64_t keys[RING_MAX]);

#endif
