/* SPDX-License-Identifier: Apache-2.0 */
/* cmds.c - pending commands: a chained hash on (dev, id) over a fixed entry
 * array, plus a FIFO list that is also the deadline order.
 *
 * Deliberately not here: publishing results, knowing where a device is.
 * The caller (ntf.c) decides what result each removal means. */
#include "cmds.h"

#include <stdlib.h>
#include <string.h>

#include "topics.h"

#define NONE UINT32_MAX

struct cmd {
    char dev[SL_DEV_MAX + 1];
    char id[SL_CMD_ID_MAX + 1];
    uint8_t dev_len, id_len;
    bool used;
    bool unsent;
    uint64_t deadline;
    uint32_t hnext, prev, next;
    uint8_t *body; /* only while unsent */
    uint32_t body_len;
    uint32_t gen; /* bumped at each reuse of the slot: stale handles fail */
    struct cmds_meta meta;
};

struct cmds {
    struct cmd *e;
    uint32_t cap, mask, count;
    uint32_t *heads;
    uint32_t free_head;  /* freed entries, through hnext */
    uint32_t hw;         /* entries [hw, cap) never used: untouched calloc pages */
    uint32_t head, tail; /* FIFO, oldest first */
    uint32_t unsent;
    size_t unsent_bytes, max_unsent_bytes;
};

struct cmds *cmds_new(uint32_t cap, size_t max_unsent_bytes)
{
    if (cap == 0)
        return NULL;
    struct cmds *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    uint32_t b = 1;
    while (b < cap && b < (1u << 30))
        b <<= 1;
    c->cap = cap;
    c->max_unsent_bytes = max_unsent_bytes;
    c->mask = b - 1;
    c->e = calloc(cap, sizeof *c->e);
    c->heads = malloc((size_t)b * sizeof *c->heads);
    if (!c->e || !c->heads) {
        cmds_destroy(&c);
        return NULL;
    }
    memset(c->heads, 0xff, (size_t)b * sizeof *c->heads);
    c->free_head = NONE;
    c->head = c->tail = NONE;
    return c;
}

void cmds_destroy(struct cmds **pc)
{
    struct cmds *c = *pc;
    if (!c)
        return;
    for (uint32_t i = 0; c->e && i < c->hw; i++)
        free(c->e[i].body);
    free(c->e);
    free(c->heads);
    free(c);
    *pc = NULL;
}

static uint32_t bucket(const struct cmds *c, struct sl_slice dev, struct sl_slice id)
{
    return (topics_hash(dev.p, dev.n) * 31u ^ topics_hash(id.p, id.n)) & c->mask;
}

static bool match(const struct cmd *e, struct sl_slice dev, struct sl_slice id)
{
    return e->dev_len == dev.n && e->id_len == id.n && memcmp(e->dev, dev.p, dev.n) == 0 &&
           memcmp(e->id, id.p, id.n) == 0;
}

static uint32_t find(const struct cmds *c, struct sl_slice dev, struct sl_slice id)
{
    for (uint32_t i = c->heads[bucket(c, dev, id)]; i != NONE; i = c->e[i].hnext)
        if (match(&c->e[i], dev, id))
            return i;
    return NONE;
}

static void fifo_unlink(struct cmds *c, uint32_t i)
{
    struct cmd *e = &c->e[i];
    if (e->prev != NONE)
        c->e[e->prev].next = e->next;
    else
        c->head = e->next;
    if (e->next != NONE)
        c->e[e->next].prev = e->prev;
    else
        c->tail = e->prev;
}

static void fifo_append(struct cmds *c, uint32_t i)
{
    struct cmd *e = &c->e[i];
    e->next = NONE;
    e->prev = c->tail;
    if (c->tail != NONE)
        c->e[c->tail].next = i;
    else
        c->head = i;
    c->tail = i;
}

enum sl_err cmds_add(struct cmds *c, struct sl_slice dev, struct sl_slice id, uint64_t deadline_ms)
{
    if (dev.n == 0 || dev.n > SL_DEV_MAX || id.n == 0 || id.n > SL_CMD_ID_MAX)
        return SL_INVAL;
    if (find(c, dev, id) != NONE)
        return SL_AGAIN;
    uint32_t i = c->free_head;
    if (i != NONE)
        c->free_head = c->e[i].hnext;
    else if (c->hw < c->cap)
        i = c->hw++;
    else
        return SL_NOMEM;
    struct cmd *e = &c->e[i];
    uint32_t gen = e->gen + 1;
    memset(e, 0, sizeof *e);
    e->gen = gen;
    memcpy(e->dev, dev.p, dev.n);
    memcpy(e->id, id.p, id.n);
    e->dev_len = (uint8_t)dev.n;
    e->id_len = (uint8_t)id.n;
    e->used = true;
    e->deadline = deadline_ms;
    uint32_t b = bucket(c, dev, id);
    e->hnext = c->heads[b];
    c->heads[b] = i;
    fifo_append(c, i);
    c->count++;
    return SL_OK;
}

static void clear_unsent(struct cmds *c, struct cmd *e)
{
    if (!e->unsent)
        return;
    free(e->body);
    e->body = NULL;
    c->unsent_bytes -= e->body_len;
    e->body_len = 0;
    e->unsent = false;
    c->unsent--;
}

static void remove_at(struct cmds *c, uint32_t i)
{
    struct cmd *e = &c->e[i];
    clear_unsent(c, e);
    struct sl_slice dev = {(const uint8_t *)e->dev, e->dev_len};
    struct sl_slice id = {(const uint8_t *)e->id, e->id_len};
    uint32_t *link = &c->heads[bucket(c, dev, id)];
    while (*link != i)
        link = &c->e[*link].hnext;
    *link = e->hnext;
    fifo_unlink(c, i);
    e->used = false;
    e->hnext = c->free_head;
    c->free_head = i;
    c->count--;
}

bool cmds_take(struct cmds *c, struct sl_slice dev, struct sl_slice id)
{
    uint32_t i = find(c, dev, id);
    if (i == NONE)
        return false;
    remove_at(c, i);
    return true;
}

static void call(cmds_cb *cb, void *ud, const struct cmd *e)
{
    if (!cb)
        return;
    struct sl_slice dev = {(const uint8_t *)e->dev, e->dev_len};
    struct sl_slice id = {(const uint8_t *)e->id, e->id_len};
    cb(ud, dev, id);
}

uint32_t cmds_take_dev(struct cmds *c, struct sl_slice dev, cmds_pred *take, cmds_cb *cb, void *ud)
{
    uint32_t n = 0;
    for (uint32_t i = c->head; i != NONE;) {
        uint32_t next = c->e[i].next;
        struct cmd *e = &c->e[i];
        struct sl_slice id = {(const uint8_t *)e->id, e->id_len};
        if (e->dev_len == dev.n && memcmp(e->dev, dev.p, dev.n) == 0 &&
            (!take || take(ud, dev, id, &e->meta))) {
            call(cb, ud, e);
            remove_at(c, i);
            n++;
        }
        i = next;
    }
    return n;
}

uint32_t cmds_expire(struct cmds *c, uint64_t now_ms, cmds_keep_cb *keep, void *ud)
{
    uint32_t n = 0, seen = 0, total = c->count;
    while (c->head != NONE && c->e[c->head].deadline <= now_ms && seen++ < total) {
        uint32_t i = c->head;
        struct cmd *e = &c->e[i];
        struct sl_slice dev = {(const uint8_t *)e->dev, e->dev_len};
        struct sl_slice id = {(const uint8_t *)e->id, e->id_len};
        uint64_t again = keep ? keep(ud, dev, id, &e->meta) : 0;
        if (again > now_ms) {
            e->deadline = again;
            fifo_unlink(c, i);
            fifo_append(c, i);
            continue;
        }
        remove_at(c, i);
        n++;
    }
    return n;
}

struct cmds_meta *cmds_meta(struct cmds *c, struct sl_slice dev, struct sl_slice id)
{
    uint32_t i = find(c, dev, id);
    return i == NONE ? NULL : &c->e[i].meta;
}

uint64_t cmds_handle(const struct cmds *c, struct sl_slice dev, struct sl_slice id)
{
    uint32_t i = find(c, dev, id);
    return i == NONE ? 0 : (uint64_t)c->e[i].gen << 32 | (uint64_t)(i + 1);
}

bool cmds_from_handle(const struct cmds *c, uint64_t h, struct sl_slice *dev, struct sl_slice *id)
{
    uint64_t i = (h & 0xffffffffu) - 1;
    if (h == 0 || i >= c->cap || !c->e[i].used || c->e[i].gen != (uint32_t)(h >> 32))
        return false;
    const struct cmd *e = &c->e[i];
    *dev = (struct sl_slice){(const uint8_t *)e->dev, e->dev_len};
    *id = (struct sl_slice){(const uint8_t *)e->id, e->id_len};
    return true;
}

void cmds_each(struct cmds *c, cmds_each_cb *cb, void *ud)
{
    for (uint32_t i = c->head; i != NONE; i = c->e[i].next) {
        struct cmd *e = &c->e[i];
        struct sl_slice dev = {(const uint8_t *)e->dev, e->dev_len};
        struct sl_slice id = {(const uint8_t *)e->id, e->id_len};
        cb(ud, dev, id, &e->meta);
    }
}

enum sl_err cmds_set_unsent(struct cmds *c, struct sl_slice dev, struct sl_slice id, const uint8_t *body,
                            uint32_t len)
{
    uint32_t i = find(c, dev, id);
    if (i == NONE)
        return SL_AGAIN;
    struct cmd *e = &c->e[i];
    if (e->unsent)
        return SL_OK;
    if (c->unsent_bytes + len > c->max_unsent_bytes)
        return SL_NOMEM;
    e->body = malloc(len ? len : 1); /* control path, rare: after a restart or an edge's reconnect */
    if (!e->body)
        return SL_NOMEM;
    if (len)
        memcpy(e->body, body, len);
    e->body_len = len;
    e->unsent = true;
    c->unsent_bytes += len;
    c->unsent++;
    return SL_OK;
}

bool cmds_is_unsent(const struct cmds *c, struct sl_slice dev, struct sl_slice id)
{
    uint32_t i = find(c, dev, id);
    return i != NONE && c->e[i].unsent;
}

void cmds_clear_unsent(struct cmds *c, struct sl_slice dev, struct sl_slice id)
{
    uint32_t i = find(c, dev, id);
    if (i != NONE)
        clear_unsent(c, &c->e[i]);
}

bool cmds_body(const struct cmds *c, struct sl_slice dev, struct sl_slice id, struct sl_slice *body)
{
    uint32_t i = find(c, dev, id);
    if (i == NONE || !c->e[i].unsent)
        return false;
    *body = (struct sl_slice){c->e[i].body, c->e[i].body_len};
    return true;
}

uint32_t cmds_retry(struct cmds *c, cmds_send_cb *send, void *ud)
{
    if (c->unsent == 0)
        return 0;
    for (uint32_t i = c->head; i != NONE && c->unsent > 0; i = c->e[i].next) {
        struct cmd *e = &c->e[i];
        if (!e->unsent)
            continue;
        struct sl_slice dev = {(const uint8_t *)e->dev, e->dev_len};
        struct sl_slice id = {(const uint8_t *)e->id, e->id_len};
        struct sl_slice body = {e->body, e->body_len};
        if (send(ud, dev, id, body) == 0)
            clear_unsent(c, e);
    }
    return c->unsent;
}

uint32_t cmds_count(const struct cmds *c)
{
    return c->count;
}

uint64_t cmds_next_deadline(const struct cmds *c)
{
    return c->head == NONE ? UINT64_MAX : c->e[c->head].deadline;
}
