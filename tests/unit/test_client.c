/* SPDX-License-Identifier: Apache-2.0 */
/* test_client.c - the device library against a fake edge played by the test.
 *
 * The fake edge (fake_edge.c, plain TCP here) is a listening socket on
 * 127.0.0.1 (ephemeral port) that speaks raw frames through proto's codec.
 * Everything runs in one thread: while the edge waits for bytes it keeps
 * pumping the client, so neither side blocks the other. Timer behaviour (ack timeout, ping, backoff) runs
 * on a fake clock the test moves by hand, so nothing depends on the speed of
 * the machine; real time only bounds how long a wait may take. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_edge.h"
#include "sl/client.h"
#include "sl/frame.h"
#include "sl/msg.h"

/* ---- fake clock and callback recorder ---- */

struct rec {
    uint64_t now; /* fake clock; 0 = use the real clock */
    uint64_t acks[64];
    int nacks;
    char cmd_id[65];
    uint8_t cmd_body[64];
    size_t cmd_len;
    int ncmds;
    bool answer_in_cb;
    enum sl_client_state states[64];
    enum sl_err errs[64];
    int nstates;
    struct sl_client *c;
};

static uint64_t fake_clock(void *ud)
{
    return ((struct rec *)ud)->now;
}

static void on_ack(void *ud, uint64_t seq, uint64_t queued_ms)
{
    struct rec *r = ud;
    (void)queued_ms;
    if (r->nacks < 64)
        r->acks[r->nacks++] = seq;
}

static void on_cmd(void *ud, const char *id, const uint8_t *body, size_t len)
{
    struct rec *r = ud;
    snprintf(r->cmd_id, sizeof r->cmd_id, "%s", id);
    r->cmd_len = len < sizeof r->cmd_body ? len : sizeof r->cmd_body;
    memcpy(r->cmd_body, body, r->cmd_len);
    r->ncmds++;
    if (r->answer_in_cb) {
        static const uint8_t ans[] = {0x81, 0xa2, 'r', 'c', 0x00}; /* {"rc":0} */
        assert_int_equal(sl_client_answer(r->c, id, true, ans, sizeof ans), SL_OK);
    }
}

static void on_state(void *ud, enum sl_client_state st, enum sl_err err)
{
    struct rec *r = ud;
    if (r->nstates < 64) {
        r->states[r->nstates] = st;
        r->errs[r->nstates++] = err;
    }
}

static uint64_t recv_data(struct fake_edge *e, struct sl_client *c)
{
    struct msg m = {0};
    fake_edge_recv(e, c, &m);
    assert_int_equal(m.t, MSG_DATA);
    return m.u.data.seq;
}

static void wait_acks(struct rec *r, int n)
{
    fake_edge_wait_count(r->c, &r->nacks, n);
}

/* ---- fixture ---- */

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sl-test-client-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path_in_tmp(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static struct sl_client_config base_cfg(struct rec *r, const char *edges, const char *seq_path)
{
    struct sl_client_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.edges = edges;
    cfg.dev = "pump-0001";
    cfg.tok = FAKE_EDGE_TOK;
    cfg.window = 8;
    cfg.max_body = 128;
    cfg.backoff_base_ms = 20;
    cfg.backoff_max_ms = 100;
    cfg.seq_mode = SL_SEQ_FILE;
    cfg.seq_path = seq_path;
    cfg.seed = 42;
    cfg.cb.on_ack = on_ack;
    cfg.cb.on_cmd = on_cmd;
    cfg.cb.on_state = on_state;
    cfg.cb.ud = r;
    if (r->now)
        cfg.clock_ms = fake_clock;
    return cfg;
}

static struct sl_client *mk(struct rec *r, const struct sl_client_config *cfg)
{
    enum sl_err err = SL_OK;
    struct sl_client *c = sl_client_new(cfg, &err);
    assert_non_null(c);
    assert_int_equal(err, SL_OK);
    r->c = c;
    return c;
}

/* The usual start: e listening, and a configuration for it with the seq
 * file "seq" in tmpdir (its path in sp, 300 bytes). */
static struct sl_client_config edge_cfg(struct rec *r, struct fake_edge *e, char *sp)
{
    fake_edge_listen(e, NULL);
    path_in_tmp(sp, 300, "seq");
    return base_cfg(r, e->addr, sp);
}

/* A client on cfg, connected to e and welcomed with heartbeat hb (s). */
static struct sl_client *mk_welcomed(struct rec *r, struct fake_edge *e, const struct sl_client_config *cfg,
                                     uint32_t hb)
{
    struct sl_client *c = mk(r, cfg);
    fake_edge_accept(e, c);
    fake_edge_welcome(e, c, hb, "pump-0001");
    return c;
}

/* Pump until the client is IDLE (its connection ended); fail if it is not
 * within FAKE_EDGE_WAIT_MS. */
static void wait_idle(struct sl_client *c)
{
    uint64_t end = fake_edge_real_ms() + FAKE_EDGE_WAIT_MS;
    while (sl_client_state(c) != SL_CLIENT_IDLE && fake_edge_real_ms() < end)
        fake_edge_pump(c);
    assert_int_equal(sl_client_state(c), SL_CLIENT_IDLE);
}

static const uint8_t body1[] = {
    0x82, 0xa4, 't', 'e', 'm', 'p',  0xcb, 0x40, 0x35, 0x80,
    0,    0,    0,   0,   0,   0xa2, 'o',  'n',  0xc3}; /* {"temp":21.5,"on":true} */

/* ---- tests ---- */

static void test_hello_first(void **state)
{
    (void)state;
    struct rec r = {0};
    struct fake_edge e;
    char sp[300];
    struct sl_client_config cfg = edge_cfg(&r, &e, sp);
    struct sl_client *c = mk(&r, &cfg);
    /* a message queued before any connection waits for the welcome */
    assert_int_equal(sl_client_send(c, body1, sizeof body1, 1764358200000, NULL), SL_OK);
    fake_edge_accept(&e, c);
    struct msg m = {0};
    fake_edge_recv(&e, c, &m);
    assert_int_equal(m.t, MSG_HELLO);
    assert_int_equal(m.u.hello.v, 1);
    assert_true(sl_slice_eqs(m.u.hello.dev, "pump-0001"));
    assert_true(sl_slice_eqs(m.u.hello.tok, FAKE_EDGE_TOK));
    /* nothing else before the welcome */
    assert_false(fake_edge_recv_within(&e, c, &m, 200));
    assert_int_equal(sl_client_state(c), SL_CLIENT_HELLO);
    memset(&m, 0, sizeof m);
    m.t = MSG_WELCOME;
    m.u.welcome.edge.p = (const uint8_t *)"e1";
    m.u.welcome.edge.n = 2;
    m.u.welcome.hb = 30;
    m.u.welcome.max = 65536;
    fake_edge_send(&e, c, &m);
    fake_edge_recv(&e, c, &m);
    assert_int_equal(m.t, MSG_DATA);
    assert_int_equal(m.u.data.seq, 1);
    assert_true(m.u.data.has_ts);
    assert_int_equal(m.u.data.ts, 1764358200000);
    assert_int_equal(m.u.data.body.n, sizeof body1);
    assert_memory_equal(m.u.data.body.p, body1, sizeof body1);
    assert_int_equal(r.states[r.nstates - 1], SL_CLIENT_CONNECTED);
    sl_client_destroy(&c);
    assert_null(c);
    fake_edge_close(&e);
}

static void test_data_ack_window(void **state)
{
    (void)state;
    struct rec r = {0};
    struct fake_edge e;
    char sp[300];
    struct sl_client_config cfg = edge_cfg(&r, &e, sp);
    cfg.window = 4;
    struct sl_client *c = mk_welcomed(&r, &e, &cfg, 30);
    uint64_t s = 0;
    for (uint64_t i = 1; i <= 4; i++) {
        assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, &s), SL_OK);
        assert_int_equal(s, i);
    }
    /* window full: backpressure, and no seq is consumed */
    assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, &s), SL_AGAIN);
    assert_int_equal(sl_client_unacked(c), 4);
    for (uint64_t i = 1; i <= 4; i++)
        assert_int_equal(recv_data(&e, c), i);
    /* acks out of order: each reported once, the queue drains */
    fake_edge_ack(&e, c, 2);
    wait_acks(&r, 1);
    assert_int_equal(r.acks[0], 2);
    assert_int_equal(sl_client_unacked(c), 3);
    /* the slot of 2 stays until 1 is acked: still full */
    assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, &s), SL_AGAIN);
    fake_edge_ack(&e, c, 2); /* duplicate ack: ignored */
    fake_edge_ack(&e, c, 1);
    wait_acks(&r, 2);
    assert_int_equal(r.acks[1], 1);
    assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, &s), SL_OK);
    assert_int_equal(s, 5);
    assert_int_equal(recv_data(&e, c), 5);
    fake_edge_ack(&e, c, 3);
    fake_edge_ack(&e, c, 4);
    fake_edge_ack(&e, c, 5);
    wait_acks(&r, 5);
    assert_int_equal(sl_client_unacked(c), 0);
    assert_int_equal(sl_client_stats(c)->acked, 5);
    assert_int_equal(sl_client_stats(c)->resent, 0);
    /* bad input is refused without consuming a seq */
    uint8_t big[200] = {0xc4, 197};
    assert_int_equal(sl_client_send(c, big, sizeof big, 0, &s), SL_TOOBIG);
    static const uint8_t two[] = {0x01, 0x02};
    assert_int_equal(sl_client_send(c, two, sizeof two, 0, &s), SL_INVAL);
    assert_int_equal(sl_client_next_seq(c), 6);
    sl_client_destroy(&c);
    fake_edge_close(&e);
}

static void test_reconnect_resends_in_order(void **state)
{
    (void)state;
    struct rec r = {0};
    struct fake_edge e;
    char sp[300];
    struct sl_client_config cfg = edge_cfg(&r, &e, sp);
    struct sl_client *c = mk_welcomed(&r, &e, &cfg, 30);
    for (int i = 0; i < 4; i++)
        assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, NULL), SL_OK);
    for (uint64_t i = 1; i <= 4; i++)
        assert_int_equal(recv_data(&e, c), i);
    fake_edge_ack(&e, c, 1);
    fake_edge_ack(&e, c, 3);
    wait_acks(&r, 2);
    fake_edge_drop(&e); /* the edge dies */
    wait_idle(c);
    assert_int_equal(r.errs[r.nstates - 1], SL_IO);
    uint64_t un[8];
    assert_int_equal(sl_client_unacked_seqs(c, un, 8), 2);
    assert_int_equal(un[0], 2);
    assert_int_equal(un[1], 4);
    /* queued while disconnected: goes after the resends */
    assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, NULL), SL_OK);
    fake_edge_accept(&e, c);
    fake_edge_welcome(&e, c, 30, "pump-0001");
    assert_int_equal(recv_data(&e, c), 2);
    assert_int_equal(recv_data(&e, c), 4);
    assert_int_equal(recv_data(&e, c), 5);
    assert_int_equal(sl_client_stats(c)->resent, 2);
    assert_int_equal(sl_client_stats(c)->connects, 2);
    sl_client_destroy(&c);
    fake_edge_close(&e);
}

static void test_ack_timeout_resend(void **state)
{
    (void)state;
    struct rec r = {0};
    r.now = 1000000;
    struct fake_edge e;
    char sp[300];
    struct sl_client_config cfg = edge_cfg(&r, &e, sp);
    cfg.ack_timeout_ms = 5000;
    struct sl_client *c = mk_welcomed(&r, &e, &cfg, 30);
    assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, NULL), SL_OK);
    assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, NULL), SL_OK);
    assert_int_equal(recv_data(&e, c), 1);
    assert_int_equal(recv_data(&e, c), 2);
    fake_edge_ack(&e, c, 2);
    wait_acks(&r, 1);
    struct msg m;
    r.now += 4000; /* not yet */
    assert_false(fake_edge_recv_within(&e, c, &m, 200));
    r.now += 1500;
    /* only 1 is resent (2 was acked), on the same connection */
    assert_int_equal(recv_data(&e, c), 1);
    assert_false(fake_edge_recv_within(&e, c, &m, 200));
    assert_int_equal(sl_client_stats(c)->connects, 1);
    assert_int_equal(sl_client_stats(c)->resent, 1);
    fake_edge_ack(&e, c, 1);
    wait_acks(&r, 2);
    assert_int_equal(sl_client_unacked(c), 0);
    sl_client_destroy(&c);
    fake_edge_close(&e);
}

static void test_ping_when_idle(void **state)
{
    (void)state;
    struct rec r = {0};
    r.now = 1000000;
    struct fake_edge e;
    char sp[300];
    struct sl_client_config cfg = edge_cfg(&r, &e, sp);
    struct sl_client *c = mk_welcomed(&r, &e, &cfg, 10);
    struct msg m;
    r.now += 9000;
    assert_false(fake_edge_recv_within(&e, c, &m, 200));
    r.now += 1000;
    fake_edge_recv(&e, c, &m);
    assert_int_equal(m.t, MSG_PING);
    /* silence past 3 x hb: the client gives up on the connection */
    r.now += 30000;
    uint64_t end = fake_edge_real_ms() + FAKE_EDGE_WAIT_MS;
    while (sl_client_state(c) == SL_CLIENT_CONNECTED && fake_edge_real_ms() < end)
        fake_edge_pump(c);
    assert_int_equal(sl_client_state(c), SL_CLIENT_IDLE);
    assert_int_equal(r.errs[r.nstates - 1], SL_TIMEOUT);
    sl_client_destroy(&c);
    fake_edge_close(&e);
}

static void test_cmd_answer(void **state)
{
    (void)state;
    struct rec r = {0};
    r.answer_in_cb = true;
    struct fake_edge e;
    char sp[300];
    struct sl_client_config cfg = edge_cfg(&r, &e, sp);
    struct sl_client *c = mk_welcomed(&r, &e, &cfg, 30);
    static const uint8_t cbody[] = {0x81, 0xa1, 'x', 0x01}; /* {"x":1} */
    struct msg m = {0};
    m.t = MSG_CMD;
    m.u.cmd.id.p = (const uint8_t *)"c-17";
    m.u.cmd.id.n = 4;
    m.u.cmd.body.p = cbody;
    m.u.cmd.body.n = sizeof cbody;
    fake_edge_send(&e, c, &m);
    memset(&m, 0, sizeof m);
    fake_edge_recv(&e, c, &m);
    assert_int_equal(r.ncmds, 1);
    assert_string_equal(r.cmd_id, "c-17");
    assert_int_equal(r.cmd_len, sizeof cbody);
    assert_memory_equal(r.cmd_body, cbody, sizeof cbody);
    assert_int_equal(m.t, MSG_RES);
    assert_true(sl_slice_eqs(m.u.res.id, "c-17"));
    assert_true(m.u.res.ok);
    assert_true(m.u.res.has_body);
    assert_int_equal(m.u.res.body.n, 5);
    /* a later answer, outside the callback, without body */
    assert_int_equal(sl_client_answer(c, "c-18", false, NULL, 0), SL_OK);
    fake_edge_recv(&e, c, &m);
    assert_int_equal(m.t, MSG_RES);
    assert_true(sl_slice_eqs(m.u.res.id, "c-18"));
    assert_false(m.u.res.ok);
    assert_false(m.u.res.has_body);
    sl_client_destroy(&c);
    fake_edge_close(&e);
}

static void test_err_disconnect_backoff(void **state)
{
    (void)state;
    struct rec r = {0};
    r.now = 1000000;
    struct fake_edge e, e2;
    char sp[300], edges[200];
    fake_edge_listen(&e, NULL);
    fake_edge_listen(&e2, NULL);
    snprintf(edges, sizeof edges, "%s,%s", e.addr, e2.addr);
    path_in_tmp(sp, sizeof sp, "seq");
    struct sl_client_config cfg = base_cfg(&r, edges, sp);
    cfg.backoff_base_ms = 1000;
    cfg.backoff_max_ms = 60000;
    struct sl_client *c = mk_welcomed(&r, &e, &cfg, 30);
    assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, NULL), SL_OK);
    assert_int_equal(recv_data(&e, c), 1);
    struct msg m = {0};
    m.t = MSG_ERR;
    m.u.err.code.p = (const uint8_t *)"replaced";
    m.u.err.code.n = 8;
    m.u.err.msg.p = (const uint8_t *)"newest wins";
    m.u.err.msg.n = 11;
    fake_edge_send(&e, c, &m);
    wait_idle(c);
    assert_int_equal(r.errs[r.nstates - 1], SL_REPLACED);
    assert_int_equal(sl_client_fd(c), -1);
    assert_int_equal(sl_client_stats(c)->errors, 1);
    /* first retry: at least the minimum delay (1 s) after the error, at
     * most twice that (jittered) */
    uint64_t retry_at = sl_client_deadline(c);
    assert_true(retry_at >= r.now + 1000);
    assert_true(retry_at <= r.now + 2000);
    r.now = retry_at - 1;
    for (int i = 0; i < 20; i++)
        fake_edge_pump(c);
    assert_int_equal(sl_client_state(c), SL_CLIENT_IDLE);
    /* then the other edge: a failed edge is left for the next one */
    r.now += 1;
    fake_edge_accept(&e2, c);
    fake_edge_welcome(&e2, c, 30, "pump-0001");
    assert_int_equal(recv_data(&e2, c), 1);
    /* a refused connect counts as a failure too and backs off more */
    fake_edge_close(&e); /* nothing listens there any more */
    fake_edge_drop(&e2);
    uint64_t end = fake_edge_real_ms() + FAKE_EDGE_WAIT_MS;
    int idle_seen = 0;
    while (idle_seen < 3 && fake_edge_real_ms() < end) {
        int before = r.nstates;
        fake_edge_pump(c);
        for (int i = before; i < r.nstates; i++)
            if (r.states[i] == SL_CLIENT_IDLE)
                idle_seen++;
        if (sl_client_state(c) == SL_CLIENT_IDLE) {
            uint64_t d = sl_client_deadline(c);
            assert_true(d >= r.now + 1000);
            assert_true(d <= r.now + 60000);
            r.now = d;
        } else if (sl_client_state(c) != SL_CLIENT_CONNECTED) {
            r.now = sl_client_deadline(c); /* e2 never answers: hello timeout */
        }
    }
    assert_true(idle_seen >= 3);
    sl_client_destroy(&c);
    fake_edge_close(&e2);
}

/* err{busy, retry_ms}: the next attempt waits at least retry_ms, longer
 * than the backoff would (docs/protocol.md: the edge's limits). */
static void test_err_retry_ms(void **state)
{
    (void)state;
    struct rec r = {0};
    r.now = 1000000;
    struct fake_edge e;
    char sp[300];
    struct sl_client_config cfg = edge_cfg(&r, &e, sp);
    cfg.backoff_base_ms = 1000;
    cfg.backoff_max_ms = 60000;
    struct sl_client *c = mk(&r, &cfg);
    fake_edge_accept(&e, c);
    struct msg m = {0};
    m.t = MSG_ERR;
    m.u.err.code.p = (const uint8_t *)"busy";
    m.u.err.code.n = 4;
    m.u.err.msg.p = (const uint8_t *)"back off";
    m.u.err.msg.n = 8;
    m.u.err.retry_ms = 45000;
    fake_edge_send(&e, c, &m);
    wait_idle(c);
    assert_int_equal(r.errs[r.nstates - 1], SL_BUSY);
    /* the backoff alone would have chosen 1-2 s */
    assert_int_equal(sl_client_deadline(c), r.now + 45000);
    sl_client_destroy(&c);
    fake_edge_close(&e);
}

static void test_seq_file_no_reuse(void **state)
{
    (void)state;
    struct rec r = {0};
    char sp[300];
    path_in_tmp(sp, sizeof sp, "seq-persist");
    struct sl_client_config cfg = base_cfg(&r, "127.0.0.1:1", sp);
    struct sl_client *c = mk(&r, &cfg);
    uint64_t s = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, &s), SL_OK);
    assert_int_equal(s, 3);
    sl_client_destroy(&c); /* a crash: no flush */
    /* the reservation was written before seq 1 was used */
    FILE *f = fopen(sp, "r");
    assert_non_null(f);
    char line[64] = {0};
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_string_equal(line, "next = 1001\n");
    c = mk(&r, &cfg);
    assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, &s), SL_OK);
    assert_int_equal(s, 1001);
    /* a clean shutdown saves the exact next seq: no gap next time */
    assert_int_equal(sl_client_seq_flush(c), SL_OK);
    sl_client_destroy(&c);
    c = mk(&r, &cfg);
    assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, &s), SL_OK);
    assert_int_equal(s, 1002);
    sl_client_destroy(&c);
    /* a corrupt seq file is an error, never a guess */
    f = fopen(sp, "w");
    fputs("garbage\n", f);
    fclose(f);
    enum sl_err err = SL_OK;
    assert_null(sl_client_new(&cfg, &err));
    assert_int_equal(err, SL_IO);
}

static void test_seq_clock(void **state)
{
    (void)state;
    struct rec r = {0};
    struct sl_client_config cfg = base_cfg(&r, "127.0.0.1:1", NULL);
    cfg.seq_mode = SL_SEQ_CLOCK;
    struct sl_client *c = mk(&r, &cfg);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t floor_seq = ((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u) * 1000u;
    uint64_t s1 = 0, s2 = 0;
    assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, &s1), SL_OK);
    assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, &s2), SL_OK);
    assert_true(s1 >= floor_seq);
    assert_true(s2 > s1);
    sl_client_destroy(&c);
    /* a new instance (a reboot, which takes more than a millisecond)
     * starts above the old seqs */
    usleep(3000);
    c = mk(&r, &cfg);
    uint64_t s3 = 0;
    assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, &s3), SL_OK);
    assert_true(s3 > s2);
    sl_client_destroy(&c);
}

static void test_journal_survives_reboot(void **state)
{
    (void)state;
    struct rec r = {0};
    struct fake_edge e;
    char sp[300], jp[300];
    fake_edge_listen(&e, NULL);
    path_in_tmp(sp, sizeof sp, "seq-j");
    path_in_tmp(jp, sizeof jp, "journal");
    struct sl_client_config cfg = base_cfg(&r, e.addr, sp);
    cfg.journal_path = jp;
    struct sl_client *c = mk_welcomed(&r, &e, &cfg, 30);
    for (int i = 0; i < 3; i++)
        assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, NULL), SL_OK);
    for (uint64_t i = 1; i <= 3; i++)
        assert_int_equal(recv_data(&e, c), i);
    fake_edge_ack(&e, c, 2);
    wait_acks(&r, 1);
    sl_client_destroy(&c); /* reboot with 1 and 3 unacked */
    fake_edge_drop(&e);
    memset(&r, 0, sizeof r);
    c = mk(&r, &cfg);
    assert_int_equal(sl_client_unacked(c), 2);
    fake_edge_accept(&e, c);
    fake_edge_welcome(&e, c, 30, "pump-0001");
    assert_int_equal(recv_data(&e, c), 1);
    assert_int_equal(recv_data(&e, c), 3);
    fake_edge_ack(&e, c, 1);
    fake_edge_ack(&e, c, 3);
    wait_acks(&r, 2);
    /* all acked: the journal is emptied */
    struct stat st;
    assert_int_equal(stat(jp, &st), 0);
    assert_int_equal(st.st_size, 0);
    uint64_t s = 0;
    assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, &s), SL_OK);
    assert_int_equal(s, 1001); /* the reboot skipped the rest of the reserved block */
    sl_client_destroy(&c);
    fake_edge_close(&e);
}

static void test_split_frames_from_edge(void **state)
{
    (void)state;
    struct rec r = {0};
    struct fake_edge e;
    char sp[300];
    struct sl_client_config cfg = edge_cfg(&r, &e, sp);
    struct sl_client *c = mk_welcomed(&r, &e, &cfg, 30);
    for (int i = 0; i < 2; i++)
        assert_int_equal(sl_client_send(c, body1, sizeof body1, 0, NULL), SL_OK);
    assert_int_equal(recv_data(&e, c), 1);
    assert_int_equal(recv_data(&e, c), 2);
    /* two acks, written one byte at a time */
    uint8_t buf[64];
    size_t n1 = 0, n2 = 0;
    struct msg m = {0};
    m.t = MSG_ACK;
    m.u.ack.seq = 1;
    assert_int_equal(msg_encode_frame(&m, buf, sizeof buf, &n1), SL_OK);
    m.u.ack.seq = 2;
    assert_int_equal(msg_encode_frame(&m, buf + n1, sizeof buf - n1, &n2), SL_OK);
    for (size_t i = 0; i < n1 + n2; i++) {
        assert_int_equal(write(e.fd, buf + i, 1), 1);
        for (int k = 0; k < 3; k++)
            fake_edge_pump(c);
    }
    wait_acks(&r, 2);
    assert_int_equal(r.acks[0], 1);
    assert_int_equal(r.acks[1], 2);
    /* a frame of length 0 from the edge: protocol error, disconnect */
    static const uint8_t zero[4] = {0, 0, 0, 0};
    assert_int_equal(write(e.fd, zero, 4), 4);
    uint64_t end = fake_edge_real_ms() + FAKE_EDGE_WAIT_MS;
    while (sl_client_state(c) == SL_CLIENT_CONNECTED && fake_edge_real_ms() < end)
        fake_edge_pump(c);
    assert_int_equal(r.errs[r.nstates - 1], SL_FRAME);
    sl_client_destroy(&c);
    fake_edge_close(&e);
}

static void test_backoff_bounds(void **state)
{
    (void)state;
    uint64_t rng = 12345;
    for (uint32_t attempt = 0; attempt < 40; attempt++) {
        uint64_t ceil = 2000;
        for (uint32_t i = 1; i < attempt && ceil < 60000; i++)
            ceil *= 2;
        if (ceil > 60000)
            ceil = 60000;
        uint32_t lo = UINT32_MAX, hi = 0;
        for (int k = 0; k < 2000; k++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            uint32_t d = sl_client_backoff_ms(1000, 60000, attempt, rng);
            assert_true(d >= 1000);
            assert_true(d <= ceil);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        /* full jitter from the first retry on: the whole range is used, not
         * one value (a fixed first delay brings a dead edge's devices back
         * all in the same millisecond) */
        assert_true(lo < 1000 + (ceil - 1000) / 10);
        assert_true(hi > ceil - (ceil - 1000) / 10);
    }
    assert_int_equal(sl_client_backoff_ms(1000, 60000, 1000, UINT64_MAX) <= 60000, 1);
}

static void test_bad_config(void **state)
{
    (void)state;
    struct rec r = {0};
    enum sl_err err = SL_OK;
    struct sl_client_config cfg = base_cfg(&r, "127.0.0.1:1", NULL);
    assert_null(sl_client_new(&cfg, &err)); /* file mode without a path */
    assert_int_equal(err, SL_INVAL);
    cfg.seq_mode = SL_SEQ_CLOCK;
    cfg.dev = "bad dev";
    assert_null(sl_client_new(&cfg, &err));
    cfg.dev = "ok";
    cfg.edges = "a:1,,b:2";
    assert_null(sl_client_new(&cfg, &err));
    cfg.edges = "127.0.0.1:1";
    cfg.bind_addr = "not-an-ip";
    assert_null(sl_client_new(&cfg, &err));
    assert_int_equal(err, SL_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hello_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_ack_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_resends_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_timeout_resend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_when_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmd_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_disconnect_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_retry_ms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seq_file_no_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seq_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_survives_reboot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_frames_from_edge, setup, teardown),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
