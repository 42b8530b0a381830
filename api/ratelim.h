/* SPDX-License-Identifier: Apache-2.0 */
/* ratelim.h - requests per second per client (a token's NAME, or the
 * address of a request without a valid token): a token bucket each, in a
 * fixed table (ratelim_new sizes it; no allocation afterwards). When the
 * table is full the least recently seen client of a set is forgotten: a
 * flood of new addresses cannot grow memory, at worst it resets someone's
 * bucket to full. Thread-safe (one mutex; a take is a few hundred ns). */
#ifndef API_RATELIM_H
#define API_RATELIM_H
#include <stdbool.h>
#include <stdint.h>

#define RATELIM_KEY_MAX 64 /* longer keys are cut */

struct ratelim;

/* rate: tokens per second (> 0); burst: bucket size (>= 1); slots: clients
 * remembered (rounded up to a multiple of the set size). NULL on out of
 * memory. */
struct ratelim *ratelim_new(double rate, double burst, uint32_t slots);
void ratelim_destroy(struct ratelim **r);

/* Take one token for key at monotonic time now_us. true: go on. false:
 * refused, and *retry_ms says when a token will be there (>= 1). */
bool ratelim_take(struct ratelim *r, const char *key, uint64_t now_us, uint64_t *retry_ms);

#endif
