/* reload.c - the edge's reloadable files (see reload.h).
 *
 * Each file is remembered by a salted hash of its content, so an inotify
 * event for an unrelated file of the same directory (or a touch) does not
 * re-apply or log anything; only a file whose content changed is applied.
 * The salt is random per process: the hash of a secret file says nothing
 * about the secret to someone who reads this process's memory elsewhere.
 *
 * Watching directories, not files: an editor, `kubectl`'s projected
 * volumes and `mv new old` all replace the file (a new inode), which a
 * watch on the old file would never see. */
#define _GNU_SOURCE
#include "reload.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include "sl/err.h"
#include "sl/log.h"
#include "edge.h"
#include "tls.h"
#include "trust.h"
#include "worker.h"

#define SECRET_FILE_MAX (64u << 10)
#define DENY_FILE_MAX   (16u << 20)
#define MAX_WATCH       8

struct watched {
    const char *path; /* "" = none */
    size_t max;
    uint64_t hash; /* of the content last applied (0 = never) */
    bool loaded;
};

struct reload {
    struct edge *e;
    uint64_t salt;
    struct watched secret, deny;
    int ifd;
    int wd[MAX_WATCH];
    int nwd;
    bool revoke_pending; /* a kick of a revoked device could not be posted yet */
    uint64_t tls_hash;   /* tls_files_hash of the TLS files last applied */
};

static uint64_t content_hash(uint64_t salt, const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ salt;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h ? h : 1;
}

/* The file's bytes (malloc'd, *n) or NULL with errno. Warns once per load
 * when group or others may read it: it holds a secret or decides who may
 * connect. */
static uint8_t *read_file(const char *path, size_t max, size_t *n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 077))
        log_warn("event=file_mode path=%s mode=%04o hint=\"readable by group or others: chmod 600\"", path,
                 (unsigned)(st.st_mode & 07777));
    uint8_t *buf = malloc(max);
    size_t got = 0;
    ssize_t k = 0;
    while (buf && got < max && (k = read(fd, buf + got, max - got)) > 0)
        got += (size_t)k;
    int err = errno;
    close(fd);
    if (!buf || k < 0) {
        free(buf);
        errno = buf ? err : ENOMEM;
        return NULL;
    }
    if (got == max) {
        explicit_bzero(buf, got);
        free(buf);
        errno = EFBIG;
        return NULL;
    }
    *n = got;
    return buf;
}

/* Closes every connected device on the deny list (err auth, "device revoked"). */
static void revoke_one(void *ud, const char *dev, size_t n)
{
    struct reload *r = ud;
    if (!worker_kick_device(r->e, dev, n, SL_AUTH))
        r->revoke_pending = true;
}

static void revoke_connected(struct reload *r)
{
    r->revoke_pending = false;
    trust_each_denied(r->e->trust, revoke_one, r);
}

/* Apply one file if its content changed. Returns false on a start-up
 * failure (first load) only. */
static bool apply(struct reload *r, struct watched *w, bool first)
{
    if (!*w->path)
        return true;
    size_t n = 0;
    uint8_t *buf = read_file(w->path, w->max, &n);
    if (!buf) {
        int err = errno;
        if (first) {
            fprintf(stderr, "sluice-edge: cannot read %s: %s\n", w->path, strerror(err));
            return false;
        }
        log_warn("event=reload_failed path=%s err=\"%s\" kept=previous", w->path, strerror(err));
        return true;
    }
    uint64_t h = content_hash(r->salt, buf, n);
    if (w->loaded && h == w->hash) {
        explicit_bzero(buf, n);
        free(buf);
        return true;
    }
    const char *why = NULL;
    int rc, count = 0, line = 0;
    if (w == &r->secret)
        rc = trust_set_secrets(r->e->trust, buf, n, &count, &why);
    else
        rc = count = trust_set_denied(r->e->trust, (const char *)buf, n, &why, &line);
    explicit_bzero(buf, n);
    free(buf);
    if (rc < 0) {
        if (first) {
            if (line)
                fprintf(stderr, "sluice-edge: %s line %d: %s\n", w->path, line, why);
            else
                fprintf(stderr, "sluice-edge: refused %s: %s\n", w->path, why);
            return false;
        }
        log_warn("event=reload_refused path=%s line=%d err=\"%s\" kept=previous", w->path, line, why);
        return true;
    }
    w->hash = h;
    w->loaded = true;
    if (w == &r->secret)
        log_info("event=secrets_loaded path=%s secrets=%d%s", w->path, count,
                 count == 2 ? " note=\"previous secret still accepted: remove its line to end the rotation\""
                            : "");
    else
        log_info("event=deny_list_loaded path=%s devices=%d", w->path, count);
    if (w == &r->deny && !first)
        revoke_connected(r);
    return true;
}

static void watch_dir_of(struct reload *r, const char *path)
{
    if (!*path || r->ifd < 0 || r->nwd == MAX_WATCH)
        return;
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    const char *dir = dirname(copy);
    int wd = inotify_add_watch(r->ifd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB);
    if (wd < 0) {
        log_warn("event=watch_failed dir=%s err=\"%s\" hint=\"reload with SIGHUP\"", dir, strerror(errno));
        return;
    }
    for (int i = 0; i < r->nwd; i++)
        if (r->wd[i] == wd)
            return; /* the same directory twice */
    r->wd[r->nwd++] = wd;
}

struct reload *reload_new(struct edge *e, const struct reload_files *f)
{
    struct reload *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->e = e;
    if (getrandom(&r->salt, sizeof r->salt, 0) != sizeof r->salt)
        r->salt = (uint64_t)(uintptr_t)r;
    r->secret = (struct watched){.path = f->secret ? f->secret : "", .max = SECRET_FILE_MAX};
    r->deny = (struct watched){.path = f->deny ? f->deny : "", .max = DENY_FILE_MAX};
    r->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (!apply(r, &r->secret, true) || !apply(r, &r->deny, true)) {
        reload_destroy(&r);
        return NULL;
    }
    watch_dir_of(r, r->secret.path);
    watch_dir_of(r, r->deny.path);
    if (e->tls) {
        r->tls_hash = tls_files_hash(e->tls);
        const char *tf[4] = {f->tls_cert, f->tls_key, f->tls_client_ca, f->tls_ticket_keys};
        for (int i = 0; i < 4; i++)
            watch_dir_of(r, tf[i] ? tf[i] : "");
    }
    return r;
}

void reload_destroy(struct reload **pr)
{
    struct reload *r = *pr;
    if (!r)
        return;
    if (r->ifd >= 0)
        close(r->ifd);
    free(r);
    *pr = NULL;
}

int reload_fd(const struct reload *r)
{
    return r->nwd ? r->ifd : -1;
}

void reload_now(struct reload *r, const char *why)
{
    if (strcmp(why, "inotify") == 0) {
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        while (read(r->ifd, buf, sizeof buf) > 0) {
        }
    }
    log_debug("event=reload why=%s", why);
    apply(r, &r->secret, false);
    apply(r, &r->deny, false);
    if (r->e->tls) {
        /* A certificate and its key are often replaced one after the other:
         * a pair that does not match is refused and the old pair kept until
         * the next event brings the other half. */
        uint64_t h = tls_files_hash(r->e->tls);
        char err[300];
        if (h && h != r->tls_hash) {
            if (tls_reload(r->e->tls, err, sizeof err) == 0) {
                r->tls_hash = h;
                log_info("event=tls_loaded why=%s", why);
            } else {
                log_warn("event=reload_refused what=tls err=\"%s\" kept=previous", err);
            }
        }
    }
}

void reload_tick(struct reload *r)
{
    if (r->revoke_pending)
        revoke_connected(r);
}
