/* SPDX-License-Identifier: Apache-2.0 */
/* replay_pcap.c - `sluice-replay --pcap OUT`: a recording as a pcapng
 * capture that Wireshark and tshark open, with the Sluice dissector
 * (deploy/wireshark/sluice.lua) decoding the device protocol.
 *
 * A recording holds bytes, not packets, so the TCP is synthetic: each
 * recorded connection becomes one TCP stream between the device's recorded
 * address and port and a documentation address for the edge (192.0.2.1, or
 * 2001:db8::1 for IPv6 devices) on port 7000 (--pcap-port), with a
 * handshake at OPEN, each `in` record sent by the device and each `out`
 * frame sent by the edge as segments of at most PCAP_MSS bytes (PSH on the
 * last), a bare ACK from the other side after each, and FINs at CLOSE (the
 * device's first for eof/io, else the edge's). Record boundaries survive as
 * segment boundaries, so a frame split across reads stays split and
 * Wireshark reassembles it as the edge did. Checksums are real. Times are
 * the records' wall-clock times. Link type: raw IP (LINKTYPE_RAW, 101).
 *
 * Deliberately not here: the edge's own address (not recorded), GAP
 * records (the stream simply goes on: a sequence gap would make Wireshark
 * wait for bytes that never come), TLS (recordings hold plaintext). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"

#define PCAP_MSS        1460u
#define PCAP_LINKTYPE   101u /* LINKTYPE_RAW: packets start with the IP header */
#define PCAP_MAX_PACKET (40u + 20u + PCAP_MSS)
#define TCP_FIN         0x01u
#define TCP_SYN         0x02u
#define TCP_PSH         0x08u
#define TCP_ACK         0x10u
#define FLOW_ISN_DEVICE 0x10000000u
#define FLOW_ISN_EDGE   0x20000000u

/* One synthetic TCP stream per recorded connection. */
struct flow {
    bool started, closed;
    bool v6;
    uint8_t dev_ip[16], edge_ip[16];
    uint16_t dev_port, edge_port;
    uint32_t dev_seq, edge_seq; /* next sequence number each side sends */
};

struct pcap_out {
    FILE *out;
    uint16_t ip_id;
    uint64_t packets;
    int err; /* errno of the first failed write, 0 if none */
};

static void put16be(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put16le(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32le(uint8_t *p, uint32_t v)
{
    put16le(p, (uint16_t)v);
    put16le(p + 2, (uint16_t)(v >> 16));
}

/* The Internet checksum's running sum (RFC 1071), folded by csum_fold. */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += (uint32_t)p[i] << 8 | p[i + 1];
    if (n & 1)
        sum += (uint32_t)p[n - 1] << 8;
    return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffffu) + (sum >> 16);
    return (uint16_t)~sum;
}

static void write_bytes(struct pcap_out *o, const void *p, size_t n)
{
    if (!o->err && fwrite(p, 1, n, o->out) != n)
        o->err = errno ? errno : EIO;
}

/* Section header and the one interface (pcapng, little-endian). */
static void write_headers(struct pcap_out *o)
{
    uint8_t shb[28], idb[20];
    put32le(shb, 0x0A0D0D0Au);
    put32le(shb + 4, sizeof shb);
    put32le(shb + 8, 0x1A2B3C4Du); /* byte-order magic */
    put16le(shb + 12, 1);          /* version 1.0 */
    put16le(shb + 14, 0);
    put32le(shb + 16, 0xffffffffu); /* section length unknown */
    put32le(shb + 20, 0xffffffffu);
    put32le(shb + 24, sizeof shb);
    put32le(idb, 1);
    put32le(idb + 4, sizeof idb);
    put16le(idb + 8, PCAP_LINKTYPE);
    put16le(idb + 10, 0);
    put32le(idb + 12, 0); /* snaplen: no limit */
    put32le(idb + 16, sizeof idb);
    write_bytes(o, shb, sizeof shb);
    write_bytes(o, idb, sizeof idb);
}

/* One Enhanced Packet Block; ts in microseconds (the default resolution). */
static void write_packet(struct pcap_out *o, uint64_t ts_us, const uint8_t *pkt, uint32_t n)
{
    static const uint8_t pad[4] = {0};
    uint32_t padded = (n + 3u) & ~3u;
    uint8_t h[28], t[4];
    put32le(h, 6);
    put32le(h + 4, 32u + padded);
    put32le(h + 8, 0); /* interface 0 */
    put32le(h + 12, (uint32_t)(ts_us >> 32));
    put32le(h + 16, (uint32_t)ts_us);
    put32le(h + 20, n);
    put32le(h + 24, n);
    put32le(t, 32u + padded);
    write_bytes(o, h, sizeof h);
    write_bytes(o, pkt, n);
    write_bytes(o, pad, padded - n);
    write_bytes(o, t, sizeof t);
    o->packets++;
}

/* One IP + TCP packet from the device (from_dev) or the edge. */
static void emit(struct pcap_out *o, struct flow *fl, bool from_dev, uint8_t flags, const uint8_t *data,
                 uint32_t n, uint64_t ts_us)
{
    uint8_t pkt[PCAP_MAX_PACKET];
    uint32_t iplen = fl->v6 ? 40u : 20u;
    uint8_t *tcp = pkt + iplen;
    const uint8_t *src = from_dev ? fl->dev_ip : fl->edge_ip, *dst = from_dev ? fl->edge_ip : fl->dev_ip;
    uint32_t seq = from_dev ? fl->dev_seq : fl->edge_seq, ack = from_dev ? fl->edge_seq : fl->dev_seq;
    memset(pkt, 0, iplen + 20u);
    put16be(tcp, from_dev ? fl->dev_port : fl->edge_port);
    put16be(tcp + 2, from_dev ? fl->edge_port : fl->dev_port);
    put32be(tcp + 4, seq);
    put32be(tcp + 8, (flags & TCP_ACK) ? ack : 0);
    tcp[12] = 5u << 4; /* 20-byte header, no options */
    tcp[13] = flags;
    put16be(tcp + 14, 65535);
    if (n > 0) /* a bare SYN, ACK or FIN has no data (and data may be NULL) */
        memcpy(tcp + 20, data, n);
    uint32_t tcplen = 20u + n;
    /* pseudo-header: addresses, protocol, TCP length */
    uint32_t sum = csum_add(0, src, fl->v6 ? 16u : 4u);
    sum = csum_add(sum, dst, fl->v6 ? 16u : 4u);
    sum += 6u + tcplen;
    put16be(tcp + 16, csum_fold(csum_add(sum, tcp, tcplen)));
    if (fl->v6) {
        pkt[0] = 0x60;
        put16be(pkt + 4, (uint16_t)tcplen);
        pkt[6] = 6;   /* next header: TCP */
        pkt[7] = 64u; /* hop limit */
        memcpy(pkt + 8, src, 16);
        memcpy(pkt + 24, dst, 16);
    } else {
        pkt[0] = 0x45;
        put16be(pkt + 2, (uint16_t)(20u + tcplen));
        put16be(pkt + 4, o->ip_id++);
        put16be(pkt + 6, 0x4000); /* don't fragment */
        pkt[8] = 64u;             /* TTL */
        pkt[9] = 6;               /* TCP */
        memcpy(pkt + 12, src, 4);
        memcpy(pkt + 16, dst, 4);
        put16be(pkt + 10, csum_fold(csum_add(0, pkt, 20)));
    }
    write_packet(o, ts_us, pkt, iplen + tcplen);
    if (from_dev)
        fl->dev_seq += n + ((flags & (TCP_SYN | TCP_FIN)) ? 1u : 0u);
    else
        fl->edge_seq += n + ((flags & (TCP_SYN | TCP_FIN)) ? 1u : 0u);
}

/* The handshake, from the recorded peer or (no OPEN record) a made-up one. */
static void flow_start(struct pcap_out *o, struct flow *fl, const struct replay_conn *c, uint32_t index,
                       uint16_t edge_port, uint64_t ts_us)
{
    static const uint8_t edge4[4] = {192, 0, 2, 1}, edge6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
    memset(fl, 0, sizeof *fl);
    if (c->has_open) {
        fl->v6 = c->peer.v6;
        memcpy(fl->dev_ip, c->peer.ip, fl->v6 ? 16u : 4u);
        fl->dev_port = c->peer.port;
    } else { /* 198.51.100.0/24 (TEST-NET-2), a port per connection */
        const uint8_t dev4[4] = {198, 51, 100, (uint8_t)(1u + index % 254u)};
        memcpy(fl->dev_ip, dev4, 4);
        fl->dev_port = (uint16_t)(40000u + index % 20000u);
    }
    memcpy(fl->edge_ip, fl->v6 ? edge6 : edge4, fl->v6 ? 16u : 4u);
    fl->edge_port = edge_port;
    fl->dev_seq = FLOW_ISN_DEVICE + index * 0x10000u;
    fl->edge_seq = FLOW_ISN_EDGE + index * 0x10000u;
    fl->started = true;
    emit(o, fl, true, TCP_SYN, NULL, 0, ts_us);
    emit(o, fl, false, TCP_SYN | TCP_ACK, NULL, 0, ts_us);
    emit(o, fl, true, TCP_ACK, NULL, 0, ts_us);
}

/* One record's bytes as segments from one side, then the other side's ACK. */
static void flow_data(struct pcap_out *o, struct flow *fl, bool from_dev, const uint8_t *p, uint32_t n,
                      uint64_t ts_us)
{
    while (n > 0) {
        uint32_t k = n < PCAP_MSS ? n : PCAP_MSS;
        emit(o, fl, from_dev, (uint8_t)(TCP_ACK | (k == n ? TCP_PSH : 0)), p, k, ts_us);
        p += k;
        n -= k;
    }
    emit(o, fl, !from_dev, TCP_ACK, NULL, 0, ts_us);
}

static void flow_close(struct pcap_out *o, struct flow *fl, bool dev_first, uint64_t ts_us)
{
    emit(o, fl, dev_first, TCP_FIN | TCP_ACK, NULL, 0, ts_us);
    emit(o, fl, !dev_first, TCP_FIN | TCP_ACK, NULL, 0, ts_us);
    emit(o, fl, dev_first, TCP_ACK, NULL, 0, ts_us);
    fl->closed = true;
}

int replay_pcap(const struct replay_file *f, const char *device, uint16_t edge_port, const char *path,
                FILE *report)
{
    struct flow *flows = calloc(f->nconns ? f->nconns : 1, sizeof *flows);
    FILE *out = fopen(path, "wbe");
    if (!flows || !out) {
        fprintf(stderr, "sluice-replay: %s: %s\n", path, strerror(errno));
        free(flows);
        if (out)
            fclose(out);
        return 1;
    }
    struct pcap_out o = {.out = out};
    write_headers(&o);
    uint64_t streams = 0;
    size_t off = 0;
    struct recfile_rec r;
    while (replay_next(f, &off, &r)) {
        struct replay_conn *c = replay_conn_of(f, &r);
        if (!c || !replay_selected(c, device))
            continue;
        uint32_t index = (uint32_t)(c - f->conns);
        struct flow *fl = &flows[index];
        if (fl->closed)
            continue;
        /* wall clock, in unsigned arithmetic like replay_time_str */
        uint64_t ts_us = (f->hdr.start_real_ns + (r.t_ns - f->hdr.start_mono_ns)) / 1000u;
        if (!fl->started) {
            flow_start(&o, fl, c, index, edge_port, ts_us);
            streams++;
        }
        switch (r.kind) {
        case RECFILE_IN: flow_data(&o, fl, true, r.payload, r.len, ts_us); break;
        case RECFILE_OUT: flow_data(&o, fl, false, r.payload, r.len, ts_us); break;
        case RECFILE_CLOSE:
            flow_close(&o, fl, strcmp(c->reason, "eof") == 0 || strcmp(c->reason, "io") == 0, ts_us);
            break;
        default: break; /* OPEN: the handshake above */
        }
    }
    free(flows);
    if (fclose(out) != 0 && !o.err)
        o.err = errno ? errno : EIO;
    if (o.err) {
        fprintf(stderr, "sluice-replay: writing %s: %s\n", path, strerror(o.err));
        return 1;
    }
    fprintf(report, "pcap %s streams=%llu packets=%llu edge_port=%u\n", path, (unsigned long long)streams,
            (unsigned long long)o.packets, edge_port);
    return 0;
}
