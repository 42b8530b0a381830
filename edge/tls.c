/* tls.c - the device port's TLS (see tls.h).
 *
 * One SSL_CTX at a time is current; tls_reload builds a new one from the
 * same paths and swaps it in under the holder's mutex. SSL_new takes its
 * own reference to the context it was made from, so the old context lives
 * as long as its last connection, and nobody frees a context between a
 * worker reading the pointer and calling SSL_new (both under the mutex).
 *
 * Resumption: stateless tickets only (no server-side session cache: it
 * would cost memory per client and not work across edges). The ticket
 * key callback encrypts with the first key of --tls-ticket-keys and
 * decrypts with any, so a fleet of edges sharing the file resumes each
 * other's sessions, and a key rotation (new key first, the old one kept a
 * while) loses none. */
#define _GNU_SOURCE
#include "tls.h"
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICKET_KEY_LEN 80 /* name 16 | HMAC 32 | AES 32 */
#define TICKET_KEYS    8

struct ticket_keys {
    int n;
    uint8_t k[TICKET_KEYS][TICKET_KEY_LEN];
};

struct tls {
    pthread_mutex_t mu;
    SSL_CTX *ctx;
    struct tls_files f;
    char *paths;               /* storage for f's strings */
    struct ticket_keys random; /* this process's own key, when no file is given */
    bool client_certs;
};

static int ex_keys = -1; /* SSL_CTX ex_data index of its struct ticket_keys */
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void free_keys(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp);

static void ex_init(void)
{
    /* the keys go with their context: freed (and wiped) by SSL_CTX_free */
    ex_keys = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_keys);
}

const char *tls_last_error(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (!e) {
        snprintf(buf, cap, "%s", errno ? strerror(errno) : "unknown");
        return buf;
    }
    ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

static int read_file(const char *path, uint8_t *buf, size_t cap, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    *n = fread(buf, 1, cap, f);
    int bad = ferror(f) || !feof(f);
    fclose(f);
    return bad ? -1 : 0;
}

/* ---- tickets ---------------------------------------------------------------- */

static int ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    const struct ticket_keys *tk = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), ex_keys);
    if (!tk || tk->n == 0)
        return -1;
    const uint8_t *key = NULL;
    int which = 0;
    if (enc) {
        key = tk->k[0];
        memcpy(name, key, 16);
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) <= 0)
            return -1;
    } else {
        for (which = 0; which < tk->n; which++)
            if (memcmp(name, tk->k[which], 16) == 0)
                break;
        if (which == tk->n)
            return 0; /* not one of ours (or retired): a full handshake */
        key = tk->k[which];
    }
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)(key + 16), 32),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (!EVP_MAC_CTX_set_params(hctx, p))
        return -1;
    int ok = enc ? EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key + 48, iv)
                 : EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key + 48, iv);
    if (!ok)
        return -1;
    return !enc && which > 0 ? 2 : 1; /* 2: decrypted with an old key, issue a new ticket */
}

static void free_keys(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    if (ptr) {
        OPENSSL_cleanse(ptr, sizeof(struct ticket_keys));
        free(ptr);
    }
}

/* ---- contexts ---------------------------------------------------------------- */

static SSL_CTX *build(struct tls *t, char *err, size_t cap)
{
    char eb[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, cap, "SSL_CTX_new: %s", tls_last_error(eb, sizeof eb));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Release idle buffers (kilobytes per connection), allow partial writes
     * and a write retried from a moved buffer (conn.c coalesces chunks). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* Resumption with client certificates fails ("session id context
     * uninitialized", an internal-error alert) unless the context has one;
     * the same on every edge, so tickets work across them. */
    static const unsigned char sid_ctx[] = "sluice-edge";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    SSL_CTX_set_num_tickets(ctx, 1);
    /* A device gone without close_notify (a crash, a power cut) is an EOF,
     * as with plain TCP, not a TLS failure (OpenSSL 3 reports it as an
     * error otherwise): frames delimit themselves, truncation cannot pass. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (SSL_CTX_use_certificate_chain_file(ctx, t->f.cert) != 1) {
        snprintf(err, cap, "certificate %s: %s", t->f.cert, tls_last_error(eb, sizeof eb));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, t->f.key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, cap, "key %s: %s", t->f.key, tls_last_error(eb, sizeof eb));
        goto fail;
    }
    if (*t->f.client_ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->f.client_ca);
        if (!names || SSL_CTX_load_verify_locations(ctx, t->f.client_ca, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            snprintf(err, cap, "client CA %s: %s", t->f.client_ca, tls_last_error(eb, sizeof eb));
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    struct ticket_keys *tk = calloc(1, sizeof *tk);
    if (!tk) {
        snprintf(err, cap, "out of memory");
        goto fail;
    }
    if (*t->f.ticket_keys) {
        uint8_t raw[TICKET_KEYS * TICKET_KEY_LEN + 1];
        size_t n = 0;
        if (read_file(t->f.ticket_keys, raw, sizeof raw, &n) != 0 || n == 0 || n % TICKET_KEY_LEN ||
            n > TICKET_KEYS * TICKET_KEY_LEN) {
            snprintf(err, cap, "ticket keys %s: want 1 to %d keys of %d bytes (head -c 80 /dev/urandom)",
                     t->f.ticket_keys, TICKET_KEYS, TICKET_KEY_LEN);
            OPENSSL_cleanse(raw, sizeof raw);
            free(tk);
            goto fail;
        }
        tk->n = (int)(n / TICKET_KEY_LEN);
        memcpy(tk->k, raw, n);
        OPENSSL_cleanse(raw, sizeof raw);
    } else {
        *tk = t->random;
    }
    SSL_CTX_set_ex_data(ctx, ex_keys, tk);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

struct tls *tls_new(const struct tls_files *f, char *err, size_t cap)
{
    pthread_once(&ex_once, ex_init);
    if (ex_keys < 0) {
        snprintf(err, cap, "SSL_CTX_get_ex_new_index failed");
        return NULL;
    }
    struct tls *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    size_t need = strlen(f->cert) + strlen(f->key) + strlen(f->client_ca) + strlen(f->ticket_keys) + 4;
    t->paths = malloc(need);
    if (!t->paths) {
        free(t);
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    char *p = t->paths;
    const char *src[4] = {f->cert, f->key, f->client_ca, f->ticket_keys};
    const char **dst[4] = {&t->f.cert, &t->f.key, &t->f.client_ca, &t->f.ticket_keys};
    for (int i = 0; i < 4; i++) {
        *dst[i] = p;
        p = stpcpy(p, src[i]) + 1;
    }
    t->client_certs = *f->client_ca != 0;
    t->random.n = 1;
    RAND_bytes(t->random.k[0], TICKET_KEY_LEN);
    pthread_mutex_init(&t->mu, NULL);
    t->ctx = build(t, err, cap);
    if (!t->ctx) {
        tls_destroy(&t);
        return NULL;
    }
    return t;
}

void tls_destroy(struct tls **pt)
{
    struct tls *t = *pt;
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    OPENSSL_cleanse(&t->random, sizeof t->random);
    pthread_mutex_destroy(&t->mu);
    free(t->paths);
    free(t);
    *pt = NULL;
}

int tls_reload(struct tls *t, char *err, size_t cap)
{
    SSL_CTX *ctx = build(t, err, cap);
    if (!ctx)
        return -1;
    pthread_mutex_lock(&t->mu);
    SSL_CTX *old = t->ctx;
    t->ctx = ctx;
    pthread_mutex_unlock(&t->mu);
    SSL_CTX_free(old); /* the connections made with it hold their own references */
    return 0;
}

uint64_t tls_files_hash(const struct tls *t)
{
    const char *paths[4] = {t->f.cert, t->f.key, t->f.client_ca, t->f.ticket_keys};
    uint64_t h = 0xcbf29ce484222325ull;
    static uint8_t buf[1 << 20];
    for (int i = 0; i < 4; i++) {
        if (!*paths[i])
            continue;
        size_t n = 0;
        if (read_file(paths[i], buf, sizeof buf, &n) != 0)
            return 0;
        for (size_t j = 0; j < n; j++) {
            h ^= buf[j];
            h *= 0x100000001b3ull;
        }
        h ^= (uint64_t)i + 1;
    }
    return h ? h : 1;
}

bool tls_client_certs(const struct tls *t)
{
    return t->client_certs;
}

/* ---- connections ------------------------------------------------------------- */

SSL *tls_conn_new(struct tls *t, int fd)
{
    pthread_mutex_lock(&t->mu);
    SSL *s = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->mu);
    if (!s)
        return NULL;
    if (SSL_set_fd(s, fd) != 1) {
        SSL_free(s);
        return NULL;
    }
    SSL_set_accept_state(s);
    return s;
}

void tls_conn_free(SSL *s)
{
    if (!s)
        return;
    /* close_notify, once, without waiting for the peer's */
    SSL_set_quiet_shutdown(s, 0);
    if (SSL_is_init_finished(s))
        (void)SSL_shutdown(s);
    SSL_free(s);
    ERR_clear_error();
}

static enum tls_io io_of(SSL *s, int ret)
{
    int e = SSL_get_error(s, ret);
    switch (e) {
    case SSL_ERROR_WANT_READ: return TLS_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE: return TLS_IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN: return TLS_IO_EOF;
    case SSL_ERROR_SYSCALL:
        /* 0 bytes and no error queued: the peer closed the TCP connection */
        if (ERR_peek_error() == 0 && errno == 0)
            return TLS_IO_EOF;
        return TLS_IO_ERR;
    default: return TLS_IO_ERR;
    }
}

enum tls_io tls_handshake(SSL *s)
{
    errno = 0;
    int r = SSL_do_handshake(s);
    return r == 1 ? TLS_IO_OK : io_of(s, r);
}

enum tls_io tls_read(SSL *s, void *buf, size_t cap, size_t *got)
{
    errno = 0;
    *got = 0;
    int r = SSL_read_ex(s, buf, cap, got);
    return r == 1 ? TLS_IO_OK : io_of(s, r);
}

enum tls_io tls_write(SSL *s, const void *buf, size_t n, size_t *put)
{
    errno = 0;
    *put = 0;
    int r = SSL_write_ex(s, buf, n, put);
    return r == 1 ? TLS_IO_OK : io_of(s, r);
}

bool tls_resumed(SSL *s)
{
    return SSL_session_reused(s) == 1;
}

static bool same(const ASN1_STRING *a, const char *dev, size_t n)
{
    return a && (size_t)ASN1_STRING_length(a) == n && memcmp(ASN1_STRING_get0_data(a), dev, n) == 0;
}

bool tls_peer_is(SSL *s, const char *dev, size_t n)
{
    if (!(SSL_get_verify_mode(s) & SSL_VERIFY_PEER))
        return true; /* client certificates are off */
    X509 *cert = SSL_get0_peer_certificate(s);
    if (!cert || SSL_get_verify_result(s) != X509_V_OK)
        return false;
    bool ok = false;
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && !ok && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_DNS || g->type == GEN_URI || g->type == GEN_EMAIL)
            ok = same(g->d.ia5, dev, n);
    }
    GENERAL_NAMES_free(sans);
    const X509_NAME *subj = X509_get_subject_name(cert);
    for (int i = -1; !ok && (i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0;)
        ok = same(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)), dev, n);
    return ok;
}
