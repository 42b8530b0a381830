/* SPDX-License-Identifier: Apache-2.0 */
/* cmdq.h - the persister's side of the durable command queue (migrations/005,
 * docs/api.md "Commands"), on a thread with its own PostgreSQL connection.
 *
 * sluice-api inserts commands. This thread delivers them: every
 * CMDQ_POLL_MS, and at once after the loop committed a batch with sessions
 * (cmdq_kick: a device connected), it takes the pending commands of devices
 * whose newest session is open, in submission order, marks each as handed
 * to that session (sent_epoch, under FOR UPDATE SKIP LOCKED: several
 * persisters never hand one command to one session twice), and gives the
 * loop one cmd batch per edge worker to send on its ROUTER. What the edges
 * report back (cmd_sent, res; the loop hands them over with cmdq_post)
 * moves commands to delivered, ok or error; expired commands are marked so.
 *
 * Nothing here is on the path of an ack. The functions below are for the
 * loop's thread and never block on the database. */
#ifndef PERSISTER_CMDQ_H
#define PERSISTER_CMDQ_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sl/envelope.h"

#define CMDQ_POLL_MS    250u   /* pending commands looked for at least this often */
#define CMDQ_EVENTS_MAX 10000u /* reports (cmd_sent, res) waiting at most; beyond: dropped, counted */
#define CMDQ_BATCH_MAX  500    /* commands handed over per round */

/* Written by the cmdq thread only (sl/stat.h: one writer), exported by stats.c. */
struct cmdq_stats {
    _Atomic uint64_t handed;    /* cmd entries given to the loop for an edge */
    _Atomic uint64_t sent;      /* cmd_sent reports applied (cmd frames written) */
    _Atomic uint64_t results;   /* res reports that ended a command (ok or error) */
    _Atomic uint64_t expired;   /* commands whose ttl passed undelivered or unanswered */
    _Atomic uint64_t gave_up;   /* commands written --max-attempts times, never answered */
    _Atomic uint64_t kicks;     /* connections closed for sluice-api (kick entries sent) */
    _Atomic uint64_t db_errors; /* rounds that failed on the database (retried) */
};

struct cmdq_cfg {
    const char *conninfo; /* copied */
    void *zctx;           /* the loop's ZeroMQ context (inproc) */
    const char *endpoint; /* inproc endpoint the loop's PULL is bound to */
    const char *self;     /* this persister's name, the edge field of cmd batch headers */
    int64_t max_attempts; /* a command is written at most this many times */
};

struct cmdq;

/* Start the thread (SIGINT/SIGTERM blocked). NULL on failure (logged). */
struct cmdq *cmdq_new(const struct cmdq_cfg *cfg, struct cmdq_stats *st);
/* Stop and join (a round in progress is finished); *q becomes NULL. */
void cmdq_destroy(struct cmdq **q);

/* Hand over a res or cmd_sent entry (copied: dev, id, body); other kinds
 * are ignored (true). False if the queue is full or out of memory: the
 * report is lost (the caller counts it), the command stays pending. */
bool cmdq_post(struct cmdq *q, const struct envelope *e);

/* Look for deliverable commands now (a batch with sessions committed). */
void cmdq_kick(struct cmdq *q);

/* The loop's side of the hand-over: each message it reads from its PULL on
 * cfg.endpoint is two frames, the edge worker's identity and a cmd batch,
 * to send as they are on the ROUTER. */

#endif
