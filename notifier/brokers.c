/* SPDX-License-Identifier: Apache-2.0 */
/* brokers.c - the broker list, its configuration rules, the cause of a
 * failed connect logged once per cause, and the return probe to the first
 * broker (see brokers.h). Shared by mqtt.c (MQTTAsync) and mqttsync.c
 * (MQTTClient) so that both behave and log alike.
 *
 * Deliberately not here: paho calls, connection state, publishes (the
 * clients); when to connect or move back (the clients decide, this only
 * says that the first broker answers). */
#define _GNU_SOURCE
#include "brokers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sl/log.h"
#include "sl/loop.h"

#define RETURN_MIN_MS    5000u
#define RETURN_MAX_MS    60000u
#define PROBE_TIMEOUT_MS 2000u
#define REMIND_MS        (10u * 60u * 1000u)

/* ---- configuration ---- */

static int parse_uri(const char *s, size_t n, struct brokers_one *b)
{
    static const struct {
        const char *p;
        bool tls;
    } schemes[] = {{"tcp://", false}, {"mqtt://", false}, {"ssl://", true}, {"mqtts://", true}};
    char in[256];
    if (n >= sizeof in)
        return -1;
    memcpy(in, s, n);
    in[n] = '\0';
    const char *rest = NULL;
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        if (strncmp(in, schemes[i].p, strlen(schemes[i].p)) == 0) {
            rest = in + strlen(schemes[i].p);
            b->tls = schemes[i].tls;
        }
    if (!rest || !*rest)
        return -1;
    const char *hs = rest, *he, *port = NULL;
    if (*rest == '[') { /* [v6]:port */
        hs = rest + 1;
        he = strchr(hs, ']');
        if (!he)
            return -1;
        if (he[1] == ':')
            port = he + 2;
        else if (he[1])
            return -1;
    } else {
        he = strchr(rest, ':');
        if (he)
            port = he + 1;
        else
            he = rest + strlen(rest);
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= sizeof b->host || memchr(hs, '/', hl))
        return -1;
    memcpy(b->host, hs, hl);
    b->host[hl] = '\0';
    const char *pp = port ? port : b->tls ? "8883" : "1883";
    char *end;
    long pv = strtol(pp, &end, 10);
    if (*pp == '\0' || *end != '\0' || pv < 1 || pv > 65535)
        return -1;
    snprintf(b->port, sizeof b->port, "%ld", pv);
    /* as paho takes it (tcp:// or ssl://, the port always named), for
     * connects and for the logs */
    bool v6 = strchr(b->host, ':') != NULL;
    char uri[sizeof b->uri];
    snprintf(uri, sizeof uri, "%s://%s%s%s:%s", b->tls ? "ssl" : "tcp", v6 ? "[" : "", b->host, v6 ? "]" : "",
             b->port);
    memcpy(b->uri, uri, sizeof uri);
    return 0;
}

static void refuse(const char *what, const char *detail)
{
    char q[512];
    log_error("event=mqtt_config_refused %s err=%s", what, log_q(q, sizeof q, detail, strlen(detail)));
}

int brokers_init(struct brokers *bs, const char *uris, const char *username, const char *password,
                 const char *tls_ca, const char *client_id, struct loop *l, void (*back)(void *ud), void *ud)
{
    memset(bs, 0, sizeof *bs);
    pthread_mutex_init(&bs->mu, NULL);
    bs->username = strdup(username ? username : "");
    bs->password = strdup(password ? password : "");
    bs->tls_ca = strdup(tls_ca ? tls_ca : "");
    bs->client_id = strdup(client_id ? client_id : "");
    if (!bs->username || !bs->password || !bs->tls_ca || !bs->client_id)
        return -1;
    bs->probe_fd = -1;
    bs->return_ms = RETURN_MIN_MS;
    bs->loop = l;
    bs->back = back;
    bs->ud = ud;
    char qb[300];
    for (const char *p = uris ? uris : ""; *p;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        while (n && (*p == ' '))
            p++, n--;
        if (n == 0 || bs->n == BROKERS_MAX || parse_uri(p, n, &bs->b[bs->n]) != 0) {
            snprintf(qb, sizeof qb, "not a broker URI list of at most %d tcp:// or ssl:// URIs", BROKERS_MAX);
            refuse("what=broker", qb);
            return -1;
        }
        bs->uris[bs->n] = bs->b[bs->n].uri;
        bs->n++;
        p += n;
        if (*p == ',')
            p++;
    }
    if (bs->n == 0) {
        refuse("what=broker", "no broker URI");
        return -1;
    }
    bool has_ca = tls_ca && tls_ca[0];
    for (int i = 0; i < bs->n; i++) {
        bs->tls |= bs->b[i].tls;
        if (has_ca && !bs->b[i].tls) {
            /* Asked for TLS but the URI is plain TCP: connecting would send
             * the password and every message in clear. */
            char w[300];
            snprintf(w, sizeof w, "broker=%s", bs->b[i].uri);
            refuse(w, "--tls-ca is set but the broker URI is not ssl://");
            return -1;
        }
    }
    if (has_ca && access(tls_ca, R_OK) != 0) {
        int e = errno;
        char w[600];
        snprintf(w, sizeof w, "tls_ca=%s", tls_ca);
        refuse(w, strerror(e));
        return -1;
    }
    return 0;
}

/* ---- why a connect failed ---- */

void brokers_attempt(struct brokers *bs)
{
    pthread_mutex_lock(&bs->mu);
    bs->tls_err[0] = '\0';
    pthread_mutex_unlock(&bs->mu);
}

/* One OpenSSL error line per call, e.g. "C0E6..:error:0A000086:SSL
 * routines:tls_post_process_server_certificate:certificate verify
 * failed:../ssl/statem/statem_clnt.c:1889:". Keeps the reason field (the
 * sixth) of the first line of the attempt. */
int brokers_ssl_error(const char *str, size_t len, void *u)
{
    struct brokers *bs = u;
    const char *p = str, *end = str + len;
    for (int field = 0; field < 5 && p < end; field++) {
        const char *q = memchr(p, ':', (size_t)(end - p));
        if (!q) {
            p = str; /* not that format: keep the whole line */
            break;
        }
        p = q + 1;
    }
    const char *q = memchr(p, ':', (size_t)(end - p));
    size_t n = (size_t)((q ? q : end) - p);
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == ' '))
        n--;
    pthread_mutex_lock(&bs->mu);
    if (!bs->tls_err[0] && n > 0)
        snprintf(bs->tls_err, sizeof bs->tls_err, "%.*s", (int)n, p);
    pthread_mutex_unlock(&bs->mu);
    return 1;
}

bool brokers_cause(struct brokers *bs, int code, const char *msg, char *out, size_t cap)
{
    static const char *const connack[] = {NULL,
                                          "unacceptable protocol version",
                                          "client id rejected",
                                          "server unavailable",
                                          "bad user name or password",
                                          "not authorized (user name or password)"};
    if (!msg)
        msg = "connect failed";
    if (code >= 1 && code <= 5) {
        snprintf(out, cap, "broker refused the connection: %s (CONNACK %d)", connack[code], code);
        return code >= 4;
    }
    pthread_mutex_lock(&bs->mu);
    char tls_err[sizeof bs->tls_err];
    memcpy(tls_err, bs->tls_err, sizeof tls_err);
    bs->tls_err[0] = '\0';
    pthread_mutex_unlock(&bs->mu);
    if (tls_err[0]) {
        snprintf(out, cap, "TLS: %s", tls_err);
        return true;
    }
    if (bs->tls) /* paho's host name check fails with no OpenSSL error: say so */
        snprintf(out, cap,
                 "%s (no TLS error text: broker down, not TLS, or its certificate does not name the host)",
                 msg);
    else
        snprintf(out, cap, "%s", msg);
    return false;
}

void brokers_log_failure(struct brokers *bs, int cur, bool refused, int code, const char *why)
{
    uint64_t now = loop_clock_ms();
    uint32_t fails = ++bs->fails;
    bool again =
        now - bs->why_ms < REMIND_MS && (strcmp(why, bs->why) == 0 || strcmp(why, bs->why_prev) == 0);
    if (again) {
        log_debug("event=mqtt_connect_failed client=%s code=%d failures=%u", bs->client_id, code, fails);
        return;
    }
    if (strcmp(why, bs->why) != 0)
        memcpy(bs->why_prev, bs->why, sizeof bs->why);
    snprintf(bs->why, sizeof bs->why, "%s", why);
    bs->why_ms = now;
    char q[sizeof bs->why + 16];
    log_at(refused ? SL_LOG_ERROR : SL_LOG_WARN,
           "event=mqtt_connect_failed client=%s broker=%s code=%d failures=%u err=%s", bs->client_id,
           bs->b[cur].uri, code, fails, log_q(q, sizeof q, why, strlen(why)));
}

void brokers_up(struct brokers *bs, int cur, const char *extra)
{
    log_info("event=mqtt_connected client=%s broker=%s failures=%u%s", bs->client_id, bs->b[cur].uri,
             bs->fails, extra);
    bs->fails = 0;
    bs->why[0] = bs->why_prev[0] = '\0';
    if (cur == 0)
        bs->return_ms = RETURN_MIN_MS;
    bs->next_probe_ms = loop_clock_ms() + bs->return_ms;
}

/* ---- returning to the first broker ---- */

static void probe_close(struct brokers *bs)
{
    if (bs->probe_fd >= 0) {
        loop_del(bs->loop, bs->probe_fd);
        close(bs->probe_fd);
        bs->probe_fd = -1;
    }
}

static void probe_failed(struct brokers *bs)
{
    probe_close(bs);
    bs->next_probe_ms = loop_clock_ms() + bs->return_ms;
}

static void on_probe(struct loop *l, int fd, uint32_t ev, void *ud)
{
    (void)l;
    struct brokers *bs = ud;
    int e = 0;
    socklen_t el = sizeof e;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
    if (e || !(ev & EPOLLOUT)) {
        probe_failed(bs);
        return;
    }
    probe_close(bs);
    bs->back(bs->ud); /* the owner decides: it may have moved on meanwhile */
}

static void probe_connect(struct brokers *bs, const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        return;
    if (loop_add(bs->loop, fd, EPOLLOUT, on_probe, bs) != 0) {
        close(fd);
        return;
    }
    bs->probe_fd = fd;
    bs->probe_deadline_ms = loop_clock_ms() + PROBE_TIMEOUT_MS;
}

static void probe_start(struct brokers *bs)
{
    struct brokers_one *b = &bs->b[0];
    bs->next_probe_ms = loop_clock_ms() + bs->return_ms;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV},
                    *ai = NULL;
    if (getaddrinfo(b->host, b->port, &hints, &ai) == 0 && ai) { /* numeric: no lookup */
        probe_connect(bs, ai);
        freeaddrinfo(ai);
        return;
    }
    if (bs->gai_active)
        return;
    memset(&bs->gai, 0, sizeof bs->gai);
    bs->hints = (struct addrinfo){.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    bs->gai.ar_name = b->host;
    bs->gai.ar_service = b->port;
    bs->gai.ar_request = &bs->hints;
    struct gaicb *list[1] = {&bs->gai};
    if (getaddrinfo_a(GAI_NOWAIT, list, 1, NULL) == 0)
        bs->gai_active = true;
}

/* A lookup started by probe_start finished: connect to what it found. */
static void probe_resolved(struct brokers *bs, int cur)
{
    if (gai_error(&bs->gai) == EAI_INPROGRESS)
        return;
    bs->gai_active = false;
    if (gai_error(&bs->gai) == 0 && bs->gai.ar_result && cur > 0 && bs->probe_fd < 0)
        probe_connect(bs, bs->gai.ar_result);
    if (bs->gai.ar_result)
        freeaddrinfo(bs->gai.ar_result);
    bs->gai.ar_result = NULL;
}

void brokers_tick(struct brokers *bs, int cur)
{
    uint64_t now = loop_clock_ms();
    if (bs->gai_active)
        probe_resolved(bs, cur);
    if (bs->probe_fd >= 0 && now >= bs->probe_deadline_ms)
        probe_failed(bs);
    else if (cur > 0 && bs->probe_fd < 0 && now >= bs->next_probe_ms)
        probe_start(bs);
}

void brokers_leave(struct brokers *bs, int cur)
{
    /* If the first refuses MQTT after all, the walk of the list ends up
     * here again and the next probe waits twice as long. */
    log_info("event=mqtt_broker_return client=%s from=%s to=%s", bs->client_id, bs->b[cur].uri, bs->b[0].uri);
    if (bs->return_ms < RETURN_MAX_MS)
        bs->return_ms *= 2;
}

bool brokers_fini(struct brokers *bs)
{
    free(bs->username);
    free(bs->password);
    free(bs->tls_ca);
    free(bs->client_id);
    bs->username = bs->password = bs->tls_ca = bs->client_id = NULL;
    probe_close(bs);
    bool leak = false;
    if (bs->gai_active) { /* getaddrinfo_a's thread writes into bs until it is done */
        if (gai_cancel(&bs->gai) == EAI_NOTCANCELED) {
            const struct gaicb *list[1] = {&bs->gai};
            struct timespec ts = {0, 200 * 1000 * 1000};
            gai_suspend(list, 1, &ts);
        }
        if (gai_error(&bs->gai) == EAI_INPROGRESS)
            leak = true; /* a lookup hanging at exit: leave its memory to it */
        else if (bs->gai.ar_result)
            freeaddrinfo(bs->gai.ar_result);
        bs->gai_active = leak;
    }
    if (!leak)
        pthread_mutex_destroy(&bs->mu);
    return leak;
}
