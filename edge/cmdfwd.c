/* cmdfwd.c - route an operator command to the worker of this edge that
 * holds the device (see cmdfwd.h), through that worker's inbox.
 *
 * The inbox holds heap copies (one allocation per forwarded command: the
 * cmd batch that carried it is gone once the DEALER's message is closed).
 * The sending worker never touches the owner's connections: the owner
 * looks the device up again when it drains and writes to the connection
 * that holds it then, if that is one of its own. A device that left or
 * moved on again in between gets `undeliverable`: a command is forwarded
 * at most once, so two workers never pass one back and forth.
 *
 * It deliberately does no socket I/O: frames go out through session_cmd()
 * and answers through bus_emit(), so unit tests drive it with stubs. */
#define _GNU_SOURCE
#include "cmdfwd.h"
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "sl/log.h"
#include "bus.h"
#include "conn.h"
#include "session.h"
#include "stats.h"
#include "worker.h"

struct cmdfwd_item {
    struct cmdfwd_item *next;
    uint32_t cmd_slot, cmd_gen; /* as the notifier addressed the cmd: echoed in undeliverable */
    uint64_t epoch;
    uint32_t id_len, body_len;
    size_t size; /* the allocation, for the inbox's byte bound */
    bool has_body;
    uint8_t dev_len;
    char dev[SL_DEV_MAX + 1];
    uint8_t data[]; /* id, then body (raw msgpack) */
};

void cmdfwd_init(struct cmdfwd *q)
{
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
}

static void free_list(struct cmdfwd_item *it)
{
    while (it) {
        struct cmdfwd_item *next = it->next;
        free(it);
        it = next;
    }
}

void cmdfwd_fini(struct cmdfwd *q)
{
    free_list(q->head);
    q->head = q->tail = NULL;
    q->n = 0;
    q->bytes = 0;
    pthread_mutex_destroy(&q->mu);
}

/* Queue a copy of e. SL_OK, or SL_NOMEM (inbox full or malloc failed:
 * nothing queued; *first tells whether this starts a run of refusals, for
 * one log line per run). The copy is made before taking the lock, so the
 * lock is held for a few pointer writes only. */
static enum sl_err push(struct cmdfwd *q, const struct envelope *e, bool *first)
{
    *first = false;
    uint32_t body_len = e->has_body ? e->body.n : 0;
    size_t size = sizeof(struct cmdfwd_item) + e->id.n + body_len;
    if (size > CMDFWD_MAX_BYTES)
        return SL_NOMEM;
    struct cmdfwd_item *it = malloc(size);
    if (!it) {
        *first = true;
        return SL_NOMEM;
    }
    memset(it, 0, sizeof *it);
    it->cmd_slot = e->slot;
    it->cmd_gen = e->gen;
    it->epoch = e->epoch;
    it->id_len = e->id.n;
    it->body_len = body_len;
    it->size = size;
    it->has_body = e->has_body;
    it->dev_len = (uint8_t)e->dev.n; /* the caller found dev in the map: <= SL_DEV_MAX */
    memcpy(it->dev, e->dev.p, e->dev.n);
    if (e->id.n)
        memcpy(it->data, e->id.p, e->id.n);
    if (body_len)
        memcpy(it->data + e->id.n, e->body.p, body_len);
    pthread_mutex_lock(&q->mu);
    bool room = q->n < CMDFWD_MAX && q->bytes + size <= CMDFWD_MAX_BYTES;
    if (room) {
        if (q->tail)
            q->tail->next = it;
        else
            q->head = it;
        q->tail = it;
        q->n++;
        q->bytes += size;
    } else {
        *first = !q->refusing;
        q->refusing = true;
    }
    pthread_mutex_unlock(&q->mu);
    if (!room) {
        free(it);
        return SL_NOMEM;
    }
    return SL_OK;
}

static void undeliverable(struct worker *w, const struct envelope *cmd)
{
    static const char why[] = "disconnected";
    struct envelope u = {.kind = ENV_UNDELIVERABLE,
                         .slot = cmd->slot,
                         .gen = cmd->gen,
                         .dev = cmd->dev,
                         .epoch = cmd->epoch,
                         .id = cmd->id};
    u.reason.p = (const uint8_t *)why;
    u.reason.n = sizeof why - 1;
    metric_inc(stats.undeliverable);
    bus_emit(w->bus, &u);
}

/* The connection that holds cmd->dev on this edge, if any. */
static bool find_owner(struct worker *w, const struct envelope *cmd, struct devmap_ref *ref)
{
    return cmd->dev.n > 0 && cmd->dev.n <= SL_DEV_MAX &&
           devmap_find(w->e->map, (const char *)cmd->dev.p, cmd->dev.n, ref);
}

/* Write cmd to w's connection (slot, gen) if it still holds cmd->dev. */
static void deliver(struct worker *w, const struct envelope *cmd, uint32_t slot, uint32_t gen)
{
    struct conn *c = conn_find(w, slot, gen, cmd->dev);
    if (!c) {
        undeliverable(w, cmd);
        return;
    }
    static const uint8_t nil = 0xc0; /* cmd{body} is required on the wire */
    struct sl_slice body = cmd->body;
    if (!cmd->has_body || body.n == 0) {
        body.p = &nil;
        body.n = 1;
    }
    session_cmd(c, cmd->id, body);
}

void cmdfwd_route(struct worker *w, const struct envelope *e)
{
    struct edge *ed = w->e;
    struct devmap_ref ref;
    if (!find_owner(w, e, &ref)) {
        undeliverable(w, e); /* not on this edge */
        return;
    }
    if (ref.worker == w->idx) {
        deliver(w, e, ref.slot, ref.gen);
        return;
    }
    struct worker *owner = ref.worker < ed->nworkers ? ed->workers[ref.worker] : NULL;
    bool first = true;
    if (owner && push(&owner->cmds, e, &first) == SL_OK) {
        metric_inc(stats.cmds_forwarded);
        loop_wake(owner->loop);
        return;
    }
    metric_inc(stats.cmds_forward_refused);
    if (first)
        log_warn("event=cmd_forward_refused worker=%u owner=%u err=inbox_full", w->idx, ref.worker);
    undeliverable(w, e);
}

void cmdfwd_drain(struct worker *w)
{
    struct cmdfwd *q = &w->cmds;
    pthread_mutex_lock(&q->mu);
    struct cmdfwd_item *it = q->head;
    q->head = q->tail = NULL;
    q->n = 0;
    q->bytes = 0;
    q->refusing = false;
    pthread_mutex_unlock(&q->mu);
    while (it) {
        struct cmdfwd_item *next = it->next;
        struct envelope e = {.kind = ENV_CMD,
                             .slot = it->cmd_slot,
                             .gen = it->cmd_gen,
                             .epoch = it->epoch,
                             .has_body = it->has_body};
        e.dev.p = (const uint8_t *)it->dev;
        e.dev.n = it->dev_len;
        e.id.p = it->data;
        e.id.n = it->id_len;
        e.body.p = it->data + it->id_len;
        e.body.n = it->body_len;
        struct devmap_ref ref;
        if (find_owner(w, &e, &ref) && ref.worker == w->idx)
            deliver(w, &e, ref.slot, ref.gen);
        else
            undeliverable(w, &e); /* gone, or moved on to another worker */
        free(it);
        it = next;
    }
}
