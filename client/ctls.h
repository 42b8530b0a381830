/* ctls.h - the device library's TLS (OpenSSL 3), as client.c needs it:
 * a client SSL on a non-blocking socket, handshake/read/write steps that
 * never block and say what they wait for, the edge's name checked, and
 * the session kept for the next connection. Internal to sl_client (and
 * sluice-replay, which drives raw byte streams through it). The public
 * sl_tls_new/sl_tls_destroy of sl/client.h are client.c's wrappers of
 * ctls_tls_new/ctls_tls_destroy (this file knows nothing of sl_client).
 *
 * Nothing here logs. A failed step fills `why` (when not NULL) with one
 * line: the certificate problem ("certificate verify failed: ..."), the
 * edge's alert, or the socket error. */
#ifndef SL_CLIENT_CTLS_H
#define SL_CLIENT_CTLS_H
#include <stdbool.h>
#include <stddef.h>
#include "sl/err.h"

struct sl_tls;
struct ssl_st;
struct ssl_ctx_st;
struct ssl_session_st;

/* A context (see sl_tls_new in sl/client.h for the arguments and errors):
 * the CA file (required), an optional client certificate chain and key,
 * and whether OpenSSL's idle record buffers are released. */
struct sl_tls *ctls_tls_new(const char *ca_file, const char *cert_file, const char *key_file,
                            bool release_buffers, enum sl_err *err, char *why, size_t why_cap);
void ctls_tls_destroy(struct sl_tls **t);

/* The context of t with one more reference (the caller frees it with
 * ctls_ctx_unref), so a client outlives the sl_tls it was made with. */
struct ssl_ctx_st *ctls_ctx_ref(struct sl_tls *t);
void ctls_ctx_unref(struct ssl_ctx_st **ctx);

/* A client SSL for the connected (or connecting) non-blocking socket fd,
 * checking that the edge's certificate names `name` (an IPv4/IPv6 address
 * or a DNS name; a DNS name is also sent as SNI). *sess, when not NULL, is
 * offered for resumption; sessions the edge issues on this connection
 * replace *sess (the caller frees it with ctls_session_free), which must
 * stay valid as long as the SSL. NULL on out of memory or a bad name. */
struct ssl_st *ctls_conn_new(struct ssl_ctx_st *ctx, int fd, const char *name, struct ssl_session_st **sess);

/* Free the SSL. clean: no TLS error ended the connection, so send
 * close_notify (best effort, never blocks) and keep its session resumable;
 * otherwise the session is not offered again (*sess freed). The socket is
 * the caller's. */
void ctls_conn_free(struct ssl_st **s, bool clean, struct ssl_session_st **sess);
void ctls_session_free(struct ssl_session_st **sess);

enum ctls_io {
    CTLS_OK = 0,
    CTLS_WANT_READ,  /* call again once the socket is readable */
    CTLS_WANT_WRITE, /* call again once it is writable (a write: with the same bytes) */
    CTLS_EOF,        /* the edge closed (close_notify or TCP FIN) */
    CTLS_ERR_IO,     /* a socket error (reset...): the session stays resumable */
    CTLS_ERR_TLS,    /* a TLS failure: certificate not verified, an alert, a bad record */
};

/* One step of the client handshake; CTLS_OK once done. */
enum ctls_io ctls_handshake(struct ssl_st *s, char *why, size_t cap);
/* Up to cap decrypted bytes into buf; CTLS_OK with *got > 0. */
enum ctls_io ctls_read(struct ssl_st *s, void *buf, size_t cap, size_t *got, char *why, size_t wcap);
/* Encrypt and send up to n bytes (n <= 16 KiB: one record); CTLS_OK with
 * *put bytes taken. After CTLS_WANT_*, call again with the same bytes. */
enum ctls_io ctls_write(struct ssl_st *s, const void *buf, size_t n, size_t *put, char *why, size_t wcap);
/* Send close_notify now (best effort, never blocks); reads may go on
 * until the edge closes. */
void ctls_close_notify(struct ssl_st *s);
/* Bytes OpenSSL holds that a read returns without the socket being
 * readable (poll() does not announce them). */
bool ctls_pending(struct ssl_st *s);
/* Was the handshake a resumption? */
bool ctls_resumed(struct ssl_st *s);

#endif
