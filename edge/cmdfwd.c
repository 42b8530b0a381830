/* SPDX-License-Identifier: Apache-2.0 */
/* cmdfwd.c - route an operator command to the worker of this edge that
 * holds the device (see cmdfwd.h), through that worker's mailbox.
 *
 * The mailbox holds heap copies (one allocation per forwarded command: the
 * cmd batch that carried it is gone once the DEALER's message is closed).
 * The sending worker never touches the owner's connections: the owner
 * looks the device up again when it takes the copy and writes to the
 * connection that holds it then, if that is one of its own. A device that
 * left or moved on again in between gets `undeliverable`.
 *
 * It deliberately does no I/O: frames and answers go out through the ops
 * table, so unit tests drive it with stubs. */
#define _GNU_SOURCE
#include "cmdfwd.h"
#include <stdlib.h>
#include <string.h>
#include "sl/limits.h"
#include "sl/log.h"

/* The heap copy a MAILBOX_CMD item points to. */
struct fwd_cmd {
    uint32_t cmd_slot, cmd_gen; /* as the notifier addressed the cmd: echoed in undeliverable */
    uint64_t epoch;
    uint32_t id_len, body_len;
    bool has_body;
    uint8_t dev_len;
    char dev[SL_DEV_MAX + 1];
    uint8_t data[]; /* id, then body (raw msgpack) */
};

/* A copy of e as a MAILBOX_CMD item, or false (malloc failed). The copy
 * is made before any lock is taken. */
static bool pack(const struct envelope *e, struct mailbox_item *it)
{
    uint32_t body_len = e->has_body ? e->body.n : 0;
    size_t size = sizeof(struct fwd_cmd) + e->id.n + body_len;
    if (size > UINT32_MAX)
        return false;
    struct fwd_cmd *c = malloc(size);
    if (!c)
        return false;
    memset(c, 0, sizeof *c);
    c->cmd_slot = e->slot;
    c->cmd_gen = e->gen;
    c->epoch = e->epoch;
    c->id_len = e->id.n;
    c->body_len = body_len;
    c->has_body = e->has_body;
    c->dev_len = (uint8_t)e->dev.n; /* the caller found dev in the map: <= SL_DEV_MAX */
    memcpy(c->dev, e->dev.p, e->dev.n);
    if (e->id.n)
        memcpy(c->data, e->id.p, e->id.n);
    if (body_len)
        memcpy(c->data + e->id.n, e->body.p, body_len);
    *it = (struct mailbox_item){.kind = MAILBOX_CMD, .u.cmd = {.p = c, .bytes = (uint32_t)size}};
    return true;
}

static struct envelope unpack(const struct fwd_cmd *c)
{
    struct envelope e = {
        .kind = ENV_CMD, .slot = c->cmd_slot, .gen = c->cmd_gen, .epoch = c->epoch, .has_body = c->has_body};
    e.dev.p = (const uint8_t *)c->dev;
    e.dev.n = c->dev_len;
    e.id.p = c->data;
    e.id.n = c->id_len;
    e.body.p = c->data + c->id_len;
    e.body.n = c->body_len;
    return e;
}

/* The answer for a command no connection of this edge took: it echoes the
 * command as the notifier addressed it (slot, gen, epoch), so the
 * notifier can match it. */
static void undeliverable(struct cmdfwd *f, const struct envelope *cmd)
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
    stat_inc(&f->cnt.undeliverable);
    f->ops->emit(f->ud, &u);
}

/* The connection that holds cmd->dev on this edge, if any. */
static bool find_owner(const struct cmdfwd *f, const struct envelope *cmd, struct devmap_ref *ref)
{
    return cmd->dev.n > 0 && cmd->dev.n <= SL_DEV_MAX &&
           devmap_find(f->map, (const char *)cmd->dev.p, cmd->dev.n, ref);
}

/* Write cmd to this worker's connection ref if it still holds cmd->dev. */
static void deliver(struct cmdfwd *f, const struct envelope *cmd, struct devmap_ref ref)
{
    static const uint8_t nil = 0xc0; /* cmd{body} is required on the wire */
    struct envelope e = *cmd;
    if (!e.has_body || e.body.n == 0) {
        e.body.p = &nil;
        e.body.n = 1;
    }
    if (!f->ops->deliver(f->ud, ref, &e))
        undeliverable(f, cmd);
}

void cmdfwd_route(struct cmdfwd *f, const struct envelope *e)
{
    struct devmap_ref ref;
    if (!find_owner(f, e, &ref)) {
        undeliverable(f, e); /* not on this edge */
        return;
    }
    if (ref.worker == f->self) {
        deliver(f, e, ref);
        return;
    }
    struct mailbox_item it;
    bool posted = false;
    if (ref.worker < f->nworkers && pack(e, &it)) {
        posted = mailbox_post(f->mboxes[ref.worker], &it);
        if (!posted)
            free(it.u.cmd.p);
    }
    if (posted) {
        stat_inc(&f->cnt.forwarded);
        f->refusing = false;
        return;
    }
    stat_inc(&f->cnt.forward_refused);
    if (!f->refusing)
        log_warn("event=cmd_forward_refused worker=%u owner=%u err=inbox_full", f->self, ref.worker);
    f->refusing = true;
    undeliverable(f, e);
}

void cmdfwd_deliver(struct cmdfwd *f, struct mailbox_item *it)
{
    struct fwd_cmd *c = it->u.cmd.p;
    struct envelope e = unpack(c);
    struct devmap_ref ref;
    if (find_owner(f, &e, &ref) && ref.worker == f->self)
        deliver(f, &e, ref);
    else
        undeliverable(f, &e); /* gone, or moved on to another worker */
    cmdfwd_drop(it);
}

void cmdfwd_drop(struct mailbox_item *it)
{
    free(it->u.cmd.p);
    it->u.cmd.p = NULL;
}
