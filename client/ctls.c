/* ctls.c - TLS for the device library (see ctls.h).
 *
 * One SSL_CTX per struct sl_tls (ctls_tls_new, wrapped by client.c's
 * sl_tls_new), shared by every client made with it (a
 * device has one; sluice-devsim shares one among thousands): the CA store
 * and the client certificate are loaded once. Each client takes its own
 * reference, so the sl_tls may be destroyed before its clients.
 *
 * Sockets go through a BIO of our own that writes with send(MSG_NOSIGNAL):
 * OpenSSL's socket BIO write()s, and a reset connection would then raise
 * SIGPIPE in an application that never asked for it. Sessions come to the
 * client through the new-session callback (TLS 1.3 sends its tickets after
 * the handshake), into the slot the client handed to ctls_conn_new.
 *
 * Deliberately absent: a switch to turn verification off (tests use a test
 * CA), TLS below 1.2, renegotiation, and any logging. */
#define _GNU_SOURCE
#include "ctls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct sl_tls {
    SSL_CTX *ctx;
};

/* ---- a socket BIO that never raises SIGPIPE ---- */

static BIO_METHOD *sock_method;
static CRYPTO_ONCE sock_once = CRYPTO_ONCE_STATIC_INIT;

static int sock_fd(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int sock_write(BIO *b, const char *buf, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n = send(sock_fd(b), buf, (size_t)len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static int sock_read(BIO *b, char *buf, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n = recv(sock_fd(b), buf, (size_t)len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)n;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    switch (cmd) {
    case BIO_CTRL_FLUSH: return 1; /* nothing buffered here */
    case BIO_C_GET_FD:
        if (ptr)
            *(int *)ptr = sock_fd(b);
        return sock_fd(b);
    default: return 0;
    }
}

static void sock_method_init(void)
{
    BIO_METHOD *m =
        BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "sl-socket");
    if (m && BIO_meth_set_write(m, sock_write) && BIO_meth_set_read(m, sock_read) &&
        BIO_meth_set_ctrl(m, sock_ctrl))
        sock_method = m;
    else
        BIO_meth_free(m);
}

/* ---- contexts ---- */

static int on_new_session(SSL *s, SSL_SESSION *sess)
{
    SSL_SESSION **slot = SSL_get_app_data(s);
    if (slot == NULL)
        return 0; /* not kept: OpenSSL frees it */
    if (*slot)
        SSL_SESSION_free(*slot);
    *slot = sess;
    return 1; /* the slot holds the reference now */
}

static const char *last_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : (errno ? strerror(errno) : "unknown error");
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void
say(char *why, size_t cap, const char *fmt, ...)
{
    if (why == NULL || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

struct sl_tls *ctls_tls_new(const char *ca_file, const char *cert_file, const char *key_file,
                            bool release_buffers, enum sl_err *err, char *why, size_t why_cap)
{
    enum sl_err dummy;
    if (err == NULL)
        err = &dummy;
    *err = SL_INVAL;
    bool cert = cert_file && cert_file[0], key = key_file && key_file[0];
    if (ca_file == NULL || ca_file[0] == '\0') {
        say(why, why_cap, "no CA file: the edge's certificate cannot be verified");
        return NULL;
    }
    if (cert != key) {
        say(why, why_cap, "a client certificate needs its key and a key its certificate");
        return NULL;
    }
    CRYPTO_THREAD_run_once(&sock_once, sock_method_init);
    struct sl_tls *t = calloc(1, sizeof *t);
    *err = SL_NOMEM;
    if (t == NULL || sock_method == NULL || (t->ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
        say(why, why_cap, "out of memory");
        free(t);
        return NULL;
    }
    SSL_CTX *ctx = t->ctx;
    ERR_clear_error();
    errno = 0;
    *err = SL_IO;
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        say(why, why_cap, "CA file %s: %s", ca_file, last_reason());
        goto fail;
    }
    if (cert && SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        say(why, why_cap, "certificate %s: %s", cert_file, last_reason());
        goto fail;
    }
    if (key && SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 &&
        !(ERR_GET_LIB(ERR_peek_last_error()) == ERR_LIB_X509 &&
          ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)) {
        say(why, why_cap, "key %s: %s", key_file, last_reason());
        goto fail;
    }
    if (key && SSL_CTX_check_private_key(ctx) != 1) {
        *err = SL_INVAL;
        say(why, why_cap, "key %s does not belong to certificate %s", key_file, cert_file);
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* An edge that vanishes without close_notify (a crash, a reset) is an
     * EOF like with plain TCP, not a TLS failure that would cost the
     * session: frames delimit themselves, so a truncation cannot pass. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Partial writes: a write returns after each record, so the client's
     * staging buffer drains record by record. Released buffers: ~34 KiB of
     * record buffers per idle connection go back to malloc (for processes
     * with many clients), at the price of a malloc per record. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | (release_buffers ? SSL_MODE_RELEASE_BUFFERS : 0));
    /* No cache inside OpenSSL: each client keeps its own latest session. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    ERR_clear_error();
    *err = SL_OK;
    return t;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    free(t);
    return NULL;
}

void ctls_tls_destroy(struct sl_tls **pt)
{
    struct sl_tls *t = *pt;
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx); /* clients made with it hold their own references */
    free(t);
    *pt = NULL;
}

SSL_CTX *ctls_ctx_ref(struct sl_tls *t)
{
    return SSL_CTX_up_ref(t->ctx) == 1 ? t->ctx : NULL;
}

void ctls_ctx_unref(SSL_CTX **ctx)
{
    SSL_CTX_free(*ctx);
    *ctx = NULL;
}

/* ---- connections ---- */

SSL *ctls_conn_new(SSL_CTX *ctx, int fd, const char *name, SSL_SESSION **sess)
{
    SSL *s = SSL_new(ctx);
    BIO *b = s ? BIO_new(sock_method) : NULL;
    if (b == NULL) {
        SSL_free(s);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_data(b, (void *)(intptr_t)fd);
    BIO_set_init(b, 1);
    SSL_set_bio(s, b, b);
    SSL_set_connect_state(s);
    unsigned char ip[16];
    bool ok;
    if (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1) {
        /* An address: matched against the certificate's IP SANs; SNI never
         * carries one (RFC 6066). */
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), name) == 1;
    } else {
        SSL_set_hostflags(s, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set_tlsext_host_name(s, name) == 1 && SSL_set1_host(s, name) == 1;
    }
    if (ok && sess && *sess) {
        /* Offer a copy: once a TLS 1.3 session has been resumed, OpenSSL
         * marks it used (tickets are meant for one use), and from an edge
         * that sends no new ticket on resumption every other reconnect
         * would be a full handshake. The kept session stays resumable
         * until the edge sends a newer one (or its ticket expires). */
        SSL_SESSION *copy = SSL_SESSION_dup(*sess);
        ok = copy && SSL_set_session(s, copy) == 1;
        SSL_SESSION_free(copy); /* the SSL holds its own reference */
    }
    if (!ok) {
        SSL_free(s);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_app_data(s, sess);
    return s;
}

void ctls_session_free(SSL_SESSION **sess)
{
    if (*sess)
        SSL_SESSION_free(*sess);
    *sess = NULL;
}

void ctls_conn_free(SSL **ps, bool clean, SSL_SESSION **sess)
{
    SSL *s = *ps;
    if (s == NULL)
        return;
    if (clean) {
        if (SSL_is_init_finished(s))
            (void)SSL_shutdown(s); /* close_notify if the socket takes it; no wait for the edge's */
        /* SSL_free marks the session of a connection that was not shut
         * down as not resumable; a reset is no reason to lose it. */
        SSL_set_shutdown(s, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    } else if (sess) {
        ctls_session_free(sess); /* a failed handshake or a bad record: start afresh */
    }
    SSL_set_app_data(s, NULL);
    SSL_free(s);
    ERR_clear_error();
    *ps = NULL;
}

/* Map an OpenSSL result; on failure describe it in why and clear the
 * error queue (a stale entry would confuse the next SSL_get_error). */
static enum ctls_io io_of(SSL *s, int ret, char *why, size_t cap)
{
    int e = errno;
    enum ctls_io rc;
    switch (SSL_get_error(s, ret)) {
    case SSL_ERROR_WANT_READ: return CTLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE: return CTLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN: rc = CTLS_EOF; break;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {
            /* no TLS error queued: the socket failed, or closed (errno 0) */
            if (e == 0) {
                say(why, cap, "connection closed");
                rc = CTLS_EOF;
            } else {
                say(why, cap, "%s", strerror(e));
                rc = CTLS_ERR_IO;
            }
            break;
        }
        /* fall through */
    default: {
        long vr = SSL_get_verify_result(s);
        if (vr != X509_V_OK)
            say(why, cap, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
        else
            say(why, cap, "%s", last_reason());
        rc = CTLS_ERR_TLS;
        break;
    }
    }
    ERR_clear_error();
    return rc;
}

enum ctls_io ctls_handshake(SSL *s, char *why, size_t cap)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(s);
    return r == 1 ? CTLS_OK : io_of(s, r, why, cap);
}

enum ctls_io ctls_read(SSL *s, void *buf, size_t cap, size_t *got, char *why, size_t wcap)
{
    ERR_clear_error();
    errno = 0;
    *got = 0;
    int r = SSL_read_ex(s, buf, cap, got);
    return r == 1 ? CTLS_OK : io_of(s, r, why, wcap);
}

enum ctls_io ctls_write(SSL *s, const void *buf, size_t n, size_t *put, char *why, size_t wcap)
{
    ERR_clear_error();
    errno = 0;
    *put = 0;
    int r = SSL_write_ex(s, buf, n, put);
    return r == 1 ? CTLS_OK : io_of(s, r, why, wcap);
}

void ctls_close_notify(SSL *s)
{
    if (SSL_is_init_finished(s))
        (void)SSL_shutdown(s);
    ERR_clear_error();
}

bool ctls_pending(SSL *s)
{
    return SSL_has_pending(s) == 1;
}

bool ctls_resumed(SSL *s)
{
    return SSL_session_reused(s) == 1;
}
