/* SPDX-License-Identifier: Apache-2.0 */
/* test_zmqx.c - the resolver turns a host name into numeric endpoints right
 * after zmqx_resolver_new, passes numeric ones through, and apply connects a
 * PUSH to a bound PULL so a message flows (and disconnects what vanished);
 * readable/writable follow ZMQ_EVENTS; zmqx_send_take empties the message
 * whether or not the send worked. zmqx_socket applies every option it is
 * given (read back with zmq_getsockopt), refuses a receiving socket without
 * a size cap, drops a message over the cap (and still takes one at it),
 * makes ROUTER sends to unknown peers fail, binds [::1] where the host has
 * IPv6, and leaves nothing open when a bind fails. Loopback only; the
 * zmqx_socket tests bind ephemeral ports. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include "sl/loop.h"
#include "sl/zmqx.h"

#define PORT_A "25201"
#define PORT_B "25202"

static void *ctx;

static int setup(void **state)
{
    (void)state;
    ctx = zmq_ctx_new();
    return ctx ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    zmq_ctx_term(ctx);
    return 0;
}

/* Receive one message within a generous deadline using ZMQ_FD + ZMQ_EVENTS,
 * as a loop callback would (the fd is edge-triggered, so always re-check
 * zmqx_readable before sleeping). Returns bytes or -1. */
static int recv_deadline(void *sock, char *buf, size_t cap, int ms)
{
    uint64_t end = loop_clock_ms() + (uint64_t)ms;
    int fd = zmqx_fd(sock);
    assert_true(fd >= 0);
    while (loop_clock_ms() < end) {
        if (zmqx_readable(sock))
            return zmq_recv(sock, buf, cap, ZMQ_DONTWAIT);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, 50);
    }
    return -1;
}

static void test_resolve_and_flow(void **state)
{
    (void)state;
    void *pull = zmq_socket(ctx, ZMQ_PULL);
    assert_int_equal(zmqx_setup(pull, 0, 1000, 1000, false), 0);
    /* IPV6 is on (zmqx_setup): "*" listens on both families where possible. */
    assert_int_equal(zmq_bind(pull, "tcp://*:" PORT_A), 0);

    struct zmqx_resolver *r = zmqx_resolver_new("tcp://localhost:" PORT_A, 200);
    assert_non_null(r);
    void *push = zmq_socket(ctx, ZMQ_PUSH);
    assert_int_equal(zmqx_setup(push, 0, 1000, 1000, true), 0);
    struct zmqx_conns *c = zmqx_conns_new();
    assert_non_null(c);
    /* The first resolution is there at once: no waiting for the thread. */
    int n = zmqx_resolver_apply(r, push, c);
    assert_true(n >= 1);
    char list[512];
    assert_int_equal(zmqx_resolver_snapshot(r, list, sizeof list), 1);
    /* Sorted: '1' < '[', so IPv4 first; [::1] only if localhost maps to it. */
    if (strcmp(list, "tcp://127.0.0.1:" PORT_A) != 0)
        assert_string_equal(list, "tcp://127.0.0.1:" PORT_A ",tcp://[::1]:" PORT_A);
    assert_int_equal(n, strchr(list, ',') ? 2 : 1);
    /* Applying again without a change does nothing. */
    assert_int_equal(zmqx_resolver_apply(r, push, c), n);

    /* The PUSH is immediate: writable only once a peer is connected. */
    uint64_t end = loop_clock_ms() + 10000;
    while (!zmqx_writable(push) && loop_clock_ms() < end)
        usleep(10000);
    assert_true(zmqx_writable(push));
    assert_false(zmqx_readable(pull));

    zmq_msg_t m;
    zmq_msg_init_size(&m, 5);
    memcpy(zmq_msg_data(&m), "hello", 5);
    assert_int_equal(zmqx_send_take(push, &m, ZMQ_DONTWAIT), 0);
    assert_int_equal(zmq_msg_size(&m), 0);
    zmq_msg_close(&m);

    char buf[16];
    assert_int_equal(recv_deadline(pull, buf, sizeof buf, 10000), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_false(zmqx_readable(pull));

    zmqx_conns_destroy(&c);
    assert_null(c);
    zmqx_resolver_destroy(&r);
    assert_null(r);
    zmq_close(push);
    zmq_close(pull);
}

/* localhost resolves to 127.0.0.1 (and maybe [::1]); numeric endpoints and
 * other transports pass through; the list is sorted and de-duplicated. */
static void test_endpoints_listed(void **state)
{
    (void)state;
    /* Observe the published list through a socket: connect a PUSH and look
     * at which endpoints it reports via apply's count and by binding PULLs. */
    void *pull4 = zmq_socket(ctx, ZMQ_PULL);
    zmqx_setup(pull4, 0, -1, -1, false);
    assert_int_equal(zmq_bind(pull4, "tcp://127.0.0.1:" PORT_B), 0);

    struct zmqx_resolver *r =
        zmqx_resolver_new(" tcp://localhost:" PORT_B ",tcp://127.0.0.1:" PORT_B " ", 100);
    assert_non_null(r);
    void *push = zmq_socket(ctx, ZMQ_PUSH);
    zmqx_setup(push, 0, -1, -1, true);
    struct zmqx_conns *c = zmqx_conns_new();
    int n = zmqx_resolver_apply(r, push, c);
    /* 127.0.0.1 (from both items, de-duplicated), and [::1] if this host
     * maps localhost to it. */
    assert_true(n == 1 || n == 2);
    char list[512];
    zmqx_resolver_snapshot(r, list, sizeof list);
    if (n == 1)
        assert_string_equal(list, "tcp://127.0.0.1:" PORT_B);
    else
        assert_string_equal(list, "tcp://127.0.0.1:" PORT_B ",tcp://[::1]:" PORT_B);

    /* Membership, also under the name a monitor gives it after a reconnect. */
    assert_true(zmqx_conns_has(c, "tcp://127.0.0.1:" PORT_B));
    assert_true(zmqx_conns_has(c, "tcp://[::ffff:127.0.0.1]:" PORT_B));
    assert_false(zmqx_conns_has(c, "tcp://127.0.0.2:" PORT_B));
    assert_false(zmqx_conns_has(c, "tcp://127.0.0.1:1"));

    /* A message reaches the IPv4 PULL. */
    zmq_msg_t m;
    zmq_msg_init_size(&m, 2);
    memcpy(zmq_msg_data(&m), "hi", 2);
    uint64_t end = loop_clock_ms() + 10000;
    int rc;
    while ((rc = zmqx_send_take(push, &m, ZMQ_DONTWAIT)) == -EAGAIN && loop_clock_ms() < end) {
        /* Failed sends empty the message too: refill it. */
        assert_int_equal(zmq_msg_size(&m), 0);
        zmq_msg_close(&m);
        zmq_msg_init_size(&m, 2);
        memcpy(zmq_msg_data(&m), "hi", 2);
        usleep(10000);
    }
    assert_int_equal(rc, 0);
    zmq_msg_close(&m);
    char buf[8];
    assert_int_equal(recv_deadline(pull4, buf, sizeof buf, 10000), 2);

    zmqx_conns_destroy(&c);
    zmqx_resolver_destroy(&r);
    zmq_close(push);
    zmq_close(pull4);

    /* Numeric addresses, [v6] and other transports pass through as written. */
    r = zmqx_resolver_new("tcp://10.1.2.3:5,inproc://x,tcp://[::1]:6,tcp://*:7", 100);
    assert_non_null(r);
    zmqx_resolver_snapshot(r, list, sizeof list);
    assert_string_equal(list, "inproc://x,tcp://*:7,tcp://10.1.2.3:5,tcp://[::1]:6");
    zmqx_resolver_destroy(&r);

    /* Malformed specs are refused. */
    assert_null(zmqx_resolver_new("localhost:1", 100));
    assert_null(zmqx_resolver_new("tcp://nohostport", 100));
}

/* Canonical endpoint names: IPv4-mapped IPv6 back to IPv4, the rest as is. */
static void test_ep_canon(void **state)
{
    (void)state;
    char out[64];
    zmqx_ep_canon("tcp://[::ffff:10.0.0.7]:7002", out, sizeof out);
    assert_string_equal(out, "tcp://10.0.0.7:7002");
    zmqx_ep_canon("tcp://[::FFFF:10.0.0.7]:7002", out, sizeof out);
    assert_string_equal(out, "tcp://10.0.0.7:7002");
    const char *same[] = {"tcp://10.0.0.7:7002", "tcp://[::1]:7002",      "tcp://[::ffff:a00:7]:7002",
                          "ipc:///tmp/x",        "tcp://[::ffff:1.2.3.4", ""};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        zmqx_ep_canon(same[i], out, sizeof out);
        assert_string_equal(out, same[i]);
    }
    zmqx_ep_canon("tcp://[::ffff:10.0.0.7]:7002", out, 8); /* truncated, terminated */
    assert_string_equal(out, "tcp://1");
}

/* A name that does not resolve yields nothing yet, without blocking apply. */
static void test_unresolvable(void **state)
{
    (void)state;
    struct zmqx_resolver *r = zmqx_resolver_new("tcp://no-such-host.invalid:" PORT_B, 100);
    assert_non_null(r);
    void *push = zmq_socket(ctx, ZMQ_PUSH);
    zmqx_setup(push, 0, -1, -1, true);
    struct zmqx_conns *c = zmqx_conns_new();
    assert_int_equal(zmqx_resolver_apply(r, push, c), 0);
    char list[64] = "junk";
    assert_int_equal(zmqx_resolver_snapshot(r, list, sizeof list), 1);
    assert_string_equal(list, "");
    assert_false(zmqx_writable(push));
    zmqx_conns_destroy(&c);
    zmqx_resolver_destroy(&r);
    zmq_close(push);
}

/* Readable/writable on a PAIR: writable once connected, readable exactly
 * while a message is queued. */
static void test_pair_events(void **state)
{
    (void)state;
    void *a = zmq_socket(ctx, ZMQ_PAIR);
    void *b = zmq_socket(ctx, ZMQ_PAIR);
    assert_int_equal(zmq_bind(a, "inproc://pair"), 0);
    assert_int_equal(zmq_connect(b, "inproc://pair"), 0);
    assert_true(zmqx_writable(b));
    assert_false(zmqx_readable(a));
    assert_int_equal(zmq_send(b, "x", 1, 0), 1);
    assert_true(zmqx_readable(a));
    char c;
    assert_int_equal(zmq_recv(a, &c, 1, ZMQ_DONTWAIT), 1);
    assert_false(zmqx_readable(a));
    assert_true(zmqx_fd(a) >= 0);
    zmq_close(a);
    zmq_close(b);
    /* On a closed or bogus socket: false / -1, never a crash. */
}

/* ---- zmqx_socket ---------------------------------------------------------- */

static int get_int(void *s, int name)
{
    int v = -12345;
    size_t n = sizeof v;
    assert_int_equal(zmq_getsockopt(s, name, &v, &n), 0);
    return v;
}

static int64_t get_i64(void *s, int name)
{
    int64_t v = -12345;
    size_t n = sizeof v;
    assert_int_equal(zmq_getsockopt(s, name, &v, &n), 0);
    return v;
}

/* The endpoint a "tcp://host:*" bind got (ZMQ_LAST_ENDPOINT). */
static void last_ep(void *s, char *ep, size_t cap)
{
    size_t n = cap;
    assert_int_equal(zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &n), 0);
    assert_true(n > 1 && strncmp(ep, "tcp://", 6) == 0);
}

static void test_socket_options_applied(void **state)
{
    (void)state;
    void *pull = zmqx_socket(
        ctx, ZMQ_PULL, &(struct zmqx_opts){.max_msg = 4096, .sndhwm = 55, .rcvhwm = 77, .linger_ms = 123});
    assert_non_null(pull);
    assert_int_equal(get_i64(pull, ZMQ_MAXMSGSIZE), 4096);
    assert_int_equal(get_int(pull, ZMQ_SNDHWM), 55);
    assert_int_equal(get_int(pull, ZMQ_RCVHWM), 77);
    assert_int_equal(get_int(pull, ZMQ_LINGER), 123);
    assert_int_equal(get_int(pull, ZMQ_IPV6), 1);
    assert_int_equal(get_int(pull, ZMQ_IMMEDIATE), 0);
    zmq_close(pull);

    /* Zero fields are the documented defaults: linger 0, libzmq's HWMs. */
    void *dealer =
        zmqx_socket(ctx, ZMQ_DEALER,
                    &(struct zmqx_opts){.max_msg = 1 << 20, .immediate = true, .routing_id = "edge-a/3"});
    assert_non_null(dealer);
    assert_int_equal(get_int(dealer, ZMQ_LINGER), 0);
    assert_int_equal(get_int(dealer, ZMQ_SNDHWM), 1000);
    assert_int_equal(get_int(dealer, ZMQ_RCVHWM), 1000);
    assert_int_equal(get_int(dealer, ZMQ_IMMEDIATE), 1);
    assert_int_equal(get_int(dealer, ZMQ_IPV6), 1);
    assert_int_equal(get_i64(dealer, ZMQ_MAXMSGSIZE), 1 << 20);
    char id[32] = {0};
    size_t idn = sizeof id;
    assert_int_equal(zmq_getsockopt(dealer, ZMQ_ROUTING_ID, id, &idn), 0);
    assert_int_equal(idn, 8);
    assert_memory_equal(id, "edge-a/3", 8);
    zmq_close(dealer);

    /* "No cap" only when asked for by name. */
    void *pair = zmqx_socket(ctx, ZMQ_PAIR, &(struct zmqx_opts){.max_msg = ZMQX_MAX_MSG_NONE});
    assert_non_null(pair);
    assert_int_equal(get_i64(pair, ZMQ_MAXMSGSIZE), -1);
    zmq_close(pair);
}

/* Every type that receives must carry a cap; PUSH and PUB may leave it out. */
static void test_socket_cap_required(void **state)
{
    (void)state;
    const int recv_types[] = {ZMQ_PULL, ZMQ_ROUTER, ZMQ_DEALER, ZMQ_PAIR, ZMQ_SUB, ZMQ_REP, ZMQ_REQ};
    for (size_t i = 0; i < sizeof recv_types / sizeof recv_types[0]; i++) {
        errno = 0;
        assert_null(zmqx_socket(ctx, recv_types[i], &(struct zmqx_opts){.rcvhwm = 10}));
        assert_int_equal(errno, EINVAL);
    }
    void *push = zmqx_socket(ctx, ZMQ_PUSH, &(struct zmqx_opts){.sndhwm = 10});
    assert_non_null(push);
    assert_int_equal(get_i64(push, ZMQ_MAXMSGSIZE), -1);
    zmq_close(push);
    void *pub = zmqx_socket(ctx, ZMQ_PUB, &(struct zmqx_opts){0});
    assert_non_null(pub);
    zmq_close(pub);
}

/* A message over the cap never arrives (its sender is disconnected); one
 * exactly at the cap does, and the sender gets through again afterwards. */
static void test_socket_cap_enforced(void **state)
{
    (void)state;
    enum { CAP = 1000 };
    void *pull = zmqx_socket(ctx, ZMQ_PULL, &(struct zmqx_opts){.bind = "tcp://127.0.0.1:*", .max_msg = CAP});
    assert_non_null(pull);
    char ep[128];
    last_ep(pull, ep, sizeof ep);
    void *push = zmqx_socket(ctx, ZMQ_PUSH, &(struct zmqx_opts){.connect = ep});
    assert_non_null(push);

    static char big[CAP + 1], buf[CAP + 16];
    memset(big, 'x', sizeof big);
    assert_int_equal(zmq_send(push, big, CAP, 0), CAP);
    assert_int_equal(recv_deadline(pull, buf, sizeof buf, 10000), CAP);

    assert_int_equal(zmq_send(push, big, CAP + 1, 0), CAP + 1);
    assert_int_equal(recv_deadline(pull, buf, sizeof buf, 500), -1);

    /* The PUSH reconnects; a small message queued meanwhile arrives, and
     * it is the first thing the PULL sees: the big one was dropped. */
    int got = -1;
    for (int k = 0; k < 50 && got < 0; k++) {
        assert_int_equal(zmq_send(push, "ok", 2, 0), 2);
        got = recv_deadline(pull, buf, sizeof buf, 200);
    }
    assert_int_equal(got, 2);
    assert_memory_equal(buf, "ok", 2);
    zmq_close(push);
    zmq_close(pull);
}

/* ROUTER options: mandatory makes a send to an unknown identity fail. */
static void test_socket_router_mandatory(void **state)
{
    (void)state;
    void *r = zmqx_socket(
        ctx, ZMQ_ROUTER,
        &(struct zmqx_opts){
            .bind = "tcp://127.0.0.1:*", .max_msg = 4096, .router_mandatory = true, .router_handover = true});
    assert_non_null(r);
    assert_int_equal(zmq_send(r, "nobody", 6, ZMQ_SNDMORE | ZMQ_DONTWAIT), -1);
    assert_int_equal(zmq_errno(), EHOSTUNREACH);
    zmq_close(r);

    /* Without it the same send is silently dropped. */
    r = zmqx_socket(ctx, ZMQ_ROUTER, &(struct zmqx_opts){.bind = "tcp://127.0.0.1:*", .max_msg = 4096});
    assert_non_null(r);
    assert_int_equal(zmq_send(r, "nobody", 6, ZMQ_SNDMORE | ZMQ_DONTWAIT), 6);
    assert_int_equal(zmq_send(r, "x", 1, ZMQ_DONTWAIT), 1);
    zmq_close(r);

    /* A ROUTER-only option on another type is a failure, not ignored. */
    assert_null(zmqx_socket(ctx, ZMQ_PULL, &(struct zmqx_opts){.max_msg = 4096, .router_mandatory = true}));
}

static bool host_has_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* IPv6 is on: a [::1] bind works where the host has IPv6, and a "*" bind
 * takes both families. */
static void test_socket_ipv6(void **state)
{
    (void)state;
    char ep[128];
    if (host_has_ipv6()) {
        void *pull = zmqx_socket(ctx, ZMQ_PULL, &(struct zmqx_opts){.bind = "tcp://[::1]:*", .max_msg = 64});
        assert_non_null(pull);
        last_ep(pull, ep, sizeof ep);
        assert_true(strncmp(ep, "tcp://[::1]:", 12) == 0);
        void *push = zmqx_socket(ctx, ZMQ_PUSH, &(struct zmqx_opts){.connect = ep});
        assert_non_null(push);
        assert_int_equal(zmq_send(push, "v6", 2, 0), 2);
        char buf[8];
        assert_int_equal(recv_deadline(pull, buf, sizeof buf, 10000), 2);
        zmq_close(push);
        zmq_close(pull);
    } else {
        print_message("no IPv6 on this host: [::1] bind not tried\n");
    }
    /* "*" with IPv6 on: an IPv4 client still gets in. */
    void *pull = zmqx_socket(ctx, ZMQ_PULL, &(struct zmqx_opts){.bind = "tcp://*:*", .max_msg = 64});
    assert_non_null(pull);
    last_ep(pull, ep, sizeof ep);
    const char *port = strrchr(ep, ':');
    assert_non_null(port);
    char v4[64];
    snprintf(v4, sizeof v4, "tcp://127.0.0.1%s", port);
    void *push = zmqx_socket(ctx, ZMQ_PUSH, &(struct zmqx_opts){.connect = v4});
    assert_non_null(push);
    assert_int_equal(zmq_send(push, "v4", 2, 0), 2);
    char buf[8];
    assert_int_equal(recv_deadline(pull, buf, sizeof buf, 10000), 2);
    zmq_close(push);
    zmq_close(pull);
}

/* A failed bind or connect leaves no socket behind: zmq_ctx_term in the
 * teardown would hang on one (linger aside, an open socket blocks it). */
static void test_socket_bind_fails(void **state)
{
    (void)state;
    void *a = zmqx_socket(ctx, ZMQ_PULL, &(struct zmqx_opts){.bind = "tcp://127.0.0.1:*", .max_msg = 64});
    assert_non_null(a);
    char ep[128];
    last_ep(a, ep, sizeof ep);
    errno = 0;
    assert_null(zmqx_socket(ctx, ZMQ_PULL, &(struct zmqx_opts){.bind = ep, .max_msg = 64}));
    assert_int_equal(errno, EADDRINUSE);
    assert_null(zmqx_socket(ctx, ZMQ_PULL, &(struct zmqx_opts){.bind = "nonsense", .max_msg = 64}));
    assert_null(zmqx_socket(ctx, ZMQ_PUSH, &(struct zmqx_opts){.connect = "tcp://no-port"}));
    zmq_close(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve_and_flow),
        cmocka_unit_test(test_endpoints_listed),
        cmocka_unit_test(test_unresolvable),
        cmocka_unit_test(test_ep_canon),
        cmocka_unit_test(test_pair_events),
        cmocka_unit_test(test_socket_options_applied),
        cmocka_unit_test(test_socket_cap_required),
        cmocka_unit_test(test_socket_cap_enforced),
        cmocka_unit_test(test_socket_router_mandatory),
        cmocka_unit_test(test_socket_ipv6),
        cmocka_unit_test(test_socket_bind_fails),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
