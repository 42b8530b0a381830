/* edge/guard.h - who may connect, and how often: per source address
 * (concurrent connections, connections without a hello yet, a connect-rate
 * token bucket, a growing ban for an address that keeps failing hellos),
 * per device (a growing ban for a device whose authenticated sessions keep
 * ending: flapping), and one edge-wide accept-rate bucket against connect
 * storms. docs/protocol.md §1 states the limits; docs/internals.md
 * ("edge: who may connect") says why they look like this.
 *
 * I/O-free and clock-free (every call takes now_ms, a monotonic clock), so
 * unit tests drive it byte by byte; thread-safe (one mutex: the acceptor
 * and every worker call it a few times per connection, never per frame).
 *
 * Memory is bounded and small: tables sized once from the connection limit,
 * entries taken from a pool only while an address or device has something
 * to remember. When a pool is exhausted (say a flood from a million IPv6
 * addresses), the newcomer is not tracked: it is admitted under the global
 * limits only (fail open per source, never fail closed for everyone). */
#ifndef EDGE_GUARD_H
#define EDGE_GUARD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/stat.h"
#include "addr.h"

struct guard;

/* An address block: v4 a.b.c.d/n or v6 x::/n. */
struct cidr {
    uint8_t ip[16];
    uint8_t bits;
    bool v6;
};

/* Parse "10.0.0.0/8,2001:db8::/32" (a bare address is /32 or /128) into
 * out[0..cap). Returns the count, or -1 on a malformed entry (*bad points
 * at it). */
int cidr_parse_list(const char *spec, struct cidr *out, int cap, const char **bad);
bool cidr_match(const struct cidr *c, const struct addr *a);

#define GUARD_ALLOW_MAX 64

struct guard_cfg {
    uint32_t slots; /* connections at most (sizes the tables) */
    /* Per source address (an IPv6 source is its /64). 0 = no limit. */
    uint32_t source_conns; /* connections open */
    uint32_t source_early; /* of which without an accepted hello */
    double source_rate;    /* connects per second ... */
    double source_burst;   /* ... with this burst */
    uint32_t source_fails; /* failed hellos per minute before a ban */
    /* Per device, counted only after a valid hello. 0 = no limit. */
    uint32_t device_ends; /* authenticated sessions ending per minute before a ban */
    /* Bans start at ban_min_ms and double on each repeat, up to ban_max_ms. */
    uint32_t ban_min_ms, ban_max_ms;
    /* The whole edge: accepts per second with this burst (0 = no limit). */
    double accept_rate, accept_burst;
    /* Sources exempt from every per-source limit (carrier NAT gateways,
     * load balancers): they carry many devices from one address. */
    struct cidr allow[GUARD_ALLOW_MAX];
    int nallow;
};

enum guard_verdict {
    GUARD_OK = 0,
    GUARD_SOURCE_CONNS,  /* too many connections from this address */
    GUARD_SOURCE_EARLY,  /* too many of them without a hello */
    GUARD_SOURCE_RATE,   /* connecting faster than its bucket allows */
    GUARD_SOURCE_BANNED, /* it kept failing hellos */
    GUARD_DEVICE_BANNED, /* the device's sessions kept ending */
    GUARD_VERDICTS
};

const char *guard_verdict_str(enum guard_verdict v);

/* What happened, for metrics (one writer each: the guard's mutex). */
struct guard_counts {
    _Atomic uint64_t refused[GUARD_VERDICTS];  /* [GUARD_OK] unused */
    _Atomic uint64_t bans_source, bans_device; /* bans started */
    _Atomic uint64_t untracked;                /* admitted without an entry: a pool was full */
};

/* NULL on allocation failure. */
struct guard *guard_new(const struct guard_cfg *cfg);
void guard_destroy(struct guard **g);

/* A connection from a arrived. GUARD_OK: it is counted (open and early)
 * until guard_closed. Else it must be refused: *retry_ms says when the
 * source may try again. */
enum guard_verdict guard_connect(struct guard *g, const struct addr *a, uint64_t now_ms, uint32_t *retry_ms);

/* The connection from a said a valid hello: no longer early. */
void guard_hello_ok(struct guard *g, const struct addr *a);

/* The connection from a failed its hello (bad token, garbage, a frame
 * too long): it no longer counts as early, and the failure counts towards a
 * ban of the address. Returns the length of a ban this starts, else 0. */
uint32_t guard_hello_failed(struct guard *g, const struct addr *a, uint64_t now_ms);

/* The connection from a closed; early: it had no accepted hello. */
void guard_closed(struct guard *g, const struct addr *a, bool early);

/* May device dev (valid token) start a session now? 0, or the ms until its
 * ban ends (refuse with err{busy, retry_ms}). */
uint32_t guard_device_check(struct guard *g, const char *dev, size_t n, uint64_t now_ms);

/* An authenticated session of dev ended. Returns the length of a ban this
 * starts, else 0. */
uint32_t guard_device_ended(struct guard *g, const char *dev, size_t n, uint64_t now_ms);

/* The edge-wide accept bucket: 0 = accept one now (a token is taken), else
 * the ms until the next token (leave connections in the backlog that long). */
uint32_t guard_accept(struct guard *g, uint64_t now_ms);

/* Forget entries with nothing left to remember (from a periodic tick). */
void guard_sweep(struct guard *g, uint64_t now_ms);

const struct guard_counts *guard_counts(const struct guard *g);
/* Entries in use (tests and the sweep's log line). */
uint32_t guard_sources(struct guard *g);
uint32_t guard_devices(struct guard *g);

#endif
