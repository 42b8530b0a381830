/* SPDX-License-Identifier: Apache-2.0 */
/* fake_edge.c - the edge the device library's tests play (fake_edge.h).
 *
 * Why shared: test_client.c and test_client_tls.c each had the listening
 * socket, the frame reassembly, the welcome and the waits, alike but for
 * how bytes cross the connection; that one difference is the io table.
 *
 * Deliberately not here: certificates and SSL (test_client_tls.c), the
 * callback recorders and client configurations (each test's own). */
#define _GNU_SOURCE
#include "fake_edge.h"

#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sl/frame.h"

uint64_t fake_edge_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void fake_edge_pump(struct sl_client *c)
{
    sl_client_run_once(c, 2);
}

static void tcp_read(struct fake_edge *e)
{
    ssize_t r = read(e->fd, e->in + e->in_len, sizeof e->in - e->in_len);
    if (r > 0)
        e->in_len += (size_t)r;
}

static void tcp_write(struct fake_edge *e, struct sl_client *c, const uint8_t *buf, size_t n)
{
    (void)c; /* a frame of 1 KiB fits the socket buffer of a fresh loopback connection */
    assert_int_equal(write(e->fd, buf, n), (ssize_t)n);
}

static const struct fake_edge_io tcp_io = {.read = tcp_read, .write = tcp_write};

void fake_edge_listen(struct fake_edge *e, const struct fake_edge_io *io)
{
    memset(e, 0, sizeof *e);
    e->io = io ? io : &tcp_io;
    e->fd = -1;
    e->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(e->lfd >= 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(e->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(e->lfd, 16), 0);
    socklen_t sl = sizeof sa;
    getsockname(e->lfd, (struct sockaddr *)&sa, &sl);
    snprintf(e->addr, sizeof e->addr, "127.0.0.1:%u", ntohs(sa.sin_port));
}

void fake_edge_drop(struct fake_edge *e)
{
    if (e->fd >= 0)
        close(e->fd);
    e->fd = -1;
    e->in_len = 0;
}

void fake_edge_close(struct fake_edge *e)
{
    fake_edge_drop(e);
    close(e->lfd);
}

void fake_edge_accept(struct fake_edge *e, struct sl_client *c)
{
    fake_edge_drop(e);
    uint64_t end = fake_edge_real_ms() + FAKE_EDGE_WAIT_MS;
    while (fake_edge_real_ms() < end) {
        fake_edge_pump(c);
        int fd = accept4(e->lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd >= 0) {
            e->fd = fd;
            return;
        }
    }
    fail_msg("client never connected");
}

bool fake_edge_recv_within(struct fake_edge *e, struct sl_client *c, struct msg *m, uint64_t ms)
{
    uint64_t end = fake_edge_real_ms() + ms;
    for (;;) {
        if (e->in_len >= 4) {
            uint32_t n =
                (uint32_t)e->in[0] << 24 | (uint32_t)e->in[1] << 16 | (uint32_t)e->in[2] << 8 | e->in[3];
            if (e->in_len >= 4 + (size_t)n) {
                memcpy(e->frame, e->in + 4, n);
                memmove(e->in, e->in + 4 + n, e->in_len - 4 - n);
                e->in_len -= 4 + n;
                assert_int_equal(msg_decode(e->frame, n, m), MSG_OK);
                return true;
            }
        }
        if (fake_edge_real_ms() >= end)
            return false;
        fake_edge_pump(c);
        e->io->read(e);
    }
}

void fake_edge_recv(struct fake_edge *e, struct sl_client *c, struct msg *m)
{
    if (!fake_edge_recv_within(e, c, m, FAKE_EDGE_WAIT_MS))
        fail_msg("no frame from the client");
}

void fake_edge_send(struct fake_edge *e, struct sl_client *c, const struct msg *m)
{
    uint8_t buf[1024];
    size_t n = 0;
    assert_int_equal(msg_encode_frame(m, buf, sizeof buf, &n), SL_OK);
    e->io->write(e, c, buf, n);
}

void fake_edge_welcome(struct fake_edge *e, struct sl_client *c, uint32_t hb, const char *dev)
{
    struct msg m = {0};
    fake_edge_recv(e, c, &m);
    assert_int_equal(m.t, MSG_HELLO);
    assert_true(sl_slice_eqs(m.u.hello.dev, dev));
    assert_true(sl_slice_eqs(m.u.hello.tok, FAKE_EDGE_TOK));
    memset(&m, 0, sizeof m);
    m.t = MSG_WELCOME;
    m.u.welcome.edge.p = (const uint8_t *)"e1";
    m.u.welcome.edge.n = 2;
    m.u.welcome.hb = hb;
    m.u.welcome.max = 65536;
    fake_edge_send(e, c, &m);
    uint64_t end = fake_edge_real_ms() + FAKE_EDGE_WAIT_MS;
    while (sl_client_state(c) != SL_CLIENT_CONNECTED && fake_edge_real_ms() < end)
        fake_edge_pump(c);
    assert_int_equal(sl_client_state(c), SL_CLIENT_CONNECTED);
}

void fake_edge_ack(struct fake_edge *e, struct sl_client *c, uint64_t seq)
{
    struct msg m = {0};
    m.t = MSG_ACK;
    m.u.ack.seq = seq;
    fake_edge_send(e, c, &m);
}

void fake_edge_wait_count(struct sl_client *c, const int *count, int n)
{
    uint64_t end = fake_edge_real_ms() + FAKE_EDGE_WAIT_MS;
    while (*count < n && fake_edge_real_ms() < end)
        fake_edge_pump(c);
    assert_int_equal(*count, n);
}
