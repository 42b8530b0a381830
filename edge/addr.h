/* SPDX-License-Identifier: Apache-2.0 */
/* edge/addr.h - a device's network address, as accept() (or, later, a
 * PROXY header) reports it: a small value type every edge module can pass
 * around without knowing sockets. */
#ifndef EDGE_ADDR_H
#define EDGE_ADDR_H
#include <stdbool.h>
#include <stdint.h>

struct sockaddr;

struct addr {
    uint8_t ip[16]; /* IPv4 in the first 4 bytes */
    uint16_t port;
    bool v6;
};

/* Fill *a from a sockaddr of family AF_INET or AF_INET6. false for any
 * other family (a is then zeroed). */
bool addr_from_sockaddr(struct addr *a, const struct sockaddr *sa);

/* "ip:port" or "[ip6]:port" into out (NUL-terminated, truncated to cap).
 * Returns the length written. cap >= ADDR_STR_MAX holds any address. */
#define ADDR_STR_MAX 48
uint32_t addr_str(const struct addr *a, char *out, uint32_t cap);

#endif
