/* SPDX-License-Identifier: Apache-2.0 */
/* devsim_util.c - the pure parts of sluice-devsim: the latency histogram,
 * source address ranges and reading the fleet secret. No sockets, no loop,
 * so the unit test covers them alone. */
#define _GNU_SOURCE
#include "devsim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

uint32_t hist_idx(uint64_t v)
{
    if (v < 64)
        return (uint32_t)v;
    if (v >= (1ull << 33))
        return HIST_N - 1;
    uint32_t e = 63u - (uint32_t)__builtin_clzll(v); /* >= 6 */
    uint32_t shift = e - 5;
    uint32_t idx = 64 + (e - 6) * 32 + (uint32_t)((v >> shift) - 32);
    return idx < HIST_N ? idx : HIST_N - 1;
}

uint64_t send_at_ms(uint64_t next_send_us)
{
    return next_send_us / 1000 + (next_send_us % 1000 != 0);
}

uint64_t hist_low(uint32_t idx)
{
    if (idx < 64)
        return idx;
    uint32_t e = (idx - 64) / 32 + 6;
    uint64_t m = (idx - 64) % 32 + 32;
    return m << (e - 5);
}

void hist_add(struct hist *h, uint64_t v)
{
    h->n[hist_idx(v)]++;
}

uint64_t hist_total(const struct hist *h)
{
    uint64_t t = 0;
    for (uint32_t i = 0; i < HIST_N; i++)
        t += h->n[i];
    return t;
}

void hist_sub(struct hist *out, const struct hist *a, const struct hist *b)
{
    for (uint32_t i = 0; i < HIST_N; i++)
        out->n[i] = a->n[i] - b->n[i];
}

void ramp_second(struct ramp *r, const struct hist *lat, uint64_t connected, uint64_t devices)
{
    if (r->over)
        return;
    if (connected >= devices)
        r->over = true;
    else
        r->lat = *lat;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    uint64_t total = hist_total(h);
    if (total == 0)
        return 0;
    /* the smallest value with at least ceil(q * total) samples at or below it */
    uint64_t want = (uint64_t)(q * (double)total + 0.999999);
    if (want == 0)
        want = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HIST_N; i++) {
        seen += h->n[i];
        if (seen >= want)
            return hist_low(i);
    }
    return hist_low(HIST_N - 1);
}

static int parse_ip(const char *s, size_t n, uint32_t *out)
{
    char buf[16];
    struct in_addr a;
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, &a) != 1)
        return -1;
    *out = ntohl(a.s_addr);
    return 0;
}

int ip_range_parse(const char *s, struct ip_range *r)
{
    r->lo = r->hi = 0;
    if (s == NULL || s[0] == '\0')
        return 0;
    const char *dash = strchr(s, '-');
    if (dash == NULL)
        return parse_ip(s, strlen(s), &r->lo) == 0 ? (r->hi = r->lo, 0) : -1;
    if (parse_ip(s, (size_t)(dash - s), &r->lo) != 0 || parse_ip(dash + 1, strlen(dash + 1), &r->hi) != 0 ||
        r->lo > r->hi || r->lo == 0) {
        r->lo = r->hi = 0;
        return -1;
    }
    return 0;
}

uint32_t ip_range_count(const struct ip_range *r)
{
    if (r->lo == 0)
        return 0;
    return r->hi - r->lo + 1;
}

void ip_range_at(const struct ip_range *r, uint64_t i, char out[16])
{
    uint32_t n = ip_range_count(r);
    out[0] = '\0';
    if (n == 0)
        return;
    struct in_addr a;
    a.s_addr = htonl(r->lo + (uint32_t)(i % n));
    inet_ntop(AF_INET, &a, out, 16);
}

long secret_read(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, cap, f);
    int bad = ferror(f) || (n == cap && fgetc(f) != EOF);
    fclose(f);
    if (bad)
        return -1;
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    return (long)n;
}
