/* proxy.c - PROXY protocol v2 headers (see proxy.h; the format:
 * haproxy.org/download/2.9/doc/proxy-protocol.txt, section 2.2). */
#include "proxy.h"
#include <string.h>

static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

enum proxy_rc proxy_parse(const uint8_t *p, size_t n, size_t *used, struct addr *peer, bool *local)
{
    /* Refuse as early as the bytes allow: a device that sends a frame to a
     * PROXY listener is told at once, not after PROXY_HDR_MIN bytes. */
    size_t k = n < sizeof sig ? n : sizeof sig;
    if (memcmp(p, sig, k) != 0)
        return PROXY_BAD;
    if (n < PROXY_HDR_MIN)
        return PROXY_MORE;
    uint8_t ver_cmd = p[12], fam = p[13];
    size_t len = (size_t)p[14] << 8 | p[15];
    if ((ver_cmd >> 4) != 2 || (ver_cmd & 0x0f) > 1)
        return PROXY_BAD;
    if (PROXY_HDR_MIN + len > PROXY_HDR_MAX)
        return PROXY_BAD;
    if (n < PROXY_HDR_MIN + len)
        return PROXY_MORE;
    *used = PROXY_HDR_MIN + len;
    *local = (ver_cmd & 0x0f) == 0;
    if (*local)
        return PROXY_OK; /* the addresses (if any) mean nothing for LOCAL */
    const uint8_t *a = p + PROXY_HDR_MIN;
    if (fam == 0x11 && len >= 12) { /* TCP over IPv4: src, dst, sport, dport */
        memset(peer, 0, sizeof *peer);
        memcpy(peer->ip, a, 4);
        peer->port = (uint16_t)(a[8] << 8 | a[9]);
        return PROXY_OK;
    }
    if (fam == 0x21 && len >= 36) { /* TCP over IPv6 */
        memset(peer, 0, sizeof *peer);
        memcpy(peer->ip, a, 16);
        peer->v6 = true;
        peer->port = (uint16_t)(a[32] << 8 | a[33]);
        return PROXY_OK;
    }
    return PROXY_BAD;
}
