/* SPDX-License-Identifier: Apache-2.0 */
/* journal.c - the device library's optional journal of unacked messages.
 *
 * Append-only so each message costs one write (plus an fdatasync when the
 * caller asks for it); acks are appended too and never synced: losing an ack
 * record only means a resend after reboot, which the edge acks again and
 * stores once. It does not decide when to compact: the client does. */
#define _GNU_SOURCE
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void replay(const uint8_t *p, size_t n, journal_replay_cb *cb, void *ud)
{
    size_t i = 0;
    while (i < n) {
        if (p[i] == 'D' && n - i >= 5) {
            uint32_t len = (uint32_t)p[i + 1] << 24 | (uint32_t)p[i + 2] << 16 | (uint32_t)p[i + 3] << 8 |
                           (uint32_t)p[i + 4];
            if (n - i - 5 < len)
                return; /* torn tail */
            cb(ud, p + i + 5, len, 0);
            i += 5 + (size_t)len;
        } else if (p[i] == 'A' && n - i >= 9) {
            uint64_t seq = 0;
            for (int k = 1; k <= 8; k++)
                seq = seq << 8 | p[i + (size_t)k];
            cb(ud, NULL, 0, seq);
            i += 9;
        } else {
            return; /* torn tail or garbage: stop here */
        }
    }
}

int journal_open(struct journal *j, const char *path, bool sync, journal_replay_cb *cb, void *ud)
{
    j->fd = -1;
    j->sync = sync;
    j->size = 0;
    j->path = strdup(path);
    if (j->path == NULL)
        return -1;
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    if (st.st_size > 0) {
        size_t n = (size_t)st.st_size;
        uint8_t *buf = malloc(n);
        if (buf == NULL) {
            close(fd);
            return -1;
        }
        size_t got = 0;
        while (got < n) {
            ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        replay(buf, got, cb, ud);
        free(buf);
    }
    j->fd = fd;
    j->size = (uint64_t)st.st_size;
    return 0;
}

void journal_close(struct journal *j)
{
    if (j->fd >= 0)
        close(j->fd);
    j->fd = -1;
    free(j->path);
    j->path = NULL;
}

int journal_data(struct journal *j, const uint8_t *frame, size_t len)
{
    if (j->fd < 0)
        return 0;
    uint8_t hdr[5] = {'D', (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
    /* One write for header and frame would need a copy; two writes can tear,
     * which replay tolerates at the tail. */
    if (write_all(j->fd, hdr, sizeof hdr) != 0 || write_all(j->fd, frame, len) != 0)
        return -1;
    if (j->sync && fdatasync(j->fd) != 0)
        return -1;
    j->size += 5 + len;
    return 0;
}

int journal_ack(struct journal *j, uint64_t seq)
{
    if (j->fd < 0)
        return 0;
    uint8_t rec[9] = {'A'};
    for (int k = 0; k < 8; k++)
        rec[1 + k] = (uint8_t)(seq >> (56 - 8 * k));
    if (write_all(j->fd, rec, sizeof rec) != 0)
        return -1;
    j->size += sizeof rec;
    return 0;
}

int journal_reset(struct journal *j)
{
    if (j->fd < 0 || j->size == 0)
        return 0;
    if (ftruncate(j->fd, 0) != 0)
        return -1;
    j->size = 0;
    return 0;
}

int journal_rewrite(struct journal *j, const uint8_t *const *frames, const uint32_t *lens, uint32_t n)
{
    if (j->fd < 0)
        return 0;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", j->path) >= (int)sizeof tmp)
        return -1;
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    uint64_t size = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = lens[i];
        uint8_t hdr[5] = {'D', (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
        if (write_all(fd, hdr, sizeof hdr) != 0 || write_all(fd, frames[i], len) != 0)
            goto fail;
        size += 5 + len;
    }
    if (fsync(fd) != 0 || rename(tmp, j->path) != 0)
        goto fail;
    close(j->fd);
    j->fd = fd;
    j->size = size;
    return 0;
fail:
    close(fd);
    unlink(tmp);
    return -1;
}
