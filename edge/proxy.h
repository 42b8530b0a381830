/* edge/proxy.h - the PROXY protocol v2 header a load balancer (HAProxy, a
 * cloud balancer) puts in front of a connection to say whose it is, so the
 * edge records and limits by the device's address, not the balancer's.
 *
 * I/O-free: conn.c peeks at the first bytes of a connection and asks here
 * whether they hold a whole header, and how long it is. Only v2 (binary);
 * TLVs are skipped; the LOCAL command (a balancer's health check) keeps the
 * connection's own address. */
#ifndef EDGE_PROXY_H
#define EDGE_PROXY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "addr.h"

#define PROXY_HDR_MIN 16  /* signature, version/command, family, length */
#define PROXY_HDR_MAX 536 /* the longest header accepted (v1's limit, plenty for v2 + a few TLVs) */

enum proxy_rc {
    PROXY_MORE = 0, /* not enough bytes yet */
    PROXY_OK,       /* *used bytes are the header */
    PROXY_BAD,      /* not a v2 header, too long, or a family other than TCP over IPv4/IPv6 */
};

/* Parse the start of p[0..n). OK: *used = the header's length; *local =
 * the LOCAL command (*peer untouched); else *peer = the source address and
 * port the balancer saw. Never reads past n. */
enum proxy_rc proxy_parse(const uint8_t *p, size_t n, size_t *used, struct addr *peer, bool *local);

#endif
