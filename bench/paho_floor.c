/* SPDX-License-Identifier: Apache-2.0 */
/* paho_floor.c - the CPU one data message costs inside paho.mqtt.c alone,
 * with no notifier around it: one client publishes `total` messages
 * (190-byte payload, topic P/dev-N/data) keeping `window` QoS 1 publishes
 * unacknowledged, and prints its own CPU (all threads, getrusage) and, when
 * given the broker's pid, the broker's (/proc/PID/stat) per message.
 *
 * Built twice from this file: paho_floor_async (MQTTAsync, as
 * notifier/mqtt.c drives paho: sendMessage and an onSuccess per publish)
 * and paho_floor_sync (MQTTClient: MQTTClient_publish writes in the
 * caller's thread, deliveryComplete on paho's receive thread). Flags:
 *   trace=1  raise paho's trace level to errors (its default records every
 *            function entry and exit in an in-memory buffer)
 *   cork=1   (sync only) TCP_CORK paho's socket around each burst of
 *            publishes, found by its peer port: one segment for many
 *            publishes instead of one each (a measurement, not an API paho
 *            offers)
 * Bench tool only; docs/performance.md ("Where a data message's CPU goes")
 * has the figures and the command. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef PAHO_FLOOR_SYNC
#include <MQTTClient.h>
#define API "sync"
#else
#include <MQTTAsync.h>
#define API "async"
#endif

static atomic_long acked;
static atomic_int waiting;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

/* An acknowledgement (paho's thread): wake the publisher if it waits. */
static void ack(void)
{
    atomic_fetch_add(&acked, 1);
    if (atomic_load(&waiting)) {
        pthread_mutex_lock(&mu);
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&mu);
    }
}

static double cpu_self(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
           (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

static double cpu_pid(int pid)
{
    char p[64], buf[1024];
    snprintf(p, sizeof p, "/proc/%d/stat", pid);
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *s = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!s || sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* paho's socket: the one TCP connection of this process to the port. */
static int find_sock(int port)
{
    for (int fd = 3; fd < 1024; fd++) {
        struct sockaddr_in a;
        socklen_t l = sizeof a;
        if (getpeername(fd, (struct sockaddr *)&a, &l) == 0 && a.sin_family == AF_INET &&
            ntohs(a.sin_port) == port)
            return fd;
    }
    return -1;
}

static void cork(int fd, int on)
{
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
}

#ifdef PAHO_FLOOR_SYNC
static void on_delivered(void *ctx, MQTTClient_deliveryToken t)
{
    (void)ctx, (void)t;
    ack();
}
static int on_msg(void *ctx, char *topic, int tl, MQTTClient_message *m)
{
    (void)ctx, (void)tl;
    MQTTClient_freeMessage(&m);
    MQTTClient_free(topic);
    return 1;
}
static void on_lost(void *ctx, char *cause)
{
    (void)ctx, (void)cause;
    fprintf(stderr, "connection lost\n");
    exit(1);
}
#else
static void on_ok(void *ctx, MQTTAsync_successData *r)
{
    (void)ctx, (void)r;
    ack();
}
static void on_fail(void *ctx, MQTTAsync_failureData *r)
{
    (void)ctx, (void)r;
    fprintf(stderr, "publish failed\n");
    exit(1);
}
static atomic_int up;
static void on_conn(void *ctx, MQTTAsync_successData *r)
{
    (void)ctx, (void)r;
    atomic_store(&up, 1);
}
#endif

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s PORT TOTAL WINDOW QOS [trace=0|1] [cork=0|1] [broker_pid=N]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]), window = atoi(argv[3]), qos = atoi(argv[4]);
    long total = atol(argv[2]);
    int trace_off = 0, corked = 0, bpid = 0;
    for (int i = 5; i < argc; i++) {
        sscanf(argv[i], "trace=%d", &trace_off);
        sscanf(argv[i], "cork=%d", &corked);
        sscanf(argv[i], "broker_pid=%d", &bpid);
    }
    char uri[64], topic[64], payload[190];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
    memset(payload, 'x', sizeof payload);
#ifdef PAHO_FLOOR_SYNC
    if (trace_off)
        MQTTClient_setTraceLevel(MQTTCLIENT_TRACE_ERROR);
    MQTTClient c;
    MQTTClient_create(&c, uri, "paho-floor-sync", MQTTCLIENT_PERSISTENCE_NONE, NULL);
    MQTTClient_setCallbacks(c, NULL, on_lost, on_msg, on_delivered);
    MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;
    o.cleansession = 1;
    o.maxInflightMessages = window + 16;
    o.MQTTVersion = MQTTVERSION_3_1_1;
    if (MQTTClient_connect(c, &o) != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "connect failed\n");
        return 1;
    }
#else
    if (trace_off)
        MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
    MQTTAsync c;
    MQTTAsync_create(&c, uri, "paho-floor-async", MQTTCLIENT_PERSISTENCE_NONE, NULL);
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    o.cleansession = 1;
    o.maxInflight = window + 16;
    o.MQTTVersion = MQTTVERSION_3_1_1;
    o.onSuccess = on_conn;
    MQTTAsync_connect(c, &o);
    for (int i = 0; i < 5000 && !atomic_load(&up); i++)
        usleep(1000);
    if (!atomic_load(&up)) {
        fprintf(stderr, "connect failed\n");
        return 1;
    }
    corked = 0; /* paho's send thread writes: no burst to cork */
#endif
    int fd = corked ? find_sock(port) : -1;
    double c0 = cpu_self(), b0 = bpid ? cpu_pid(bpid) : 0, t0 = now_s();
    long sent = 0;
    while (sent < total || (qos && atomic_load(&acked) < total)) {
        if (sent < total && (qos == 0 || sent - atomic_load(&acked) < window)) {
            cork(fd, 1);
            while (sent < total && (qos == 0 || sent - atomic_load(&acked) < window)) {
                snprintf(topic, sizeof topic, "P/dev-%ld/data", sent % 1000);
#ifdef PAHO_FLOOR_SYNC
                MQTTClient_deliveryToken t;
                if (MQTTClient_publish(c, topic, (int)sizeof payload, payload, qos, 0, &t) !=
                    MQTTCLIENT_SUCCESS) {
                    fprintf(stderr, "publish refused\n");
                    return 1;
                }
#else
                MQTTAsync_message m = MQTTAsync_message_initializer;
                m.payload = payload;
                m.payloadlen = (int)sizeof payload;
                m.qos = qos;
                MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
                ro.onSuccess = qos ? on_ok : NULL;
                ro.onFailure = on_fail;
                if (MQTTAsync_sendMessage(c, topic, &m, &ro) != MQTTASYNC_SUCCESS) {
                    usleep(100); /* paho's queue is full: let its threads drain it */
                    continue;
                }
#endif
                sent++;
            }
            cork(fd, 0);
            continue;
        }
        /* window full: wait for an acknowledgement (or 1 ms) */
        pthread_mutex_lock(&mu);
        atomic_store(&waiting, 1);
        if (sent - atomic_load(&acked) >= window || (sent >= total && atomic_load(&acked) < total)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&cv, &mu, &ts);
        }
        atomic_store(&waiting, 0);
        pthread_mutex_unlock(&mu);
    }
    double c1 = cpu_self(), b1 = bpid ? cpu_pid(bpid) : 0, t1 = now_s();
    printf("api=%s qos=%d window=%d trace_off=%d cork=%d msgs=%ld msgs_per_s=%.0f client_us_per_msg=%.1f "
           "broker_us_per_msg=%.1f\n",
           API, qos, window, trace_off, fd >= 0, total, (double)total / (t1 - t0),
           1e6 * (c1 - c0) / (double)total, bpid ? 1e6 * (b1 - b0) / (double)total : 0.0);
    return 0;
}
