/* SPDX-License-Identifier: Apache-2.0 */
/* mqtt_flood.c - the broker's QoS 1 ceiling: many plain MQTT 3.1.1
 * publishers (raw sockets, one epoll thread, no client library overhead),
 * each keeping `window` QoS 1 publishes in flight, until `total` messages
 * are acknowledged (PUBACK). Prints acknowledged msgs/s.
 *
 * Bench tool only (bench/notifier_bench runs it beside the notifier); it
 * speaks just enough MQTT for that: CONNECT, PUBLISH qos 1, PUBACK. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct pub {
    int fd;
    int inflight;
    uint16_t next_id;
    int connected;
    uint8_t in[4096];
    size_t inlen;
    char topic[32];
};

static long total, sent, acked;
static int window, plen;
static uint8_t payload[4096];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t put_len(uint8_t *p, size_t n)
{
    size_t i = 0;
    do {
        uint8_t b = (uint8_t)(n % 128);
        n /= 128;
        if (n)
            b |= 0x80;
        p[i++] = b;
    } while (n);
    return i;
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            perror("write");
            exit(1);
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Top up p's window with PUBLISH packets, in one write. */
static void fill(struct pub *p)
{
    static uint8_t out[1 << 20];
    size_t o = 0;
    size_t tl = strlen(p->topic);
    while (p->inflight < window && sent < total && o + 16 + tl + (size_t)plen < sizeof out) {
        size_t rem = 2 + tl + 2 + (size_t)plen;
        out[o++] = 0x32; /* PUBLISH, QoS 1 */
        o += put_len(out + o, rem);
        out[o++] = (uint8_t)(tl >> 8);
        out[o++] = (uint8_t)tl;
        memcpy(out + o, p->topic, tl);
        o += tl;
        if (++p->next_id == 0)
            p->next_id = 1;
        out[o++] = (uint8_t)(p->next_id >> 8);
        out[o++] = (uint8_t)p->next_id;
        memcpy(out + o, payload, (size_t)plen);
        o += (size_t)plen;
        p->inflight++;
        sent++;
    }
    if (o)
        write_all(p->fd, out, o);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr,
                "usage: mqtt_flood PORT CLIENTS TOTAL WINDOW [PAYLOAD_BYTES]  (broker on 127.0.0.1)\n");
        return 2;
    }
    int port = atoi(argv[1]);
    int n = atoi(argv[2]);
    total = atol(argv[3]);
    window = atoi(argv[4]);
    plen = argc > 5 ? atoi(argv[5]) : 150;
    if (plen > (int)sizeof payload)
        plen = (int)sizeof payload;
    memset(payload, 'x', sizeof payload);
    struct pub *ps = calloc((size_t)n, sizeof *ps);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        struct pub *p = &ps[i];
        p->fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(p->fd, (struct sockaddr *)&a, sizeof a) != 0) {
            perror("connect");
            return 1;
        }
        int one = 1;
        setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        snprintf(p->topic, sizeof p->topic, "flood/%d/data", i);
        char id[32];
        int il = snprintf(id, sizeof id, "flood-%d-%d", (int)getpid(), i);
        uint8_t c[64];
        size_t o = 0;
        c[o++] = 0x10;
        o += put_len(c + o, (size_t)(10 + 2 + il));
        memcpy(c + o, "\x00\x04MQTT\x04\x02\x00\x3c", 10);
        o += 10;
        c[o++] = 0;
        c[o++] = (uint8_t)il;
        memcpy(c + o, id, (size_t)il);
        o += (size_t)il;
        write_all(p->fd, c, o);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
        epoll_ctl(ep, EPOLL_CTL_ADD, p->fd, &ev);
    }
    double t0 = 0;
    int nconn = 0;
    struct epoll_event evs[256];
    while (acked < total) {
        int k = epoll_wait(ep, evs, 256, 5000);
        if (k <= 0) {
            fprintf(stderr, "stalled: acked %ld of %ld\n", acked, total);
            return 1;
        }
        for (int e = 0; e < k; e++) {
            struct pub *p = evs[e].data.ptr;
            ssize_t r = read(p->fd, p->in + p->inlen, sizeof p->in - p->inlen);
            if (r <= 0) {
                fprintf(stderr, "broker closed a connection\n");
                return 1;
            }
            p->inlen += (size_t)r;
            size_t off = 0;
            while (p->inlen - off >= 4) { /* CONNACK and PUBACK are both 4 bytes */
                uint8_t t = p->in[off];
                if (t == 0x20) {
                    p->connected = 1;
                    if (++nconn == n) {
                        t0 = now_s();
                        for (int i = 0; i < n; i++)
                            fill(&ps[i]);
                    }
                } else if (t == 0x40) {
                    p->inflight--;
                    acked++;
                } else {
                    fprintf(stderr, "unexpected packet 0x%02x\n", t);
                    return 1;
                }
                off += 4;
            }
            memmove(p->in, p->in + off, p->inlen - off);
            p->inlen -= off;
            if (nconn == n)
                fill(p);
        }
    }
    double dt = now_s() - t0;
    printf("mqtt_flood clients=%d window=%d messages=%ld seconds=%.2f msgs_per_s=%.0f\n", n, window, total,
           dt, (double)total / dt);
    for (int i = 0; i < n; i++) {
        write_all(ps[i].fd, (const uint8_t *)"\xe0\x00", 2); /* DISCONNECT */
        close(ps[i].fd);
    }
    free(ps);
    return 0;
}
