/* SPDX-License-Identifier: Apache-2.0 */
/* test_client_tls.c - the device library's TLS against a small OpenSSL
 * server played by the test.
 *
 * The certificates are made here, in memory, at the start (EC P-256, a
 * trusted CA and an unrelated one), and written to a temporary directory
 * for the library, which takes file paths. The fake edge is test_client.c's
 * (fake_edge.c: 127.0.0.1, an ephemeral port, frames, waits that keep
 * pumping the client) with its bytes going through a non-blocking server SSL
 * in the test's one thread. Real clock, short backoff; real time only bounds
 * the waits.
 *
 * Covered: hello/data/ack through TLS (1.3 and 1.2), frames larger than the
 * client's staging buffer with a full socket (writes retried with the same
 * bytes), a CA that does not sign the edge's certificate and a name the
 * certificate does not carry (no hello leaves, SL_TLS with the reason),
 * mutual TLS (the certificate the edge sees; an edge refusing a device
 * without one), resumption on reconnect after a dropped connection, and
 * sl_tls_new's errors. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "fake_edge.h"
#include "sl/client.h"
#include "sl/frame.h"
#include "sl/msg.h"

/* ---- certificates ---- */

static char dir[256];
static char ca_pem[300], ca_key[300], other_ca_pem[300], srv_pem[300], srv_key[300], dev_pem[300],
    dev_key[300];

static void write_pem(const char *path, X509 *x, EVP_PKEY *k)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    if (x)
        assert_int_equal(PEM_write_X509(f, x), 1);
    else
        assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

/* A certificate for key k named cn, signed by (issuer, ikey), or
 * self-signed when issuer is NULL; ext: "critical,CA:TRUE" style
 * basicConstraints, and SANs ("IP:127.0.0.1,DNS:edge.test") or NULL. */
static X509 *make_cert(EVP_PKEY *k, const char *cn, X509 *issuer, EVP_PKEY *ikey, bool ca, const char *sans,
                       const char *eku)
{
    static long serial = 1;
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 2 * 86400);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    struct {
        int nid;
        const char *val;
    } ext[] = {
        {NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE"},
        {NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"},
        {NID_subject_key_identifier, "hash"},
        {NID_ext_key_usage, eku},
        {NID_subject_alt_name, sans},
    };
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        if (ext[i].val == NULL)
            continue;
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, ext[i].nid, ext[i].val);
        assert_non_null(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, issuer ? ikey : k, EVP_sha256()) > 0);
    return x;
}

static int make_certs(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/sl-test-client-tls-XXXXXX");
    assert_non_null(mkdtemp(dir));
    EVP_PKEY *ck = EVP_EC_gen("P-256"), *ok = EVP_EC_gen("P-256"), *sk = EVP_EC_gen("P-256"),
             *dk = EVP_EC_gen("P-256");
    assert_true(ck && ok && sk && dk);
    X509 *ca = make_cert(ck, "test-ca", NULL, NULL, true, NULL, NULL);
    X509 *other = make_cert(ok, "other-ca", NULL, NULL, true, NULL, NULL);
    X509 *srv = make_cert(sk, "edge-1", ca, ck, false, "IP:127.0.0.1,DNS:edge.test", "serverAuth");
    X509 *dev = make_cert(dk, "tls-dev-1", ca, ck, false, NULL, "clientAuth");
    struct {
        char *path;
        const char *name;
        X509 *x;
        EVP_PKEY *k;
    } out[] = {
        {ca_pem, "ca.pem", ca, NULL},
        {ca_key, "ca.key", NULL, ck},
        {other_ca_pem, "other.pem", other, NULL},
        {srv_pem, "edge.pem", srv, NULL},
        {srv_key, "edge.key", NULL, sk},
        {dev_pem, "dev.pem", dev, NULL},
        {dev_key, "dev.key", NULL, dk},
    };
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) {
        snprintf(out[i].path, 300, "%s/%s", dir, out[i].name);
        write_pem(out[i].path, out[i].x, out[i].k);
    }
    X509_free(ca);
    X509_free(other);
    X509_free(srv);
    X509_free(dev);
    EVP_PKEY_free(ck);
    EVP_PKEY_free(ok);
    EVP_PKEY_free(sk);
    EVP_PKEY_free(dk);
    return 0;
}

static int remove_certs(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- callback recorder ---- */

struct rec {
    uint64_t acks[256];
    int nacks;
    enum sl_client_state states[64];
    enum sl_err errs[64];
    char whys[64][192];
    int nstates;
    struct sl_client *c;
};

static void on_ack(void *ud, uint64_t seq, uint64_t queued_ms)
{
    struct rec *r = ud;
    (void)queued_ms;
    if (r->nacks < 256)
        r->acks[r->nacks++] = seq;
}

static void on_state(void *ud, enum sl_client_state st, enum sl_err err)
{
    struct rec *r = ud;
    if (r->nstates < 64) {
        r->states[r->nstates] = st;
        r->errs[r->nstates] = err;
        /* the reason is readable from inside the callback */
        snprintf(r->whys[r->nstates], sizeof r->whys[0], "%s", r->c ? sl_client_last_error(r->c) : "");
        r->nstates++;
    }
}

/* ---- fake TLS edge ---- */

/* fake_edge.c's edge, its bytes through a server SSL. */
struct edge {
    struct fake_edge net; /* first: the io callbacks get &net and find the SSL */
    SSL_CTX *ctx;
    SSL *ssl;
};

/* Session tickets as the edge makes them (tls.c): one fixed key through
 * the EVP callback, "use" (1) on decryption, so no new ticket is issued
 * when a session is resumed. */
static int ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    (void)s;
    static const unsigned char key[80] = "sluice-test-ticket-key, 80 bytes: 16 name, 32 HMAC, 32 AES.......";
    if (enc) {
        memcpy(name, key, 16);
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) <= 0)
            return -1;
    } else if (memcmp(name, key, 16) != 0) {
        return 0;
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
    return ok ? 1 : -1;
}

/* One decrypted read into the edge's input, if any. */
static void tls_read(struct fake_edge *net)
{
    struct edge *e = (struct edge *)net;
    ERR_clear_error();
    size_t got = 0;
    if (SSL_read_ex(e->ssl, net->in + net->in_len, sizeof net->in - net->in_len, &got) == 1)
        net->in_len += got;
    else
        ERR_clear_error();
}

static void tls_write(struct fake_edge *net, struct sl_client *c, const uint8_t *buf, size_t n)
{
    struct edge *e = (struct edge *)net;
    size_t put = 0;
    uint64_t end = fake_edge_real_ms() + FAKE_EDGE_WAIT_MS;
    while (SSL_write_ex(e->ssl, buf, n, &put) != 1) {
        ERR_clear_error();
        assert_true(fake_edge_real_ms() < end);
        fake_edge_pump(c);
    }
    assert_int_equal(put, n);
}

static const struct fake_edge_io tls_io = {.read = tls_read, .write = tls_write};

/* max_version 0: TLS 1.3; client_ca: require a client certificate. */
static void edge_listen(struct edge *e, int max_version, const char *client_ca)
{
    memset(e, 0, sizeof *e);
    e->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(e->ctx);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(e->ctx, srv_pem), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(e->ctx, srv_key, SSL_FILETYPE_PEM), 1);
    if (max_version)
        SSL_CTX_set_max_proto_version(e->ctx, max_version);
    static const unsigned char sid[] = "test-edge";
    SSL_CTX_set_session_id_context(e->ctx, sid, sizeof sid - 1);
    /* stateless tickets only, as the edge (tls.c) */
    SSL_CTX_set_session_cache_mode(e->ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(e->ctx, 1);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(e->ctx, ticket_cb);
    if (client_ca) {
        assert_int_equal(SSL_CTX_load_verify_locations(e->ctx, client_ca, NULL), 1);
        SSL_CTX_set_verify(e->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    fake_edge_listen(&e->net, &tls_io);
}

/* Drop the connection as a crash would: no close_notify. */
static void edge_drop(struct edge *e)
{
    if (e->ssl)
        SSL_free(e->ssl);
    e->ssl = NULL;
    fake_edge_drop(&e->net);
}

static void edge_close(struct edge *e)
{
    edge_drop(e);
    fake_edge_close(&e->net);
    SSL_CTX_free(e->ctx);
}

/* Accept the client's next TCP connection and run the server handshake,
 * pumping the client meanwhile. Returns whether the handshake succeeded. */
static bool edge_accept(struct edge *e, struct sl_client *c)
{
    edge_drop(e);
    fake_edge_accept(&e->net, c);
    e->ssl = SSL_new(e->ctx);
    SSL_set_fd(e->ssl, e->net.fd);
    SSL_set_accept_state(e->ssl);
    uint64_t end = fake_edge_real_ms() + FAKE_EDGE_WAIT_MS;
    while (fake_edge_real_ms() < end) {
        ERR_clear_error();
        int r = SSL_do_handshake(e->ssl);
        if (r == 1)
            return true;
        int err = SSL_get_error(e->ssl, r);
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
            ERR_clear_error();
            return false;
        }
        fake_edge_pump(c);
    }
    fail_msg("handshake neither done nor failed");
    return false;
}

static void wait_acks(struct rec *r, int n)
{
    fake_edge_wait_count(r->c, &r->nacks, n);
}

/* Pump until the client reports IDLE (a connection ended); its error. */
static enum sl_err wait_idle(struct rec *r, int from)
{
    uint64_t end = fake_edge_real_ms() + FAKE_EDGE_WAIT_MS;
    for (;;) {
        for (int i = from; i < r->nstates; i++)
            if (r->states[i] == SL_CLIENT_IDLE)
                return r->errs[i];
        if (fake_edge_real_ms() > end)
            fail_msg("the connection did not end");
        fake_edge_pump(r->c);
    }
}

/* ---- fixture ---- */

static struct sl_tls *tls_ctx(const char *ca, const char *cert, const char *key)
{
    struct sl_tls_config tc = {.ca_file = ca, .cert_file = cert, .key_file = key};
    enum sl_err err = SL_OK;
    char why[256] = "";
    struct sl_tls *t = sl_tls_new(&tc, &err, why, sizeof why);
    if (t == NULL)
        fail_msg("sl_tls_new: %s (%s)", sl_strerror(err), why);
    return t;
}

static struct sl_client *mk(struct rec *r, const char *edges, struct sl_tls *t, const char *name,
                            uint32_t max_body)
{
    struct sl_client_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.edges = edges;
    cfg.dev = "tls-dev-1";
    cfg.tok = FAKE_EDGE_TOK;
    cfg.window = 64;
    cfg.max_body = max_body;
    cfg.backoff_base_ms = 10;
    cfg.backoff_max_ms = 20;
    cfg.seq_mode = SL_SEQ_CLOCK;
    cfg.cb.on_ack = on_ack;
    cfg.cb.on_state = on_state;
    cfg.cb.ud = r;
    cfg.tls = t;
    cfg.tls_server_name = name;
    enum sl_err err = SL_OK;
    struct sl_client *c = sl_client_new(&cfg, &err);
    assert_non_null(c);
    r->c = c;
    return c;
}

static const uint8_t body1[] = {0x81, 0xa4, 't', 'e', 'm', 'p', 0x15}; /* {"temp":21} */

/* ---- tests ---- */

static void hello_data_ack(int version)
{
    struct rec r = {0};
    struct edge e;
    edge_listen(&e, version, NULL);
    struct sl_tls *t = tls_ctx(ca_pem, NULL, NULL);
    struct sl_client *c = mk(&r, e.net.addr, t, NULL, 128); /* the name: the edge's host, 127.0.0.1 */
    sl_tls_destroy(&t);                                     /* the client keeps its own reference */
    assert_null(t);
    uint64_t seqs[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, &seqs[i]), SL_OK);
    assert_true(edge_accept(&e, c));
    assert_int_equal(SSL_version(e.ssl), version ? version : TLS1_3_VERSION);
    fake_edge_welcome(&e.net, c, 30, "tls-dev-1");
    for (int i = 0; i < 3; i++) {
        struct msg m = {0};
        fake_edge_recv(&e.net, c, &m);
        assert_int_equal(m.t, MSG_DATA);
        assert_int_equal(m.u.data.seq, seqs[i]);
        assert_int_equal(m.u.data.body.n, sizeof body1);
        assert_memory_equal(m.u.data.body.p, body1, sizeof body1);
    }
    for (int i = 2; i >= 0; i--)
        fake_edge_ack(&e.net, c, seqs[i]);
    wait_acks(&r, 3);
    assert_int_equal(sl_client_unacked(c), 0);
    assert_int_equal(sl_client_stats(c)->tls_handshakes, 1);
    assert_int_equal(sl_client_stats(c)->tls_resumed, 0);
    /* ping/pong and a command path are frames like any other: one ping */
    sl_client_destroy(&c);
    edge_close(&e);
}

static void test_tls13_hello_data_ack(void **state)
{
    (void)state;
    hello_data_ack(0);
}

static void test_tls12_hello_data_ack(void **state)
{
    (void)state;
    hello_data_ack(TLS1_2_VERSION);
}

/* Frames larger than the 4 KiB stage, a client socket buffer that fills
 * while the edge does not read: writes wait and are retried unchanged;
 * every byte of every body arrives intact and in order. */
static void test_tls_big_frames_full_socket(void **state)
{
    (void)state;
    struct rec r = {0};
    struct edge e;
    edge_listen(&e, 0, NULL);
    struct sl_tls *t = tls_ctx(ca_pem, NULL, NULL);
    struct sl_client *c = mk(&r, e.net.addr, t, NULL, 10000);
    assert_true(edge_accept(&e, c));
    fake_edge_welcome(&e.net, c, 30, "tls-dev-1");
    int small = 4096;
    assert_int_equal(setsockopt(sl_client_fd(c), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    assert_int_equal(setsockopt(e.net.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    static uint8_t body[9000];
    uint64_t seqs[40];
    for (int i = 0; i < 40; i++) {
        body[0] = 0xc5; /* bin 16 */
        body[1] = (uint8_t)((sizeof body - 3) >> 8);
        body[2] = (uint8_t)(sizeof body - 3);
        for (size_t j = 3; j < sizeof body; j++)
            body[j] = (uint8_t)(i * 31 + j);
        assert_int_equal(sl_client_send(c, body, sizeof body, 0, &seqs[i]), SL_OK);
        fake_edge_pump(c);
    }
    /* the edge has not read: the client must be blocked on the socket */
    for (int i = 0; i < 50; i++)
        fake_edge_pump(c);
    assert_true(sl_client_want_write(c));
    for (int i = 0; i < 40; i++) {
        struct msg m = {0};
        fake_edge_recv(&e.net, c, &m);
        assert_int_equal(m.t, MSG_DATA);
        assert_int_equal(m.u.data.seq, seqs[i]);
        assert_int_equal(m.u.data.body.n, sizeof body);
        for (size_t j = 3; j < sizeof body; j++)
            if (m.u.data.body.p[j] != (uint8_t)(i * 31 + j))
                fail_msg("frame %d byte %zu differs", i, j);
        fake_edge_ack(&e.net, c, seqs[i]);
    }
    wait_acks(&r, 40);
    assert_int_equal(sl_client_stats(c)->resent, 0);
    sl_client_destroy(&c);
    sl_tls_destroy(&t);
    edge_close(&e);
}

/* Connect once with t and expect the TLS to fail on the client's side:
 * nothing decrypted reaches the edge, on_state says SL_TLS with `reason`
 * in the text. */
static void expect_refused(struct sl_tls *t, const char *name, const char *reason)
{
    struct rec r = {0};
    struct edge e;
    edge_listen(&e, 0, NULL);
    struct sl_client *c = mk(&r, e.net.addr, t, name, 128);
    assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, NULL), SL_OK);
    assert_false(edge_accept(&e, c)); /* the client aborts with an alert */
    assert_int_equal(wait_idle(&r, 0), SL_TLS);
    int last = r.nstates - 1;
    if (strstr(r.whys[last], reason) == NULL)
        fail_msg("reason %s not in \"%s\"", reason, r.whys[last]);
    assert_non_null(strstr(sl_client_last_error(c), e.net.addr)); /* names the edge */
    for (int i = 0; i < r.nstates; i++)
        assert_true(r.states[i] != SL_CLIENT_HELLO && r.states[i] != SL_CLIENT_CONNECTED);
    assert_int_equal(sl_client_stats(c)->tls_handshakes, 0);
    /* and it keeps trying, with the backoff, like after any failure */
    assert_true(sl_client_deadline(c) != UINT64_MAX);
    sl_client_destroy(&c);
    edge_close(&e);
}

static void test_tls_wrong_ca_refused(void **state)
{
    (void)state;
    struct sl_tls *t = tls_ctx(other_ca_pem, NULL, NULL);
    expect_refused(t, NULL, "certificate verify failed");
    sl_tls_destroy(&t);
}

static void test_tls_server_name(void **state)
{
    (void)state;
    struct sl_tls *t = tls_ctx(ca_pem, NULL, NULL);
    expect_refused(t, "other.test", "hostname mismatch");
    expect_refused(t, "127.0.0.2", "IP address mismatch");
    /* the DNS name the certificate carries works, and is sent as SNI */
    struct rec r = {0};
    struct edge e;
    edge_listen(&e, 0, NULL);
    struct sl_client *c = mk(&r, e.net.addr, t, "edge.test", 128);
    assert_true(edge_accept(&e, c));
    const char *sni = SSL_get_servername(e.ssl, TLSEXT_NAMETYPE_host_name);
    assert_non_null(sni);
    assert_string_equal(sni, "edge.test");
    fake_edge_welcome(&e.net, c, 30, "tls-dev-1");
    sl_client_destroy(&c);
    edge_close(&e);
    sl_tls_destroy(&t);
}

static void test_tls_client_certificate(void **state)
{
    (void)state;
    struct rec r = {0};
    struct edge e;
    edge_listen(&e, 0, ca_pem);
    struct sl_tls *t = tls_ctx(ca_pem, dev_pem, dev_key);
    struct sl_client *c = mk(&r, e.net.addr, t, NULL, 128);
    assert_true(edge_accept(&e, c));
    X509 *peer = SSL_get1_peer_certificate(e.ssl);
    assert_non_null(peer);
    char cn[64] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
    assert_string_equal(cn, "tls-dev-1");
    X509_free(peer);
    fake_edge_welcome(&e.net, c, 30, "tls-dev-1");
    sl_client_destroy(&c);
    sl_tls_destroy(&t);

    /* Without a certificate the edge refuses the device: with TLS 1.3 the
     * client's side of the handshake is over by then, and the edge's alert
     * arrives on the first read. */
    memset(&r, 0, sizeof r);
    t = tls_ctx(ca_pem, NULL, NULL);
    c = mk(&r, e.net.addr, t, NULL, 128);
    assert_false(edge_accept(&e, c));
    /* the socket stays open until the client has read the alert (a close
     * with its hello unread would reset the connection first) */
    assert_int_equal(wait_idle(&r, 0), SL_TLS);
    assert_non_null(strstr(r.whys[r.nstates - 1], "certificate required"));
    sl_client_destroy(&c);
    sl_tls_destroy(&t);
    edge_close(&e);
}

/* The session of a connection that was dropped (no close_notify: a crash,
 * a reset) is offered on reconnect and the edge resumes it; the unacked
 * message goes again over the resumed connection. And again at the next
 * reconnect: this server (OpenSSL's defaults) issues no new ticket on a
 * TLS 1.3 resumption, and OpenSSL marks a resumed session used. */
static void resumption(int version)
{
    struct rec r = {0};
    struct edge e;
    edge_listen(&e, version, NULL);
    struct sl_tls *t = tls_ctx(ca_pem, NULL, NULL);
    struct sl_client *c = mk(&r, e.net.addr, t, NULL, 128);
    assert_true(edge_accept(&e, c));
    assert_int_equal(SSL_session_reused(e.ssl), 0);
    fake_edge_welcome(&e.net, c, 30, "tls-dev-1"); /* TLS 1.3: the ticket came before the welcome */
    uint64_t seq = 0;
    assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, &seq), SL_OK);
    struct msg m = {0};
    fake_edge_recv(&e.net, c, &m);
    assert_int_equal(m.u.data.seq, seq);
    int from = r.nstates;
    edge_drop(&e);
    assert_int_equal(wait_idle(&r, from), SL_IO);
    assert_true(edge_accept(&e, c));
    assert_int_equal(SSL_session_reused(e.ssl), 1);
    fake_edge_welcome(&e.net, c, 30, "tls-dev-1");
    fake_edge_recv(&e.net, c, &m); /* resent after the reconnect */
    assert_int_equal(m.t, MSG_DATA);
    assert_int_equal(m.u.data.seq, seq);
    fake_edge_ack(&e.net, c, seq);
    wait_acks(&r, 1);
    from = r.nstates;
    edge_drop(&e);
    assert_int_equal(wait_idle(&r, from), SL_IO);
    assert_true(edge_accept(&e, c));
    assert_int_equal(SSL_session_reused(e.ssl), 1);
    fake_edge_welcome(&e.net, c, 30, "tls-dev-1");
    assert_int_equal(sl_client_stats(c)->tls_handshakes, 3);
    assert_int_equal(sl_client_stats(c)->tls_resumed, 2);
    sl_client_destroy(&c);
    sl_tls_destroy(&t);
    edge_close(&e);
}

static void test_tls13_resumption(void **state)
{
    (void)state;
    resumption(0);
}

static void test_tls12_resumption(void **state)
{
    (void)state;
    resumption(TLS1_2_VERSION);
}

/* A connection that ended in a TLS failure (here a bad record) leaves no
 * session to resume: the next connection makes a full handshake. (OpenSSL
 * marks such a session not resumable itself; the client also drops it.) */
static void test_tls_session_dropped_after_failure(void **state)
{
    (void)state;
    struct rec r = {0};
    struct edge e;
    edge_listen(&e, 0, NULL);
    struct sl_tls *t = tls_ctx(ca_pem, NULL, NULL);
    struct sl_client *c = mk(&r, e.net.addr, t, NULL, 128);
    assert_true(edge_accept(&e, c));
    fake_edge_welcome(&e.net, c, 30, "tls-dev-1");
    /* a bad record: garbage where a TLS record header belongs */
    int from = r.nstates;
    static const uint8_t junk[] = {0x17, 0x03, 0x03, 0x00, 0x20, 1,  2,  3,  4,  5,  6,  7,  8,
                                   9,    10,   11,   12,   13,   14, 15, 16, 17, 18, 19, 20, 21,
                                   22,   23,   24,   25,   26,   27, 28, 29, 30, 31, 32};
    assert_int_equal(write(e.net.fd, junk, sizeof junk), (ssize_t)sizeof junk);
    assert_int_equal(wait_idle(&r, from), SL_TLS);
    assert_true(edge_accept(&e, c));
    assert_int_equal(SSL_session_reused(e.ssl), 0);
    fake_edge_welcome(&e.net, c, 30, "tls-dev-1");
    assert_int_equal(sl_client_stats(c)->tls_resumed, 0);
    sl_client_destroy(&c);
    sl_tls_destroy(&t);
    edge_close(&e);
}

static void test_tls_new_errors(void **state)
{
    (void)state;
    enum sl_err err = SL_OK;
    char why[256];
    struct sl_tls_config tc = {0};
    assert_null(sl_tls_new(&tc, &err, why, sizeof why));
    assert_int_equal(err, SL_INVAL);
    tc.ca_file = "/nonexistent/ca.pem";
    assert_null(sl_tls_new(&tc, &err, why, sizeof why));
    assert_int_equal(err, SL_IO);
    assert_non_null(strstr(why, "/nonexistent/ca.pem"));
    tc.ca_file = ca_pem;
    tc.cert_file = dev_pem; /* without its key */
    assert_null(sl_tls_new(&tc, &err, NULL, 0));
    assert_int_equal(err, SL_INVAL);
    tc.key_file = srv_key; /* another certificate's key */
    assert_null(sl_tls_new(&tc, &err, why, sizeof why));
    assert_int_equal(err, SL_INVAL);
    assert_non_null(strstr(why, "does not belong"));
    tc.key_file = dev_key;
    struct sl_tls *t = sl_tls_new(&tc, &err, why, sizeof why);
    assert_non_null(t);
    assert_int_equal(err, SL_OK);
    sl_tls_destroy(&t);
    assert_null(t);
    sl_tls_destroy(&t); /* NULL: nothing */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls13_hello_data_ack),
        cmocka_unit_test(test_tls12_hello_data_ack),
        cmocka_unit_test(test_tls_big_frames_full_socket),
        cmocka_unit_test(test_tls_wrong_ca_refused),
        cmocka_unit_test(test_tls_server_name),
        cmocka_unit_test(test_tls_client_certificate),
        cmocka_unit_test(test_tls13_resumption),
        cmocka_unit_test(test_tls12_resumption),
        cmocka_unit_test(test_tls_session_dropped_after_failure),
        cmocka_unit_test(test_tls_new_errors),
    };
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
