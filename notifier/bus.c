/* SPDX-License-Identifier: Apache-2.0 */
/* bus.c - ZeroMQ sockets of the notifier: binds PULL (edge batches in) and
 * ROUTER (one-entry batches out to an edge worker by its identity).
 *
 * Deliberately not here: decoding entries (ntf.c does), event-loop wiring
 * (main.c registers the PULL fd). Commands and kicks are rare, so each
 * goes out as its own batch instead of being coalesced. */
#include "bus.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "sl/err.h"
#include "sl/limits.h"
#include "sl/zmqx.h"

struct bus {
    void *ctx;
    struct zap *zap; /* CURVE on: the context's ZAP handler */
    void *pull;
    void *router;
    char name[128];
    zmq_msg_t msg;
    bool have_msg;
    uint64_t unroutable;
    uint8_t out[64 * 1024 + 1024]; /* a cmd body is at most 64 KiB (ntf.c) */
};

struct bus *bus_new(const char *pull, const char *router, const char *name, int64_t max_msg,
                    const struct keys_pair *curve, const char *curve_allow)
{
    struct bus *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    snprintf(b->name, sizeof b->name, "%s", name);
    zmq_msg_init(&b->msg);
    b->have_msg = true;
    b->ctx = zmq_ctx_new();
    /* With CURVE, the ZAP handler first: a CURVE socket bound before it
     * would admit any key. */
    if (b->ctx && curve && !(b->zap = zap_new(b->ctx, curve_allow))) {
        bus_destroy(&b);
        return NULL;
    }
    const struct zmqx_opts po = {
        .bind = pull, .max_msg = max_msg, .sndhwm = 1000, .rcvhwm = 1000, .curve = curve, .zap = b->zap};
    /* A cmd or kick to a worker that is not connected fails at once
     * (ROUTER_MANDATORY: the command is held and retried), and a restarted
     * worker takes its identity back. Nothing legitimate arrives on it, but
     * it hears from other processes: capped like the PULL. */
    const struct zmqx_opts ro = {.bind = router,
                                 .max_msg = max_msg,
                                 .sndhwm = 10000,
                                 .rcvhwm = 1000,
                                 .router_mandatory = true,
                                 .router_handover = true,
                                 .curve = curve,
                                 .zap = b->zap};
    if (!b->ctx || !(b->pull = zmqx_socket(b->ctx, ZMQ_PULL, &po)) ||
        !(b->router = zmqx_socket(b->ctx, ZMQ_ROUTER, &ro))) {
        bus_destroy(&b);
        return NULL;
    }
    return b;
}

void bus_destroy(struct bus **pb)
{
    struct bus *b = *pb;
    if (!b)
        return;
    if (b->have_msg)
        zmq_msg_close(&b->msg);
    if (b->pull)
        zmq_close(b->pull);
    if (b->router)
        zmq_close(b->router);
    zap_destroy(&b->zap); /* after the CURVE sockets it guards */
    if (b->ctx)
        zmq_ctx_term(b->ctx);
    free(b);
    *pb = NULL;
}

void *bus_pull(struct bus *b)
{
    return b->pull;
}

/* CURVE: is the sender's key bound to the edge id and reply address the
 * header names? A batch whose header does not decode passes: ntf counts it
 * as bad and uses nothing from it. */
static bool sender_ok(struct bus *b)
{
    struct envelope_reader r;
    if (!b->zap || envelope_reader_begin(&r, zmq_msg_data(&b->msg), zmq_msg_size(&b->msg)) != SL_OK)
        return true;
    return zap_sender_ok(b->zap, &b->msg, r.hdr.edge.p, r.hdr.edge.n, r.hdr.reply.p, r.hdr.reply.n);
}

int bus_recv(struct bus *b, const uint8_t **p, size_t *n)
{
    do {
        if (zmq_msg_recv(&b->msg, b->pull, ZMQ_DONTWAIT) < 0) {
            int e = zmq_errno();
            return e == EAGAIN || e == EINTR ? SL_AGAIN : SL_IO;
        }
    } while (!sender_ok(b));
    *p = zmq_msg_data(&b->msg);
    *n = zmq_msg_size(&b->msg);
    return SL_OK;
}

int bus_send_edge(struct bus *b, const char *reply, uint64_t inc, const struct envelope *e)
{
    struct envelope_hdr h = {.v = SL_ENVELOPE_VERSION,
                             .edge = {(const uint8_t *)b->name, (uint32_t)strlen(b->name)},
                             .incarnation = inc,
                             .reply = {(const uint8_t *)b->name, (uint32_t)strlen(b->name)}};
    struct envelope_writer w;
    if (envelope_writer_begin(&w, b->out, sizeof b->out, &h) != SL_OK || envelope_writer_add(&w, e) != SL_OK)
        return -1;
    size_t rl = strlen(reply);
    if (zmq_send(b->router, reply, rl, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        b->unroutable++; /* EHOSTUNREACH: that worker is gone */
        return -1;
    }
    if (zmq_send(b->router, b->out, envelope_writer_len(&w), ZMQ_DONTWAIT) < 0) {
        b->unroutable++;
        return -1;
    }
    return 0;
}

uint64_t bus_unroutable(const struct bus *b)
{
    return b->unroutable;
}

const struct zap_counts *bus_zap_counts(const struct bus *b)
{
    return b->zap ? zap_counts(b->zap) : NULL;
}
