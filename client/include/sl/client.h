/* SPDX-License-Identifier: Apache-2.0 */
/* sl/client.h - the Sluice device library: what a device's firmware links to
 * talk to Sluice edges (docs/protocol.md, "Device -> edge").
 *
 * One struct sl_client is one device. It owns one TCP connection at a time
 * (optionally TLS: struct sl_tls) to one of several edges, says hello, sends `data` with seqs it assigns and
 * never reuses, keeps every unacknowledged message in a fixed-size queue,
 * resends them after an ack timeout and after every reconnect, pings when
 * idle, reconnects with capped exponential backoff and full jitter, and hands
 * commands to a callback.
 *
 * Non-blocking, poll-loop shaped (no threads, nothing thread-safe):
 *
 *     for (;;) {
 *         struct pollfd p = { sl_client_fd(c), POLLIN | (sl_client_want_write(c) ? POLLOUT : 0), 0 };
 *         poll(&p, p.fd >= 0, sl_client_timeout_ms(c));     // fd -1: just sleep
 *         if (p.revents & (POLLIN | POLLERR | POLLHUP)) sl_client_on_readable(c);
 *         if (p.revents & POLLOUT) sl_client_on_writable(c);
 *         sl_client_tick(c, 0);
 *     }
 *
 * sl_client_run_once() is exactly that loop body. The fd changes across
 * reconnects (and is -1 while waiting to reconnect): ask sl_client_fd() again
 * after every call into the client.
 *
 * Memory: everything is allocated once by sl_client_new (queue of `window`
 * slots of max_body + 64 bytes, a receive buffer of rx_max bytes, a small
 * control buffer, with TLS a 4 KiB staging buffer). Nothing is allocated
 * per message, except by OpenSSL with sl_tls_config.release_buffers; with
 * TLS, OpenSSL allocates its connection state at each connect.
 *
 * Callbacks run from inside sl_client_on_readable/on_writable/tick/send.
 * They may call sl_client_send and sl_client_answer, but must not destroy
 * the client. */
#ifndef SL_CLIENT_H
#define SL_CLIENT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sl/err.h"

struct sl_client;

enum sl_client_state {
    SL_CLIENT_IDLE = 0,   /* no connection; waiting for the reconnect time */
    SL_CLIENT_CONNECTING, /* TCP connect (and, with TLS, the handshake) in progress */
    SL_CLIENT_HELLO,      /* connected, hello sent, waiting for welcome */
    SL_CLIENT_CONNECTED,  /* welcome received: data flows */
};

/* How seqs are made unique for the device's whole life. */
enum sl_seq_mode {
    SL_SEQ_FILE = 0, /* default: a small file `seq_path` holding "next = N" */
    SL_SEQ_STORE,    /* the caller's storage callbacks (struct sl_seq_store) */
    SL_SEQ_CLOCK,    /* no storage: seq = realtime ms since epoch * 1000 + counter */
};

/* Storage for the seq reservation. The client reserves seqs in blocks: before
 * it hands out seq s it has durably saved a limit > s, so after a reboot
 * load() returns a value no seq ever used reaches, with one save per
 * `seq_block` messages instead of one fsync per message. */
struct sl_seq_store {
    /* Put the saved limit in *next (1 if nothing was ever saved). Return 0, or -1 on error. */
    int (*load)(void *ud, uint64_t *next);
    /* Durably store `next` (every seq used so far is below it). Return 0, or -1. */
    int (*save)(void *ud, uint64_t next);
    void *ud;
};

struct sl_client_callbacks {
    /* The edge acknowledged seq: it is committed in PostgreSQL. queued_ms is
     * the client clock when sl_client_send queued it (for latency). Called
     * once per seq. */
    void (*on_ack)(void *ud, uint64_t seq, uint64_t queued_ms);
    /* An operator command. id is NUL-terminated; body is the raw msgpack of
     * `body`, both valid only during the call. Answer with sl_client_answer,
     * now or later while still connected. */
    void (*on_cmd)(void *ud, const char *id, const uint8_t *body, size_t len);
    /* The connection state changed. On SL_CLIENT_IDLE, err says why the
     * connection ended: SL_IO (connect failed, reset, EOF), SL_TIMEOUT (hello,
     * idle), SL_DECODE/SL_PROTO (the edge sent something unreadable), SL_TLS
     * (the edge's certificate was not verified, the edge refused ours, or a
     * TLS alert or bad record), or the wire error the edge sent (SL_AUTH,
     * SL_REPLACED, SL_BUSY, SL_DRAINING...). sl_client_last_error() may say
     * more (which certificate problem). */
    void (*on_state)(void *ud, enum sl_client_state st, enum sl_err err);
    void *ud;
};

/* TLS to the edges (docs/protocol.md, "Transport"): TLS 1.2 or 1.3, and
 * the edge's certificate always verified, against the CA in ca_file and
 * the name the client expects (sl_client_config.tls_server_name). There is
 * deliberately no way to skip verification: tests use a test CA. For edges
 * with mutual TLS, this device's certificate (its CN or a subjectAltName
 * must equal the device id) and key.
 *
 * One context serves any number of clients (sluice-devsim shares one among
 * thousands); each client keeps its own reference, and its own latest TLS
 * session, offered at every reconnect so that it costs a resumption, not a
 * full handshake (across edges too, when they share ticket keys). */
struct sl_tls;

struct sl_tls_config {
    const char *ca_file;   /* PEM: the CA certificate(s) an edge's certificate must chain to (required) */
    const char *cert_file; /* PEM chain of this device's certificate, leaf first (NULL: none) */
    const char *key_file;  /* its PEM private key (required with cert_file) */
    /* Give OpenSSL's record buffers (~34 KiB) back while a connection is
     * idle: for processes holding many clients; costs a malloc and free per
     * record. Off: the buffers stay allocated while connected. */
    bool release_buffers;
};

/* Load the files into a new context. Blocks only on the file reads. Returns
 * NULL with *err = SL_INVAL (no CA file, a certificate without its key, a
 * key that does not belong to the certificate), SL_IO (a file missing or not
 * PEM) or SL_NOMEM, and one line of explanation in why[why_cap] (why may be
 * NULL). */
struct sl_tls *sl_tls_new(const struct sl_tls_config *cfg, enum sl_err *err, char *why, size_t why_cap);

/* Drop the caller's reference; *t becomes NULL. Clients made with it keep
 * theirs, so this may come before or after sl_client_destroy. */
void sl_tls_destroy(struct sl_tls **t);

/* Zero means "the default" for every number. Strings are copied. */
struct sl_client_config {
    const char *edges;         /* "host:port,host:port" (required); resolved at each connect */
    const char *dev;           /* device id [A-Za-z0-9._:-]{1,64} (required) */
    const char *tok;           /* its token, 64 hex chars (required) */
    uint32_t window;           /* queue capacity: max unacked messages (64) */
    uint32_t max_body;         /* largest body accepted by sl_client_send, bytes (1024) */
    uint32_t rx_max;           /* largest frame accepted from the edge (4096) */
    uint32_t ack_timeout_ms;   /* resend unacked after this on the same connection (15000) */
    uint32_t hello_timeout_ms; /* connect + hello -> welcome must take less (10000) */
    uint32_t backoff_base_ms;  /* first backoff ceiling, also the minimum reconnect delay (1000) */
    uint32_t backoff_max_ms;   /* cap of the backoff (60000) */
    uint32_t ping_ms;          /* ping when nothing was sent this long (welcome hb) */
    uint32_t start_edge;       /* index of the first edge tried (spread a fleet over edges) */
    enum sl_seq_mode seq_mode;
    const char *seq_path;           /* SL_SEQ_FILE: the file (created if absent) */
    uint32_t seq_block;             /* seqs reserved per save (1000) */
    struct sl_seq_store store;      /* SL_SEQ_STORE */
    const char *journal_path;       /* optional: append-only journal of unacked messages */
    bool journal_sync;              /* fdatasync the journal after every append */
    const char *bind_addr;          /* optional IPv4 source address (IP_BIND_ADDRESS_NO_PORT) */
    uint64_t seed;                  /* jitter random seed (0: from time, pid and dev) */
    uint64_t (*clock_ms)(void *ud); /* monotonic ms (NULL: CLOCK_MONOTONIC); ud = callbacks.ud */
    struct sl_client_callbacks cb;
    struct sl_tls *tls; /* optional: speak TLS with this context (NULL: plain TCP); not taken over */
    /* The name the edges' certificates must carry: a DNS name (also sent as
     * SNI) or an IP address. NULL: the host part of each edge address. */
    const char *tls_server_name;
};

struct sl_client_stats {
    uint64_t sent;           /* data frames written (resends included) */
    uint64_t resent;         /* of which resends */
    uint64_t acked;          /* distinct seqs acknowledged */
    uint64_t connects;       /* connections that reached welcome */
    uint64_t disconnects;    /* connections (or attempts) that ended */
    uint64_t errors;         /* err frames received from an edge */
    uint64_t tls_handshakes; /* TLS handshakes completed (resumptions included) */
    uint64_t tls_resumed;    /* of which resumed a previous session */
};

/* Create a client. Nothing is connected yet: the first sl_client_tick (or
 * sl_client_run_once) starts the first connection. Loads the seq state and
 * replays the journal (its unacked messages are queued again). Blocks only on
 * those file reads. Returns NULL with *err = SL_INVAL (bad config), SL_NOMEM
 * or SL_IO (seq file or journal unusable). */
struct sl_client *sl_client_new(const struct sl_client_config *cfg, enum sl_err *err);

/* Close the connection and free everything; *c becomes NULL. The journal and
 * seq file keep their contents (unacked messages survive). */
void sl_client_destroy(struct sl_client **c);

/* The socket to watch, or -1 when there is none right now. Changes across
 * reconnects. */
int sl_client_fd(const struct sl_client *c);

/* True if the caller should wait for the fd to become writable. */
bool sl_client_want_write(const struct sl_client *c);

/* Call when the fd is readable (or has an error / hangup). Never blocks. */
void sl_client_on_readable(struct sl_client *c);

/* Call when the fd is writable. Never blocks. */
void sl_client_on_writable(struct sl_client *c);

/* Run the timers: reconnect, hello timeout, ping, idle, ack timeout. now_ms
 * is the client clock (0: read it). Never blocks (except DNS resolution of a
 * non-numeric edge host at connect). */
void sl_client_tick(struct sl_client *c, uint64_t now_ms);

/* Client-clock ms at which sl_client_tick next has work (UINT64_MAX: none). */
uint64_t sl_client_deadline(const struct sl_client *c);

/* Milliseconds until that deadline, for poll(): 0..INT32_MAX. */
int sl_client_timeout_ms(const struct sl_client *c);

/* Queue one message: body is msgpack bytes (copied), ts the device time in ms
 * since epoch (0: none). Assigns the next seq (*seq, may be NULL) and writes
 * it as soon as the connection allows. Returns SL_OK, SL_AGAIN (queue full:
 * wait for acks - backpressure), SL_TOOBIG (body > max_body), SL_INVAL (body
 * not exactly one msgpack object) or SL_IO (the seq reservation or the
 * journal could not be saved; nothing was queued). Never blocks except for
 * the seq file / journal write. */
enum sl_err sl_client_send(struct sl_client *c, const uint8_t *body, size_t len, int64_t ts, uint64_t *seq);

/* Answer command `id` (from on_cmd) with ok and an optional msgpack body
 * (NULL/0: none). Returns SL_OK, SL_IO (not connected: the command is lost,
 * the operator gets "disconnected"), SL_AGAIN (control buffer full) or
 * SL_TOOBIG. */
enum sl_err sl_client_answer(struct sl_client *c, const char *id, bool ok, const uint8_t *body, size_t len);

/* Blocking convenience: poll the fd for at most timeout_ms (less if a timer
 * is due sooner), handle what is ready and run the timers. Returns SL_OK or
 * SL_IO if poll itself failed (EINTR counts as SL_OK). */
enum sl_err sl_client_run_once(struct sl_client *c, int timeout_ms);

/* Save the exact next seq (instead of the reserved block's end), so a clean
 * restart continues without a gap. Returns SL_OK or SL_IO. */
enum sl_err sl_client_seq_flush(struct sl_client *c);

enum sl_client_state sl_client_state(const struct sl_client *c);
uint32_t sl_client_unacked(const struct sl_client *c); /* queued, not yet acked */
uint64_t sl_client_next_seq(const struct sl_client *c);
/* Free queue slots: sl_client_send returns SL_AGAIN when this is 0. */
uint32_t sl_client_queue_free(const struct sl_client *c);
/* Copy up to cap unacked seqs (oldest first) into out; returns how many were copied. */
uint32_t sl_client_unacked_seqs(const struct sl_client *c, uint64_t *out, uint32_t cap);
const struct sl_client_stats *sl_client_stats(const struct sl_client *c);
const char *sl_client_dev(const struct sl_client *c);
/* One line on why the last connection (or attempt) ended, where the library
 * knows more than the on_state error: the edge's address, then the TLS
 * reason ("10.0.0.1:7443: TLS: certificate verify failed: unable to get
 * local issuer certificate", an alert of the edge), the socket error, or
 * the msg of the edge's err frame. "" if nothing was recorded. Owned by c;
 * valid until the next call into c (also from inside on_state). */
const char *sl_client_last_error(const struct sl_client *c);

/* The reconnect delay after `attempt` failures in a row (0 = first retry)
 * for a uniform random number rnd: base + rnd % (ceiling - base + 1), where
 * ceiling = min(max, base * 2^max(attempt, 1)) ("full jitter" above the
 * minimum delay, from the first retry on). Pure; exposed for tests. */
uint32_t sl_client_backoff_ms(uint32_t base_ms, uint32_t max_ms, uint32_t attempt, uint64_t rnd);

#endif
