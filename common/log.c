/* SPDX-License-Identifier: Apache-2.0 */
/* log.c - one-line logfmt records on stderr.
 *
 * Each record is formatted into a stack buffer and written with a single
 * write(2) (O_APPEND-style atomicity for pipes up to PIPE_BUF, and no
 * interleaving at all between our own threads because no line is ever split
 * into several writes). Over-long lines are cut and end with "...\n".
 *
 * Deliberately not here: buffering, files, rotation, syslog. stderr is
 * collected by whoever runs the process (systemd, docker, kubectl). */
#define _GNU_SOURCE
#include "sl/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 2048

static char g_svc[32] = "sluice";
static _Atomic int g_min = SL_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *svc, enum log_level min)
{
    if (svc) {
        /* Copied, so the caller may pass a temporary. Not thread-safe:
         * call once at startup before threads log. */
        snprintf(g_svc, sizeof g_svc, "%s", svc);
    }
    atomic_store_explicit(&g_min, (int)min, memory_order_relaxed);
}

int log_level_parse(const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    if (strcmp(s, "warning") == 0)
        return SL_LOG_WARN;
    return -1;
}

int log_init_flag(const char *svc, const char *level)
{
    int lvl = log_level_parse(level);
    if (lvl < 0) {
        fprintf(stderr, "sluice-%s: bad --log-level %s (debug, info, warn, error)\n", svc,
                level ? level : "(none)");
        return -1;
    }
    log_init(svc, (enum log_level)lvl);
    return 0;
}

int log_enabled(enum log_level lvl)
{
    return (int)lvl >= atomic_load_explicit(&g_min, memory_order_relaxed);
}

/* Write all of buf, retrying on EINTR and on short writes (a short write on
 * stderr only happens to non-blocking pipes or full disks; best effort). */
static void write_all(const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, buf, n);
        if (w < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            return;
        }
        buf += w;
        n -= (size_t)w;
    }
}

void log_at(enum log_level lvl, const char *fmt, ...)
{
    if (!log_enabled(lvl))
        return;
    if ((int)lvl < SL_LOG_DEBUG || (int)lvl > SL_LOG_ERROR)
        lvl = SL_LOG_ERROR;

    char line[LINE_MAX_BYTES];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s svc=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000L, level_names[lvl], g_svc);
    if (n < 0)
        return;
    size_t len = (size_t)n;

    /* Leave room for the newline: vsnprintf gets cap - len - 1. */
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + len, sizeof line - len - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    if ((size_t)m >= sizeof line - len - 1) {
        /* Truncated: vsnprintf wrote cap-1 bytes and a NUL. Mark the cut so
         * a reader knows the record is incomplete. */
        len = sizeof line - 1;
        memcpy(line + len - 3, "...", 3);
    } else {
        len += (size_t)m;
    }
    /* A caller's trailing newline would produce an empty record. */
    while (len > 0 && line[len - 1] == '\n')
        len--;
    line[len++] = '\n';
    write_all(line, len);
}

const char *log_q(char *out, size_t cap, const char *s, size_t n)
{
    if (cap == 0)
        return out;
    if (!s) {
        s = "";
        n = 0;
    }
    int need = (n == 0);
    for (size_t i = 0; i < n && !need; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f)
            need = 1;
    }
    size_t o = 0;
    if (!need) {
        size_t k = n < cap - 1 ? n : cap - 1;
        memcpy(out, s, k);
        out[k] = '\0';
        return out;
    }
    /* Quoted form: reserve the closing quote and NUL at every step, so a
     * truncated value is still a well-formed quoted string. */
    if (cap < 3) {
        out[0] = '\0';
        return out;
    }
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[5];
        size_t el;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            el = 2;
        } else if (c == '\n') {
            memcpy(esc, "\\n", 2);
            el = 2;
        } else if (c == '\r') {
            memcpy(esc, "\\r", 2);
            el = 2;
        } else if (c == '\t') {
            memcpy(esc, "\\t", 2);
            el = 2;
        } else if (c < 0x20 || c == 0x7f) {
            static const char hex[] = "0123456789abcdef";
            esc[0] = '\\';
            esc[1] = 'x';
            esc[2] = hex[c >> 4];
            esc[3] = hex[c & 15];
            el = 4;
        } else {
            esc[0] = (char)c;
            el = 1;
        }
        if (o + el + 2 > cap)
            break;
        memcpy(out + o, esc, el);
        o += el;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}
