/* test_zmqx.c - the resolver turns a host name into numeric endpoints right
 * after zmqx_resolver_new, passes numeric ones through, and apply connects a
 * PUSH to a bound PULL so a message flows (and disconnects what vanished);
 * readable/writable follow ZMQ_EVENTS; zmqx_send_take empties the message
 * whether or not the send worked. Loopback only. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <string.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve_and_flow), cmocka_unit_test(test_endpoints_listed),
        cmocka_unit_test(test_unresolvable),     cmocka_unit_test(test_ep_canon),
        cmocka_unit_test(test_pair_events),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
