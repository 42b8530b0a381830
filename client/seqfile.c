/* SPDX-License-Identifier: Apache-2.0 */
/* seqfile.c - the default seq storage of the device library: a text file
 * "next = N" that is replaced atomically and durably.
 *
 * The client saves here rarely (once per reserved block of seqs), so each
 * save may afford two fsyncs. It does not cache, lock or keep an fd open:
 * one device, one owner. */
#define _GNU_SOURCE
#include "seqfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int seqfile_load(const char *path, uint64_t *next)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) {
            *next = 1;
            return 0;
        }
        return -1;
    }
    char buf[128];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    uint64_t v = 0;
    if (sscanf(buf, " next = %" SCNu64, &v) != 1 || v == 0)
        return -1;
    *next = v;
    return 0;
}

/* fsync the directory holding path, so the rename itself is durable. */
static int sync_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        strcpy(dir, ".");
    } else {
        size_t n = (size_t)(slash - path);
        if (n == 0)
            n = 1;
        if (n >= sizeof dir)
            return -1;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int seqfile_save(const char *path, uint64_t next)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    char line[64];
    int n = snprintf(line, sizeof line, "next = %" PRIu64 "\n", next);
    if (write(fd, line, (size_t)n) != n || fsync(fd) != 0) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return sync_dir(path);
}
