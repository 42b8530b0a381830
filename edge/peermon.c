/* SPDX-License-Identifier: Apache-2.0 */
/* peermon.c - a bus socket's connected endpoints, from its socket monitor
 * (see peermon.h).
 *
 * Only two events are subscribed, handshake succeeded and disconnected,
 * and the set of endpoints that are up is a fixed array: readiness needs
 * "at least one", so an edge connected to more than PEERMON_MAX endpoints
 * of one socket simply stops counting there. The monitor's inproc pipe has
 * no HWM on our side (RCVHWM 0): libzmq sends monitor events blocking from
 * its I/O thread, and a full pipe would stall it. The pipe is drained on
 * every bus tick (1 s) and these two events come at most once per
 * reconnect attempt (100 ms) per endpoint, so it stays short.
 *
 * Deliberately not here: what "ready" means (bus.c, main.c). */
#define _GNU_SOURCE
#include "peermon.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>
#include "sl/zmqx.h"

#define PEERMON_MAX 64
#define PEERMON_EP  320 /* >= the resolver's longest endpoint */

struct peermon {
    void *sock, *pair;
    uint32_t n;
    char up[PEERMON_MAX][PEERMON_EP];
    uint64_t drops; /* connections that were up and dropped, ever */
};

struct peermon *peermon_new(void *zctx, void *sock, const char *name)
{
    char addr[160];
    snprintf(addr, sizeof addr, "inproc://sluice-peermon/%s", name);
    struct peermon *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    if (zmq_socket_monitor(sock, addr, ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) != 0) {
        free(m);
        return NULL;
    }
    m->sock = sock;
    m->pair = zmq_socket(zctx, ZMQ_PAIR);
    int zero = 0;
    if (!m->pair || zmq_setsockopt(m->pair, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(m->pair, ZMQ_RCVHWM, &zero, sizeof zero) != 0 || zmq_connect(m->pair, addr) != 0) {
        peermon_destroy(&m);
        return NULL;
    }
    return m;
}

void peermon_destroy(struct peermon **pm)
{
    struct peermon *m = *pm;
    if (!m)
        return;
    zmq_socket_monitor(m->sock, NULL, 0);
    if (m->pair)
        zmq_close(m->pair);
    free(m);
    *pm = NULL;
}

static int find(const struct peermon *m, const char *ep)
{
    for (uint32_t i = 0; i < m->n; i++)
        if (strcmp(m->up[i], ep) == 0)
            return (int)i;
    return -1;
}

static void drop(struct peermon *m, uint32_t i)
{
    m->n--;
    if (i != m->n)
        memcpy(m->up[i], m->up[m->n], sizeof m->up[i]);
}

static void on_event(struct peermon *m, uint16_t event, const uint8_t *p, size_t len)
{
    char raw[PEERMON_EP], ep[PEERMON_EP];
    if (len >= sizeof raw)
        return; /* longer than any endpoint we connect to */
    memcpy(raw, p, len);
    raw[len] = 0;
    /* One peer, two names: as connected, then [::ffff:...] after a reconnect. */
    zmqx_ep_canon(raw, ep, sizeof ep);
    int i = find(m, ep);
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED && i < 0 && m->n < PEERMON_MAX)
        memcpy(m->up[m->n++], ep, sizeof ep);
    else if (event == ZMQ_EVENT_DISCONNECTED && i >= 0) {
        drop(m, (uint32_t)i);
        m->drops++;
    }
}

/* One event: a frame with u16 event + u32 value (host order), then a
 * frame with the endpoint. false when none is waiting. */
static bool recv_event(struct peermon *m)
{
    zmq_msg_t f;
    zmq_msg_init(&f);
    if (zmq_msg_recv(&f, m->pair, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&f);
        return false;
    }
    uint16_t event = 0;
    bool ok = zmq_msg_size(&f) >= 6 && zmq_msg_more(&f);
    if (ok)
        memcpy(&event, zmq_msg_data(&f), sizeof event);
    bool more = zmq_msg_more(&f);
    zmq_msg_close(&f);
    while (more) { /* a multipart message arrives whole: these never wait */
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, m->pair, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&f);
            return false;
        }
        if (ok)
            on_event(m, event, zmq_msg_data(&f), zmq_msg_size(&f));
        ok = false;
        more = zmq_msg_more(&f);
        zmq_msg_close(&f);
    }
    return true;
}

void peermon_sync(struct peermon *m, const struct zmqx_conns *a, const struct zmqx_conns *b)
{
    while (recv_event(m)) {
    }
    for (uint32_t i = 0; i < m->n;) {
        if (zmqx_conns_has(a, m->up[i]) || (b && zmqx_conns_has(b, m->up[i])))
            i++;
        else
            drop(m, i);
    }
}

uint32_t peermon_count(const struct peermon *m, const struct zmqx_conns *in)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->n; i++)
        if (zmqx_conns_has(in, m->up[i]))
            n++;
    return n;
}

uint32_t peermon_poll(struct peermon *m)
{
    while (recv_event(m)) {
    }
    return m->n;
}

uint64_t peermon_drops(const struct peermon *m)
{
    return m->drops;
}
