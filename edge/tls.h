/* edge/tls.h - TLS for the device port (OpenSSL 3, non-blocking), as conn.c
 * needs it: a server context that can be replaced while connections made
 * with the previous one go on, one SSL per connection, handshake/read/write
 * steps that never block and say what they wait for, and the check of a
 * client certificate against the device id of the hello.
 *
 * TLS 1.2 and 1.3 only. Session resumption works across edges when they
 * share --tls-ticket-keys (a file of 80-byte keys: 16 name, 32 HMAC, 32
 * AES; the first encrypts new tickets, all decrypt), else each edge makes
 * its own random key at start. SSL_MODE_RELEASE_BUFFERS keeps an idle
 * connection's buffers released (docs/performance.md: bytes per idle TLS
 * connection).
 *
 * Contexts are shared by worker threads: tls_conn_new takes a reference
 * under the context holder's lock, so a reload (main's thread) never frees
 * a context a worker is about to use. */
#ifndef EDGE_TLS_H
#define EDGE_TLS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls;
typedef struct ssl_st SSL;

struct tls_files {
    const char *cert;        /* PEM chain, leaf first */
    const char *key;         /* PEM private key */
    const char *client_ca;   /* "" = no client certificates; else required and verified against it */
    const char *ticket_keys; /* "" = a random key of this process */
};

/* Load the files into a context. NULL with the reason in err. */
struct tls *tls_new(const struct tls_files *f, char *err, size_t cap);
void tls_destroy(struct tls **t);

/* Load the same paths again; on success new connections use the new
 * context (existing ones keep theirs). -1 with err: nothing changed. */
int tls_reload(struct tls *t, char *err, size_t cap);

/* A fingerprint of what tls_reload would load now (to skip reloads when
 * the files did not change); 0 if a file cannot be read. */
uint64_t tls_files_hash(const struct tls *t);

/* Whether hellos must match the client certificate (tls_peer_is). */
bool tls_client_certs(const struct tls *t);

/* A server-side SSL for fd (non-blocking), or NULL (out of memory). */
SSL *tls_conn_new(struct tls *t, int fd);
/* Send close_notify (best effort, never blocks) and free. */
void tls_conn_free(SSL *s);

enum tls_io {
    TLS_IO_OK = 0,
    TLS_IO_WANT_READ,  /* wait until the socket is readable, then call again */
    TLS_IO_WANT_WRITE, /* wait until it is writable, then call again (same bytes for a write) */
    TLS_IO_EOF,        /* the peer closed (close_notify or TCP FIN) */
    TLS_IO_ERR,        /* a protocol or socket error: close */
};

/* One step of the server handshake. OK once done. */
enum tls_io tls_handshake(SSL *s);
/* Up to cap decrypted bytes into buf (*got); OK with *got > 0. */
enum tls_io tls_read(SSL *s, void *buf, size_t cap, size_t *got);
/* Encrypt and send n bytes (one TLS record at most 16 KiB); OK: *put bytes
 * were taken. After WANT_*, call again with the same n bytes (their content
 * may move: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER). */
enum tls_io tls_write(SSL *s, const void *buf, size_t n, size_t *put);
/* Was the handshake a resumption? */
bool tls_resumed(SSL *s);
/* Does the verified client certificate name dev (its subject CN or one of
 * its subjectAltNames: DNS, URI or an email, compared byte for byte: device
 * ids may hold ':' and '_')? true when client certificates are off. */
bool tls_peer_is(SSL *s, const char *dev, size_t n);
/* The last OpenSSL error of this thread as text (for one log line). */
const char *tls_last_error(char *buf, size_t cap);

#endif
