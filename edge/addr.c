/* SPDX-License-Identifier: Apache-2.0 */
/* addr.c - device addresses (see addr.h). No I/O: formatting and
 * conversion only. */
#include "addr.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

bool addr_from_sockaddr(struct addr *a, const struct sockaddr *sa)
{
    memset(a, 0, sizeof *a);
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
        memcpy(a->ip, &s6->sin6_addr, 16);
        a->port = ntohs(s6->sin6_port);
        a->v6 = true;
        return true;
    }
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
        memcpy(a->ip, &s4->sin_addr, 4);
        a->port = ntohs(s4->sin_port);
        return true;
    }
    return false;
}

uint32_t addr_str(const struct addr *a, char *out, uint32_t cap)
{
    if (cap == 0)
        return 0;
    char ip[INET6_ADDRSTRLEN];
    if (!inet_ntop(a->v6 ? AF_INET6 : AF_INET, a->ip, ip, sizeof ip))
        strcpy(ip, "?");
    int n = snprintf(out, cap, a->v6 ? "[%s]:%u" : "%s:%u", ip, a->port);
    if (n < 0) {
        out[0] = 0;
        return 0;
    }
    return (uint32_t)n < cap ? (uint32_t)n : cap - 1;
}
