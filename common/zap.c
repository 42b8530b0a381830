/* zap.c - a ZAP handler on libzmq, and the edge-key binding check
 * (sl/zap.h; the design is in docs/security.md "CURVE and ZAP").
 *
 * Why not czmq's zauth: it serves ZAP on czmq's own context (zsys), while
 * every Sluice service makes its sockets on a context of its own
 * (zmq_ctx_new); moving them would hand czmq's zsys the process's context
 * life cycle for one feature. And what we need beyond "is this key
 * allowed" is the key's edge id as the ZAP user id, which is a few lines
 * here. The handler is one thread with a REP socket bound to
 * inproc://zeromq.zap.01 on the service's context, and a PAIR to be told to
 * stop.
 *
 * The allowed keys live only in this thread: a table of (public key, edge
 * binding) read from the directory at start and then again when a
 * handshake arrives at least a second after the last read (handshakes are
 * rare: edges hold their connections). A failed re-read keeps the old
 * table. Refusals are logged once per key a minute; everything is counted.
 *
 * Deliberately not here: what a service does with a refused batch (it drops
 * it), per-socket policy (every CURVE server socket of the context gets the
 * same keys), IP allow lists. */
#define _GNU_SOURCE
#include "sl/zap.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sl/keys.h"
#include "sl/log.h"
#include "sl/stat.h"

#define ZAP_ENDPOINT  "inproc://zeromq.zap.01"
#define RELOAD_MS     1000u
#define REFUSED_SLOTS 32 /* keys whose refusal was logged recently */
#define REFUSED_MS    60000u
#define IMPOSTOR_LOG  16 /* bindings whose impostor messages were logged */

struct key {
    uint8_t pub[32];
    char bound[KEYS_BOUND_MAX];
};

struct refused {
    uint8_t pub[32];
    uint64_t at_ms;
};

struct zap {
    void *ctx;
    void *rep, *ctl, *ctl_peer; /* ctl: ours (destroy), ctl_peer: the thread's */
    pthread_t th;
    bool started;
    char *dir;
    struct key *keys;
    size_t nkeys;
    uint64_t loaded_ms, digest;
    bool dir_failing;
    struct refused refused[REFUSED_SLOTS];
    char impostors[IMPOSTOR_LOG][KEYS_BOUND_MAX]; /* zap_sender_ok's thread only */
    unsigned nimpostors;
    struct zap_counts cnt;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the binding rule --------------------------------------------------- */

bool zap_binding_ok(const char *bound, const uint8_t *edge, size_t edge_n, const uint8_t *reply,
                    size_t reply_n)
{
    size_t bl = bound ? strlen(bound) : 0;
    if (bl == 0 || edge_n == 0)
        return false;
    if (bound[bl - 1] == '*') {
        if (edge_n < bl - 1 || memcmp(edge, bound, bl - 1) != 0)
            return false;
    } else if (edge_n != bl || memcmp(edge, bound, bl) != 0) {
        return false;
    }
    if (reply_n == 0)
        return true;
    return reply_n > edge_n + 1 && memcmp(reply, edge, edge_n) == 0 && reply[edge_n] == '/';
}

bool zap_sender_ok(struct zap *z, zmq_msg_t *m, const uint8_t *edge, size_t edge_n, const uint8_t *reply,
                   size_t reply_n)
{
    if (!z)
        return true;
    const char *bound = zmq_msg_gets(m, "User-Id");
    if (zap_binding_ok(bound, edge, edge_n, reply, reply_n))
        return true;
    stat_inc(&z->cnt.impostor);
    const char *b = bound ? bound : "";
    for (unsigned i = 0; i < z->nimpostors && i < IMPOSTOR_LOG; i++)
        if (strcmp(z->impostors[i], b) == 0)
            return false;
    snprintf(z->impostors[z->nimpostors++ % IMPOSTOR_LOG], KEYS_BOUND_MAX, "%s", b);
    char qb[300], qe[600];
    const char *peer = zmq_msg_gets(m, "Peer-Address");
    log_warn("event=curve_impostor key_edge_id=%s claimed_edge=%s peer=%s "
             "hint=\"a batch names an edge id or reply address its sender's key is not bound to: dropped "
             "(logged once per key binding, counted in *_curve_impostor_batches_total)\"",
             log_q(qb, sizeof qb, b, strlen(b)), log_q(qe, sizeof qe, (const char *)edge, edge_n),
             peer ? peer : "?");
    return false;
}

/* ---- the key table -------------------------------------------------------- */

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* Read the directory into a new table. -1 if it cannot be opened (errno).
 * The files skipped are named in the log when the set of keys changed, or
 * always when `first`: once per change, not once a second. */
static int read_dir(struct zap *z, bool first)
{
    DIR *d = opendir(z->dir);
    if (!d)
        return -1;
    struct key *keys = NULL;
    size_t n = 0, cap = 0, skipped = 0;
    char skip_name[8][256];
    const char *skip_why[8];
    uint64_t digest = 1469598103934665603ull;
    struct dirent *de;
    char path[4096], q[600];
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (name[0] == '.') /* also Kubernetes' ..data and ..<timestamp> */
            continue;
        snprintf(path, sizeof path, "%s/%s", z->dir, name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        const char *why = NULL;
        zcert_t *c = NULL;
        const char *bound = NULL;
        if (has_suffix(name, "_secret")) {
            why = "secret_key_file"; /* the allowed directory needs public certificates only */
        } else {
            /* zcert_load reads NAME_secret instead when it exists. */
            char sec[4200];
            snprintf(sec, sizeof sec, "%s_secret", path);
            bool ok = keys_file_is_cert(path) && (access(sec, F_OK) != 0 || keys_file_is_cert(sec));
            c = ok ? zcert_load(path) : NULL;
            bound = c ? zcert_meta(c, KEYS_META_EDGE_ID) : NULL;
            if (!c)
                why = "not_a_certificate";
            else if (!bound || !*bound || strlen(bound) >= KEYS_BOUND_MAX)
                why = "no_edge_id";
        }
        if (!why && n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct key *k = realloc(keys, nc * sizeof *k);
            if (k) {
                keys = k;
                cap = nc;
            } else {
                why = "out_of_memory";
            }
        }
        if (why) {
            if (skipped < 8) {
                snprintf(skip_name[skipped], sizeof skip_name[skipped], "%.255s", name);
                skip_why[skipped] = why;
            }
            skipped++;
            zcert_destroy(&c);
            continue;
        }
        memcpy(keys[n].pub, zcert_public_key(c), 32);
        snprintf(keys[n].bound, sizeof keys[n].bound, "%s", bound);
        digest = fnv(fnv(digest, keys[n].pub, 32), keys[n].bound, strlen(keys[n].bound) + 1);
        n++;
        zcert_destroy(&c);
    }
    closedir(d);
    free(z->keys);
    z->keys = keys;
    z->nkeys = n;
    stat_set(&z->cnt.keys, (int64_t)n);
    if (digest != z->digest || first) {
        for (size_t i = 0; i < skipped && i < 8; i++)
            log_warn("event=curve_key_skipped dir=%s file=%s reason=%s",
                     log_q(q, sizeof q, z->dir, strlen(z->dir)),
                     log_q(path, sizeof path, skip_name[i], strlen(skip_name[i])), skip_why[i]);
        if (n == 0)
            log_warn("event=curve_keys_loaded dir=%s keys=0 skipped=%zu hint=\"every edge is refused\"",
                     log_q(q, sizeof q, z->dir, strlen(z->dir)), skipped);
        else
            log_info("event=curve_keys_loaded dir=%s keys=%zu skipped=%zu",
                     log_q(q, sizeof q, z->dir, strlen(z->dir)), n, skipped);
    }
    z->digest = digest;
    return 0;
}

/* Re-read the directory if the last read is a second old. A failed read
 * keeps the table and is logged when it starts failing. */
static void maybe_reload(struct zap *z)
{
    uint64_t now = mono_ms();
    if (now - z->loaded_ms < RELOAD_MS)
        return;
    z->loaded_ms = now;
    if (read_dir(z, false) != 0) {
        if (!z->dir_failing) {
            char q[600];
            log_warn("event=curve_keys_unreadable dir=%s err=\"%s\" kept=%zu",
                     log_q(q, sizeof q, z->dir, strlen(z->dir)), strerror(errno), z->nkeys);
            z->dir_failing = true;
        }
        return;
    }
    z->dir_failing = false;
}

static const struct key *lookup(const struct zap *z, const uint8_t *pub)
{
    for (size_t i = 0; i < z->nkeys; i++)
        if (memcmp(z->keys[i].pub, pub, 32) == 0)
            return &z->keys[i];
    return NULL;
}

/* Log a refused key unless it was logged in the last minute. */
static void log_refused(struct zap *z, const uint8_t *pub, const char *address)
{
    uint64_t now = mono_ms();
    struct refused *slot = &z->refused[0];
    for (int i = 0; i < REFUSED_SLOTS; i++) {
        struct refused *r = &z->refused[i];
        if (r->at_ms && memcmp(r->pub, pub, 32) == 0) {
            if (now - r->at_ms < REFUSED_MS)
                return;
            slot = r;
            break;
        }
        if (r->at_ms < slot->at_ms)
            slot = r;
    }
    memcpy(slot->pub, pub, 32);
    slot->at_ms = now ? now : 1;
    char txt[41];
    zmq_z85_encode(txt, pub, 32);
    log_warn("event=curve_refused key=%s peer=%s hint=\"client key not in the allowed directory\"", txt,
             address);
}

/* ---- the handler thread --------------------------------------------------- */

/* One request: version, request id, domain, address, identity, mechanism,
 * credentials. The reply echoes version and id. */
static void serve(struct zap *z)
{
    zmq_msg_t f[8];
    int nf = 0;
    bool more = true;
    while (more) {
        zmq_msg_t x;
        zmq_msg_init(&x);
        if (zmq_msg_recv(&x, z->rep, 0) < 0) {
            zmq_msg_close(&x);
            break;
        }
        more = zmq_msg_more(&x);
        if (nf < 8) {
            zmq_msg_init(&f[nf]);
            zmq_msg_move(&f[nf++], &x);
        }
        zmq_msg_close(&x);
    }
    const char *code = "500", *text = "malformed request", *user = "";
    char address[64] = "?";
    if (nf >= 7 && zmq_msg_size(&f[0]) == 3 && memcmp(zmq_msg_data(&f[0]), "1.0", 3) == 0) {
        snprintf(address, sizeof address, "%.*s", (int)zmq_msg_size(&f[3]),
                 (const char *)zmq_msg_data(&f[3]));
        if (zmq_msg_size(&f[5]) != 5 || memcmp(zmq_msg_data(&f[5]), "CURVE", 5) != 0 ||
            zmq_msg_size(&f[6]) != 32) {
            code = "400";
            text = "CURVE only";
        } else {
            maybe_reload(z);
            const uint8_t *pub = zmq_msg_data(&f[6]);
            const struct key *k = lookup(z, pub);
            if (k) {
                code = "200";
                text = "OK";
                user = k->bound;
                stat_inc(&z->cnt.allowed);
            } else {
                code = "400";
                text = "unknown key";
                stat_inc(&z->cnt.refused);
                log_refused(z, pub, address);
            }
        }
    }
    /* Version and request id echoed (empty if the request had none). */
    zmq_send(z->rep, "1.0", 3, ZMQ_SNDMORE);
    if (nf >= 2)
        zmq_send(z->rep, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
    else
        zmq_send(z->rep, "", 0, ZMQ_SNDMORE);
    zmq_send(z->rep, code, 3, ZMQ_SNDMORE);
    zmq_send(z->rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(z->rep, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(z->rep, "", 0, 0); /* no metadata */
    for (int i = 0; i < nf; i++)
        zmq_msg_close(&f[i]);
}

static void *zap_main(void *arg)
{
    struct zap *z = arg;
    for (;;) {
        zmq_pollitem_t it[2] = {{z->rep, 0, ZMQ_POLLIN, 0}, {z->ctl_peer, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(it, 2, -1) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            break;
        }
        if (it[1].revents & ZMQ_POLLIN)
            break;
        if (it[0].revents & ZMQ_POLLIN)
            serve(z);
    }
    return NULL;
}

/* ---- life cycle ------------------------------------------------------------- */

struct zap *zap_new(void *zctx, const char *allow_dir)
{
    char q[600];
    struct zap *z = calloc(1, sizeof *z);
    if (!z)
        return NULL;
    z->ctx = zctx;
    z->dir = strdup(allow_dir ? allow_dir : "");
    if (!z->dir || read_dir(z, true) != 0) {
        const char *d = allow_dir ? allow_dir : "";
        log_error("event=curve_keys_unreadable dir=%s err=\"%s\"", log_q(q, sizeof q, d, strlen(d)),
                  strerror(errno));
        zap_destroy(&z);
        return NULL;
    }
    z->loaded_ms = mono_ms();
    /* A name never used before in this process: a closed socket's inproc
     * endpoint stays taken until libzmq's reaper gets to it, and a new
     * handler may sit at the old one's address. */
    static _Atomic unsigned serial;
    char ctl_ep[64];
    snprintf(ctl_ep, sizeof ctl_ep, "inproc://sluice-zap-ctl-%u", atomic_fetch_add(&serial, 1));
    int zero = 0;
    z->rep = zmq_socket(zctx, ZMQ_REP);
    z->ctl = zmq_socket(zctx, ZMQ_PAIR);
    z->ctl_peer = zmq_socket(zctx, ZMQ_PAIR);
    if (!z->rep || !z->ctl || !z->ctl_peer || zmq_setsockopt(z->rep, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(z->ctl, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(z->ctl_peer, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_bind(z->rep, ZAP_ENDPOINT) != 0 || zmq_bind(z->ctl, ctl_ep) != 0 ||
        zmq_connect(z->ctl_peer, ctl_ep) != 0) {
        log_error("event=zap_failed err=\"%s\"", zmq_strerror(zmq_errno()));
        zap_destroy(&z);
        return NULL;
    }
    /* The sockets were made here; pthread_create is the full barrier ZeroMQ
     * asks for before another thread uses them. */
    if (pthread_create(&z->th, NULL, zap_main, z) != 0) {
        log_error("event=zap_failed err=thread");
        zap_destroy(&z);
        return NULL;
    }
    z->started = true;
    return z;
}

void zap_destroy(struct zap **pz)
{
    struct zap *z = *pz;
    if (!z)
        return;
    if (z->started) {
        zmq_send(z->ctl, "", 0, 0);
        pthread_join(z->th, NULL);
    }
    if (z->rep) {
        /* Unbound now, not when the reaper gets to the socket: a new
         * handler may bind the endpoint again at once. */
        zmq_unbind(z->rep, ZAP_ENDPOINT); /* fails harmlessly if the bind did */
        zmq_close(z->rep);
    }
    if (z->ctl)
        zmq_close(z->ctl);
    if (z->ctl_peer)
        zmq_close(z->ctl_peer);
    free(z->keys);
    free(z->dir);
    free(z);
    *pz = NULL;
}

void *zap_ctx(const struct zap *z)
{
    return z->ctx;
}

const struct zap_counts *zap_counts(const struct zap *z)
{
    return &z->cnt;
}
