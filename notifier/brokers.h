/* SPDX-License-Identifier: Apache-2.0 */
/* brokers.h - what the notifier's two MQTT clients share about their
 * brokers: mqtt.c (MQTTAsync: the control client, QoS 1 data) and
 * mqttsync.c (MQTTClient: QoS 0 data in a publisher child).
 *
 * - the broker list (`--broker a,b`) parsed into paho's URIs, and the
 *   configuration rules refused at start (tls_ca with tcp://, an unreadable
 *   tls_ca, a list that is not one);
 * - the cause of a failed connect in words (CONNACK codes, the OpenSSL
 *   error paho's ssl_error_cb gave, TLS host check), logged once per cause
 *   (event=mqtt_connect_failed), and the event=mqtt_connected line;
 * - the return probe: while connected to another broker than the first, a
 *   non-blocking TCP connect to the first every few seconds (doubling while
 *   returns fail); when it answers, the owner is told and moves back.
 *
 * No paho calls here: both APIs report the same codes (CONNACK 1-5) and
 * take the same ssl_error_cb. Everything runs on the owner's loop thread,
 * except brokers_ssl_error (paho's thread; it only takes the mutex). */
#ifndef NTF_BROKERS_H
#define NTF_BROKERS_H
/* struct gaicb (getaddrinfo_a) needs _GNU_SOURCE before any libc header:
 * include this from .c files that define it. */
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;

/* Most brokers one client may be given. */
#define BROKERS_MAX 8

struct brokers_one {
    char uri[280]; /* as paho takes it: tcp:// or ssl:// host (up to 255), port */
    char host[256];
    char port[8];
    bool tls;
};

struct brokers {
    struct brokers_one b[BROKERS_MAX];
    char *uris[BROKERS_MAX]; /* b[i].uri, for paho's serverURIs */
    int n;
    bool tls;                           /* some broker is ssl:// */
    char *username, *password, *tls_ca; /* copies, "" for none */
    char *client_id;                    /* a copy: the client's id, for the logs */
    struct loop *loop;
    void (*back)(void *ud); /* the first broker answered the probe */
    void *ud;

    /* the cause of the failures since the last connection, logged once */
    char why[192], why_prev[192];
    uint32_t fails;
    uint64_t why_ms;

    pthread_mutex_t mu;
    char tls_err[128]; /* the first OpenSSL error of the current attempt (under mu) */

    /* the return probe (the first broker's address: a numeric host at
     * once, a name through getaddrinfo_a, never a lookup on the loop) */
    int probe_fd;
    uint64_t next_probe_ms, probe_deadline_ms;
    uint32_t return_ms;
    struct gaicb gai;
    struct addrinfo hints;
    bool gai_active;
};

/* Parse uris ("tcp://a:1883,ssl://b:8883"; also mqtt://, mqtts://), copy the
 * credentials (NULL or "" = none) and check the rules. 0, or -1 after one event=mqtt_config_refused line:
 * malformed or empty list, more than BROKERS_MAX, tls_ca (non-empty) with a tcp:// URI (the password and
 * every message would go in clear), a tls_ca that cannot be read. client_id is copied (named in the logs);
 * back(ud) is called from the loop when the probe finds the first broker answering. Call brokers_fini after
 * any return (-1 also for no memory). Never blocks. */
int brokers_init(struct brokers *bs, const char *uris, const char *username, const char *password,
                 const char *tls_ca, const char *client_id, struct loop *l, void (*back)(void *ud), void *ud);
/* Free the copies, close the probe, cancel a lookup. true when a lookup could not be
 * cancelled and still writes into *bs: the caller must leave that memory
 * allocated (a hanging resolver at exit). Waits at most 200 ms. */
bool brokers_fini(struct brokers *bs);

/* A connect attempt starts: forget the TLS error of the previous one. */
void brokers_attempt(struct brokers *bs);
/* paho's ssl_error_cb (MQTTAsync_SSLOptions and MQTTClient_SSLOptions),
 * u = the struct brokers: keeps the reason of the attempt's first OpenSSL
 * error line. Any thread. Returns 1. */
int brokers_ssl_error(const char *str, size_t len, void *u);
/* The cause of a failed connect in out: code is paho's (1..5: the broker's
 * CONNACK), msg its text if any. true when it is the broker refusing us
 * (TLS verification, credentials): retrying will not fix it. */
bool brokers_cause(struct brokers *bs, int code, const char *msg, char *out, size_t cap);
/* Log a failed connect to broker cur: once per cause (again only for a
 * cause other than the last two logged, or after 10 minutes; the others at
 * debug level), level error when refused, else warn. */
void brokers_log_failure(struct brokers *bs, int cur, bool refused, int code, const char *why);
/* Connected to broker cur: logs event=mqtt_connected (extra appended to the
 * line, "" for none), resets the failure log and the probe period (when cur
 * is the first). */
void brokers_up(struct brokers *bs, int cur, const char *extra);
/* While connected to broker cur: probe the first broker when due (cur > 0),
 * time out a probe. Call every ~100 ms. Never blocks. */
void brokers_tick(struct brokers *bs, int cur);
/* The owner leaves broker cur for the first (after back): logs
 * event=mqtt_broker_return and doubles the probe period for the next time. */
void brokers_leave(struct brokers *bs, int cur);

/* What every connect of either paho API sets the same way (the fields
 * have the same names in MQTTAsync_connectOptions and
 * MQTTClient_connectOptions, and in their SSLOptions): one place says how
 * the notifier connects. o: the connect options, bs: a struct brokers *,
 * i: the broker, keepalive_s: seconds. Clean sessions (nothing of ours is
 * left at a broker), MQTT 3.1.1 pinned (paho's default retries a refused
 * connect with 3.1: two connections and a misleading code per attempt),
 * one broker per connect (given the list, paho would report the first as
 * connected whichever answered). */
#define BROKERS_CONNECT_OPTIONS(o, bs, i, keepalive_s)                                                       \
    do {                                                                                                     \
        (o).keepAliveInterval = (keepalive_s);                                                               \
        (o).cleansession = 1;                                                                                \
        (o).MQTTVersion = MQTTVERSION_3_1_1;                                                                 \
        (o).serverURIs = &(bs)->uris[(i)];                                                                   \
        (o).serverURIcount = 1;                                                                              \
        if ((bs)->username[0]) {                                                                             \
            (o).username = (bs)->username;                                                                   \
            (o).password = (bs)->password[0] ? (bs)->password : NULL;                                        \
        }                                                                                                    \
    } while (0)
/* TLS: the broker's certificate must chain to tls_ca (NULL: paho loads
 * OpenSSL's default store) and name the URI's host (verify: X509_check_host
 * or _ip); no flag turns either off. OpenSSL's errors come to
 * brokers_ssl_error. s: MQTTAsync_SSLOptions or MQTTClient_SSLOptions. */
#define BROKERS_TLS_OPTIONS(s, bs)                                                                           \
    do {                                                                                                     \
        (s).trustStore = (bs)->tls_ca[0] ? (bs)->tls_ca : NULL;                                              \
        (s).enableServerCertAuth = 1;                                                                        \
        (s).verify = 1;                                                                                      \
        (s).ssl_error_cb = brokers_ssl_error;                                                                \
        (s).ssl_error_context = (bs);                                                                        \
    } while (0)

#endif
