/* persister.h - the persister service: PULL edge batches, write them to
 * PostgreSQL in batches, ack each committed row back through a ROUTER.
 *
 * One thread. Memory is bounded at persister_new: a batch arena of
 * min(batch_max, max_pending) rows and the ZeroMQ messages they point into.
 * While a batch is being committed (or retried while PostgreSQL is down)
 * nothing more is pulled, so ZeroMQ's high-water marks push back to the
 * edges. */
#ifndef PERSISTER_PERSISTER_H
#define PERSISTER_PERSISTER_H
#include <signal.h>
#include <stdint.h>

struct persister_cfg {
    const char *pull;        /* bind endpoint, e.g. "tcp://0.0.0.0:7001" */
    const char *router;      /* bind endpoint, e.g. "tcp://0.0.0.0:7002" */
    const char *db;          /* libpq conninfo or URI; "" = PG* env */
    int64_t batch_max;       /* rows per transaction */
    int64_t batch_ms;        /* longest wait before committing a non-empty batch */
    int64_t max_pending;     /* rows held in memory */
    int64_t edge_timeout_ms; /* close sessions of an edge incarnation silent this long */
    int64_t json_bytes;      /* JSON arena per batch (0 = derived from batch size) */
    int64_t shutdown_ms;     /* after SIGTERM, how long to keep retrying the last batch */
    int64_t max_msg;         /* ZMQ_MAXMSGSIZE of both sockets: a bigger message disconnects its sender */
};

struct persister;

/* Bind the sockets and allocate everything. NULL on failure (logged). Does
 * not contact the database yet. */
struct persister *persister_new(const struct persister_cfg *cfg);
void persister_destroy(struct persister **p);

/* Run until *stop becomes non-zero (set from a signal handler), then stop
 * pulling, commit and ack what is held, and return 0; -1 if the held batch
 * could not be committed before shutdown_ms (nothing unacked is lost: the
 * devices resend). Blocks. */
int persister_run(struct persister *p, volatile sig_atomic_t *stop);

#endif
