/* test_zap.c - CURVE through zmqx_socket with the ZAP handler of sl/zap.h,
 * on loopback with keys written by zcert into a temporary directory:
 * - the binding rule (exact edge id, '*' prefix, reply "<edge>/..." only);
 * - only edge certificates count from the allowed directory (a service key,
 *   a secret key file and a README are skipped);
 * - an allowed key gets through and its messages carry the key's edge id
 *   as User-Id; an unknown key and a plain client get nothing through, and
 *   each refusal is counted; zap_sender_ok refuses a batch claiming another
 *   edge, counts it and logs once per binding;
 * - keys added to or removed from the directory take effect for new
 *   handshakes about a second later, without a restart;
 * - zmqx_socket refuses inconsistent CURVE settings (a server without a
 *   handler, or with another context's; bad key text);
 * - one DEALER reaches two servers with different keys through the
 *   resolver, each connect with its zmqx_conns' key. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "sl/keys.h"
#include "sl/loop.h"
#include "sl/zap.h"
#include "sl/zmqx.h"

static void *ctx;
static char dir[64], allow[80];
static struct keys_pair server, edge_a, edge_b, stranger;

/* A key pair saved as dir/NAME and dir/NAME_secret; with an edge binding if
 * bound is not NULL. */
static void make_key(const char *name, const char *bound, struct keys_pair *kp)
{
    zcert_t *c = zcert_new();
    assert_non_null(c);
    if (bound)
        zcert_set_meta(c, KEYS_META_EDGE_ID, "%s", bound);
    char path[200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(zcert_save(c, path), 0);
    snprintf(kp->public_key, sizeof kp->public_key, "%s", zcert_public_txt(c));
    snprintf(kp->secret_key, sizeof kp->secret_key, "%s", zcert_secret_txt(c));
    zcert_destroy(&c);
}

static void allow_key(const char *name)
{
    char src[200], dst[200];
    snprintf(src, sizeof src, "%s/%s", dir, name);
    snprintf(dst, sizeof dst, "%s/%s", allow, name);
    assert_int_equal(link(src, dst), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/test_zap_%d", (int)getpid());
    snprintf(allow, sizeof allow, "%s/allow", dir);
    if (mkdir(dir, 0700) != 0 || mkdir(allow, 0700) != 0)
        return -1;
    make_key("server.key", NULL, &server);
    make_key("edge-a.key", "edge-a", &edge_a);
    make_key("edge-b.key", "fleet-*", &edge_b);
    make_key("stranger.key", "edge-s", &stranger);
    allow_key("edge-a.key");
    allow_key("edge-b.key");
    /* Skipped, each with a reason: a key with no edge binding, a file that
     * is no certificate, a secret key. */
    allow_key("server.key");
    allow_key("server.key_secret");
    char p[200];
    snprintf(p, sizeof p, "%s/README", allow);
    FILE *f = fopen(p, "w");
    if (!f)
        return -1;
    fputs("public keys of the edges\n", f);
    fclose(f);
    ctx = zmq_ctx_new();
    return ctx ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    zmq_ctx_term(ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void last_ep(void *s, char *ep, size_t cap)
{
    size_t n = cap;
    assert_int_equal(zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &n), 0);
}

/* Receive one message into m within ms; false if none came. */
static bool recv_within(void *sock, zmq_msg_t *m, int ms)
{
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, ms) <= 0)
        return false;
    return zmq_msg_recv(m, sock, ZMQ_DONTWAIT) >= 0;
}

static void *client(int type, const struct keys_pair *kp, const char *ep)
{
    void *s = zmqx_socket(ctx, type,
                          &(struct zmqx_opts){.connect = ep,
                                              .max_msg = type == ZMQ_PUSH ? 0 : 4096,
                                              .immediate = true,
                                              .curve = kp,
                                              .curve_server_key = kp ? server.public_key : NULL});
    assert_non_null(s);
    return s;
}

static void binding_rule(void **state)
{
    (void)state;
#define OK(b, e, r)                                                                                          \
    assert_true(zap_binding_ok(b, (const uint8_t *)e, strlen(e), (const uint8_t *)r, strlen(r)))
#define BAD(b, e, r)                                                                                         \
    assert_false(zap_binding_ok(b, (const uint8_t *)e, strlen(e), (const uint8_t *)r, strlen(r)))
    OK("edge-a", "edge-a", "edge-a/0/5f3a");
    OK("edge-a", "edge-a", ""); /* no reply address: nothing is routed */
    BAD("edge-a", "edge-b", "edge-b/0/5f3a");
    BAD("edge-a", "edge-a", "edge-b/0/5f3a"); /* someone else's reply address */
    BAD("edge-a", "edge-a", "edge-a");        /* not "<edge>/..." */
    BAD("edge-a", "edge-a", "edge-a/");
    BAD("edge-a", "edge-a", "edge-ab/0");
    BAD("edge-a", "edge-ab", "edge-ab/0");
    BAD("edge-a", "edge", "edge/0");
    OK("fleet-*", "fleet-7", "fleet-7/1/aa");
    OK("fleet-*", "fleet-", "fleet-/1/aa");
    BAD("fleet-*", "flee", "flee/1/aa");
    BAD("fleet-*", "other", "other/1/aa");
    BAD("fleet-*", "fleet-7", "fleet-8/1/aa"); /* a prefix binds the edge id, the reply follows it */
    OK("*", "anything", "anything/0/x");
    BAD("", "edge-a", "edge-a/0/x");
    BAD(NULL, "edge-a", "edge-a/0/x");
    BAD("edge-a", "", "");
#undef OK
#undef BAD
}

static void allowed_unknown_plain(void **state)
{
    (void)state;
    struct zap *z = zap_new(ctx, allow);
    assert_non_null(z);
    assert_int_equal(zap_counts(z)->keys, 2);
    void *pull = zmqx_socket(
        ctx, ZMQ_PULL,
        &(struct zmqx_opts){.bind = "tcp://127.0.0.1:*", .max_msg = 4096, .curve = &server, .zap = z});
    assert_non_null(pull);
    char ep[128];
    last_ep(pull, ep, sizeof ep);

    /* An unknown key and a plain client: handshakes refused, nothing arrives. */
    void *bad = client(ZMQ_PUSH, &stranger, ep);
    void *plain = client(ZMQ_PUSH, NULL, ep);
    zmq_send(bad, "from-stranger", 13, ZMQ_DONTWAIT);
    zmq_send(plain, "from-plain", 10, ZMQ_DONTWAIT);
    /* The allowed key: through, with its binding as User-Id. */
    void *good = client(ZMQ_PUSH, &edge_a, ep);
    assert_int_equal(zmq_send(good, "hello", 5, 0), 5);
    zmq_msg_t m;
    zmq_msg_init(&m);
    assert_true(recv_within(pull, &m, 3000));
    assert_int_equal(zmq_msg_size(&m), 5);
    assert_memory_equal(zmq_msg_data(&m), "hello", 5);
    const char *uid = zmq_msg_gets(&m, "User-Id");
    assert_non_null(uid);
    assert_string_equal(uid, "edge-a");
    /* The check a service makes on each batch. */
    const uint8_t *ea = (const uint8_t *)"edge-a", *eb = (const uint8_t *)"edge-b";
    assert_true(zap_sender_ok(z, &m, ea, 6, (const uint8_t *)"edge-a/0/ff", 11));
    assert_int_equal(zap_counts(z)->impostor, 0);
    assert_false(zap_sender_ok(z, &m, eb, 6, (const uint8_t *)"edge-b/0/ff", 11));
    assert_false(zap_sender_ok(z, &m, ea, 6, (const uint8_t *)"edge-b/0/ff", 11));
    assert_int_equal(zap_counts(z)->impostor, 2);
    /* CURVE off (no handler): no check. */
    assert_true(zap_sender_ok(NULL, &m, eb, 6, NULL, 0));
    zmq_msg_close(&m);
    /* Nothing else ever arrived, and both refusals were counted (the
     * stranger's at least once: clients retry their handshakes). */
    zmq_msg_init(&m);
    assert_false(recv_within(pull, &m, 500));
    zmq_msg_close(&m);
    assert_true(zap_counts(z)->refused >= 1);
    assert_true(zap_counts(z)->allowed >= 1);
    zmq_close(bad);
    zmq_close(plain);
    zmq_close(good);
    zmq_close(pull);
    zap_destroy(&z);
    assert_null(z);
}

static void reload(void **state)
{
    (void)state;
    struct zap *z = zap_new(ctx, allow);
    assert_non_null(z);
    void *pull = zmqx_socket(
        ctx, ZMQ_PULL,
        &(struct zmqx_opts){.bind = "tcp://127.0.0.1:*", .max_msg = 4096, .curve = &server, .zap = z});
    char ep[128];
    last_ep(pull, ep, sizeof ep);
    /* The stranger's key appears: a second later its new handshakes pass. */
    allow_key("stranger.key");
    sleep(1);
    void *s = client(ZMQ_PUSH, &stranger, ep);
    zmq_send(s, "late", 4, 0);
    zmq_msg_t m;
    zmq_msg_init(&m);
    assert_true(recv_within(pull, &m, 3000));
    assert_string_equal(zmq_msg_gets(&m, "User-Id"), "edge-s");
    zmq_msg_close(&m);
    assert_int_equal(zap_counts(z)->keys, 3);
    zmq_close(s);
    /* Removed again: refused. */
    char path[200];
    snprintf(path, sizeof path, "%s/stranger.key", allow);
    assert_int_equal(unlink(path), 0);
    sleep(1);
    uint64_t refused = zap_counts(z)->refused;
    s = client(ZMQ_PUSH, &stranger, ep);
    zmq_send(s, "gone", 4, ZMQ_DONTWAIT);
    zmq_msg_init(&m);
    assert_false(recv_within(pull, &m, 1000));
    zmq_msg_close(&m);
    assert_true(zap_counts(z)->refused > refused);
    assert_int_equal(zap_counts(z)->keys, 2);
    zmq_close(s);
    zmq_close(pull);
    zap_destroy(&z);
}

static void refused_settings(void **state)
{
    (void)state;
    struct zap *z = zap_new(ctx, allow);
    assert_non_null(z);
    /* One handler per context: the ZAP endpoint is taken. */
    assert_null(zap_new(ctx, allow));
    void *other = zmq_ctx_new();
    struct keys_pair bad = server;
    bad.secret_key[3] = '\0';
    const struct zmqx_opts cases[] = {
        {.max_msg = 64, .zap = z},                              /* handler without keys */
        {.max_msg = 64, .curve_server_key = server.public_key}, /* client without keys */
        {.max_msg = 64, .curve = &server, .zap = z, .curve_server_key = server.public_key}, /* both */
        {.max_msg = 64, .curve = &bad, .zap = z},                                           /* bad key text */
        {.max_msg = 64, .curve = &edge_a, .curve_server_key = "short"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        errno = 0;
        assert_null(zmqx_socket(ctx, ZMQ_PULL, &cases[i]));
        assert_int_equal(errno, EINVAL);
    }
    /* A server socket on another context than its handler's. */
    errno = 0;
    assert_null(zmqx_socket(other, ZMQ_PULL, &(struct zmqx_opts){.max_msg = 64, .curve = &server, .zap = z}));
    assert_int_equal(errno, EINVAL);
    zmq_ctx_term(other);
    /* A missing directory: no handler. */
    assert_null(zap_new(ctx, "/nonexistent/keys"));
    zap_destroy(&z);
    /* Not a handler leaking its endpoint: a new one binds again. */
    z = zap_new(ctx, allow);
    assert_non_null(z);
    zap_destroy(&z);
}

static void two_servers_one_dealer(void **state)
{
    (void)state;
    struct keys_pair server2;
    make_key("server2.key", NULL, &server2);
    struct zap *z = zap_new(ctx, allow);
    assert_non_null(z);
    void *r1 = zmqx_socket(
        ctx, ZMQ_ROUTER,
        &(struct zmqx_opts){.bind = "tcp://127.0.0.1:*", .max_msg = 4096, .curve = &server, .zap = z});
    void *r2 = zmqx_socket(
        ctx, ZMQ_ROUTER,
        &(struct zmqx_opts){.bind = "tcp://127.0.0.1:*", .max_msg = 4096, .curve = &server2, .zap = z});
    assert_non_null(r1);
    assert_non_null(r2);
    char ep1[128], ep2[128];
    last_ep(r1, ep1, sizeof ep1);
    last_ep(r2, ep2, sizeof ep2);
    void *d =
        zmqx_socket(ctx, ZMQ_DEALER,
                    &(struct zmqx_opts){
                        .max_msg = 4096, .immediate = true, .curve = &edge_a, .routing_id = "edge-a/0/x"});
    assert_non_null(d);
    struct zmqx_resolver *res1 = zmqx_resolver_new(ep1, 1000), *res2 = zmqx_resolver_new(ep2, 1000);
    struct zmqx_conns *c1 = zmqx_conns_new(), *c2 = zmqx_conns_new();
    assert_int_equal(zmqx_conns_set_server_key(c1, server.public_key), 0);
    assert_int_equal(zmqx_conns_set_server_key(c2, server2.public_key), 0);
    errno = 0;
    assert_int_equal(zmqx_conns_set_server_key(c2, "not-a-key"), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(zmqx_resolver_apply(res1, d, c1), 1);
    assert_int_equal(zmqx_resolver_apply(res2, d, c2), 1);
    /* Wait until both handshakes are done (IMMEDIATE: a send goes only to a
     * completed connection), then two messages go round-robin, one each. */
    zmq_msg_t m;
    int got1 = 0, got2 = 0;
    for (int i = 0; i < 100 && (got1 == 0 || got2 == 0); i++) {
        zmq_send(d, "ping", 4, ZMQ_DONTWAIT);
        zmq_msg_init(&m);
        if (recv_within(r1, &m, 20)) {
            got1++;
            zmq_msg_close(&m);
            zmq_msg_init(&m);
            zmq_msg_recv(&m, r1, 0);
        }
        zmq_msg_close(&m);
        zmq_msg_init(&m);
        if (recv_within(r2, &m, 20)) {
            got2++;
            zmq_msg_close(&m);
            zmq_msg_init(&m);
            zmq_msg_recv(&m, r2, 0);
            /* The data frame carries the connection's metadata (the
             * identity frame is made by the ROUTER). */
            const char *uid = zmq_msg_gets(&m, "User-Id");
            assert_non_null(uid);
            assert_string_equal(uid, "edge-a");
        }
        zmq_msg_close(&m);
    }
    assert_true(got1 > 0);
    assert_true(got2 > 0);
    zmqx_conns_destroy(&c1);
    zmqx_conns_destroy(&c2);
    zmqx_resolver_destroy(&res1);
    zmqx_resolver_destroy(&res2);
    zmq_close(d);
    zmq_close(r1);
    zmq_close(r2);
    zap_destroy(&z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(binding_rule),
        cmocka_unit_test(allowed_unknown_plain),
        cmocka_unit_test(reload),
        cmocka_unit_test(refused_settings),
        cmocka_unit_test(two_servers_one_dealer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
