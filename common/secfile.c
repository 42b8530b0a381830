/* secfile.c - permission check and whole-file read for files holding a
 * secret (see sl/secfile.h for the rule and why the own group is allowed).
 *
 * A warning, not a refusal: the operator may have reasons (a single-user
 * container where "others" do not exist), and refusing would turn a
 * hygiene problem into an outage. libpq, by contrast, ignores a too-open
 * ~/.pgpass; we say so loudly and go on.
 *
 * Deliberately not here: where secrets come from (cfg.c, keys.c, the
 * edge's fleet secret), and wiping them after use (the caller's). */
#define _GNU_SOURCE
#include "sl/secfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sl/log.h"

bool secfile_too_open(mode_t mode, gid_t file_gid, gid_t my_gid)
{
    if (mode & S_IRWXO)
        return true;
    return (mode & S_IRWXG) && file_gid != my_gid;
}

int secfile_check(const char *path, const char *what)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    if (!secfile_too_open(st.st_mode, st.st_gid, getegid()))
        return 0;
    char q[600];
    log_warn("event=secret_file_open what=%s path=%s mode=%04o gid=%u "
             "hint=\"readable by other users: chmod 600 (or 640 with the service's own group)\"",
             what, log_q(q, sizeof q, path, strlen(path)), (unsigned)(st.st_mode & 07777),
             (unsigned)st.st_gid);
    return 1;
}

char *secfile_read(const char *path, const char *what, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    secfile_check(path, what);
    char *buf = malloc(max + 2);
    if (!buf) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, max + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            explicit_bzero(buf, max + 2);
            free(buf);
            errno = e;
            return NULL;
        }
        if (r == 0 || (n += (size_t)r) > max)
            break;
    }
    close(fd);
    if (n > max) {
        explicit_bzero(buf, max + 2);
        free(buf);
        errno = EFBIG;
        return NULL;
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    if (n == 0) {
        free(buf);
        errno = ENODATA;
        return NULL;
    }
    if (len)
        *len = n;
    return buf;
}
