/* SPDX-License-Identifier: Apache-2.0 */
/* fake_edge.h - the edge that the device library's tests play
 * (test_client.c over TCP, test_client_tls.c over TLS): a listening socket
 * on 127.0.0.1 (an ephemeral port), one accepted connection, and whole
 * frames out of it and into it through proto's codec.
 *
 * Everything runs in the test's one thread: while the edge waits for bytes
 * it keeps pumping the client, so neither side blocks the other. Real time
 * only bounds a wait (FAKE_EDGE_WAIT_MS); a wait that runs out fails the
 * test (cmocka), as does any socket call that should not fail. Nothing here
 * allocates; a struct fake_edge is the caller's, usually on the stack.
 *
 * The bytes of the accepted connection go through a fake_edge_io: plain
 * read/write when it is NULL, or the caller's (TLS: SSL_read/SSL_write on
 * the caller's SSL, found from the struct fake_edge it embeds). */
#ifndef TESTS_FAKE_EDGE_H
#define TESTS_FAKE_EDGE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sl/client.h"
#include "sl/msg.h"

/* The token the tests' clients send, and their edge expects. */
#define FAKE_EDGE_TOK     "2f69869769f64c9cf3b504339d23b608d44ca12a5faa67cc106781be780b0abc"
#define FAKE_EDGE_WAIT_MS 10000 /* real-time bound on any wait; generous for a loaded box */

struct fake_edge;

struct fake_edge_io {
    /* Append what can be read now to e->in (at most sizeof e->in - e->in_len
     * bytes); nothing if nothing is there. Must not block. */
    void (*read)(struct fake_edge *e);
    /* Write all of buf[0..n), pumping c while the connection is full; fail
     * the test if it cannot within FAKE_EDGE_WAIT_MS. */
    void (*write)(struct fake_edge *e, struct sl_client *c, const uint8_t *buf, size_t n);
};

struct fake_edge {
    const struct fake_edge_io *io; /* NULL: plain TCP */
    int lfd, fd;                   /* listening socket; the accepted connection or -1 */
    char addr[64];                 /* "127.0.0.1:<port>", for sl_client_config.edges */
    uint8_t in[70000];             /* bytes read, not yet a whole frame */
    size_t in_len;
    uint8_t frame[70000]; /* the last frame received: what its msg's slices point into */
};

/* Monotonic real time, in ms. */
uint64_t fake_edge_real_ms(void);
/* One turn of the client's loop (waits at most 2 ms). */
void fake_edge_pump(struct sl_client *c);

/* Zero e and listen on 127.0.0.1, an ephemeral port (non-blocking). io is
 * borrowed (NULL: plain TCP). */
void fake_edge_listen(struct fake_edge *e, const struct fake_edge_io *io);
/* Close the connection as a crash would, and forget its unread bytes. The
 * io's own per-connection state (an SSL) is the caller's to free first. */
void fake_edge_drop(struct fake_edge *e);
/* Drop, and stop listening. */
void fake_edge_close(struct fake_edge *e);

/* Accept the client's next TCP connection (dropping the current one),
 * pumping the client meanwhile; fails the test if none comes. */
void fake_edge_accept(struct fake_edge *e, struct sl_client *c);

/* Wait (pumping the client) for one whole frame and decode it into *m,
 * whose slices point into e->frame until the next receive. False if none
 * came within ms of real time; a frame that does not decode fails the test. */
bool fake_edge_recv_within(struct fake_edge *e, struct sl_client *c, struct msg *m, uint64_t ms);
/* The same within FAKE_EDGE_WAIT_MS; fails the test if none came. */
void fake_edge_recv(struct fake_edge *e, struct sl_client *c, struct msg *m);
/* Encode m as one frame (up to 1 KiB) and write it whole. */
void fake_edge_send(struct fake_edge *e, struct sl_client *c, const struct msg *m);

/* Expect the client's hello (device dev, token FAKE_EDGE_TOK), answer
 * welcome{edge "e1", hb, max 65536}, and pump until the client is
 * CONNECTED. */
void fake_edge_welcome(struct fake_edge *e, struct sl_client *c, uint32_t hb, const char *dev);
/* Send ack{seq}. */
void fake_edge_ack(struct fake_edge *e, struct sl_client *c, uint64_t seq);

/* Pump c until *count reaches n (a callback recorder's counter), then
 * assert it is exactly n. */
void fake_edge_wait_count(struct sl_client *c, const int *count, int n);

#endif
