/* sl/zap.h - the ZAP handler (ZeroMQ RFC 27) of a service's CURVE sockets,
 * and the check that binds each edge key to its edge id.
 *
 * A service with CURVE on creates one zap per ZeroMQ context, before its
 * sockets (zmqx_socket refuses a CURVE server socket without it). The
 * handler admits a client only if its public key is one of the edge
 * certificates in the allowed directory, and hands libzmq the key's
 * "edge-id" metadata as the connection's ZAP user id. Every message from
 * that connection then carries it (zmq_msg_gets "User-Id"), and
 * zap_sender_ok compares it with the edge id and reply address a batch
 * claims. Why this design and not czmq's zauth: docs/security.md. */
#ifndef SL_ZAP_H
#define SL_ZAP_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

struct zap;

/* Counts of one handler. allowed/refused/keys are written by the handler
 * thread, impostor by the thread calling zap_sender_ok: one writer each
 * (sl/stat.h), any thread may read. */
struct zap_counts {
    _Atomic uint64_t allowed;  /* handshakes admitted */
    _Atomic uint64_t refused;  /* handshakes refused: key not in the directory */
    _Atomic uint64_t impostor; /* messages zap_sender_ok refused */
    _Atomic int64_t keys;      /* edge keys loaded now */
};

/* Bind the context's ZAP endpoint (inproc://zeromq.zap.01) on zctx, load
 * the edge certificates in allow_dir (sl/keys.h: each a public certificate
 * with "edge-id" metadata; dot files and *_secret files are skipped, the
 * latter with a warning) and start the handler thread. The directory is
 * read again at most once a second when a handshake arrives, so keys can be
 * added or removed without a restart (connections already admitted stay).
 * Returns NULL (logged once) if the directory cannot be read or the
 * endpoint is taken (one handler per context). Blocks for the first read. */
struct zap *zap_new(void *zctx, const char *allow_dir);

/* Stop the thread and close its socket. Call only after every CURVE server
 * socket of the context is closed: with no handler bound, libzmq would
 * admit any key. Blocks until the thread has exited. NULLs *z. */
void zap_destroy(struct zap **z);

/* The context zap_new was given. */
void *zap_ctx(const struct zap *z);

const struct zap_counts *zap_counts(const struct zap *z);

/* Whether a key bound to `bound` (an edge id, or a prefix ending in '*':
 * "sluice-edge-*" for the replicas of one deployment sharing a key; "*"
 * alone, any) may send a batch whose header names edge id `edge` and reply
 * address `reply`: edge must match bound, and reply must be empty or start
 * with "<edge>/" (the edge worker's identity "<edge>/<worker>/<secret>").
 * Pure. */
bool zap_binding_ok(const char *bound, const uint8_t *edge, size_t edge_n, const uint8_t *reply,
                    size_t reply_n);

/* The check on a received message m: true when z is NULL (CURVE off), else
 * zap_binding_ok with m's ZAP user id (false if m has none). A refusal is
 * counted (impostor) and logged once per offending key binding
 * (event=curve_impostor), so an impostor cannot flood the log. Call from
 * one thread per z. Never blocks. */
bool zap_sender_ok(struct zap *z, zmq_msg_t *m, const uint8_t *edge, size_t edge_n, const uint8_t *reply,
                   size_t reply_n);

#endif
