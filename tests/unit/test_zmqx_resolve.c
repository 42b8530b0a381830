/* SPDX-License-Identifier: Apache-2.0 */
/* test_zmqx_resolve.c - the resolver over time, with getaddrinfo wrapped at
 * link time (-Wl,--wrap=getaddrinfo): "svc.test" maps to 127.0.0.1, then
 * fails to resolve (the previous address must be kept, the socket stays
 * connected), then maps to 127.0.0.2 (the new list is published with a new
 * version, and apply disconnects .1 and connects .2 so messages follow). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "sl/loop.h"
#include "sl/zmqx.h"

#define PORT "25211"

int __real_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);

/* 0 = fail, else the last octet of 127.0.0.x that svc.test maps to. */
static _Atomic int target = 1;
static _Atomic int calls;

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);
int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res)
{
    if (!node || strcmp(node, "svc.test") != 0)
        return __real_getaddrinfo(node, service, hints, res);
    atomic_fetch_add(&calls, 1);
    int t = atomic_load(&target);
    if (t == 0)
        return EAI_AGAIN;
    char ip[32];
    snprintf(ip, sizeof ip, "127.0.0.%d", t);
    return __real_getaddrinfo(ip, service, hints, res);
}

static int recv_deadline(void *sock, char *buf, size_t cap, int ms)
{
    uint64_t end = loop_clock_ms() + (uint64_t)ms;
    while (loop_clock_ms() < end) {
        if (zmqx_readable(sock))
            return zmq_recv(sock, buf, cap, ZMQ_DONTWAIT);
        struct pollfd p = {.fd = zmqx_fd(sock), .events = POLLIN};
        poll(&p, 1, 20);
    }
    return -1;
}

/* Send until accepted (the PUSH is immediate: EAGAIN until connected). */
static void send_deadline(void *sock, const char *s)
{
    uint64_t end = loop_clock_ms() + 10000;
    while (zmq_send(sock, s, strlen(s), ZMQ_DONTWAIT) < 0) {
        assert_int_equal(zmq_errno(), EAGAIN);
        assert_true(loop_clock_ms() < end);
        usleep(5000);
    }
}

static void test_keep_and_follow(void **state)
{
    (void)state;
    void *ctx = zmq_ctx_new();
    void *pull1 = zmq_socket(ctx, ZMQ_PULL);
    void *pull2 = zmq_socket(ctx, ZMQ_PULL);
    zmqx_setup(pull1, 0, -1, -1, false);
    zmqx_setup(pull2, 0, -1, -1, false);
    assert_int_equal(zmq_bind(pull1, "tcp://127.0.0.1:" PORT), 0);
    assert_int_equal(zmq_bind(pull2, "tcp://127.0.0.2:" PORT), 0);
    void *push = zmq_socket(ctx, ZMQ_PUSH);
    zmqx_setup(push, 0, 100, -1, true);
    struct zmqx_conns *c = zmqx_conns_new();

    struct zmqx_resolver *r = zmqx_resolver_new("tcp://svc.test:" PORT, 20);
    assert_non_null(r);
    char list[256];
    assert_int_equal(zmqx_resolver_snapshot(r, list, sizeof list), 1);
    assert_string_equal(list, "tcp://127.0.0.1:" PORT);
    assert_int_equal(zmqx_resolver_apply(r, push, c), 1);
    send_deadline(push, "a");
    char buf[8];
    assert_int_equal(recv_deadline(pull1, buf, sizeof buf, 10000), 1);

    /* Resolution fails for a while: the list and the connection stay. */
    atomic_store(&target, 0);
    int c0 = atomic_load(&calls);
    uint64_t end = loop_clock_ms() + 10000;
    while (atomic_load(&calls) < c0 + 3)
        assert_true(loop_clock_ms() < end), usleep(5000);
    assert_int_equal(zmqx_resolver_snapshot(r, list, sizeof list), 1);
    assert_string_equal(list, "tcp://127.0.0.1:" PORT);
    assert_int_equal(zmqx_resolver_apply(r, push, c), 1);
    send_deadline(push, "b");
    assert_int_equal(recv_deadline(pull1, buf, sizeof buf, 10000), 1);
    assert_int_equal(buf[0], 'b');

    /* The name moves: a new version, and apply follows it. */
    atomic_store(&target, 2);
    end = loop_clock_ms() + 10000;
    while (zmqx_resolver_snapshot(r, list, sizeof list) == 1)
        assert_true(loop_clock_ms() < end), usleep(5000);
    assert_string_equal(list, "tcp://127.0.0.2:" PORT);
    assert_int_equal(zmqx_resolver_apply(r, push, c), 1);
    /* zmq_disconnect is asynchronous: a send right after it may still take
     * the old pipe. Send until pull2 gets one, then drain pull1. */
    end = loop_clock_ms() + 10000;
    do {
        assert_true(loop_clock_ms() < end);
        send_deadline(push, "c");
    } while (recv_deadline(pull2, buf, sizeof buf, 200) != 1);
    while (recv_deadline(pull1, buf, sizeof buf, 100) == 1) {
    }
    /* From now on messages reach pull2 only. */
    for (int i = 0; i < 3; i++) {
        send_deadline(push, "c");
        assert_int_equal(recv_deadline(pull2, buf, sizeof buf, 10000), 1);
    }
    assert_false(zmqx_readable(pull1));

    zmqx_resolver_destroy(&r);
    zmqx_conns_destroy(&c);
    zmq_close(push);
    zmq_close(pull1);
    zmq_close(pull2);
    zmq_ctx_term(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keep_and_follow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
