/* SPDX-License-Identifier: Apache-2.0 */
/* mqttsync.c - a QoS 0 publishing client on paho's MQTTClient, driven from
 * the caller's loop with no paho thread (see mqttsync.h).
 *
 * No callbacks: MQTTClient_setCallbacks is never called, so
 * MQTTClient_connect starts no receive thread (paho starts it only for a
 * messageArrived callback) and the caller's thread does all of paho's work.
 * mqs_tick calls MQTTClient_receive with a zero timeout: one of paho's
 * cycles (a select/poll with a zero timeout, at most one packet read: our
 * PINGRESP; then paho's keepalive check, which sends PINGREQ when nothing
 * went either way for keepalive_s and closes the session when no answer
 * came for 1.5 times that). A socket error there, or in a publish, makes
 * paho close the session: MQTTClient_isConnected then says so. Not
 * MQTTClient_yield: it always runs paho's cycle for 100 ms.
 *
 * paho's socket: paho offers no accessor (its client struct is private), so
 * after each connect we look for it in /proc/self/fd: the one connected
 * TCP socket to the broker's port that is not our return probe. A child
 * has no other. Found, it gets TCP_CORK around each batch (one segment
 * for many publishes instead of one each), TCP_NODELAY (paho leaves Nagle
 * on: at QoS 0 the broker sends nothing back, so its ACKs are delayed up to
 * 40 ms, and without NODELAY uncorking keeps a batch's last partial segment
 * until the previous one is acknowledged: the live view's p99 was ~40 ms at
 * 2,000 msgs/s), and a room check before each
 * publish (its send queue from SIOCOUTQ against half of SO_SNDBUF, read
 * once a batch), so MQTTClient_publish never finds the socket full: paho
 * would then wait in its 100 ms cycles until the broker reads, or until the
 * connection dies. Not found (none or several): neither, logged at connect
 * (cork=0).
 *
 * One binary links paho-mqtt3as (mqtt.c) and paho-mqtt3cs (here): each
 * library keeps its internals hidden, and their exported symbols overlap
 * only in Thread_*, Heap_get_info and MQTTProperties_* (nm -D), the same
 * code of the same paho release; the dynamic linker binds both libraries'
 * calls of those to one copy. MQTTProperties_* allocate only for MQTT 5
 * (we speak 3.1.1), so neither library frees the other's memory.
 *
 * Deliberately not here: the records and their pipe (pubproc.c), QoS 1
 * (mqtt.c: it needs acknowledgements and resends), subscriptions. */
#define _GNU_SOURCE
#include "mqttsync.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sockios.h>

#include <MQTTClient.h>

#include "brokers.h"
#include "mqtt.h"
#include "sl/log.h"
#include "sl/loop.h"

#define FIRST_RETRY_MS 2000u
#define RETRY_MIN_MS   1000u
#define RETRY_MAX_MS   8000u
#define STABLE_MS      5000u
#define FRAME_SLACK    16u /* a PUBLISH's fixed header and topic length, rounded up */

/* Connection state. */
enum state {
    ST_IDLE = 0, /* no connection; the next round at next_try_ms */
    ST_UP,       /* connected: publishes flow */
};

struct mqs {
    struct mqs_cfg cfg;
    struct loop *loop;
    struct brokers bs;
    bool bs_init;
    const char *client_id; /* bs's copy */
    MQTTClient h;
    MQTTClient_SSLOptions ssl;

    enum state st;
    int cur; /* broker connected to */
    bool ever, back;
    uint64_t next_try_ms, up_ms, deadline_ms;
    uint32_t retry_ms;

    int fd;      /* paho's socket, -1 when not found */
    size_t room; /* bytes the socket takes before mqs_ready says no (this batch) */
    bool batch;
    bool empty; /* the send queue was empty at mqs_begin and nothing went since: one record of any size */

    struct mqtt_stats s; /* the counters; connected and broker come from st and cur (mqs_stats) */
};

/* The first broker answers the probe: move back at the next tick (not from
 * inside the probe's callback: the connect blocks). */
static void on_back(void *ud)
{
    struct mqs *m = ud;
    if (m->st == ST_UP && m->cur > 0)
        m->back = true;
}

struct mqs *mqs_new(const struct mqs_cfg *cfg, struct loop *l)
{
    if (!cfg->uris || !cfg->client_id)
        return NULL;
    struct mqs *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cfg = *cfg;
    m->loop = l;
    m->fd = -1;
    m->retry_ms = RETRY_MIN_MS;
    if (m->cfg.keepalive_s == 0)
        m->cfg.keepalive_s = 20;
    m->bs_init = true;
    if (brokers_init(&m->bs, cfg->uris, cfg->username, cfg->password, cfg->tls_ca, cfg->client_id, l, on_back,
                     m) != 0) {
        mqs_destroy(&m);
        return NULL;
    }
    m->client_id = m->bs.client_id;
    /* At its default level paho records every function entry and exit in
     * an in-memory trace buffer nothing reads (mqtt.c says more). Each paho
     * library has its own level: this one is MQTTClient's. */
    MQTTClient_setTraceLevel(MQTTCLIENT_TRACE_ERROR);
    int rc = MQTTClient_create(&m->h, m->bs.b[0].uri, m->client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
    if (rc != MQTTCLIENT_SUCCESS) {
        log_error("event=mqtt_create_failed uri=%s code=%d", m->bs.b[0].uri, rc);
        m->h = NULL;
        mqs_destroy(&m);
        return NULL;
    }
    if (m->bs.tls) {
        MQTTClient_SSLOptions s = MQTTClient_SSLOptions_initializer;
        BROKERS_TLS_OPTIONS(s, &m->bs);
        m->ssl = s;
    }
    return m;
}

void mqs_destroy(struct mqs **pm)
{
    struct mqs *m = *pm;
    if (!m)
        return;
    if (m->h) {
        if (MQTTClient_isConnected(m->h))
            MQTTClient_disconnect(m->h, 0); /* timeout 0: a DISCONNECT if the socket takes it, no wait */
        MQTTClient_destroy(&m->h);
    }
    bool leak = m->bs_init && brokers_fini(&m->bs);
    if (!leak)
        free(m);
    *pm = NULL;
}

/* ---- paho's socket ---- */

static int sock_port(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)a)->sin_port);
    if (a->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
    return -1;
}

/* The one connected TCP socket of this process to port that is not the
 * probe's, or -1 (none or several). See the top for why we look. */
static int find_sock(const struct mqs *m, int port)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int found = -1, n = 0, self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end || end == e->d_name || fd == self || fd == m->bs.probe_fd)
            continue;
        int type = 0;
        socklen_t tl = sizeof type;
        struct sockaddr_storage a;
        socklen_t al = sizeof a;
        if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM ||
            getpeername((int)fd, (struct sockaddr *)&a, &al) != 0 || sock_port(&a) != port)
            continue;
        found = (int)fd;
        n++;
    }
    closedir(d);
    return n == 1 ? found : -1;
}

static void set_cork(struct mqs *m, int on)
{
    if (m->fd >= 0)
        (void)setsockopt(m->fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
}

/* TCP_NODELAY on paho's socket (see the top of the file). Returns what the
 * kernel holds, read back, so the connect line says what is true: 0 when
 * there is no socket. */
static int set_nodelay(int fd)
{
    int one = 1, v = 0;
    socklen_t vl = sizeof v;
    if (fd < 0 || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &vl) != 0)
        return 0;
    return v != 0;
}

/* ---- connection ---- */

static void up(struct mqs *m, int broker)
{
    m->st = ST_UP;
    m->cur = broker;
    m->up_ms = loop_clock_ms();
    m->back = false;
    if (m->ever)
        m->s.reconnects++;
    m->ever = true;
    m->retry_ms = RETRY_MIN_MS;
    m->fd = find_sock(m, atoi(m->bs.b[broker].port));
    char how[48];
    snprintf(how, sizeof how, " api=sync cork=%d nodelay=%d", m->fd >= 0, set_nodelay(m->fd));
    brokers_up(&m->bs, broker, how);
}

static void retry_later(struct mqs *m, uint32_t delay_ms)
{
    m->st = ST_IDLE;
    m->next_try_ms = loop_clock_ms() + delay_ms;
}

/* Connect to brokers[i]: blocks until the CONNACK, a failure or
 * MQS_CONNECT_TIMEOUT_S. true when connected. */
static bool attempt(struct mqs *m, int i)
{
    MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;
    BROKERS_CONNECT_OPTIONS(o, &m->bs, i, m->cfg.keepalive_s);
    o.reliable = 0; /* QoS 0 only: no in-flight window to serialise on */
    o.connectTimeout = MQS_CONNECT_TIMEOUT_S;
    if (m->bs.tls)
        o.ssl = &m->ssl;
    brokers_attempt(&m->bs);
    m->cur = i;
    int rc = MQTTClient_connect(m->h, &o);
    if (rc == MQTTCLIENT_SUCCESS) {
        up(m, i);
        return true;
    }
    /* paho's MQTTClient says -1 for any TCP or TLS failure (MQTTAsync's
     * text for the same is this one); 1..5 are the broker's CONNACK. */
    const char *msg = rc == MQTTCLIENT_FAILURE ? "TCP/TLS connect failure" : MQTTClient_strerror(rc);
    char why[192];
    bool refused = brokers_cause(&m->bs, rc, msg, why, sizeof why);
    brokers_log_failure(&m->bs, i, refused, rc, why);
    return false;
}

/* A round: the brokers in order from the first until one accepts, each
 * attempt only if it ends before the deadline. */
static void round_of_attempts(struct mqs *m)
{
    for (int i = 0; i < m->bs.n; i++) {
        if (m->deadline_ms && loop_clock_ms() + MQS_CONNECT_TIMEOUT_S * 1000u > m->deadline_ms) {
            retry_later(m, RETRY_MIN_MS);
            return;
        }
        if (attempt(m, i))
            return;
    }
    uint32_t d = m->ever ? m->retry_ms : FIRST_RETRY_MS;
    if (m->ever && m->retry_ms < RETRY_MAX_MS)
        m->retry_ms *= 2;
    retry_later(m, d);
}

/* paho closed the session (socket error, keepalive): reconnect at once if
 * the connection had lasted, else after a growing pause. */
static void lost(struct mqs *m)
{
    bool stable = loop_clock_ms() - m->up_ms >= STABLE_MS;
    log_warn("event=mqtt_connection_lost client=%s broker=%s api=sync", m->client_id, m->bs.b[m->cur].uri);
    m->fd = -1; /* paho closed it */
    if (stable)
        m->retry_ms = RETRY_MIN_MS;
    retry_later(m, stable ? 0 : m->retry_ms);
    if (!stable && m->retry_ms < RETRY_MAX_MS)
        m->retry_ms *= 2;
}

void mqs_tick(struct mqs *m)
{
    if (m->st == ST_UP) {
        char *topic = NULL;
        int tl = 0;
        MQTTClient_message *msg = NULL;
        (void)MQTTClient_receive(m->h, &topic, &tl, &msg, 0);
        if (msg) /* nothing is subscribed: only a broker's mistake */
            MQTTClient_freeMessage(&msg);
        if (topic)
            MQTTClient_free(topic);
        if (!MQTTClient_isConnected(m->h))
            lost(m);
    }
    brokers_tick(&m->bs, m->st == ST_UP ? m->cur : 0);
    if (m->st == ST_UP && m->back) {
        brokers_leave(&m->bs, m->cur);
        MQTTClient_disconnect(m->h, 0);
        m->fd = -1;
        m->st = ST_IDLE;
        m->back = false;
        round_of_attempts(m); /* from the first */
        return;
    }
    if (m->st == ST_IDLE && loop_clock_ms() >= m->next_try_ms)
        round_of_attempts(m);
}

void mqs_set_deadline(struct mqs *m, uint64_t ms)
{
    m->deadline_ms = ms;
}

/* ---- publishing ---- */

bool mqs_connected(const struct mqs *m)
{
    return m->st == ST_UP;
}

bool mqs_ready(struct mqs *m, size_t topic_len, size_t len)
{
    if (m->st != ST_UP)
        return false;
    if (m->fd < 0 || !m->batch)
        return true;
    return topic_len + len + FRAME_SLACK <= m->room || m->empty;
}

void mqs_begin(struct mqs *m)
{
    m->batch = true;
    if (m->st != ST_UP || m->fd < 0)
        return;
    int sndbuf = 0, queued = 0;
    socklen_t sl = sizeof sndbuf;
    if (getsockopt(m->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &sl) != 0 || ioctl(m->fd, SIOCOUTQ, &queued) != 0) {
        m->room = SIZE_MAX; /* cannot tell: let paho cope */
        m->empty = false;
    } else {
        /* Half the buffer: the kernel counts its own overhead against it
         * too. An empty queue takes one record whatever its size. */
        size_t cap = (size_t)sndbuf / 2, q = queued > 0 ? (size_t)queued : 0;
        m->room = q < cap ? cap - q : 0;
        m->empty = q == 0;
    }
    set_cork(m, 1);
}

void mqs_end(struct mqs *m)
{
    if (m->batch && m->st == ST_UP)
        set_cork(m, 0); /* sends what the batch left in the socket */
    m->batch = false;
}

int mqs_publish(struct mqs *m, const char *topic, size_t topic_len, const void *payload, size_t len,
                bool retained)
{
    char t[MQTT_TOPIC_MAX + 1]; /* paho wants a C string; ours is not terminated */
    if (topic_len > MQTT_TOPIC_MAX) {
        m->s.refused++;
        return -1;
    }
    memcpy(t, topic, topic_len);
    t[topic_len] = '\0';
    int rc = m->st == ST_UP ? MQTTClient_publish(m->h, t, (int)len, payload, 0, retained ? 1 : 0, NULL)
                            : MQTTCLIENT_DISCONNECTED;
    if (rc != MQTTCLIENT_SUCCESS) {
        /* paho closed the session on a socket error: this one is lost, the
         * caller keeps the rest until the next connection. */
        m->s.failed++;
        if (m->st == ST_UP && !MQTTClient_isConnected(m->h))
            lost(m);
        return -1;
    }
    m->s.published++;
    m->empty = false;
    if (m->room != SIZE_MAX) {
        size_t need = topic_len + len + FRAME_SLACK;
        m->room = need < m->room ? m->room - need : 0;
    }
    return 0;
}

void mqs_stats(const struct mqs *m, struct mqtt_stats *out)
{
    *out = m->s;
    out->connected = m->st == ST_UP;
    out->broker = m->st == ST_UP ? m->cur : -1;
}
