/* SPDX-License-Identifier: Apache-2.0 */
/* devsim.h - pieces of sluice-devsim shared by its files and its unit test.
 *
 * devsim_util.c holds the pure parts (latency histogram and its split at
 * the connect ramp, source address range, secret file reading);
 * devsim_worker.c runs one worker process's devices on an epoll loop;
 * devsim.c parses options, forks the workers, prints progress, writes the
 * summary and verifies against PostgreSQL. */
#ifndef SL_DEVSIM_H
#define SL_DEVSIM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- latency histogram, log-linear: exact below 64, then 32 steps per
 * power of two (~3% resolution), up to 2^33. devsim counts microseconds:
 * a quantile's bucket low edge is at most 3% under the true value (a 1 ms
 * bucket reporting its low edge said "1ms" for anything up to 1.99 ms). ---- */
#define HIST_N 928u

struct hist {
    uint32_t n[HIST_N];
};

uint32_t hist_idx(uint64_t v);
uint64_t hist_low(uint32_t idx); /* smallest value of bucket idx */
void hist_add(struct hist *h, uint64_t v);
/* Value at quantile q (0..1) of the counts in h: the bucket's lower bound;
 * 0 when empty. */
uint64_t hist_quantile(const struct hist *h, double q);
uint64_t hist_total(const struct hist *h);
/* out = a - b, bucket by bucket: b is an earlier snapshot of the cumulative a. */
void hist_sub(struct hist *out, const struct hist *a, const struct hist *b);

/* ---- the connect ramp: the acks' latencies until every device was first
 * connected (the summary's latency_ms_ramp; the rest is latency_ms_after_ramp) ---- */
struct ramp {
    struct hist lat; /* cumulative latencies as of the ramp's last second */
    bool over;
};
/* Once per progress second, with the cumulative latencies and how many
 * devices are connected: until the first second in which all devices are,
 * lat follows; from then on it stays (a later reconnect does not reopen it). */
void ramp_second(struct ramp *r, const struct hist *lat, uint64_t connected, uint64_t devices);

/* The loop millisecond at which a send due at next_send_us (µs) may go:
 * rounded up. Rounded down, a send due within the current millisecond armed
 * a 0 ms timer that found nothing due and re-armed itself until the clock
 * ticked over: every device spun up to 1 ms before each message. */
uint64_t send_at_ms(uint64_t next_send_us);

/* ---- source addresses: "A" or "A-B" (IPv4, inclusive, host order) ---- */
struct ip_range {
    uint32_t lo, hi; /* 0,0: none */
};
/* Returns 0, or -1 if s is not an address or a range lo <= hi. "" -> none. */
int ip_range_parse(const char *s, struct ip_range *r);
uint32_t ip_range_count(const struct ip_range *r);
/* The i-th address (wraps around) as dotted text into out[16]. */
void ip_range_at(const struct ip_range *r, uint64_t i, char out[16]);

/* Read a fleet secret file: its bytes minus one trailing newline. Returns
 * the length or -1. */
long secret_read(const char *path, uint8_t *buf, size_t cap);

/* ---- worker <-> parent ---- */

/* What a worker tells the parent once per second over a pipe (one write,
 * smaller than PIPE_BUF so it is atomic) and once at the end. */
struct snap {
    uint32_t worker;
    uint32_t final;     /* 1 in the last one */
    uint32_t connected; /* devices with a welcomed connection now */
    uint32_t devices;
    uint64_t queued; /* messages handed to sl_client_send (unique seqs) */
    uint64_t acked;  /* distinct seqs acked */
    uint64_t frames; /* data frames written, resends included */
    uint64_t resent;
    uint64_t disconnects;  /* connections or attempts that ended */
    uint64_t errors;       /* err frames from edges and send failures */
    uint64_t backpressure; /* sends refused: window full */
    uint64_t tls_handshakes, tls_resumed;
    uint64_t first_welcome_ms, last_welcome_ms; /* loop clock of the first and latest welcome, 0 none */
    struct hist lat;                            /* cumulative ack latency, us (queued -> ack) */
};

struct sl_tls;

struct worker_cfg {
    uint32_t worker, first, count; /* devices [first, first+count) */
    const char *edges;
    struct sl_tls *tls;          /* NULL: plain TCP; made by the parent, inherited at fork */
    const char *tls_server_name; /* NULL: each edge's host */
    uint32_t n_edges;
    const char *prefix;
    const uint8_t *secret;
    size_t secret_len;
    double rate; /* msgs/s per device; 0 = as fast as the window allows */
    uint32_t body_size, window, ack_timeout_ms;
    double ramp;       /* connections/s for this worker (0 = all at once) */
    double duration_s; /* 0 = until messages */
    uint64_t messages; /* per device; 0 = until duration */
    double drain_s;
    struct ip_range src;
    const char *state_dir;    /* NULL: clock seqs */
    const char *records_path; /* where the per-device seq records go */
    int pipe_fd;
    uint64_t t0_ms; /* the parent's start (CLOCK_MONOTONIC is system-wide) */
    /* Set by the worker's signal handler: stop sending and drain (1), or quit
     * now (2). A pointer, so the worker reads it without calling back into
     * devsim.c (scripts/check-layering). */
    const volatile int *stop;
};

/* Per-device record written at the end (for --verify): the seqs this run
 * used lie in [lo, hi); `acked` of them were acked; the unacked follow. */
struct dev_rec {
    uint32_t idx;
    uint32_t n_unacked;
    uint64_t lo, hi, acked;
};

/* Run one worker until done. Returns 0 if everything queued was acked. */
int worker_run(const struct worker_cfg *wc);

#endif
