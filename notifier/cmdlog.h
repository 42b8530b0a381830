/* SPDX-License-Identifier: Apache-2.0 */
/* cmdlog.h - the notifier's PostgreSQL side (with --db): the durable
 * command queue's state changes, taken from the outbox the commands table's
 * trigger fills (persister/migrations/006), become MQTT publishes on
 * P/<dev>/cmd/<id>/state and, for a final state, P/<dev>/cmd/<id>/result
 * (docs/protocol.md §5, docs/notifier.md "Queued commands on MQTT").
 *
 * One thread of its own with one connection: it LISTENs for the trigger's
 * notification (and polls, in case one is missed), and, holding a
 * transaction-level advisory lock so that one notifier drains at a time,
 * claims events in order (DELETE ... RETURNING, committed) and hands them
 * to the loop's thread as ready-made publishes through a bounded queue,
 * waking the loop (loop_wake). The loop publishes them with cmdlog_flush:
 * it never waits for PostgreSQL. Claim, then publish: a notifier killed
 * between the two loses those events (at most once, never twice).
 *
 * The same thread stores the MQTT commands with "queue":true that the loop
 * hands it (cmdlog_submit) with sluice-api's transaction (sl/cmdstore.h);
 * the persister then delivers them as any queued command, and their
 * states come back through the outbox. */
#ifndef NTF_CMDLOG_H
#define NTF_CMDLOG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct cmdlog;

/* Publishes the thread has handed over and the loop has not yet taken; the
 * thread claims no more events than there is room for. */
#define CMDLOG_QUEUE_MAX 1024
/* Commands handed to cmdlog_submit and not yet stored or refused. */
#define CMDLOG_SUBMIT_MAX 1024
/* How long a command waits for the database before it is answered
 * "unavailable". */
#define CMDLOG_SUBMIT_WAIT_MS 10000u

struct cmdlog_stats {
    _Atomic uint64_t states;    /* state events claimed (each one publish on .../state) */
    _Atomic uint64_t results;   /* results claimed (each one publish on .../result) */
    _Atomic uint64_t db_errors; /* failed statements and connections */
    _Atomic uint64_t queued;    /* MQTT commands stored (cmdlog_submit) */
    _Atomic uint64_t
        refused;           /* MQTT commands answered: unknown_device, queue_full, bad_command, unavailable */
    _Atomic uint64_t dups; /* MQTT commands dropped: a command with that id exists */
};

struct cmdlog_cfg {
    const char *conninfo; /* libpq conninfo or URI ("" = PG* variables), copied */
    const char *prefix;   /* MQTT topic prefix P, copied */
    struct loop *loop;    /* woken (loop_wake) when publishes are ready */
    int64_t max_queued;   /* pending commands per device (sluice-api's --max-queued) */
};

/* Start the thread (it connects, and reconnects, by itself: a database
 * that is down is logged and retried, never fatal). Call it with SIGTERM
 * and SIGINT blocked (main.c blocks them before any thread exists): the
 * thread inherits the mask, so they reach the loop's signalfd only. NULL on failure to
 * allocate or to start the thread (logged). Counts into *st. */
struct cmdlog *cmdlog_new(const struct cmdlog_cfg *cfg, struct cmdlog_stats *st);
/* Stop the thread (waits for the statement in progress, bounded by
 * libpq's; events not yet claimed stay in the outbox for the next
 * notifier). Publishes already handed over stay for cmdlog_flush.
 * Idempotent. */
void cmdlog_stop(struct cmdlog *c);
/* Stop, drop what was not flushed, free, NULL *c. */
void cmdlog_destroy(struct cmdlog **c);

/* The loop's thread: hand each ready publish, in order, to publish(); it
 * returns 0 when it took it (copied), -1 when it cannot now (the rest
 * waits for the next call). Returns how many were taken. Never blocks. */
typedef int cmdlog_publish_cb(void *ud, const char *topic, size_t topic_len, const char *payload, size_t len);
unsigned cmdlog_flush(struct cmdlog *c, cmdlog_publish_cb *publish, void *ud);
/* The loop's thread: store a command in the durable queue, as sluice-api
 * does with "queue":true (copies everything). Its states and result then
 * come through the outbox; a refusal comes back as a publish of its
 * result: {"ok":false,"error":E}, E = unknown_device (the device never
 * connected), queue_full (max_queued pending), bad_command (PostgreSQL
 * refused the body), unavailable (no database within
 * CMDLOG_SUBMIT_WAIT_MS). A command whose id exists already is dropped
 * (logged, counted in dups): that id has its own result coming. 0, or -1
 * when CMDLOG_SUBMIT_MAX commands wait already or memory is short (the
 * caller answers). Never blocks. */
int cmdlog_submit(struct cmdlog *c, const char *dev, size_t dev_len, const char *id, const char *json,
                  const uint8_t *mp, size_t mp_len, int64_t ttl_s);
/* Publishes handed over and not yet taken by cmdlog_flush (0 for NULL). */
unsigned cmdlog_pending(struct cmdlog *c);

#endif
